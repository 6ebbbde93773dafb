//! Pure rewriting rules between the two legs (PROTOCOL.md §6, §8.1, §14):
//! what the proxy sends the backend to set up its data leg, how it reads the
//! backend's 227/229, what it advertises to the client in 227/229, how 1xx
//! replies are adapted for active-mode clients, how the backend's address is
//! hidden in reply text, and how FEAT is rewritten. No sockets, no state.
//!
//! What a passive reply advertises is chosen per client (issue 10): the
//! address by split horizon ([`configured_address`], matched on the *real*
//! client address), and the port through `public_passive_ports`
//! ([`advertised_port`]), for balancers that forward one port range onto another.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use super::addr;
use super::command::{Command, Verb};
use super::reply::Reply;
use crate::config::{AddressByNetwork, PortRange};

/// The command that asks the backend for a passive data port: PASV on an
/// IPv4 control connection, EPSV on IPv6.
pub fn backend_passive_command(backend: SocketAddr) -> Command {
    match backend {
        SocketAddr::V4(_) => Command::new(Verb::Pasv, ""),
        SocketAddr::V6(_) => Command::new(Verb::Epsv, ""),
    }
}

/// The command that tells the backend where ftpsgate listens for its data
/// connection: PORT for IPv4, EPRT for IPv6.
pub fn backend_active_command(listening: SocketAddr) -> Command {
    match listening {
        SocketAddr::V4(v4) => Command::new(Verb::Port, &addr::format_port(v4)),
        SocketAddr::V6(_) => Command::new(Verb::Eprt, &addr::format_eprt(listening)),
    }
}

/// What the backend's answer to PASV/EPSV means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendPassive {
    /// Connect to this address: the backend's control address and the port
    /// it named (the host in a 227 is ignored, PROTOCOL.md §6.3).
    Connect(SocketAddr),
    /// The backend refused; relay its reply.
    Refused,
    /// A 227/229 that names no usable port.
    Unusable,
}

/// Reads the backend's reply to PASV/EPSV.
pub fn backend_passive(reply: &Reply, backend: SocketAddr) -> BackendPassive {
    let port = match reply.code {
        227 => addr::parse_pasv_reply(&reply.text()).map(|a| a.port()),
        229 => addr::parse_epsv_reply(&reply.text()),
        _ => return BackendPassive::Refused,
    };
    match port {
        Ok(p) if p != 0 => BackendPassive::Connect(SocketAddr::new(backend.ip(), p)),
        _ => BackendPassive::Unusable,
    }
}

/// The configured address for `client` (its real address): the first
/// `public_address_by_network` rule whose network holds it, else
/// `public_address`; `None` when neither applies.
pub fn configured_address(
    by_network: &[AddressByNetwork],
    public: Option<IpAddr>,
    client: IpAddr,
) -> Option<IpAddr> {
    by_network
        .iter()
        .find(|rule| rule.network.contains(client))
        .map(|rule| rule.address)
        .or(public)
}

/// The port a 227/229 advertises for the `bound` passive port: its
/// counterpart in `public` when `public_passive_ports` maps the `passive`
/// range 1:1 (the configuration guarantees equal lengths), else `bound`.
pub fn advertised_port(bound: u16, passive: Option<PortRange>, public: Option<PortRange>) -> u16 {
    match (passive, public) {
        (Some(p), Some(q)) if (p.low..=p.high).contains(&bound) => {
            q.low.saturating_add(bound - p.low)
        }
        _ => bound,
    }
}

