//! Target `reply`: [`ReplyParser`] on backend bytes (multi-line replies, the
//! line and size caps), then what the proxy makes of each reply for the client
//! ([`Reply::encode`], `rewrite::{hide_backend, feat, client_preliminary,
//! backend_passive}`).
//!
//! Input: one choice byte (active client, the [`Hide`] addresses, the
//! parser's reply cap), then a [`Stream`] (run escapes reach
//! [`MAX_REPLY_LINE`]; the default [`MAX_REPLY_BYTES`] is out of reach, so
//! the byte cap is tried through `ReplyParser::with_max_bytes` with small caps).
//! Invariants:
//! - the replies and the first error do not depend on read boundaries;
//! - a parsed reply has a code 100-599, at least one line, no LF in a line,
//!   no line over [`MAX_REPLY_LINE`], and a multi-line reply no more wire
//!   bytes than the parser's cap;
//! - the reply, and each rewrite of it sent to a client, is well formed
//!   ([`assert_well_formed`]: parses back to one reply with the same code and lines);
//! - `hide_backend` changes only address-bearing replies (120, 211, 214, 220,
//!   221, 421), and leaves none of the backend's identities in them as a
//!   whole token: its address, IP, IP in PASV comma form, DNS name;
//! - the rewritten FEAT never advertises a backend security or unrewritable
//!   data-setup feature, and always ends with ftpsgate's own five;
//! - 125 becomes 150 toward active clients only; nothing else changes;
//! - a backend 227/229 yields a data address on the backend's own IP, never port 0.

use std::net::{IpAddr, SocketAddr};

use ftpsgate::ftp::reply::{Reply, ReplyError, ReplyParser, MAX_REPLY_BYTES, MAX_REPLY_LINE};
use ftpsgate::ftp::rewrite::{self, BackendPassive, Hide};

use super::{assert_well_formed, brief, Input, Stream};

/// Streams are capped a little above the line cap, or, in long mode, two
/// line caps. [`MAX_REPLY_BYTES`] (4 MiB) is out of reach: inputs that size
/// would slow the fuzzer a hundredfold (docs/fuzzing.md).
const SHORT: usize = MAX_REPLY_LINE + 64;
const LONG: usize = 2 * MAX_REPLY_LINE + 256;

/// Backend features FEAT must not pass on (rewrite.rs `HIDDEN_FEATURES`).
const HIDDEN: &[&str] = &[
    "AUTH", "ADAT", "PBSZ", "PROT", "CCC", "MIC", "CONF", "ENC", "EPSV", "EPRT", "SPSV", "ESTA",
    "ESTP", "LPSV", "LPRT",
];
/// What ftpsgate itself advertises, last in every FEAT.
const OWN: &[&str] = &[" AUTH TLS", " PBSZ", " PROT", " EPSV", " EPRT"];

/// Reply caps (`ReplyParser::with_max_bytes`), chosen by the top three
/// bits of the choice byte: the default, and caps a stream can reach.
const CAPS: [usize; 8] = [MAX_REPLY_BYTES, 0, 16, 100, 1000, 4096, 8200, 16384];

/// Replies whose text `hide_backend` rewrites (rewrite.rs `ADDRESS_BEARING`).
const ADDRESS_BEARING: &[u16] = &[120, 211, 214, 220, 221, 421];

/// The target body.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let stream = Stream::decode(input.rest(), SHORT, LONG);
    let cap = CAPS[usize::from(choice >> 5)];
    let whole = parse(std::iter::once(&stream.bytes[..]), cap);
    let split = parse(stream.reads(), cap);
    assert!(whole == split, "replies depend on read boundaries");
    let hide = hide(choice);
    for reply in &whole.0 {
        check_parsed(reply, cap);
        assert_well_formed(reply);
        check_rewrites(reply, &hide, choice & 1 == 1);
    }
}

/// Every reply up to the first error.
fn parse<'a>(
    reads: impl Iterator<Item = &'a [u8]>,
    cap: usize,
) -> (Vec<Reply>, Option<ReplyError>) {
    let mut parser = ReplyParser::with_max_bytes(cap);
    let mut replies = Vec::new();
    for read in reads {
        parser.push(read);
        loop {
            match parser.next_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(e) => return (replies, Some(e)),
            }
        }
    }
    (replies, None)
}

fn check_parsed(reply: &Reply, cap: usize) {
    assert!((100..=599).contains(&reply.code), "code {}", reply.code);
    assert!(!reply.lines.is_empty());
    let mut total = 0;
    for line in &reply.lines {
        assert!(!line.contains(&b'\n'));
        assert!(line.len() <= MAX_REPLY_LINE, "line of {} bytes", line.len());
        total += line.len() + 1; // at least an LF
    }
    if reply.lines.len() > 1 {
        // `ddd-` before the first line, at least `ddd` before the last.
        total += 4 + 3;
        assert!(
            total <= cap,
            "multi-line reply of {total}+ bytes, cap {cap}"
        );
    }
}

