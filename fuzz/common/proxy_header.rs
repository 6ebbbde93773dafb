//! Target `proxy_header`: [`proxy_protocol::interpret`], what a trusted
//! balancer's PROXY header (v1 text or v2 binary, parsed by the `ppp` crate)
//! says about a connection.
//!
//! Input: the header bytes, as `read_header` would have framed them. Invariants:
//! - nothing panics, under every listener setting (`off`, `v1`, `v2`, `any`);
//! - `off` accepts nothing; `v1`/`v2` accept only their own signature
//!   (`PROXY ` / the 12-byte v2 signature) and then agree with `any`;
//! - an accepted header is all of the bytes: a v1 header ends with its CRLF,
//!   a v2 header is exactly as long as its length field says;
//! - the origin's addresses are sane: a source and a destination, or neither
//!   (LOCAL, UNKNOWN, UNSPEC: the balancer's own connection); in canonical
//!   form (an IPv4-mapped IPv6 address is the IPv4 address it is), as the
//!   PORT/EPRT and data-peer checks compare them; and the header ftpsgate
//!   itself sends a backend about that client ([`proxy_protocol::encode`],
//!   v1 and v2) reads back as the same two addresses.

use ftpsgate::config::{BackendProxyProtocol, ProxyProtocol};
use ftpsgate::ftp::addr::canonical;
use ftpsgate::proxy_protocol::{self, HeaderError, Origin, V2_SIGNATURE};

use super::brief;

/// The target body.
pub fn run(data: &[u8]) {
    let any = proxy_protocol::interpret(data, ProxyProtocol::Any);
    let v1 = proxy_protocol::interpret(data, ProxyProtocol::V1);
    let v2 = proxy_protocol::interpret(data, ProxyProtocol::V2);
    let off = proxy_protocol::interpret(data, ProxyProtocol::Off);
    assert!(
        matches!(
            off,
            Err(HeaderError::NotProxy | HeaderError::WrongVersion(..))
        ),
        "`off` accepted {}: {off:?}",
        brief(data)
    );
    let is_v2 = data.starts_with(V2_SIGNATURE);
    let is_v1 = data.starts_with(b"PROXY ");
    match (is_v1, is_v2) {
        (true, _) => {
            assert_eq!(v1, any);
            assert!(matches!(v2, Err(HeaderError::WrongVersion("v1", _))));
        }
        (_, true) => {
            assert_eq!(v2, any);
            assert!(matches!(v1, Err(HeaderError::WrongVersion("v2", _))));
        }
        _ => {
            for r in [&any, &v1, &v2] {
                assert_eq!(*r, Err(HeaderError::NotProxy), "{}", brief(data));
            }
        }
    }
    for r in [&any, &v1, &v2] {
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
            assert!(matches!(e.reason(), "proxy_invalid" | "proxy_timeout"));
        }
    }
    let Ok(origin) = any else {
        return;
    };
    if is_v1 {
        assert!(data.ends_with(b"\r\n"), "v1 header {}", brief(data));
    } else {
        let length = data.get(14..16).map(|l| u16::from_be_bytes([l[0], l[1]]));
        let length = usize::from(length.expect("a v2 header has 16 fixed bytes"));
        assert_eq!(data.len(), 16 + length, "v2 header {}", brief(data));
    }
    check_origin(&origin, data);
}

/// The addresses of an accepted header.
fn check_origin(origin: &Origin, data: &[u8]) {
    let _ = origin.to_string();
    let (source, destination) = match (origin.source, origin.destination) {
        (Some(s), Some(d)) => (s, d),
        (None, None) => return,
        other => panic!("half an origin {other:?} from {}", brief(data)),
    };
    for a in [source, destination] {
        assert_eq!(canonical(a), a, "{a} not canonical, from {}", brief(data));
    }
    for version in [BackendProxyProtocol::V1, BackendProxyProtocol::V2] {
        let header = proxy_protocol::encode(version, source, destination)
            .expect("encodes")
            .expect("a header");
        let back = proxy_protocol::interpret(&header, ProxyProtocol::Any);
        let want = Origin {
            source: Some(source),
            destination: Some(destination),
        };
        assert_eq!(
            back,
            Ok(want),
            "{version:?} header for {source} -> {destination} reads back differently"
        );
    }
}