/// The IPv4 address a 227 advertises: the [`configured_address`], else the
/// address the client connected to (a balancer's front end, or the local
/// address of the control connection); 0.0.0.0 when neither is IPv4 (clients
/// then use the control address, PROTOCOL.md §0.9).
pub fn advertised_v4(public: Option<IpAddr>, local: IpAddr) -> Ipv4Addr {
    match public.unwrap_or(local) {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// The single-line 227 or 229 the client gets for a passive port.
pub fn passive_reply(extended: bool, advertised: Ipv4Addr, port: u16) -> Reply {
    if extended {
        Reply::new(229, addr::epsv_reply_text(port))
    } else {
        Reply::new(
            227,
            addr::pasv_reply_text(SocketAddrV4::new(advertised, port)),
        )
    }
}

/// Adapts the backend's 1xx to a transfer command for the client. `125`
/// means "already open"; toward an active-mode client ftpsgate has yet to
/// connect, and curl mishandles 125 there, so it becomes 150 (STOU's
/// `FILE: name` text is kept).
pub fn client_preliminary(mut reply: Reply, client_active: bool) -> Reply {
    if reply.code == 125 && client_active {
        reply.code = 150;
        if !reply.text().starts_with("FILE:") {
            reply.lines = vec![b"Opening data connection.".to_vec()];
        }
    }
    reply
}

/// The addresses that identify the backend and what the client sees instead.
#[derive(Debug, Clone)]
pub struct Hide {
    /// The backend's control address.
    pub backend: SocketAddr,
    /// The backend's DNS name, if it was configured by name.
    pub backend_name: Option<String>,
    /// The proxy's client-facing control address (shown instead of the backend's).
    pub proxy: SocketAddr,
    /// The proxy's backend-facing address (the backend sees it as its client).
    pub proxy_backend_side: SocketAddr,
    /// The client's address (shown instead of the proxy's backend-facing one).
    pub client: SocketAddr,
}

/// Replies whose text names the server or its client rather than files:
/// greetings, goodbyes, STAT and HELP. Everything else (257, 250, 213,
/// MLST, 150 `FILE:`, errors naming paths) is relayed untouched, because a
/// path may contain anything.
const ADDRESS_BEARING: &[u16] = &[120, 211, 214, 220, 221, 421];

/// Hides the backend's address (and the proxy's own backend-facing one) in
/// the replies that carry addresses, replacing whole tokens only.
pub fn hide_backend(reply: &mut Reply, hide: &Hide) {
    if !ADDRESS_BEARING.contains(&reply.code) {
        return;
    }
    for (from, to) in replacements(hide) {
        for line in &mut reply.lines {
            if let Some(new) = replace_tokens(line, from.as_bytes(), to.as_bytes()) {
                *line = new;
            }
        }
    }
}

/// Needle → replacement, longest forms first.
fn replacements(hide: &Hide) -> Vec<(String, String)> {
    let mut pairs = vec![
        (hide.backend.to_string(), hide.proxy.to_string()),
        (hide.proxy_backend_side.to_string(), hide.client.to_string()),
        (hide.backend.ip().to_string(), hide.proxy.ip().to_string()),
        (
            hide.proxy_backend_side.ip().to_string(),
            hide.client.ip().to_string(),
        ),
    ];
    if let IpAddr::V4(b) = hide.backend.ip() {
        // The PASV comma form. Toward an IPv6 client (an IPv6 listener in
        // front of an IPv4 backend) there is no IPv4 address of ours to put
        // in its place: 0,0,0,0 hides the backend all the same (found by fuzzing).
        let comma = |ip: Ipv4Addr| ip.octets().map(|o| o.to_string()).join(",");
        let ours = match hide.proxy.ip() {
            IpAddr::V4(p) => p,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        pairs.push((comma(b), comma(ours)));
    }
    if let Some(name) = &hide.backend_name {
        pairs.push((name.clone(), hide.proxy.ip().to_string()));
    }
    // Replacing a value by itself is a no-op, and would stop a later needle that shares it.
    pairs.retain(|(from, to)| !from.is_empty() && from != to);
    pairs
}

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Replaces `from` where it stands as a whole token: not inside a longer
/// name, number or address (`10.0.0.5` is not in `10.0.0.51`, `localhost`
/// is not in `localhost-backups`). A trailing `.` ends a token unless a
/// name continues after it; `:` ends one unless `from` is an IPv6 address.
pub fn replace_tokens(hay: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let v6 = from.contains(&b':');
    let whole = |i: usize, j: usize| {
        let before = i == 0 || {
            let p = hay[i - 1];
            !(word(p) || (p == b'.' && i >= 2 && word(hay[i - 2])) || (p == b':' && v6))
        };
        let after = j == hay.len() || {
            let n = hay[j];
            let next_word = hay.get(j + 1).copied().is_some_and(word);
            !(word(n) || (n == b'.' && next_word) || (n == b':' && v6 && next_word))
        };
        before && after
    };
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i + from.len() <= hay.len() {
        if hay[i..].starts_with(from) && whole(i, i + from.len()) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(hay.len()));
            o.extend_from_slice(&hay[copied..i]);
            o.extend_from_slice(to);
            i += from.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    let mut o = out?;
    o.extend_from_slice(&hay[copied..]);
    Some(o)
}

/// Verbs the proxy owns or cannot rewrite; backend FEAT lines for them are dropped.
const HIDDEN_FEATURES: &[&str] = &[
    "AUTH", "ADAT", "PBSZ", "PROT", "CCC", "MIC", "CONF", "ENC", "EPSV", "EPRT", "SPSV", "ESTA",
    "ESTP", "LPSV", "LPRT",
];

/// Builds the client's FEAT reply from the backend's (or synthesises one when
/// the backend refused FEAT): backend security and un-rewritable data-setup
/// lines removed, `AUTH TLS`, `PBSZ`, `PROT`, `EPSV`, `EPRT` added (RFC 2389 §3, RFC 4217 §6).
pub fn feat(backend: Option<&Reply>) -> Reply {
    let mut body: Vec<Vec<u8>> = Vec::new();
    if let Some(r) = backend.filter(|r| r.code == 211) {
        for line in r.body() {
            let text = String::from_utf8_lossy(line);
            let label = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if label.is_empty() || HIDDEN_FEATURES.contains(&label.as_str()) {
                continue;
            }
            body.push(format!(" {}", text.trim()).into_bytes());
        }
    }
    for f in [" AUTH TLS", " PBSZ", " PROT", " EPSV", " EPRT"] {
        body.push(f.as_bytes().to_vec());
    }
    Reply::multi(211, "Features:", body, "End")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backend() -> SocketAddr {
        "10.0.0.5:21".parse().unwrap()
    }

    #[test]
    fn backend_passive_replies() {
        let r = Reply::new(227, "Entering Passive Mode (192,168,9,9,4,1).");
        assert_eq!(
            backend_passive(&r, backend()),
            BackendPassive::Connect("10.0.0.5:1025".parse().unwrap()),
            "the 227 host is ignored"
        );
        let r = Reply::new(229, "Entering Extended Passive Mode (|||6446|)");
        assert_eq!(
            backend_passive(&r, backend()),
            BackendPassive::Connect("10.0.0.5:6446".parse().unwrap())
        );
        assert_eq!(
            backend_passive(&Reply::new(500, "no"), backend()),
            BackendPassive::Refused
        );
        for bad in ["(1,2,3,4,0,0)", "garbage"] {
            assert_eq!(
                backend_passive(&Reply::new(227, bad), backend()),
                BackendPassive::Unusable
            );
        }
    }

    #[test]
    fn backend_data_commands() {
        assert_eq!(backend_passive_command(backend()).verb, Verb::Pasv);
        assert_eq!(
            backend_passive_command("[::1]:21".parse().unwrap()).verb,
            Verb::Epsv
        );
        let c = backend_active_command("10.0.0.9:1025".parse().unwrap());
        assert_eq!(c.encode(), b"PORT 10,0,0,9,4,1\r\n");
        let c = backend_active_command("[::1]:1025".parse().unwrap());
        assert_eq!(c.encode(), b"EPRT |2|::1|1025|\r\n");
    }

    #[test]
    fn advertised_address_choice() {
        let local: IpAddr = "192.0.2.1".parse().unwrap();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(advertised_v4(None, local), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(
            advertised_v4(Some(public), local),
            Ipv4Addr::new(203, 0, 113, 7)
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(advertised_v4(None, mapped), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(
            advertised_v4(None, "::1".parse().unwrap()),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            passive_reply(false, Ipv4Addr::new(192, 0, 2, 1), 1025).encode(),
            b"227 Entering Passive Mode (192,0,2,1,4,1).\r\n"
        );
        assert_eq!(
            passive_reply(true, Ipv4Addr::UNSPECIFIED, 1025).encode(),
            b"229 Entering Extended Passive Mode (|||1025|)\r\n"
        );
    }

    #[test]
    fn split_horizon_first_match_then_public_address() {
        let rules: Vec<AddressByNetwork> = [
            "10.0.0.0/8=10.1.2.3",
            "10.9.0.0/16=10.9.9.9",
            "::/0=2001:db8::1",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        let at = |client: &str, public| configured_address(&rules, public, client.parse().unwrap());
        assert_eq!(
            at("10.9.1.1", Some(public)),
            Some("10.1.2.3".parse().unwrap()),
            "first match wins"
        );
        assert_eq!(
            at("::ffff:10.2.0.1", None),
            Some("10.1.2.3".parse().unwrap()),
            "mapped clients match IPv4 rules"
        );
        assert_eq!(at("198.51.100.1", Some(public)), Some(public));
        assert_eq!(at("198.51.100.1", None), None);
        assert_eq!(
            at("2001:db8::77", None),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(configured_address(&[], None, public), None);
        // The chosen address goes into the 227; the fallback is where the client connected.
        let seen_as: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            advertised_v4(at("10.0.0.1", None), seen_as),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(
            advertised_v4(at("198.51.100.1", None), seen_as),
            Ipv4Addr::new(192, 0, 2, 1)
        );
    }

    #[test]
    fn public_passive_ports_map_one_to_one() {
        let range = |s: &str| Some(s.parse::<PortRange>().unwrap());
        let (bound, public) = (range("50000-50099"), range("60000-60099"));
        assert_eq!(advertised_port(50000, bound, public), 60000);
        assert_eq!(advertised_port(50042, bound, public), 60042);
        assert_eq!(advertised_port(50099, bound, public), 60099);
        assert_eq!(advertised_port(50042, bound, None), 50042);
        assert_eq!(
            advertised_port(40000, bound, public),
            40000,
            "outside the range: as bound"
        );
        assert_eq!(advertised_port(50042, None, public), 50042);
        assert_eq!(
            passive_reply(
                false,
                Ipv4Addr::new(192, 0, 2, 1),
                advertised_port(50001, bound, public)
            )
            .encode(),
            b"227 Entering Passive Mode (192,0,2,1,234,97).\r\n"
        );
    }

    #[test]
    fn preliminary_125_becomes_150_for_active_clients_only() {
        let r = Reply::new(125, "Data connection already open; transfer starting.");
        assert_eq!(client_preliminary(r.clone(), false), r);
        let out = client_preliminary(r, true);
        assert_eq!(out, Reply::new(150, "Opening data connection."));
        let stou = Reply::new(125, "FILE: unique.1");
        assert_eq!(
            client_preliminary(stou, true),
            Reply::new(150, "FILE: unique.1")
        );
        let r150 = Reply::new(150, "Opening BINARY mode data connection.");
        assert_eq!(client_preliminary(r150.clone(), true), r150);
    }

    fn hide() -> Hide {
        Hide {
            backend: backend(),
            backend_name: Some("localhost".into()),
            proxy: "192.0.2.1:21".parse().unwrap(),
            proxy_backend_side: "10.0.0.9:40001".parse().unwrap(),
            client: "198.51.100.7:50000".parse().unwrap(),
        }
    }

    fn hidden(code: u16, line: &str) -> String {
        let mut r = Reply::new(code, line);
        hide_backend(&mut r, &hide());
        r.text()
    }

    #[test]
    fn backend_address_is_hidden_in_address_bearing_replies() {
        assert_eq!(
            hidden(
                211,
                "Connected to 10.0.0.5:21 (10,0,0,5) from 10.0.0.9:40001."
            ),
            "Connected to 192.0.2.1:21 (192,0,2,1) from 198.51.100.7:50000."
        );
        assert_eq!(
            hidden(220, "ProFTPD Server (localhost) [10.0.0.5]"),
            "ProFTPD Server (192.0.2.1) [192.0.2.1]"
        );
        assert_eq!(hidden(421, "10.0.0.5 closing"), "192.0.2.1 closing");
        assert_eq!(hidden(211, "peer 10.0.0.9"), "peer 198.51.100.7");
        // An IPv6 listener before an IPv4 backend: no IPv4 of ours for the comma form.
        let mut r = Reply::new(211, "(10,0,0,5)");
        let v6 = Hide {
            proxy: "[2001:db8::1]:21".parse().unwrap(),
            ..hide()
        };
        hide_backend(&mut r, &v6);
        assert_eq!(r.text(), "(0,0,0,0)");
    }

    #[test]
    fn only_whole_tokens_and_never_pathnames() {
        assert_eq!(
            hidden(211, "10.0.0.51 and 110.0.0.5"),
            "10.0.0.51 and 110.0.0.5"
        );
        assert_eq!(
            hidden(211, "localhost-backups localhost.example"),
            "localhost-backups localhost.example"
        );
        assert_eq!(hidden(211, "x.10.0.0.5"), "x.10.0.0.5");
        for code in [257, 250, 213, 150, 550, 226] {
            assert_eq!(
                hidden(code, "\"/localhost/10.0.0.5\""),
                "\"/localhost/10.0.0.5\"",
                "{code}"
            );
        }
    }

    #[test]
    fn token_replacement_edges() {
        let r = |h: &str, f: &str, t: &str| {
            replace_tokens(h.as_bytes(), f.as_bytes(), t.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(r("a b", "a", "x").as_deref(), Some("x b"));
        assert_eq!(r("ab", "a", "x"), None);
        assert_eq!(
            r("[::1]:21 ::10", "::1", "h").as_deref(),
            Some("[h]:21 ::10")
        );
        assert_eq!(r("host:21", "host", "h").as_deref(), Some("h:21"));
        assert_eq!(r("end host.", "host", "h").as_deref(), Some("end h."));
    }

    #[test]
    fn feat_rewrite() {
        let backend = Reply::multi(
            211,
            "Features:",
            vec![
                b" MDTM".to_vec(),
                b" AUTH SSL".to_vec(),
                b" EPSV".to_vec(),
                b" SIZE".to_vec(),
                b" PBSZ".to_vec(),
            ],
            "End",
        );
        let out = feat(Some(&backend));
        let body: Vec<String> = out
            .body()
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(
            body,
            [
                " MDTM",
                " SIZE",
                " AUTH TLS",
                " PBSZ",
                " PROT",
                " EPSV",
                " EPRT"
            ]
        );
        // A backend that refuses FEAT gets a synthesised list.
        let out = feat(Some(&Reply::new(500, "no")));
        assert_eq!(out.body().len(), 5);
        assert!(out.encode().starts_with(b"211-"));
    }

    proptest! {
        #[test]
        fn passive_replies_parse_back(ip in any::<u32>(), port in 1u16..) {
            let ip = Ipv4Addr::from(ip);
            for extended in [false, true] {
                let r = passive_reply(extended, ip, port);
                prop_assert_eq!(
                    backend_passive(&r, backend()),
                    BackendPassive::Connect(SocketAddr::new(backend().ip(), port))
                );
            }
        }

        #[test]
        fn backend_commands_parse_back(ip in any::<u32>(), port in any::<u16>()) {
            let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            let c = backend_active_command(a);
            prop_assert_eq!(addr::parse_port_arg(&c.arg_str()).map(SocketAddr::V4), Ok(a));
        }
    }
}
