//! Control-channel behaviour against a scripted backend that records every
//! line it receives: exact reply codes and what the backend did or did not
//! see (PROTOCOL.md §16 scenarios 1-16, 18, 20, 22, 43-46).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use support::harness::{dead_port, Client, Proxy, Rule, Scripted};

fn default_rule() -> Rule {
    Arc::new(|_| None)
}

/// These tests pin what the backend sees before TLS, so the backend is
/// connected at accept (`backend_connect: on-accept`); `tests/lobby.rs`
/// covers the default, after-tls.
fn on_accept(s: &mut ftpsgate::Settings) {
    s.backend_connect = ftpsgate::config::BackendConnect::OnAccept;
}

fn setup() -> (Scripted, Proxy) {
    let backend = Scripted::start("220 legacy ready\r\n", default_rule());
    let proxy = Proxy::spawn(backend.addr, on_accept);
    (backend, proxy)
}

#[test]
fn multi_line_greeting_is_relayed_verbatim() {
    let backend = Scripted::start(
        "220-Welcome\r\n220-to legacy\r\n220 ready\r\n",
        default_rule(),
    );
    let proxy = Proxy::spawn(backend.addr, on_accept);
    let (_c, g) = Client::connect(proxy.addr);
    assert_eq!(g.lines, ["220-Welcome", "220-to legacy", "220 ready"]);
}

#[test]
fn login_before_tls_gets_530_and_backend_never_sees_it() {
    let (backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("USER alice").code, 530);
    assert_eq!(c.cmd("PASS secret").code, 530);
    assert_eq!(c.cmd("ACCT x").code, 530);
    assert_eq!(c.cmd("RETR f").code, 530);
    // Bare-LF smuggling: USER hidden behind NOOP is still seen and refused.
    c.send_raw(b"NOOP\nUSER alice\r\n");
    assert_eq!(c.read().code, 200);
    assert_eq!(c.read().code, 530);
    assert!(
        !backend.saw("USER") && !backend.saw("PASS") && !backend.saw("RETR"),
        "{:?}",
        backend.seen()
    );
    c.login_secure("alice", "secret");
    assert!(backend.saw("USER alice"));
    assert!(
        !backend.saw("AUTH") && !backend.saw("PBSZ") && !backend.saw("PROT"),
        "{:?}",
        backend.seen()
    );
}

#[test]
fn auth_variants_and_security_commands_are_answered_locally() {
    let (backend, proxy) = setup();
    for mech in ["SSL", "tls-c", "TLS"] {
        let (mut c, _) = Client::connect(proxy.addr);
        let g = c.cmd(&format!("AUTH {mech}"));
        assert_eq!(g.code, 234, "{mech}");
    }
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("AUTH GSSAPI").code, 504);
    assert_eq!(c.cmd("ADAT xyz").code, 503);
    assert_eq!(c.cmd("MIC xyz").code, 502);
    assert_eq!(c.cmd("PBSZ 0").code, 503);
    assert_eq!(c.cmd("CCC").code, 533);
    c.auth_tls();
    assert_eq!(c.cmd("AUTH TLS").code, 534);
    assert_eq!(c.cmd("PWD").code, 200, "session still usable");
    assert_eq!(c.cmd("PROT P").code, 503);
    assert_eq!(c.cmd("PBSZ abc").code, 501);
    let g = c.cmd("PBSZ 1024");
    assert_eq!((g.code, g.text()), (200, "PBSZ=0"));
    assert_eq!(c.cmd("PROT S").code, 536);
    assert_eq!(c.cmd("PROT E").code, 536);
    assert_eq!(c.cmd("PROT X").code, 504);
    assert_eq!(c.cmd("PROT C").code, 200);
    assert_eq!(c.cmd("CCC").code, 534);
    assert_eq!(c.cmd("REIN").code, 502);
    assert_eq!(c.cmd("MODE B").code, 504);
    for verb in ["AUTH", "ADAT", "MIC", "PBSZ", "PROT", "CCC", "REIN", "MODE"] {
        assert!(
            !backend.saw(verb),
            "backend saw {verb}: {:?}",
            backend.seen()
        );
    }
}

