//! Every FTPS mode a real client uses (PROTOCOL.md §2.4, §3.5, §5.3-5.5, §6,
//! §7.6, §16 scenarios 19, 34, 38-41): CCC, IPv6 clients, TLS session
//! resumption on data connections (and no tickets there), client
//! certificates, ABOR against every real backend, and peers that vanish
//! mid-transfer without leaving a stuck session or a leaked port.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ftpsgate::config::{Ccc, PortRange, Requirement};
use support::harness::{client_config_with, Client, CountingStore, Proxy};
use support::tools::{
    curl_download, random_bytes, sha256_file, tool_available, CurlOptions, FtpBackend, Proftpd,
    PyFtpd, Vsftpd,
};

#[test]
fn ccc_allowed_with_both_curl_modes() {
    if !tool_available("curl") || !tool_available("pyftpdlib") {
        return;
    }
    let b = PyFtpd::start();
    let data = random_bytes(2 * 1024 * 1024, 4);
    b.write_file("c.bin", &data);
    let proxy = Proxy::spawn(b.addr, |s| s.ccc = Ccc::Allow);
    let dir = tempfile::tempdir().unwrap();
    for mode in ["passive", "active"] {
        let out = dir.path().join(format!("{mode}.bin"));
        let opts = CurlOptions::explicit()
            .login(&b.user, &b.pass)
            .arg("--ftp-ssl-ccc")
            .arg("--ftp-ssl-ccc-mode")
            .arg(mode);
        curl_download(proxy.addr, "c.bin", &out, &opts).assert_success();
        assert_eq!(std::fs::read(&out).unwrap(), data, "{mode}");
    }
    // Denied by default: curl reports the 534 and the transfer does not happen.
    let proxy = Proxy::spawn(b.addr, |_| {});
    let opts = CurlOptions::explicit()
        .login(&b.user, &b.pass)
        .arg("--ftp-ssl-ccc");
    let r = curl_download(proxy.addr, "c.bin", &dir.path().join("denied.bin"), &opts);
    assert!(r.stderr.contains("534") || !r.success(), "{r}");
    assert!(!b.commands().iter().any(|c| c.starts_with("CCC")));
}

#[test]
fn ipv6_client_reaches_ipv4_backend() {
    if !tool_available("curl") || !tool_available("pyftpdlib") {
        return;
    }
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let b = PyFtpd::start();
    let data = random_bytes(1024 * 1024 + 3, 8);
    b.write_file("v6.bin", &data);
    let proxy = Proxy::spawn(b.addr, |s| s.listen = vec!["[::1]:0".parse().unwrap()]);
    assert!(proxy.addr.is_ipv6());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v6.bin");
    curl_download(
        proxy.addr,
        "v6.bin",
        &out,
        &CurlOptions::explicit().login(&b.user, &b.pass),
    )
    .assert_success();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // PASV cannot express IPv6: 502; EPSV 1 on IPv6 is 522 naming (2).
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("PASV").code, 502);
    let g = c.cmd("EPSV 1");
    assert_eq!(g.code, 522);
    assert!(g.text().contains("(2)"));
    let g = c.cmd("EPSV 2");
    assert_eq!(g.code, 229);
}

/// Five downloads on one control connection with a rustls client. Without
/// required reuse the data connections issue no tickets (curl#6149) and the
/// client resumes as long as the control connection's tickets last; with it,
/// each bound data connection issues exactly one fresh ticket, so every data
/// connection resumes (rustls, like OpenSSL, spends a TLS 1.3 ticket per use).
fn resumption(tls12_only: bool, require: bool) {
    let b = match tool_available("pyftpdlib") {
        true => PyFtpd::start(),
        false => return,
    };
    b.write_file("r.bin", b"resume me");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = if require {
            ftpsgate::config::Reuse::Required
        } else {
            ftpsgate::config::Reuse::Off
        }
    });
    let store = Arc::new(CountingStore::default());
    let (mut c, _) = Client::connect(proxy.addr);
    c.tls = client_config_with(store.clone(), tls12_only);
    c.login_secure(&b.user, &b.pass);
    let after_control = store.tickets.load(Ordering::SeqCst);
    if !tls12_only {
        assert!(
            after_control >= 1,
            "the control connection issues TLS 1.3 tickets"
        );
    }
    let transfers = if tls12_only || require {
        5
    } else {
        after_control.min(5)
    };
    for i in 0..transfers {
        let addr = c.epsv();
        c.send_raw(b"RETR r.bin\r\n");
        let mut d = c.data_tls(addr);
        assert_eq!(
            d.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "transfer {i} resumed"
        );
        assert_eq!(c.read().code / 100, 1);
        let mut got = Vec::new();
        d.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"resume me");
        assert_eq!(c.read().code, 226);
    }
    let data_tickets = store.tickets.load(Ordering::SeqCst) - after_control;
    let expected = if require && !tls12_only { transfers } else { 0 };
    assert_eq!(
        data_tickets, expected,
        "TLS 1.3 tickets issued on data connections"
    );
}

