//! Listeners behind a balancer (issue 10), in process: the harness client
//! plays the balancer on 127.0.0.5 and writes the PROXY header itself, so
//! every case is exact: who may connect, what a header makes of the session
//! (admission, records, PORT checks), what a data connection through the
//! balancer must carry, the 227 a client is advertised, and the header sent
//! to the backend. `tests/haproxy.rs` runs the same through a real HAProxy.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use ftpsgate::config::{BackendProxyProtocol, Network, ProxyProtocol, ProxyTrust, Settings};
use ftpsgate::events::SessionEvent;
use ftpsgate::proxy_protocol::{encode, V2_SIGNATURE};
use support::harness::{connect_from, lo, Client, Proxy, Scripted};
use support::tools::{random_bytes, sha256_bytes, tool_available, FtpBackend, PyFtpd};

/// The balancer's address.
fn balancer() -> IpAddr {
    lo(5)
}

fn behind_balancer(s: &mut Settings, accept: ProxyProtocol) {
    s.proxy = ProxyTrust {
        accept,
        from: vec!["127.0.0.5/32".parse::<Network>().unwrap()],
    };
    s.proxy_protocol_timeout = Duration::from_secs(1);
}

/// A v2 header for `client` connecting to `front`.
fn v2(client: &str, front: &str) -> Vec<u8> {
    let (c, f) = (client.parse().unwrap(), front.parse().unwrap());
    encode(BackendProxyProtocol::V2, c, f).unwrap().unwrap()
}

fn v1(client: &str, front: &str) -> Vec<u8> {
    let (c, f) = (client.parse().unwrap(), front.parse().unwrap());
    encode(BackendProxyProtocol::V1, c, f).unwrap().unwrap()
}

fn scripted() -> Scripted {
    Scripted::start("220 legacy\r\n", Arc::new(|_| None))
}

fn rejected(proxy: &Proxy, n: usize) -> Vec<(SocketAddr, &'static str)> {
    proxy
        .events
        .wait_until(Duration::from_secs(10), |evs| {
            evs.iter()
                .filter(|(_, e)| matches!(e, SessionEvent::Rejected { .. }))
                .count()
                >= n
        })
        .into_iter()
        .filter_map(|(i, e)| match e {
            SessionEvent::Rejected { reason } => Some((i.client, reason)),
            _ => None,
        })
        .collect()
}

