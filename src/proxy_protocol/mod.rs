//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, v1 text and v2
//! binary): what a trusted balancer's header says about a connection
//! ([`interpret`], parsing by the `ppp` crate), reading exactly one header
//! off a fresh connection within a deadline and a size cap ([`read_header`]), and
//! the header ftpsgate itself sends to a backend ([`encode`]).
//!
//! A header is only ever read from a peer inside the listener's
//! `proxy_protocol_from`; from anyone else it would be a forgery, so such
//! connections are refused before a byte is read. v2 `LOCAL` (a balancer's
//! own health check), v2 `UNSPEC` and v1 `UNKNOWN` carry no client: the
//! connection's own peer (the balancer) stands.

mod read;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2};

use crate::config::{BackendProxyProtocol, ProxyProtocol};
use crate::ftp::addr::canonical;

pub use read::read_header;

/// The v2 signature: the first 12 bytes of every binary header.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the specification's limit).
pub const V1_MAX: usize = 107;
/// The longest v2 header accepted, the 16 fixed bytes included. Addresses
/// take at most 216 bytes; the rest leaves room for a balancer's TLVs
/// (unique id, authority, TLS details), which ftpsgate does not use.
pub const V2_MAX: usize = 16 + 1024;

/// What a balancer's header says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    /// The real client; `None` (LOCAL, UNKNOWN, UNSPEC): the connection's own peer.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the balancer's front end).
    pub destination: Option<SocketAddr>,
}

/// Why a header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The peer closed before sending anything (a plain TCP health check).
    #[error("closed before sending a header")]
    Closed,
    /// No complete header within the deadline.
    #[error("no PROXY header within the deadline")]
    Timeout,
    /// The first bytes are not a PROXY header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A header of a version this listener does not accept.
    #[error("PROXY protocol {0} header, but the listener accepts {1}")]
    WrongVersion(&'static str, &'static str),
    /// Longer than [`V1_MAX`] / [`V2_MAX`].
    #[error("PROXY header too long")]
    TooLong,
    /// The parser refused it.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    /// A UNIX-socket or datagram source: not a TCP client.
    #[error("PROXY header names a non-TCP source")]
    NotTcp,
    /// Reading failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(io::ErrorKind),
}

impl HeaderError {
    /// The metric and log label of the refusal (`connections_rejected`).
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Timeout => "proxy_timeout",
            _ => "proxy_invalid",
        }
    }
}

/// The label of a connection refused because its source is not a trusted balancer.
pub const UNTRUSTED: &str = "proxy_untrusted";

fn version_name(p: ProxyProtocol) -> &'static str {
    match p {
        ProxyProtocol::Off => "none",
        ProxyProtocol::V1 => "v1",
        ProxyProtocol::V2 => "v2",
        ProxyProtocol::Any => "v1 or v2",
    }
}

/// Interprets one complete header (exactly the bytes [`read_header`] framed)
/// under a listener that accepts `accept`.
pub fn interpret(bytes: &[u8], accept: ProxyProtocol) -> Result<Origin, HeaderError> {
    let wrong = |v| Err(HeaderError::WrongVersion(v, version_name(accept)));
    if bytes.starts_with(V2_SIGNATURE) {
        if !matches!(accept, ProxyProtocol::V2 | ProxyProtocol::Any) {
            return wrong("v2");
        }
        return from_v2(bytes);
    }
    if bytes.starts_with(b"PROXY ") {
        if !matches!(accept, ProxyProtocol::V1 | ProxyProtocol::Any) {
            return wrong("v1");
        }
        return from_v1(bytes);
    }
    Err(HeaderError::NotProxy)
}

fn from_v2(bytes: &[u8]) -> Result<Origin, HeaderError> {
    let header = v2::Header::try_from(bytes).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if header.header.len() != bytes.len() {
        return Err(HeaderError::Invalid("length does not match".into()));
    }
    if header.command == v2::Command::Local {
        return Ok(Origin::default());
    }
    let pair = |s: SocketAddr, d: SocketAddr| Origin {
        source: Some(canonical(s)),
        destination: Some(canonical(d)),
    };
    match (header.protocol, header.addresses) {
        (_, v2::Addresses::Unspecified) => Ok(Origin::default()),
        (v2::Protocol::Stream, v2::Addresses::IPv4(a)) => Ok(pair(
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        )),
        (v2::Protocol::Stream, v2::Addresses::IPv6(a)) => Ok(pair(
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        )),
        _ => Err(HeaderError::NotTcp),
    }
}

fn from_v1(bytes: &[u8]) -> Result<Origin, HeaderError> {
    // The spec ends the line with CRLF; `ppp` also takes a bare LF (found by fuzzing).
    if !bytes.ends_with(b"\r\n") {
        return Err(HeaderError::Invalid("a v1 header ends with CRLF".into()));
    }
    let header = v1::Header::try_from(bytes).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if header.header.len() != bytes.len() {
        return Err(HeaderError::Invalid("bytes after the header".into()));
    }
    let pair = |s: IpAddr, sp, d: IpAddr, dp| Origin {
        source: Some(canonical(SocketAddr::new(s, sp))),
        destination: Some(canonical(SocketAddr::new(d, dp))),
    };
    Ok(match header.addresses {
        v1::Addresses::Unknown => Origin::default(),
        v1::Addresses::Tcp4(a) => pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
        v1::Addresses::Tcp6(a) => pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
    })
}

/// What ftpsgate tells a backend about the client (`backend_proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    /// Which header, if any.
    pub version: BackendProxyProtocol,
    /// The real client.
    pub client: SocketAddr,
}

impl Outbound {
    /// The header for a backend connection that reached `destination`.
    pub fn header(&self, destination: SocketAddr) -> io::Result<Option<Vec<u8>>> {
        encode(self.version, self.client, destination)
    }
}

/// The header ftpsgate sends first on a backend control connection: the
/// real client `source` connecting to `destination` (the backend address
/// ftpsgate reached). Mixed families are both written as IPv6 (an IPv4
/// address as IPv4-mapped), as HAProxy does. `None` when `Off`.
pub fn encode(
    version: BackendProxyProtocol,
    source: SocketAddr,
    destination: SocketAddr,
) -> io::Result<Option<Vec<u8>>> {
    let (source, destination) = same_family(canonical(source), canonical(destination));
    match version {
        BackendProxyProtocol::Off => Ok(None),
        BackendProxyProtocol::V1 => {
            let addresses = v1::Addresses::from((source, destination));
            Ok(Some(addresses.to_string().into_bytes()))
        }
        BackendProxyProtocol::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .map(Some),
    }
}

/// The header for ftpsgate's own connection to a backend (a health check):
/// v1 `UNKNOWN`, v2 `LOCAL`, so a PROXY-aware server accepts it as the
/// proxy itself rather than log a malformed connection.
pub fn encode_local(version: BackendProxyProtocol) -> io::Result<Option<Vec<u8>>> {
    match version {
        BackendProxyProtocol::Off => Ok(None),
        BackendProxyProtocol::V1 => Ok(Some(b"PROXY UNKNOWN\r\n".to_vec())),
        BackendProxyProtocol::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .map(Some),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    (v6(a), v6(b))
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.source, self.destination) {
            (Some(s), Some(d)) => write!(f, "{s} -> {d}"),
            _ => f.write_str("balancer's own connection"),
        }
    }
}

#[cfg(test)]
mod tests;