#[test]
fn garbage_instead_of_client_hello_closes_without_reply() {
    let (_backend, proxy) = setup();
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220"));
    s.write_all(b"AUTH TLS\r\n").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"234"));
    s.write_all(b"this is not a ClientHello at all\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        !rest.windows(3).any(|w| w == b"220" || w == b"500"),
        "no FTP reply after a failed handshake: {rest:?}"
    );
}

#[test]
fn plaintext_pipelined_after_auth_is_never_executed() {
    let (backend, proxy) = setup();
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf).unwrap();
    s.write_all(b"AUTH TLS\r\nUSER mallory\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.starts_with(b"234"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(
        rest.len(),
        b"234 AUTH TLS successful; start the TLS handshake.\r\n".len(),
        "connection closed after 234"
    );
    assert!(!backend.saw("USER"), "{:?}", backend.seen());
}

#[test]
fn feat_before_and_after_auth() {
    let (_backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    let g = c.cmd("FEAT");
    assert_eq!(g.code, 211);
    let body: Vec<&str> = g.lines[1..g.lines.len() - 1]
        .iter()
        .map(String::as_str)
        .collect();
    for f in [
        " AUTH TLS",
        " PBSZ",
        " PROT",
        " EPSV",
        " EPRT",
        " MDTM",
        " SIZE",
    ] {
        assert!(body.contains(&f), "{f} missing from {body:?}");
    }
    assert!(body.iter().all(|l| l.starts_with(' ')));
    c.auth_tls();
    assert_eq!(c.cmd("FEAT").code, 211);

    // A backend that refuses FEAT gets a synthesised list.
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| {
            l.starts_with("FEAT")
                .then(|| "500 Unknown command\r\n".into())
        }),
    );
    let proxy = Proxy::spawn(backend.addr, on_accept);
    let (mut c, _) = Client::connect(proxy.addr);
    let g = c.cmd("FEAT");
    assert_eq!(g.code, 211);
    assert!(g.lines.contains(&" AUTH TLS".to_string()));
}

#[test]
fn long_lines_and_control_characters() {
    let (backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    let long = format!("NOOP {}\r\n", "A".repeat(5000));
    c.send_raw(long.as_bytes());
    assert_eq!(c.read().code, 500);
    assert_eq!(c.cmd("NOOP").code, 200, "next command still works");
    assert_eq!(c.cmd("MKD a\rb").code, 501);
    c.send_raw(b"MKD a\0b\r\n");
    assert_eq!(c.read().code, 501);
    assert!(!backend.saw("MKD"));
    // 100 KiB without a terminator: 500 and close.
    c.send_raw(&vec![b'A'; 100 * 1024]);
    assert_eq!(c.read().code, 500);
    assert!(c.try_read().is_none(), "connection closed");
}

#[test]
fn host_before_and_after_user() {
    let (backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    assert_eq!(c.cmd("HOST example.test").code, 200);
    assert!(backend.saw("HOST example.test"));
    c.auth_tls();
    c.cmd("USER alice");
    assert_eq!(c.cmd("HOST example.test").code, 503);
}

#[test]
fn transfers_without_prot_p_are_522_and_backend_untouched() {
    let (backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    c.cmd("USER alice");
    c.cmd("PASS secret");
    for verb in ["LIST", "RETR f", "STOR f", "APPE f", "STOU", "NLST", "MLSD"] {
        let g = c.cmd(verb);
        assert_eq!(g.code, 522, "{verb}: {g:?}");
        assert!(g.text().contains("PROT P"));
    }
    c.cmd("PBSZ 0");
    c.cmd("PROT C");
    assert_eq!(c.cmd("RETR f").code, 522);
    for verb in ["LIST", "RETR", "STOR", "APPE", "STOU", "NLST", "MLSD"] {
        assert!(
            !backend.saw(verb),
            "backend saw {verb}: {:?}",
            backend.seen()
        );
    }
}

#[test]
fn refused_transfer_leaves_no_data_listener() {
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| {
            l.starts_with("PASV")
                .then(|| "227 Entering Passive Mode (127,0,0,1,0,9)\r\n".into())
        }),
    );
    let proxy = Proxy::spawn(backend.addr, on_accept);
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    c.cmd("USER a");
    c.cmd("PASS b");
    let data = c.epsv();
    assert_eq!(c.cmd("RETR f").code, 522);
    // The set-up is dropped with the refusal: its port is back in the pool.
    assert_eq!(proxy.status.passive_ports_in_use(), 0);
    // And the listener is gone from the kernel: connecting is refused, or,
    // when the connect raced the close, the half-made connection has no
    // peer left (the kernel may drop it silently, so the client only learns
    // when it sends: a reset). A live listener would leave the byte queued
    // (the read times out) or answer it with a TLS alert.
    use std::io::ErrorKind::{ConnectionRefused, ConnectionReset};
    match TcpStream::connect(data) {
        Err(e) => assert!(
            matches!(e.kind(), ConnectionRefused | ConnectionReset),
            "{e}"
        ),
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"x");
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(0) => {}
                Err(e) => assert_eq!(e.kind(), ConnectionReset, "{e}"),
                Ok(_) => panic!("a refused transfer's listener answered"),
            }
        }
    }
}