/// The proxy closed the connection without sending a byte.
fn closed_silently(tcp: &mut std::net::TcpStream) {
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn only_trusted_balancers_may_connect_and_their_header_names_the_client() {
    let backend = scripted();
    let proxy = Proxy::spawn(backend.addr, |s| behind_balancer(s, ProxyProtocol::V2));
    // Not from the balancer: closed at once, even with a well-formed header.
    let mut tcp = connect_from(proxy.addr, Some(lo(6)));
    tcp.write_all(&v2("198.51.100.7:40000", "192.0.2.1:21"))
        .unwrap();
    closed_silently(&mut tcp);
    assert_eq!(
        rejected(&proxy, 1),
        [(
            SocketAddr::new(lo(6), tcp.local_addr().unwrap().port()),
            "proxy_untrusted"
        )]
    );
    // From the balancer: the session is the header's client.
    let (mut c, g) = Client::connect_proxied(
        proxy.addr,
        balancer(),
        &v2("198.51.100.7:40000", "192.0.2.1:21"),
    );
    assert_eq!(g.unwrap().code, 220);
    c.auth_tls();
    assert_eq!(c.cmd("USER alice").code, 331);
    // PORT must name the real client, not the balancer.
    assert_eq!(c.cmd("PORT 127,0,0,5,200,1").code, 500);
    assert_eq!(c.cmd("QUIT").code, 221);
    let opened: Vec<SocketAddr> = proxy
        .events
        .wait_until(Duration::from_secs(10), |evs| {
            evs.iter()
                .any(|(_, e)| matches!(e, SessionEvent::Closed { .. }))
        })
        .into_iter()
        .filter(|(_, e)| matches!(e, SessionEvent::Opened))
        .map(|(i, _)| i.client)
        .collect();
    assert_eq!(
        opened,
        ["198.51.100.7:40000".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn bad_late_or_foreign_version_headers_are_refused_and_counted() {
    let backend = scripted();
    let proxy = Proxy::spawn(backend.addr, |s| {
        behind_balancer(s, ProxyProtocol::V1);
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let (_, g) = Client::connect_proxied(
        proxy.addr,
        balancer(),
        &v2("198.51.100.7:1", "192.0.2.1:21"),
    );
    assert!(g.is_none(), "a v2 header on a v1 listener: {g:?}");
    let (_, g) = Client::connect_proxied(proxy.addr, balancer(), b"USER alice\r\nPASS x\r\n");
    assert!(g.is_none());
    let mut silent = connect_from(proxy.addr, Some(balancer()));
    closed_silently(&mut silent);
    let reasons: Vec<&str> = rejected(&proxy, 3).into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, ["proxy_invalid", "proxy_invalid", "proxy_timeout"]);
    let metrics = scrape(proxy.metrics_addr().unwrap());
    for line in [
        "ftpsgate_connections_rejected_total{reason=\"proxy_invalid\"} 2",
        "ftpsgate_connections_rejected_total{reason=\"proxy_timeout\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    // Each was the balancer's own connection: nothing reached the backend.
    assert!(backend.wait_open(0, Duration::from_secs(1)));
    assert_eq!(proxy.events.opened(), 0);
    // v1 is accepted.
    let (_, g) = Client::connect_proxied(
        proxy.addr,
        balancer(),
        &v1("198.51.100.7:1", "192.0.2.1:21"),
    );
    assert_eq!(g.unwrap().code, 220);
}

#[test]
fn a_header_on_a_direct_listener_is_not_believed() {
    let backend = scripted();
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let (mut c, g) =
        Client::connect_proxied(proxy.addr, lo(6), &v1("198.51.100.7:1", "192.0.2.1:21"));
    assert_eq!(g.unwrap().code, 220);
    // The header was just a line from the client, refused like any verb before TLS.
    assert_eq!(c.read().code, 530);
    assert_eq!(c.cmd("QUIT").code, 221);
    let evs = proxy.events.wait_until(Duration::from_secs(5), |e| {
        e.iter().any(|(_, e)| matches!(e, SessionEvent::Opened))
    });
    assert_eq!(evs[0].0.client.ip(), lo(6));
}

#[test]
fn v2_local_is_the_balancers_own_health_check() {
    let backend = scripted();
    let proxy = Proxy::spawn(backend.addr, |s| behind_balancer(s, ProxyProtocol::Any));
    let mut local = V2_SIGNATURE.to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    let (mut c, g) = Client::connect_proxied(proxy.addr, balancer(), &local);
    assert_eq!(g.unwrap().code, 220);
    assert_eq!(c.cmd("QUIT").code, 221);
    let evs = proxy.events.wait_until(Duration::from_secs(5), |e| {
        e.iter().any(|(_, e)| matches!(e, SessionEvent::Opened))
    });
    assert_eq!(evs[0].0.client.ip(), balancer());
}

#[test]
fn admission_counts_and_bans_the_real_client_not_the_balancer() {
    let backend = Scripted::start(
        "220 legacy\r\n",
        Arc::new(|l: &str| {
            l.starts_with("PASS")
                .then(|| "530 Login incorrect\r\n".to_string())
        }),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        behind_balancer(s, ProxyProtocol::V2);
        s.max_sessions_per_ip = 1;
        s.ban_failures = 1;
    });
    let front = "192.0.2.1:21";
    let (_a, g) = Client::connect_proxied(proxy.addr, balancer(), &v2("198.51.100.7:1", front));
    assert_eq!(g.unwrap().code, 220);
    let (mut b, g) = Client::connect_proxied(proxy.addr, balancer(), &v2("198.51.100.8:1", front));
    assert_eq!(
        g.unwrap().code,
        220,
        "another client through the same balancer"
    );
    let (_, g) = Client::connect_proxied(proxy.addr, balancer(), &v2("198.51.100.7:2", front));
    assert_eq!(
        g.unwrap().text(),
        "Too many connections from your address; try again later."
    );
    // One failed login bans 198.51.100.8, not the balancer.
    b.auth_tls();
    assert_eq!(b.cmd("USER bob").code, 331);
    assert_eq!(b.cmd("PASS wrong").code, 530);
    let (_, g) = Client::connect_proxied(proxy.addr, balancer(), &v2("198.51.100.8:2", front));
    assert_eq!(g.unwrap().code, 421);
    let (_, g) = Client::connect_proxied(proxy.addr, balancer(), &v2("198.51.100.9:1", front));
    assert_eq!(g.unwrap().code, 220);
    let r = rejected(&proxy, 2);
    assert_eq!(
        r[0],
        ("198.51.100.7:2".parse().unwrap(), "max_sessions_per_ip")
    );
    assert_eq!(r[1], ("198.51.100.8:2".parse().unwrap(), "banned"));
}

#[test]
fn data_connections_through_the_balancer_must_name_the_sessions_client() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let b = PyFtpd::start();
    let payload = random_bytes(300 * 1024, 71);
    b.write_file("d.bin", &payload);
    let proxy = Proxy::spawn(b.addr, |s| behind_balancer(s, ProxyProtocol::V2));
    let header = v2("198.51.100.7:40000", "192.0.2.1:21");
    let (mut c, g) = Client::connect_proxied(proxy.addr, balancer(), &header);
    assert_eq!(g.unwrap().code, 220);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let data = c.epsv();
    // Another real client through the balancer, the balancer without a
    // header, and a direct connection from elsewhere: each dropped.
    let mut other = connect_from(data, Some(balancer()));
    other
        .write_all(&v2("198.51.100.8:40001", "192.0.2.1:50000"))
        .unwrap();
    closed_silently(&mut other);
    let mut bare = connect_from(data, Some(balancer()));
    bare.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    closed_silently(&mut bare);
    let mut direct = connect_from(data, Some(lo(6)));
    closed_silently(&mut direct);
    // The session's own client, through the balancer: the transfer runs.
    c.send_raw(b"RETR d.bin\r\n");
    let mut d = c.data_tls(data);
    // pyftpdlib says 125 when it has accepted ftpsgate's data connection
    // before reading RETR, 150 when its event loop sees RETR first.
    let pre = c.read().code;
    assert!(pre == 125 || pre == 150, "1xx: {pre}");
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(c.read().code, 226);
    assert_eq!(sha256_bytes(&got), sha256_bytes(&payload));
    let records = proxy.events.transfers(1);
    assert_eq!(records[0].code, 226);
    let (info, _) = proxy
        .events
        .all()
        .into_iter()
        .find(|(_, e)| matches!(e, SessionEvent::TransferFinished(_)))
        .unwrap();
    assert_eq!(
        info.client,
        "198.51.100.7:40000".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn the_227_address_follows_the_real_client_and_the_port_is_the_public_one() {
    let backend = Scripted::start(
        "220 legacy\r\n",
        Arc::new(|l: &str| {
            l.starts_with("PASV")
                .then(|| "227 Entering Passive Mode (127,0,0,1,4,1).\r\n".to_string())
        }),
    );
    // A ten-port range below the ephemeral ports (the pool skips a port
    // someone else holds); clients are told 60000-60009 instead.
    let low = 20_000 + (std::process::id() % 10_000) as u16;
    let proxy = Proxy::spawn(backend.addr, |s| {
        behind_balancer(s, ProxyProtocol::V2);
        s.passive_ports = Some(format!("{low}-{}", low + 9).parse().unwrap());
        s.public_passive_ports = Some("60000-60009".parse().unwrap());
        s.public_address_by_network = vec!["10.0.0.0/8=10.9.9.9".parse().unwrap()];
    });
    let pasv = |client: &str| {
        let (mut c, _) =
            Client::connect_proxied(proxy.addr, balancer(), &v2(client, "192.0.2.1:21"));
        c.auth_tls();
        assert_eq!(c.cmd("USER alice").code, 331);
        assert_eq!(c.cmd("PASS x").code, 230);
        let g = c.cmd("PASV");
        let e = c.cmd("EPSV");
        assert_eq!(e.code, 229, "{e:?}");
        let port = ftpsgate::ftp::addr::parse_epsv_reply(e.text()).unwrap();
        assert!((60000..=60009).contains(&port), "{e:?}");
        let host_and_port = ftpsgate::ftp::addr::parse_pasv_reply(g.text()).unwrap();
        assert!((60000..=60009).contains(&host_and_port.port()), "{g:?}");
        host_and_port.ip().to_string()
    };
    assert_eq!(pasv("10.1.1.1:5000"), "10.9.9.9");
    // No rule for this client and no public_address: where it connected (the header's destination).
    assert_eq!(pasv("198.51.100.7:5000"), "192.0.2.1");
}

/// A backend that records the first bytes it receives, then closes.
fn header_sink() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().take(2) {
            let mut r = BufReader::new(conn.unwrap());
            let mut head = vec![0u8; 16];
            r.read_exact(&mut head[..6]).unwrap();
            if head.starts_with(b"PROXY ") {
                head.truncate(6);
                r.read_until(b'\n', &mut head).unwrap();
            } else {
                r.read_exact(&mut head[6..]).unwrap();
                let mut rest = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
                r.read_exact(&mut rest).unwrap();
                head.extend(rest);
            }
            tx.send(head).unwrap();
        }
    });
    (addr, rx)
}

#[test]
fn the_backend_is_told_the_real_client_first() {
    let (addr, seen) = header_sink();
    for version in [BackendProxyProtocol::V1, BackendProxyProtocol::V2] {
        let proxy = Proxy::spawn(addr, |s| {
            behind_balancer(s, ProxyProtocol::V2);
            s.backend_proxy_protocol = version;
        });
        let (mut c, _) = Client::connect_proxied(
            proxy.addr,
            balancer(),
            &v2("198.51.100.7:40000", "192.0.2.1:21"),
        );
        c.auth_tls();
        // The sink closes after the header: the client hears 421.
        assert_eq!(c.cmd("USER alice").code, 421);
        let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        let want = encode(version, "198.51.100.7:40000".parse().unwrap(), addr)
            .unwrap()
            .unwrap();
        assert_eq!(got, want, "{version:?}");
    }
    let v1 = encode(
        BackendProxyProtocol::V1,
        "198.51.100.7:40000".parse().unwrap(),
        addr,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        v1,
        format!(
            "PROXY TCP4 198.51.100.7 127.0.0.1 40000 {}\r\n",
            addr.port()
        )
        .into_bytes()
    );
}

/// `GET /metrics`: the body.
fn scrape(addr: SocketAddr) -> String {
    let (code, body) = support::http::get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn an_implicit_listener_reads_the_header_then_the_client_hello() {
    let backend = scripted();
    let proxy = Proxy::spawn(backend.addr, |s| {
        behind_balancer(s, ProxyProtocol::Any);
        s.listen.clear();
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let mut tcp = connect_from(proxy.implicit.unwrap(), Some(balancer()));
    // Header and ClientHello in one segment, as a balancer may send them.
    let mut first = v1("198.51.100.7:40000", "192.0.2.1:990");
    let conn = rustls::ClientConnection::new(
        support::harness::client_config(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp.try_clone().unwrap());
    tls.conn.write_tls(&mut first).unwrap();
    tcp.write_all(&first).unwrap();
    let mut greeting = String::new();
    BufReader::new(&mut tls).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    let evs = proxy.events.wait_until(Duration::from_secs(5), |e| {
        e.iter()
            .any(|(_, e)| matches!(e, SessionEvent::TlsEstablished(_)))
    });
    assert_eq!(
        evs[0].0.client,
        "198.51.100.7:40000".parse::<SocketAddr>().unwrap()
    );
}
