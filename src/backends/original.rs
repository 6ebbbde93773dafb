//! The transparent appliance mode (`backend: original-destination`): the
//! kernel redirected a client's connection to some server's port 21 to
//! ftpsgate (iptables/nftables `REDIRECT`), and ftpsgate connects to where
//! the client meant to go. The original destination comes from
//! `SO_ORIGINAL_DST` (`IP6T_SO_ORIGINAL_DST` for IPv6); it must lie inside
//! `original_destination_allow`, so the proxy is never an open relay, and
//! must not be ftpsgate itself (a connection that was not redirected).

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::config::Network;
use crate::ftp::addr::canonical;

/// Why a connection has no destination ftpsgate will connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection came to ftpsgate directly (or conntrack knows nothing of it).
    NotRedirected,
    /// The original destination is outside `original_destination_allow`.
    NotAllowed(SocketAddr),
}

impl Refused {
    /// The reason in logs and the `connections_rejected` counter.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::NotRedirected => "not redirected",
            Refused::NotAllowed(_) => "destination not allowed",
        }
    }
}

/// The connection's original destination as the kernel recorded it, if any.
pub fn lookup(tcp: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(tcp);
    let found = match tcp.local_addr().ok()? {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    };
    found.ok()?.as_socket().map(canonical)
}

/// Where to connect for a connection accepted on `local` whose original
/// destination is `original` (pure).
pub fn decide(
    original: Option<SocketAddr>,
    local: SocketAddr,
    allow: &[Network],
    port: Option<u16>,
) -> Result<SocketAddr, Refused> {
    let local = canonical(local);
    let dest = match original.map(canonical) {
        Some(d) if d != local => d,
        _ => return Err(Refused::NotRedirected),
    };
    if !allow.iter().any(|n| n.contains(dest.ip())) {
        return Err(Refused::NotAllowed(dest));
    }
    Ok(SocketAddr::new(dest.ip(), port.unwrap_or(dest.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decisions() {
        let allow: Vec<Network> = vec!["10.0.2.0/24".parse().unwrap()];
        let local = a("10.0.1.1:2121");
        assert_eq!(
            decide(Some(a("10.0.2.2:21")), local, &allow, None),
            Ok(a("10.0.2.2:21"))
        );
        assert_eq!(
            decide(Some(a("10.0.2.2:990")), local, &allow, Some(21)),
            Ok(a("10.0.2.2:21"))
        );
        assert_eq!(
            decide(Some(a("[::ffff:10.0.2.2]:21")), local, &allow, None),
            Ok(a("10.0.2.2:21"))
        );
        assert_eq!(
            decide(Some(a("10.0.3.2:21")), local, &allow, None),
            Err(Refused::NotAllowed(a("10.0.3.2:21")))
        );
        assert_eq!(
            decide(Some(local), local, &allow, None),
            Err(Refused::NotRedirected)
        );
        assert_eq!(
            decide(None, local, &allow, None),
            Err(Refused::NotRedirected)
        );
    }

    #[tokio::test]
    async fn a_direct_connection_has_no_other_destination() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let local = s.local_addr().unwrap();
        // Without a NAT rule the kernel reports the address itself (or nothing).
        let found = lookup(&s);
        assert!(found.is_none() || found == Some(local), "{found:?}");
        assert_eq!(
            decide(lookup(&s), local, &[], None),
            Err(Refused::NotRedirected)
        );
        drop(c);
    }
}
