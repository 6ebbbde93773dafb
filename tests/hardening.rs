//! Regression tests for the defects a hostile peer could reach (issue 8,
//! "Trust at the edge"), one test per defect, each named after what must
//! hold. Every one of them failed on the code before its fix.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftpsgate::config::{BackendAddr, Backends, Ccc, Host, Requirement};
use ftpsgate::events::TransferResult;
use ftpsgate::session::Refusal;
use support::harness::{
    client_config_with, client_config_with_cert, connect_from, lo, Client, CountingStore, Ctl,
    Proxy, Scripted,
};
use support::tools::{random_bytes, sha256_bytes, tool_available, FtpBackend, PyFtpd};

fn pyftpd() -> Option<PyFtpd> {
    tool_available("pyftpdlib").then(PyFtpd::start)
}

/// Defect 1: a TLS 1.2 session minted on a refused data connection must not
/// satisfy the reuse check on the next one.
#[test]
fn a_refused_data_connection_mints_no_session_that_passes_the_reuse_check() {
    let Some(b) = pyftpd() else { return };
    b.write_file("s.bin", b"secret");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = ftpsgate::config::Reuse::Required
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass); // control on TLS 1.3
    let intruder = client_config_with(Arc::new(CountingStore::default()), true);
    for attempt in 0..2 {
        let addr = c.epsv();
        c.send_raw(b"RETR s.bin\r\n");
        let mut d = c.data_tls_with(addr, intruder.clone());
        assert_eq!(
            d.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "attempt {attempt}: nothing to resume"
        );
        let mut sink = Vec::new();
        let _ = d.read_to_end(&mut sink);
        assert!(sink.is_empty());
        assert_eq!(c.read().code / 100, 1);
        assert_eq!(c.read().code, 522, "attempt {attempt}");
    }
    assert_eq!(
        proxy.events.refusals(),
        [Refusal::SessionNotResumed, Refusal::SessionNotResumed]
    );
}

/// Defect 2: plaintext queued behind a transfer may not run inside TLS.
#[test]
fn plaintext_queued_behind_a_transfer_never_runs_inside_tls() {
    // The backend's data port: one listing, then close.
    let data = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = data.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = data.accept() {
            let _ = s.write_all(b"file.txt\r\n");
        }
    });
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| match l {
            "PASV" => Some(format!(
                "227 Entering Passive Mode (127,0,0,1,{},{})\r\n",
                port >> 8,
                port & 0xff
            )),
            "LIST" => Some("150 Here\r\n226 Done\r\n".into()),
            _ => None,
        }),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.control_tls = Requirement::Optional;
        s.data_tls = Requirement::Optional;
    });
    let (mut c, _) = Client::connect(proxy.addr);
    let addr = c.epsv();
    c.send_raw(b"LIST\r\nUSER x\r\nAUTH TLS\r\nMKD injected\r\n");
    let mut listing = Vec::new();
    TcpStream::connect(addr)
        .unwrap()
        .read_to_end(&mut listing)
        .unwrap();
    assert_eq!(listing, b"file.txt\r\n");
    assert_eq!(c.read().code, 150);
    assert_eq!(c.read().code, 226);
    assert_eq!(c.read().code, 331, "USER x is an ordinary queued command");
    // AUTH with a command queued behind it: refused, or 234 and then the
    // connection closes; a client that goes on with the handshake gets nowhere.
    match c.try_read() {
        Some(g) if g.code == 234 => {
            let tcp = c.take_plain();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let conn = rustls::ClientConnection::new(
                support::harness::client_config(),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reply = Vec::new();
            let _ = tls.read_to_end(&mut reply);
            assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
        }
        other => panic!("AUTH: {other:?}"),
    }
    assert!(!backend.saw("MKD"), "{:?}", backend.seen());
    assert!(!backend.saw("AUTH"));
}

/// Defect 2b: a completed login stays a login for the AUTH rule (534).
#[test]
fn auth_after_a_completed_login_stays_refused_after_another_user() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |s| s.control_tls = Requirement::Optional);
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("USER alice").code, 331);
    assert_eq!(c.cmd("PASS x").code, 230);
    assert_eq!(c.cmd("USER bob").code, 331);
    assert_eq!(c.cmd("AUTH TLS").code, 534);
    assert!(!backend.saw("AUTH"));
}