#[test]
fn tls13_data_connections_resume_and_get_no_tickets() {
    resumption(false, false);
}

#[test]
fn tls13_data_connections_all_resume_when_reuse_is_required() {
    resumption(false, true);
}

#[test]
fn tls12_data_connections_resume() {
    resumption(true, true);
}

#[test]
fn curl_reuses_the_session_on_every_data_connection() {
    if !tool_available("curl") || !tool_available("pyftpdlib") {
        return;
    }
    let b = PyFtpd::start();
    b.write_file("a.bin", b"a");
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = ftpsgate::config::Reuse::Required
    });
    let dir = tempfile::tempdir().unwrap();
    for tls12 in [false, true] {
        let mut opts = CurlOptions::explicit().login(&b.user, &b.pass);
        if tls12 {
            opts = opts.tls12();
        }
        // Five URLs on one command line share one control connection.
        let url = format!("ftp://{}/a.bin", proxy.addr);
        for _ in 0..4 {
            opts = opts
                .arg(&url)
                .arg("-o")
                .arg(dir.path().join("x.bin").to_str().unwrap());
        }
        let r = curl_download(proxy.addr, "a.bin", &dir.path().join("y.bin"), &opts);
        r.assert_success();
        assert_eq!(
            sha256_file(dir.path().join("y.bin")),
            sha256_file(dir.path().join("x.bin"))
        );
        let reused = r.stderr.matches("SSL re-using session ID").count();
        assert!(reused >= 5, "tls12={tls12}: {reused} reuses\n{}", r.stderr);
    }
}

#[test]
fn client_certificates_required() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    b.write_file("cc.bin", b"for certified clients");
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ftpsgate test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice-client");
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let proxy = Proxy::spawn(b.addr, |s| {
        s.client_ca = Some(ca_file.clone());
        s.client_cert = Requirement::Required;
    });
    // With a certificate everything works, data connections included.
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let cfg = support::harness::client_config_with_cert(vec![leaf.der().clone()], key);
    let (mut c, _) = Client::connect(proxy.addr);
    c.tls = cfg;
    c.login_secure(&b.user, &b.pass);
    let (_, got, fin) = c.download("RETR cc.bin");
    assert_eq!(
        (fin.code, got.as_slice()),
        (226, &b"for certified clients"[..])
    );
    // And a client without a certificate cannot get through the handshake.
    let (mut n, _) = Client::connect(proxy.addr);
    n.send_raw(b"AUTH TLS\r\n");
    assert_eq!(n.read().code, 234);
    let n_tcp = n.take_plain();
    let conn = rustls::ClientConnection::new(
        support::harness::client_config(),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, n_tcp);
    let mut failed = false;
    for _ in 0..50 {
        if let Err(_e) = s.conn.complete_io(&mut s.sock) {
            failed = true;
            break;
        }
        if !s.conn.is_handshaking() {
            // TLS 1.3: the server's refusal arrives after the client's Finished.
            let mut b1 = [0u8; 1];
            failed = s.read(&mut b1).is_err() || matches!(s.read(&mut b1), Ok(0));
            break;
        }
    }
    assert!(failed, "handshake without a client certificate must fail");
}

