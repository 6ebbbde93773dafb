//! The data path against a real plaintext backend (pyftpdlib), driven by the
//! exact rustls test client: byte-exact transfers, reply ordering after
//! close_notify, truncated uploads, ABOR, REST adjacency, STAT during a
//! transfer, peer checks from other loopback addresses, data timeouts and
//! session reuse (PROTOCOL.md §16 scenarios 21-37, 40-41).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ftpsgate::config::UploadEof;
use support::harness::{lo, Client, Proxy};
use support::tools::{
    random_bytes, sha256_bytes, tool_available, FtpBackend, PyFtpd, PyFtpdOptions,
};

#[test]
fn download_upload_list_byte_exact() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |_| {});
    let data = random_bytes(3 * 1024 * 1024 + 17, 7);
    b.write_file("big.bin", &data);
    b.write_file("empty.bin", b"");
    let mut c = Client::logged_in(proxy.addr, &b);

    let (pre, got, fin) = c.download("RETR big.bin");
    assert_eq!(pre.code / 100, 1);
    assert_eq!(fin.code, 226);
    assert_eq!(sha256_bytes(&got), sha256_bytes(&data));

    let (_, got, fin) = c.download("RETR empty.bin");
    assert_eq!((fin.code, got.len()), (226, 0));

    let (_, fin) = c.upload("STOR up.bin", &data);
    assert_eq!(fin.code, 226);
    assert_eq!(
        sha256_bytes(&std::fs::read(b.root.join("up.bin")).unwrap()),
        sha256_bytes(&data)
    );

    let (_, fin) = c.upload("APPE up.bin", b"tail");
    assert_eq!(fin.code, 226);
    assert_eq!(
        std::fs::metadata(b.root.join("up.bin")).unwrap().len(),
        data.len() as u64 + 4
    );

    let (pre, fin) = c.upload("STOU", b"unique");
    assert!(
        pre.text().contains("FILE:"),
        "STOU 150 text relayed intact: {pre:?}"
    );
    assert_eq!(fin.code, 226);

    for verb in ["LIST", "NLST", "MLSD"] {
        let (_, listing, fin) = c.download(verb);
        assert_eq!(fin.code, 226, "{verb}");
        assert!(
            String::from_utf8_lossy(&listing).contains("big.bin"),
            "{verb}"
        );
    }
    let g = c.cmd("MLST big.bin");
    assert_eq!(g.code, 250);
    assert!(g.lines.len() >= 3 && g.lines[1].starts_with(' '), "{g:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
}

#[test]
fn pasv_backend_without_epsv_and_foreign_pasv_addresses() {
    if !tool_available("pyftpdlib") {
        return;
    }
    for opts in [
        PyFtpdOptions::no_epsv(),
        PyFtpdOptions::masquerade("0.0.0.0"),
        PyFtpdOptions::masquerade("127.0.0.2"),
    ] {
        let b = PyFtpd::start_with(opts.clone());
        let proxy = Proxy::spawn(b.addr, |_| {});
        b.write_file("f.bin", b"hello through a legacy server");
        let mut c = Client::logged_in(proxy.addr, &b);
        let (_, got, fin) = c.download("RETR f.bin");
        assert_eq!(
            (fin.code, got.as_slice()),
            (226, &b"hello through a legacy server"[..]),
            "{opts:?}"
        );
    }
}

#[test]
fn truncated_upload_is_aborted_in_strict_mode_and_accepted_in_lenient_mode() {
    let Some(b) = PyFtpd::available() else { return };
    let data = random_bytes(256 * 1024, 3);
    for (mode, want) in [(UploadEof::Strict, 426), (UploadEof::Lenient, 226)] {
        let proxy = Proxy::spawn(b.addr, |s| s.upload_eof = mode);
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("STOR cut.bin");
        d.write_all(&data).unwrap();
        d.flush().unwrap();
        // TCP FIN without close_notify.
        d.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let fin = c.read();
        assert_eq!(fin.code, want, "{mode:?}: {fin:?}");
        // The client is answered first; its next command waits for the backend's abort.
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        if mode == UploadEof::Strict {
            assert!(
                b.commands().iter().any(|l| l.contains("ABOR")),
                "backend was told to abort"
            );
        } else {
            assert_eq!(
                std::fs::read(b.root.join("cut.bin")).unwrap().len(),
                data.len()
            );
        }
    }
}