/// Defect 3: a client that stops reading is cut off within the idle timeout,
/// and its backend connection is closed.
#[test]
fn a_client_that_stops_reading_is_disconnected_and_its_backend_closed() {
    let help: String = format!(
        "214-Help\r\n{}214 End\r\n",
        " HELP line padding the reply out\r\n".repeat(256)
    );
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| l.starts_with("HELP").then(|| help.clone())),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.idle_timeout = Duration::from_secs(2);
        // HELP before TLS reaches the backend only when it is connected at accept.
        s.backend_connect = ftpsgate::config::BackendConnect::OnAccept;
    });
    let (mut c, _) = Client::connect(proxy.addr);
    assert!(backend.wait_open(1, Duration::from_secs(5)));
    c.send_raw(&b"HELP\r\n".repeat(2000));
    // Never read: the replies pile up until the proxy's write deadline passes.
    let closed = proxy.events.closed(1, Duration::from_secs(30));
    let ended = closed.first().cloned().flatten().expect("session ended");
    assert!(ended.message.contains("stopped reading"), "{ended:?}");
    assert!(
        backend.wait_open(0, Duration::from_secs(10)),
        "backend connection closed"
    );
}

/// Defect 4: hiding the backend's name never rewrites pathnames.
#[test]
fn hiding_the_backend_address_never_corrupts_paths() {
    let backend = Scripted::start(
        "220 localhost FTP ready\r\n",
        Arc::new(|l: &str| {
            if l.starts_with("MKD") {
                Some("257 \"/localhost-backups\" created\r\n".into())
            } else if l.starts_with("STAT") {
                Some("211-status\r\n Connected to localhost\r\n211 End\r\n".into())
            } else {
                None
            }
        }),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.listen = vec!["127.0.0.3:0".parse().unwrap()];
        s.backend_connect = ftpsgate::config::BackendConnect::OnAccept;
        s.backends = Backends::single(BackendAddr {
            host: Host::Name("localhost".into()),
            port: backend.addr.port(),
        });
    });
    let (mut c, greeting) = Client::connect(proxy.addr);
    assert_eq!(greeting.text(), "127.0.0.3 FTP ready");
    c.auth_tls();
    let g = c.cmd("MKD localhost-backups");
    assert_eq!(g.lines, ["257 \"/localhost-backups\" created"]);
    let g = c.cmd("STAT");
    assert_eq!(g.lines[1], " Connected to 127.0.0.3");
}

/// Defect 6: one byte of a TLS record after CCC cannot pin the session.
#[test]
fn a_partial_tls_record_after_ccc_does_not_pin_the_session() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.ccc = Ccc::Allow;
        s.idle_timeout = Duration::from_secs(60);
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure("alice", "x");
    assert_eq!(c.cmd("CCC").code, 200);
    let Ctl::Tls(stream) = std::mem::replace(&mut c.ctl, Ctl::Taken) else {
        panic!("TLS expected");
    };
    let mut tcp = stream.into_inner().sock;
    tcp.write_all(&[0x17]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink); // the proxy's close_notify, then EOF
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed by the drain deadline, not by the test's read timeout"
    );
    let closed = proxy.events.closed(1, Duration::from_secs(5));
    assert!(closed[0]
        .as_ref()
        .is_some_and(|e| e.message.contains("TLS record")));
}

