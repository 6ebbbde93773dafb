//! Target `addr`: the PORT, 227 (PASV), EPRT and 229 (EPSV) parsers of
//! `ftp::addr`, and `rewrite::backend_passive` reading a backend's 227/229.
//!
//! Input: the text (UTF-8, lossily). All four parsers see it. Invariants:
//! - nothing panics;
//! - whatever a parser accepts, its formatter writes back as text the parser
//!   reads as the same address (PORT and 227 share `h1,...,p2`);
//! - an accepted EPRT names family 1 with IPv4, 2 with IPv6;
//! - `backend_passive` on a 227/229 with this text connects only to the
//!   backend's own IP (the 227 host is ignored, PROTOCOL.md §6.3), never port
//!   0, and agrees with the parsers;
//! - the 227/229 the client is then sent is a well-formed reply.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use ftpsgate::ftp::addr::{self, AddrError};
use ftpsgate::ftp::reply::Reply;
use ftpsgate::ftp::rewrite::{self, BackendPassive};

use super::assert_well_formed;

/// The target body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = addr::parse_port_arg(&text) {
        assert_eq!(addr::parse_port_arg(&addr::format_port(a)), Ok(a));
    }
    let pasv = addr::parse_pasv_reply(&text);
    if let Ok(a) = pasv {
        assert_eq!(addr::parse_pasv_reply(&addr::pasv_reply_text(a)), Ok(a));
        client_replies(a);
    }
    match addr::parse_eprt_arg(&text) {
        Ok(a) => {
            assert_eq!(addr::parse_eprt_arg(&addr::format_eprt(a)), Ok(a));
            let af = text.trim().chars().nth(1);
            let want = char::from(b'0' + addr::family_number(a.ip()));
            assert_eq!(af, Some(want), "{text:?} read as {a}");
        }
        Err(AddrError::Family | AddrError::Syntax) => {}
    }
    let epsv = addr::parse_epsv_reply(&text);
    if let Ok(port) = epsv {
        assert_eq!(
            addr::parse_epsv_reply(&addr::epsv_reply_text(port)),
            Ok(port)
        );
    }

    let backend: SocketAddr = "10.0.0.5:21".parse().expect("address");
    let from_227 = pasv.map(|a| a.port());
    for (code, port) in [(227, from_227), (229, epsv)] {
        let reply = Reply::new(code, text.clone());
        let want = match port {
            Ok(p) if p != 0 => BackendPassive::Connect(SocketAddr::new(backend.ip(), p)),
            _ => BackendPassive::Unusable,
        };
        assert_eq!(rewrite::backend_passive(&reply, backend), want);
    }
}

/// The 227 and 229 the client gets for a passive port are well formed.
fn client_replies(a: SocketAddrV4) {
    let local = IpAddr::V4(*a.ip());
    let advertised = rewrite::advertised_v4(None, local);
    assert_eq!(advertised, *a.ip());
    let mapped = rewrite::advertised_v4(Some(IpAddr::V6(a.ip().to_ipv6_mapped())), local);
    assert_eq!(mapped, *a.ip());
    let v6 = rewrite::advertised_v4(None, "2001:db8::1".parse().expect("address"));
    assert_eq!(v6, Ipv4Addr::UNSPECIFIED);
    for extended in [false, true] {
        let reply = rewrite::passive_reply(extended, advertised, a.port());
        assert_well_formed(&reply);
        let text = reply.text();
        match extended {
            false => assert_eq!(addr::parse_pasv_reply(&text), Ok(a)),
            true => assert_eq!(addr::parse_epsv_reply(&text), Ok(a.port())),
        }
    }
}