#[test]
fn abor_during_a_large_download() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("huge.bin", &random_bytes(64 * 1024 * 1024, 9));
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    let (mut d, _) = c.start("RETR huge.bin");
    let mut buf = vec![0u8; 64 * 1024];
    d.read_exact(&mut buf).unwrap();
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n");
    let first = c.read();
    assert_eq!(first.code, 426, "{first:?}");
    assert_eq!(c.read().code, 226);
    assert_eq!(c.cmd("NOOP").code, 200, "next command works");
    let (_, got, fin) = c.download("NLST");
    assert_eq!(fin.code, 226);
    assert!(!got.is_empty());
}

#[test]
fn rest_reaches_the_backend_right_before_retr() {
    let Some(b) = PyFtpd::available() else { return };
    let data = random_bytes(10_000, 1);
    b.write_file("r.bin", &data);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    let addr = c.epsv();
    assert_eq!(c.cmd("REST 1000").code, 350);
    c.send_raw(b"RETR r.bin\r\n");
    let mut d = c.data_tls(addr);
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(c.read().code, 226);
    assert_eq!(got, data[1000..]);
    let cmds = b.commands();
    let rest = cmds.iter().position(|l| l.starts_with("REST")).unwrap();
    assert!(cmds[rest + 1].starts_with("RETR"), "{cmds:?}");
}

#[test]
fn stat_and_noop_during_a_transfer_stay_in_order() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("m.bin", &random_bytes(8 * 1024 * 1024, 2));
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    let (mut d, _) = c.start("RETR m.bin");
    c.send_raw(b"NOOP\r\nSTAT\r\n");
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 8 * 1024 * 1024);
    assert_eq!(c.read().code, 226, "the transfer's reply comes first");
    assert_eq!(c.read().code, 200);
    assert_eq!(c.read().code / 10, 21);
    assert_eq!(c.cmd("NOOP").code, 200);
}

#[test]
fn passive_connection_from_another_address_is_refused() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("p.bin", b"payload");
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    let addr = c.epsv();
    // An attacker on 127.0.0.2 connects first: dropped, and the real client still succeeds.
    let mut thief = socket_from(lo(2), addr);
    thief
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = thief.write_all(b"\x16\x03\x01");
    c.send_raw(b"RETR p.bin\r\n");
    let mut d = c.data_tls(addr);
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"payload");
    assert_eq!(c.read().code, 226);
    let mut b1 = [0u8; 1];
    assert!(
        matches!(thief.read(&mut b1), Ok(0) | Err(_)),
        "thief got nothing"
    );
}

/// A TCP connection to `to` from the local address `from`.
fn socket_from(from: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn port_to_another_host_is_refused_and_own_address_works() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("a.bin", b"active payload");
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    assert_eq!(c.cmd("PORT 127,0,0,3,200,0").code, 500);
    assert_eq!(c.cmd("EPRT |1|127.0.0.2|40000|").code, 500);
    assert!(!b
        .commands()
        .iter()
        .any(|l| l.starts_with("PORT") || l.starts_with("EPRT")));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(c.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).code, 200);
    c.send_raw(b"RETR a.bin\r\n");
    assert_eq!(c.read().code, 150);
    let (tcp, _) = l.accept().unwrap();
    let conn =
        rustls::ClientConnection::new(c.tls.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut d = rustls::StreamOwned::new(conn, tcp);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"active payload");
    assert_eq!(c.read().code, 226);
}

#[test]
fn client_that_never_connects_gets_425_and_backend_transfer_is_aborted() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("n.bin", &random_bytes(4 * 1024 * 1024, 5));
    let proxy = Proxy::spawn(b.addr, |s| s.data_timeout = Duration::from_secs(1));
    let mut c = Client::logged_in(proxy.addr, &b);
    let _addr = c.epsv();
    c.send_raw(b"RETR n.bin\r\n");
    assert_eq!(c.read().code / 100, 1);
    assert_eq!(c.read().code, 425);
    assert_eq!(c.cmd("NOOP").code, 200, "session usable");
    assert!(b.commands().iter().any(|l| l.contains("ABOR")));
}