/// Defect 7: IPv4 clients on a dual-stack `[::]` listener get PASV, PORT and EPRT |1|.
#[test]
fn ipv4_clients_on_a_dual_stack_listener_use_pasv_port_and_eprt() {
    if TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 on this host");
        return;
    }
    let Some(b) = pyftpd() else { return };
    let payload = random_bytes(300_000, 71);
    b.write_file("d.bin", &payload);
    let proxy = Proxy::spawn(b.addr, |s| s.listen = vec!["[::]:0".parse().unwrap()]);
    let v4: SocketAddr = SocketAddr::new(lo(1), proxy.addr.port());
    let (mut c, _) = Client::connect(v4);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let g = c.cmd("PASV");
    assert_eq!(g.code, 227, "{g:?}");
    let addr = ftpsgate::ftp::addr::parse_pasv_reply(g.text()).unwrap();
    assert_eq!(*addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    c.send_raw(b"RETR d.bin\r\n");
    let mut d = c.data_tls(SocketAddr::V4(addr));
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(
        (c.read().code, sha256_bytes(&got)),
        (226, sha256_bytes(&payload))
    );
    for verb in ["PORT", "EPRT"] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let arg = match verb {
            "PORT" => format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff),
            _ => format!("EPRT |1|127.0.0.1|{port}|"),
        };
        assert_eq!(c.cmd(&arg).code, 200, "{verb}");
        c.send_raw(b"RETR d.bin\r\n");
        assert_eq!(c.read().code, 150);
        let (tcp, _) = l.accept().unwrap();
        let conn =
            rustls::ClientConnection::new(c.tls.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut d = rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        assert_eq!((c.read().code, got.len()), (226, payload.len()), "{verb}");
    }
}

/// Defect 7b: PASV on an IPv6 control connection with an IPv4 public address
/// listens on IPv4 and lets the client in by its TLS binding.
#[test]
fn pasv_on_ipv6_control_with_an_ipv4_public_address_works() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 on this host");
        return;
    }
    let Some(b) = pyftpd() else { return };
    b.write_file("x.bin", b"across families");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.listen = vec!["[::1]:0".parse().unwrap()];
        s.public_address = Some("127.0.0.1".parse().unwrap());
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    let g = c.cmd("PASV");
    assert_eq!(g.code, 227, "{g:?}");
    let addr = ftpsgate::ftp::addr::parse_pasv_reply(g.text()).unwrap();
    c.send_raw(b"RETR x.bin\r\n");
    let mut d = c.data_tls(SocketAddr::V4(addr));
    assert_eq!(
        d.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(
        (c.read().code, got.as_slice()),
        (226, &b"across families"[..])
    );
    // Without the binding (a fresh TLS session) the same data connection is refused.
    let g = c.cmd("PASV");
    let addr = ftpsgate::ftp::addr::parse_pasv_reply(g.text()).unwrap();
    c.send_raw(b"RETR x.bin\r\n");
    let fresh = support::harness::client_config();
    drop(c.data_tls_with(SocketAddr::V4(addr), fresh));
    assert_eq!(c.read().code / 100, 1);
    assert_eq!(c.read().code, 522);
}

