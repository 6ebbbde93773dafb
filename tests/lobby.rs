//! `backend_connect: after-tls` (the default): ftpsgate greets and answers
//! the pre-TLS verbs itself, and opens the backend session only once the
//! client's TLS handshake has completed, so unauthenticated floods never
//! reach the legacy server (issue 9, "Abuse control").

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use ftpsgate::config::Requirement;
use support::harness::{dead_port, Client, Proxy, Scripted};

fn backend() -> Scripted {
    Scripted::start("220 legacy ready\r\n", Arc::new(|_| None))
}

#[test]
fn a_flood_that_never_completes_tls_never_reaches_the_backend() {
    let b = backend();
    let proxy = Proxy::spawn(b.addr, |s| s.idle_timeout = Duration::from_secs(2));
    // Bare connects, clients that stop after the greeting, and clients that
    // send AUTH TLS but never a ClientHello.
    let mut held = Vec::new();
    for i in 0..30 {
        let (mut c, g) = Client::connect(proxy.addr);
        assert_eq!(g.code, 220);
        assert_eq!(g.text(), "Service ready; send AUTH TLS to continue.");
        if i % 3 == 1 {
            assert_eq!(c.cmd("FEAT").code, 211);
            assert_eq!(c.cmd("NOOP").code, 200);
        }
        if i % 3 == 2 {
            assert_eq!(c.cmd("AUTH TLS").code, 234);
        }
        held.push(c);
    }
    for _ in 0..10 {
        held.push(Client::connect(proxy.addr).0);
        let mut garbage = TcpStream::connect(proxy.addr).unwrap();
        let _ = garbage.write_all(b"\x16\x03\x01\x00\x05hello");
    }
    // Every one of them times out without the backend ever seeing a connection.
    proxy.events.closed(50, Duration::from_secs(30));
    assert!(b.wait_open(0, Duration::from_secs(1)));
    assert!(b.seen().is_empty(), "{:?}", b.seen());
    assert_eq!(proxy.status.sessions_open(), 0);
    drop(held);
}

#[test]
fn the_backend_is_reached_after_the_handshake_and_its_greeting_is_not_relayed() {
    let b = backend();
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 220);
    assert_eq!(c.cmd("SYST").code, 215);
    let feat = c.cmd("FEAT");
    assert!(feat.lines.iter().any(|l| l == " AUTH TLS"), "{feat:?}");
    assert!(b.wait_open(0, Duration::from_millis(10)), "not yet");
    c.auth_tls();
    c.send_raw(b"USER alice\r\n");
    // The next reply is USER's 331, not the backend's "220 legacy ready".
    assert_eq!(c.read().code, 331);
    assert_eq!(c.cmd("PASS x").code, 230);
    assert_eq!(c.cmd("PWD").code, 200);
    assert!(b.saw("USER alice") && b.saw("PWD"));
    assert!(!b.saw("FEAT"), "FEAT before TLS was answered by the proxy");
}

#[test]
fn host_and_opts_before_tls_are_replayed_to_the_backend() {
    let b = backend();
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("HOST ftp.example.test").code, 220);
    assert_eq!(c.cmd("OPTS UTF8 ON").code, 200);
    c.auth_tls();
    assert_eq!(c.cmd("USER alice").code, 331);
    let seen = b.seen();
    assert_eq!(
        &seen[..3],
        ["HOST ftp.example.test", "OPTS UTF8 ON", "USER alice"]
    );
}

#[test]
fn quit_before_tls_never_opens_the_backend() {
    let b = backend();
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("QUIT").code, 221);
    assert!(c.try_read().is_none());
    proxy.events.closed(1, Duration::from_secs(5));
    assert!(b.seen().is_empty());
}

#[test]
fn a_backend_that_is_down_gets_421_after_the_handshake() {
    let proxy = Proxy::spawn(dead_port(), |_| {});
    let (mut c, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 220);
    c.auth_tls();
    let g = c.read();
    assert_eq!(g.code, 421, "{g:?}");
    assert!(c.try_read().is_none());
}

#[test]
fn a_backend_that_refuses_in_its_greeting_gives_421() {
    let b = Scripted::start("421 Too many users\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    let g = c.read();
    assert_eq!((g.code, g.text()), (421, "Too many users"));
}

#[test]
fn a_plaintext_login_under_optional_control_tls_opens_the_backend_at_user() {
    let b = backend();
    let proxy = Proxy::spawn(b.addr, |s| s.control_tls = Requirement::Optional);
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("NOOP").code, 200);
    assert!(b.seen().is_empty());
    assert_eq!(c.cmd("USER alice").code, 331);
    assert_eq!(c.cmd("PASS x").code, 230);
    assert_eq!(b.seen(), ["USER alice", "PASS x"]);
    let mut ctl = c.take_plain();
    ctl.write_all(b"QUIT\r\n").unwrap();
    let mut rest = String::new();
    let _ = ctl.read_to_string(&mut rest);
    assert!(rest.starts_with("221"), "{rest:?}");
}