#[test]
fn epsv_pasv_port_shapes() {
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| {
            l.starts_with("PASV")
                .then(|| "227 Entering Passive Mode (0,0,0,0,0,9)\r\n".into())
        }),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.passive_ports = Some(ftpsgate::config::PortRange {
            low: 40000,
            high: 40999,
        })
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    c.cmd("USER a");
    c.cmd("PASS b");
    let g = c.cmd("PASV");
    assert_eq!(g.code, 227);
    assert_eq!(g.lines.len(), 1, "single-line 227");
    let a = ftpsgate::ftp::addr::parse_pasv_reply(g.text()).unwrap();
    assert_eq!(*a.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert!((40000..=40999).contains(&a.port()));
    let g = c.cmd("EPSV");
    assert!(
        g.text().starts_with("Entering Extended Passive Mode (|||"),
        "{g:?}"
    );
    assert_eq!(c.cmd("EPSV 2").code, 522);
    assert_eq!(c.cmd("PORT 127,0,0,2,4,0").code, 500);
    assert_eq!(c.cmd("PORT 127,0,0,1,0,21").code, 504);
    assert_eq!(c.cmd("EPRT |2|::1|5000|").code, 522);
    assert_eq!(c.cmd("EPSV ALL").code, 200);
    assert_eq!(c.cmd("PASV").code, 501);
    assert_eq!(c.cmd("PORT 127,0,0,1,4,0").code, 501);
    assert!(
        !backend.saw("EPSV"),
        "EPSV ALL and EPSV never reach a PASV backend: {:?}",
        backend.seen()
    );
    assert!(!backend.saw("PORT"));
}

#[test]
fn passive_range_exhausted_gives_425() {
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| {
            l.starts_with("PASV")
                .then(|| "227 Entering Passive Mode (127,0,0,1,0,9)\r\n".into())
        }),
    );
    let reserved = support::tools::ReservedPort::new();
    let port = reserved.port();
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.passive_ports = Some(ftpsgate::config::PortRange {
            low: port,
            high: port,
        })
    });
    let (mut a, _) = Client::connect(proxy.addr);
    a.auth_tls();
    a.cmd("USER a");
    a.cmd("PASS b");
    assert_eq!(a.cmd("EPSV").code, 229);
    let (mut b, _) = Client::connect(proxy.addr);
    b.auth_tls();
    b.cmd("USER a");
    b.cmd("PASS b");
    assert_eq!(b.cmd("EPSV").code, 425);
    assert_eq!(b.cmd("NOOP").code, 200, "session continues");
    assert_eq!(a.cmd("NOOP").code, 200, "other session unaffected");
}

