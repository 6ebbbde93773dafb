//! Target `reply`: [`ReplyParser`] on backend bytes (multi-line replies, the
//! line and size caps), then what the proxy makes of each reply for the client
//! ([`Reply::encode`], `rewrite::{hide_backend, feat, client_preliminary,
//! backend_passive}`).
//!
//! Input: one choice byte, then a [`Stream`] (run escapes reach
//! [`MAX_REPLY_LINE`]; streams stay far below [`MAX_REPLY_BYTES`]).
//! Invariants:
//! - the replies and the first error do not depend on read boundaries;
//! - a parsed reply has a code 100-599, at least one line, no LF in a line,
//!   no line over [`MAX_REPLY_LINE`], no more than [`MAX_REPLY_BYTES`] of text;
//! - the reply, and each rewrite of it sent to a client, is well formed
//!   ([`assert_well_formed`]: parses back to one reply with the same code and lines);
//! - the rewritten FEAT never advertises a backend security or unrewritable
//!   data-setup feature, and always ends with ftpsgate's own five;
//! - 125 becomes 150 toward active clients only; nothing else changes;
//! - a backend 227/229 yields a data address on the backend's own IP, never port 0.

use std::net::SocketAddr;

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

/// The target body.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let stream = Stream::decode(input.rest(), SHORT, LONG);
    let whole = parse(std::iter::once(&stream.bytes[..]));
    let split = parse(stream.reads());
    assert!(whole == split, "replies depend on read boundaries");
    let hide = hide(choice);
    for reply in &whole.0 {
        check_parsed(reply);
        assert_well_formed(reply);
        check_rewrites(reply, &hide, choice & 1 == 1);
    }
}

/// Every reply up to the first error.
fn parse<'a>(reads: impl Iterator<Item = &'a [u8]>) -> (Vec<Reply>, Option<ReplyError>) {
    let mut parser = ReplyParser::new();
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

fn check_parsed(reply: &Reply) {
    assert!((100..=599).contains(&reply.code), "code {}", reply.code);
    assert!(!reply.lines.is_empty());
    let mut total = 0;
    for line in &reply.lines {
        assert!(!line.contains(&b'\n'));
        assert!(line.len() <= MAX_REPLY_LINE, "line of {} bytes", line.len());
        total += line.len();
    }
    assert!(total <= MAX_REPLY_BYTES, "reply of {total} bytes");
}

/// One of four backend/proxy address pairs, with or without a backend name.
fn hide(choice: u8) -> Hide {
    let pairs: [(&str, &str); 2] = [
        ("10.0.0.5:21", "192.0.2.1:21"),
        ("[2001:db8::5]:2121", "[2001:db8::1]:990"),
    ];
    let (backend, proxy) = pairs[usize::from(choice >> 1) & 1];
    Hide {
        backend: backend.parse().expect("address"),
        backend_name: (choice & 4 != 0).then(|| "legacy.example".to_string()),
        proxy: proxy.parse().expect("address"),
        proxy_backend_side: "10.0.0.1:40000".parse().expect("address"),
        client: "198.51.100.7:50000".parse().expect("address"),
    }
}

fn check_rewrites(reply: &Reply, hide: &Hide, client_active: bool) {
    // A rewrite that changed nothing needs no second well-formedness check.
    let mut hidden = reply.clone();
    rewrite::hide_backend(&mut hidden, hide);
    if hidden != *reply {
        assert_well_formed(&hidden);
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