/// Defect 8: a client that reads slowly but steadily is not a stalled transfer.
#[test]
fn a_slow_reader_is_not_a_stalled_transfer() {
    let Some(b) = pyftpd() else { return };
    // Larger than every buffer on the way, so the proxy's writes block on this reader.
    let payload = random_bytes(16 * 1024 * 1024, 88);
    b.write_file("slow.bin", &payload);
    let proxy = Proxy::spawn(b.addr, |s| s.stall_timeout = Duration::from_secs(3));
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let addr = c.epsv();
    c.send_raw(b"RETR slow.bin\r\n");
    // A small receive window, so the proxy's writes block on this reader's pace.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(128 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn =
        rustls::ClientConnection::new(c.tls.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut d = rustls::StreamOwned::new(conn, tcp);
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    let slow_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < slow_until {
        d.read_exact(&mut chunk).unwrap();
        got.extend_from_slice(&chunk);
        // 128 KiB/s for four stall periods: slow against the kernel's send
        // buffer (a write that waits for it to empty takes longer than the
        // stall timeout), yet bytes always move.
        std::thread::sleep(Duration::from_millis(250));
    }
    d.read_to_end(&mut got).unwrap();
    assert_eq!(c.read().code, 226);
    assert_eq!(sha256_bytes(&got), sha256_bytes(&payload));
}

/// Defect 8b: a client that never reads (its window shut) is cut off after
/// the stall timeout: the kernel cannot get the bytes acknowledged.
#[test]
fn a_client_holding_its_window_shut_is_cut_off_after_the_stall_timeout() {
    let Some(b) = pyftpd() else { return };
    b.write_file("big.bin", &random_bytes(16 * 1024 * 1024, 89));
    let proxy = Proxy::spawn(b.addr, |s| s.stall_timeout = Duration::from_secs(2));
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    let addr = c.epsv();
    c.send_raw(b"RETR big.bin\r\n");
    let d = c.data_tls(addr); // handshake done, then never read
    assert_eq!(c.read().code / 100, 1);
    let started = Instant::now();
    let fin = c.read();
    assert_eq!(fin.code, 426, "{fin:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(c.cmd("NOOP").code, 200);
    drop(d);
}

/// Defect 9: a surplus backend reply is never taken as the next command's answer.
#[test]
fn a_surplus_backend_reply_is_never_paired_with_the_next_command() {
    // The old select picked its branch at random: ten rounds make a lucky pass unlikely.
    for round in 0..10 {
        let backend = Scripted::start(
            "220 hi\r\n",
            Arc::new(|l: &str| {
                l.starts_with("NOOP")
                    .then(|| "200 ok\r\n200 surplus\r\n".into())
            }),
        );
        let proxy = Proxy::spawn(backend.addr, |_| {});
        let (mut c, _) = Client::connect(proxy.addr);
        c.auth_tls();
        c.send_raw(b"NOOP\r\nPWD\r\n");
        assert_eq!(c.read().lines, ["200 ok"], "round {round}");
        let next = c.try_read();
        assert!(
            next.as_ref().map_or(true, |g| g.code == 421),
            "round {round}: {next:?}"
        );
        assert!(c.try_read().is_none(), "round {round}: closed");
    }
}

/// Defect 10: the data connection's client certificate must be the control one's.
#[test]
fn a_data_connection_must_present_the_control_connections_certificate() {
    let Some(b) = pyftpd() else { return };
    b.write_file("cc.bin", b"certified");
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        client_config_with_cert(vec![cert.der().clone()], der)
    };
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let ca_file = dir.path().join("ca.pem");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.client_ca = Some(ca_file.clone());
        s.client_cert = Requirement::Required;
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.tls = leaf("alice");
    c.login_secure(&b.user, &b.pass);
    let (_, got, fin) = c.download("RETR cc.bin");
    assert_eq!((fin.code, got.as_slice()), (226, &b"certified"[..]));
    let addr = c.epsv();
    c.send_raw(b"RETR cc.bin\r\n");
    let mallory = leaf("mallory");
    let mut d = c.data_tls_with(addr, mallory);
    let mut sink = Vec::new();
    let _ = d.read_to_end(&mut sink);
    assert!(sink.is_empty());
    assert_eq!(c.read().code / 100, 1);
    assert_eq!(c.read().code, 522);
    assert_eq!(proxy.events.refusals(), [Refusal::ClientCertMismatch]);
    let records = proxy.events.transfers(2);
    assert_eq!(
        records[1].result,
        TransferResult::Refused(Refusal::ClientCertMismatch)
    );
}

/// A plaintext session from another loopback host cannot use this test's
/// passive port (the peer check stays on for dual-stack canonical addresses).
#[test]
fn a_passive_port_refuses_another_host_after_canonicalisation() {
    if TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 on this host");
        return;
    }
    let Some(b) = pyftpd() else { return };
    b.write_file("p.bin", b"mine");
    let proxy = Proxy::spawn(b.addr, |s| s.listen = vec!["[::]:0".parse().unwrap()]);
    let (mut c, _) = Client::connect(SocketAddr::new(lo(1), proxy.addr.port()));
    c.login_secure(&b.user, &b.pass);
    let addr = c.epsv();
    c.send_raw(b"RETR p.bin\r\n");
    // Another host connects first: dropped, and the real client still gets in.
    let mut thief = connect_from(SocketAddr::new(lo(1), addr.port()), Some(lo(2)));
    thief
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = c.data_tls(SocketAddr::new(lo(1), addr.port()));
    assert_eq!(c.read().code / 100, 1);
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!((c.read().code, got.as_slice()), (226, &b"mine"[..]));
    let mut buf = [0u8; 1];
    assert!(matches!(thief.read(&mut buf), Ok(0) | Err(_)));
}