/// The addresses `hide_backend` works with: every field of [`Hide`] varied
/// (bits 1-2: four address sets; bit 3: a backend name; bit 4: which name).
fn hide(choice: u8) -> Hide {
    // backend, proxy (client side), proxy (backend side), client
    let sets: [[&str; 4]; 4] = [
        [
            "10.0.0.5:21",
            "192.0.2.1:21",
            "10.0.0.1:40000",
            "198.51.100.7:50000",
        ],
        [
            "[2001:db8::5]:2121",
            "[2001:db8::1]:990",
            "[2001:db8::2]:40000",
            "[2001:db8:1::7]:50000",
        ],
        // One address on both sides of the proxy (a single-homed host).
        [
            "10.0.0.5:21",
            "10.0.0.1:21",
            "10.0.0.1:40000",
            "198.51.100.7:50000",
        ],
        // An IPv6 client on a dual-stack listener, an IPv4 backend.
        [
            "10.0.0.5:2121",
            "[2001:db8::1]:21",
            "10.0.0.1:40000",
            "[2001:db8::7]:50000",
        ],
    ];
    let [backend, proxy, proxy_backend_side, client] =
        sets[usize::from(choice >> 1) & 3].map(|a| a.parse().expect("address"));
    let name = ["legacy.example", "ftp"][usize::from(choice >> 4) & 1];
    Hide {
        backend,
        backend_name: (choice & 8 != 0).then(|| name.to_string()),
        proxy,
        proxy_backend_side,
        client,
    }
}

/// The backend's identities as `hide_backend` knows them.
fn identities(hide: &Hide) -> Vec<String> {
    let mut out = vec![hide.backend.to_string(), hide.backend.ip().to_string()];
    if let IpAddr::V4(v4) = hide.backend.ip() {
        out.push(v4.octets().map(|o| o.to_string()).join(","));
    }
    out.extend(hide.backend_name.clone());
    out
}

fn check_rewrites(reply: &Reply, hide: &Hide, client_active: bool) {
    // A rewrite that changed nothing needs no second well-formedness check.
    let mut hidden = reply.clone();
    rewrite::hide_backend(&mut hidden, hide);
    if hidden != *reply {
        assert!(
            ADDRESS_BEARING.contains(&reply.code),
            "{} rewritten",
            reply.code
        );
        assert_well_formed(&hidden);
    }
    if ADDRESS_BEARING.contains(&reply.code) {
        for line in &hidden.lines {
            for id in identities(hide) {
                assert!(
                    rewrite::replace_tokens(line, id.as_bytes(), b"").is_none(),
                    "{id} left in {}",
                    brief(line)
                );
            }
        }
    }

    let adapted = rewrite::client_preliminary(reply.clone(), client_active);
    if reply.code == 125 && client_active {
        assert_eq!(adapted.code, 150);
        assert_well_formed(&adapted);
    } else {
        assert!(adapted == *reply, "{} changed", reply.code);
    }

    check_feat(reply);
    check_backend_passive(reply, hide.backend);
}

fn check_feat(reply: &Reply) {
    let feat = rewrite::feat(Some(reply));
    assert_well_formed(&feat);
    assert_eq!(feat.code, 211);
    let body = feat.body();
    assert!(body.len() >= OWN.len());
    let (passed, own) = body.split_at(body.len() - OWN.len());
    for (line, want) in own.iter().zip(OWN) {
        assert!(line == want.as_bytes(), "{}", brief(line));
    }
    for line in passed {
        assert!(
            reply.code == 211,
            "FEAT lines passed from a {} reply",
            reply.code
        );
        assert_eq!(line.first(), Some(&b' '), "{}", brief(line));
        let text = String::from_utf8_lossy(line);
        let label = text.split_whitespace().next().unwrap_or("");
        assert!(
            !label.is_empty() && !HIDDEN.contains(&label.to_ascii_uppercase().as_str()),
            "backend feature {} passed on",
            brief(line)
        );
    }
}

fn check_backend_passive(reply: &Reply, backend: SocketAddr) {
    match rewrite::backend_passive(reply, backend) {
        BackendPassive::Connect(target) => {
            assert!(matches!(reply.code, 227 | 229));
            assert_eq!(target.ip(), backend.ip());
            assert_ne!(target.port(), 0);
        }
        BackendPassive::Unusable => assert!(matches!(reply.code, 227 | 229)),
        BackendPassive::Refused => assert!(!matches!(reply.code, 227 | 229)),
    }
}