/// ABOR of a running download and a running upload against `b`.
fn abor_against(b: &dyn FtpBackend) {
    b.write_file("big.bin", &random_bytes(48 * 1024 * 1024, 6));
    let proxy = Proxy::spawn(b.addr(), |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(b.user(), b.pass());
    c.cmd("TYPE I");
    let (mut d, _) = c.start("RETR big.bin");
    let mut buf = vec![0u8; 32 * 1024];
    d.read_exact(&mut buf).unwrap();
    c.send_raw(b"ABOR\r\n");
    let first = c.read();
    let second = c.read();
    assert_eq!(
        (first.code, second.code),
        (426, 226),
        "{}: {first:?} {second:?}",
        b.name()
    );
    assert_eq!(c.cmd("NOOP").code, 200, "{}", b.name());
    // Upload aborted half-way: the backend must not keep a complete-looking file.
    let (mut d, _) = c.start("STOR part.bin");
    std::io::Write::write_all(&mut d, &random_bytes(1024 * 1024, 1)).unwrap();
    c.send_raw(b"ABOR\r\n");
    let first = c.read();
    assert_eq!(first.code, 426, "{}: {first:?}", b.name());
    assert_eq!(c.read().code, 226);
    assert_eq!(c.cmd("NOOP").code, 200);
    let (_, got, fin) = c.download("NLST");
    assert_eq!(fin.code, 226, "{}", b.name());
    assert!(String::from_utf8_lossy(&got).contains("big.bin"));
}

#[test]
fn abor_against_pyftpdlib_vsftpd_proftpd() {
    if !["pyftpdlib", "vsftpd", "proftpd"]
        .iter()
        .all(|t| tool_available(t))
    {
        return;
    }
    abor_against(&PyFtpd::start());
    abor_against(&Vsftpd::start());
    abor_against(&Proftpd::start());
}

#[test]
fn vanishing_client_leaves_no_stuck_session_or_leaked_port() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    b.write_file("v.bin", &random_bytes(32 * 1024 * 1024, 3));
    let reserved = support::tools::ReservedPort::new();
    let port = reserved.port();
    let proxy = Proxy::spawn(b.addr, |s| {
        s.passive_ports = Some(PortRange {
            low: port,
            high: port,
        })
    });
    for _ in 0..3 {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure(&b.user, &b.pass);
        let addr: SocketAddr = c.epsv();
        assert_eq!(addr.port(), port);
        c.send_raw(b"RETR v.bin\r\n");
        let mut d = c.data_tls(addr);
        assert_eq!(c.read().code / 100, 1);
        let mut buf = vec![0u8; 16 * 1024];
        d.read_exact(&mut buf).unwrap();
        // Reset both connections mid-transfer.
        let _ = socket2::SockRef::from(&d.sock).set_linger(Some(Duration::ZERO));
        drop(d);
        drop(c);
    }
    // The single passive port is free again and the proxy still serves. No wait is needed:
    // the lease goes back once the client's data connection is accepted, before any data.
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("EPSV").code, 229, "passive port released");
}

#[test]
fn vanishing_backend_mid_transfer_ends_the_session_cleanly() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    b.write_file("w.bin", &random_bytes(64 * 1024 * 1024, 2));
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    let (mut d, _) = c.start("RETR w.bin");
    let mut buf = vec![0u8; 16 * 1024];
    d.read_exact(&mut buf).unwrap();
    drop(b); // kills pyftpdlib
    let mut rest = Vec::new();
    assert!(
        d.read_to_end(&mut rest).is_err(),
        "no close_notify for a truncated download"
    );
    let fin = c.try_read();
    assert!(
        matches!(
            fin.as_ref().map(|g| g.code),
            Some(426) | Some(421) | Some(451)
        ),
        "{fin:?}"
    );
}

#[test]
fn require_session_reuse_with_cpython_ftplib() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let b = PyFtpd::start();
    // Large enough that the backend is still sending when the data connection is refused.
    b.write_file("r.bin", &random_bytes(32 * 1024 * 1024, 13));
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = ftpsgate::config::Reuse::Required
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.bin");
    let opts = support::tools::PyClientOptions::explicit().login(&b.user, &b.pass);
    // Plain FTP_TLS never resumes: its data connection is refused (ftplib fails on the data
    // socket before it reads the 522 that tests/transfers.rs checks) and the backend
    // transfer is aborted.
    let r = support::tools::py_client(proxy.addr, &opts, &["get", "r.bin", out.to_str().unwrap()]);
    assert!(!r.success(), "{r}");
    assert_eq!(r.field("data_session_reused"), Some("False"), "{r}");
    // ftplib hangs up at once; the proxy's ABOR to the backend follows asynchronously.
    assert!(
        b.wait_for_command("ABOR"),
        "backend transfer aborted: {:?}",
        b.commands()
    );
    // The well-known subclass that passes session=self.sock.session works.
    let r = support::tools::py_client(
        proxy.addr,
        &opts.reuse_session(),
        &["get", "r.bin", out.to_str().unwrap()],
    );
    r.assert_success();
    assert_eq!(sha256_file(&out), sha256_file(b.root.join("r.bin")));
}

#[test]
fn upload_reset_mid_way_is_reported_as_aborted() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    let proxy = Proxy::spawn(b.addr, |_| {});
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(&b.user, &b.pass);
    let (mut d, _) = c.start("STOR reset.bin");
    std::io::Write::write_all(&mut d, &random_bytes(512 * 1024, 14)).unwrap();
    std::io::Write::flush(&mut d).unwrap();
    let _ = socket2::SockRef::from(&d.sock).set_linger(Some(Duration::ZERO));
    drop(d);
    let fin = c.read();
    assert!(fin.code == 426 || fin.code == 451, "{fin:?}");
    // The client is answered first; its next command waits for the backend's abort.
    assert_eq!(c.cmd("NOOP").code, 200);
    assert!(
        b.commands().iter().any(|l| l.contains("ABOR")),
        "backend told to abort"
    );
}