#[test]
fn inner_lines_that_look_like_replies_are_padded() {
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| {
            l.starts_with("STAT").then(|| {
                "213-status of x\r\n227 Entering Passive Mode (6,6,6,6,1,2)\r\n226 \r\n213 End\r\n".into()
            })
        }),
    );
    let proxy = Proxy::spawn(backend.addr, on_accept);
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    c.cmd("USER a");
    c.cmd("PASS b");
    let g = c.cmd("STAT x");
    assert_eq!(
        g.lines,
        [
            "213-status of x",
            " 227 Entering Passive Mode (6,6,6,6,1,2)",
            " 226 ",
            "213 End"
        ]
    );
    assert_eq!(c.cmd("NOOP").code, 200, "no desynchronisation");
}

#[test]
fn backend_address_is_scrubbed_from_replies() {
    // The backend names itself in STAT; it learns its own address once bound.
    let own = Arc::new(std::sync::OnceLock::<std::net::SocketAddr>::new());
    let own2 = own.clone();
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| {
            let me = own2.get().copied()?;
            l.starts_with("STAT")
                .then(|| format!("211-FTP server status:\r\n Connected to: {me}\r\n211 End\r\n"))
        }),
    );
    own.set(backend.addr).unwrap();
    let needle = backend.addr.to_string();
    // A proxy on another loopback address, so the replacement is visible.
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.listen = vec!["127.0.0.3:0".parse().unwrap()]
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    let g = c.cmd("STAT");
    assert_eq!(g.code, 211);
    let text = g.lines.join("\n");
    assert!(!text.contains(&needle), "{g:?}");
    assert!(
        text.contains(&format!("Connected to: {}", proxy.addr)),
        "{g:?}"
    );
}

#[test]
fn quit_and_backend_failures() {
    let (backend, proxy) = setup();
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    assert_eq!(c.cmd("QUIT").code, 221);
    assert!(c.try_read().is_none());
    assert!(backend.saw("QUIT"));

    // Backend down at connect: 421 and close.
    let proxy = Proxy::spawn(dead_port(), on_accept);
    let (mut c, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 421);
    assert!(c.try_read().is_none());

    // Backend drops the control connection mid-session: 421 and close.
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(|l: &str| l.starts_with("SITE").then(|| "421 bye\r\n".into())),
    );
    let proxy = Proxy::spawn(backend.addr, on_accept);
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    assert_eq!(c.cmd("SITE x").code, 421);
}

#[test]
fn idle_timeout_sends_421() {
    let (_backend, proxy) = {
        let backend = Scripted::start("220 hi\r\n", default_rule());
        let proxy = Proxy::spawn(backend.addr, |s| s.idle_timeout = Duration::from_secs(1));
        (backend, proxy)
    };
    let (mut c, _) = Client::connect(proxy.addr);
    let g = c.read();
    assert_eq!(g.code, 421);
    assert!(c.try_read().is_none());
}

#[test]
fn implicit_listener_tls_first() {
    let backend = Scripted::start("220 hi\r\n", default_rule());
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let implicit = proxy.implicit.unwrap();
    let (mut c, g) = Client::connect_implicit(implicit);
    assert_eq!(g.code, 220);
    assert_eq!(c.cmd("AUTH TLS").code, 534);
    assert_eq!(c.cmd("USER a").code, 331);
    assert_eq!(c.cmd("PBSZ 0").code, 200);
    assert_eq!(c.cmd("PROT P").code, 200);
    // A plaintext client gets no greeting and is closed.
    let mut s = TcpStream::connect(implicit).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"USER alice\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!rest.starts_with(b"220"));
}

#[test]
fn implicit_listener_with_backend_down_says_421_after_the_handshake() {
    let proxy = Proxy::spawn(dead_port(), |s| {
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let (mut c, g) = Client::connect_implicit(proxy.implicit.unwrap());
    assert_eq!(g.code, 421);
    assert!(c.try_read().is_none());
}