#[test]
fn session_reuse_required() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("s.bin", b"resumed");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = ftpsgate::config::Reuse::Required
    });
    // The harness client shares its session cache between control and data: resumes.
    let mut c = Client::logged_in(proxy.addr, &b);
    let (_, got, fin) = c.download("RETR s.bin");
    assert_eq!((fin.code, got.as_slice()), (226, &b"resumed"[..]));

    // A data connection with a fresh TLS config cannot resume: 522 after the 150.
    let mut c2 = Client::logged_in(proxy.addr, &b);
    let addr = c2.epsv();
    c2.send_raw(b"RETR s.bin\r\n");
    let fresh = support::harness::client_config();
    let tcp = TcpStream::connect(addr).unwrap();
    let conn = rustls::ClientConnection::new(fresh, "localhost".try_into().unwrap()).unwrap();
    let mut d = rustls::StreamOwned::new(conn, tcp);
    let mut sink = Vec::new();
    let _ = d.read_to_end(&mut sink);
    assert_eq!(c2.read().code / 100, 1);
    let g = c2.read();
    assert_eq!(g.code, 522);
    assert!(g.text().contains("session reuse"), "{g:?}");
    assert!(sink.is_empty());

    // A sibling control session of the same user from the same address may
    // present c's session (clients with parallel control connections share one
    // cache: docs/session-reuse.md).
    let mut c3 = Client::logged_in(proxy.addr, &b);
    let addr = c3.epsv();
    c3.send_raw(b"RETR s.bin\r\n");
    let mut d = c3.data_tls_with(addr, c.tls.clone()); // c's cache, c3's transfer
    assert_eq!(
        d.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(c3.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!((c3.read().code, got.as_slice()), (226, &b"resumed"[..]));

    // The same user from another address may not: refused.
    let (mut c4, _) = Client::connect_from(proxy.addr, Some(support::harness::lo(2)));
    c4.login_secure(&b.user, &b.pass);
    let addr = c4.epsv();
    c4.send_raw(b"RETR s.bin\r\n");
    drop(c4.data_tls_with(addr, c.tls.clone()));
    assert_eq!(c4.read().code / 100, 1);
    assert_eq!(c4.read().code, 522);
    let refusals = proxy.events.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
}

#[test]
fn prot_c_and_prot_p_switch_per_transfer_when_data_tls_is_optional() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("c.txt", b"clear or private");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.data_tls = ftpsgate::config::Requirement::Optional
    });
    let mut c = Client::logged_in(proxy.addr, &b);
    assert_eq!(c.cmd("PROT C").code, 200);
    let addr = c.epsv();
    c.send_raw(b"RETR c.txt\r\n");
    let mut plain = TcpStream::connect(addr).unwrap();
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    plain.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"clear or private", "PROT C data is plaintext");
    assert_eq!(c.read().code, 226);
    assert_eq!(c.cmd("PROT P").code, 200);
    let (_, got, fin) = c.download("RETR c.txt");
    assert_eq!((fin.code, got.as_slice()), (226, &b"clear or private"[..]));
}

#[test]
fn twenty_concurrent_sessions_with_parallel_transfers() {
    let Some(b) = PyFtpd::available() else { return };
    let data = random_bytes(2 * 1024 * 1024, 11);
    b.write_file("par.bin", &data);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let want = sha256_bytes(&data);
    let (user, pass) = (b.user.clone(), b.pass.clone());
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (addr, user, pass, want) = (proxy.addr, user.clone(), pass.clone(), want.clone());
            std::thread::spawn(move || {
                let (mut c, _) = Client::connect(addr);
                c.login_secure(&user, &pass);
                c.cmd("TYPE I");
                for _ in 0..3 {
                    let (_, got, fin) = c.download("RETR par.bin");
                    assert_eq!(fin.code, 226);
                    assert_eq!(sha256_bytes(&got), want);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("session thread");
    }
}

#[test]
fn abor_before_the_client_connects_is_answered_at_once() {
    let Some(b) = PyFtpd::available() else { return };
    b.write_file("q.bin", &random_bytes(4 * 1024 * 1024, 12));
    // A data timeout longer than the client's read timeout: waiting for it would fail the test.
    let proxy = Proxy::spawn(b.addr, |s| s.data_timeout = Duration::from_secs(300));
    let mut c = Client::logged_in(proxy.addr, &b);
    let _addr = c.epsv();
    c.send_raw(b"RETR q.bin\r\n");
    assert_eq!(c.read().code / 100, 1);
    c.send_raw(b"ABOR\r\n");
    assert_eq!(c.read().code, 426);
    assert_eq!(c.read().code, 226);
    assert_eq!(c.cmd("NOOP").code, 200);
    assert!(b.commands().iter().any(|l| l.contains("ABOR")));
}
