//! Many backends behind one edge (issue 10), against real servers: vsftpd
//! and pyftpdlib on different loopback addresses, routed by a user map and
//! by `USER name@backend` (the backend sees the plain name), the backend
//! reached only once USER names the route, failover past a dead backend
//! (and a 421 when none answers or a routed one is down), round-robin and
//! least-connections spreading sessions, and health checks that find a
//! backend which accepts TCP but never greets.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ftpsgate::backends::Health;
use ftpsgate::config::{Backends, NamedBackend, Selection, Settings, Target};
use ftpsgate::events::SessionEvent;
use support::harness::{dead_port, Client, Proxy, Scripted};
use support::tools::{
    curl_download, curl_upload, random_bytes, sha256_bytes, sha256_file, tool_available,
    tools_available, CurlOptions, FtpBackend, PyFtpd, PyFtpdOptions, Vsftpd, PASS, USER,
    VSFTPD_USER,
};

/// A pool of `members` (name, address), the other backend settings default.
fn pool(members: &[(&str, SocketAddr)]) -> Backends {
    let mut b = Backends::single(members[0].1.into());
    b.target = Target::Pool(
        members
            .iter()
            .map(|(name, addr)| NamedBackend {
                name: name.to_string(),
                address: (*addr).into(),
            })
            .collect(),
    );
    b
}

/// The names of the backends sessions connected to, in order.
fn connected(proxy: &Proxy) -> Vec<String> {
    proxy
        .events
        .all()
        .into_iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::BackendConnected { name, .. } => Some(name),
            _ => None,
        })
        .collect()
}

/// The names of the backends sessions could not reach, in order.
fn unreachable(proxy: &Proxy) -> Vec<String> {
    proxy
        .events
        .all()
        .into_iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::BackendUnreachable { backend, .. } => Some(backend),
            _ => None,
        })
        .collect()
}

fn on(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

#[test]
fn two_real_backends_routed_by_user_map_and_by_user_at_backend() {
    if !tools_available(&["vsftpd", "pyftpdlib", "curl"]) {
        return;
    }
    let vs = Vsftpd::try_start_on(on(2), &String::new()).expect("vsftpd on 127.0.0.2");
    let py =
        PyFtpd::try_start_on(on(3), &PyFtpdOptions::default()).expect("pyftpdlib on 127.0.0.3");
    let proxy = Proxy::spawn(vs.addr, |s: &mut Settings| {
        s.backends = pool(&[("vs", vs.addr), ("py", py.addr)]);
        s.backends
            .user_routes
            .insert(VSFTPD_USER.into(), "vs".into());
        s.backends.user_at_backend = true;
    });
    let dir = tempfile::tempdir().unwrap();
    let (up, down) = (dir.path().join("up.bin"), dir.path().join("down.bin"));
    for (user, backend, name) in [
        (VSFTPD_USER.to_string(), &vs as &dyn FtpBackend, "vs"),
        (format!("{USER}@py"), &py as &dyn FtpBackend, "py"),
    ] {
        let data = random_bytes(300_000, name.len() as u64);
        std::fs::write(&up, &data).unwrap();
        let opts = CurlOptions::explicit().login(&user, PASS);
        curl_upload(proxy.addr, &up, "routed.bin", &opts).assert_success();
        let landed = std::fs::read(backend.root().join("routed.bin")).unwrap();
        assert_eq!(
            sha256_bytes(&landed),
            sha256_bytes(&data),
            "{user} -> {name}"
        );
        curl_download(proxy.addr, "routed.bin", &down, &opts).assert_success();
        assert_eq!(sha256_file(&down), sha256_bytes(&data));
    }
    assert_eq!(connected(&proxy), ["vs", "vs", "py", "py"]);
    // pyftpdlib saw the plain user name; the route suffix stays at the edge.
    assert!(
        py.commands().iter().any(|c| c == &format!("USER {USER}")),
        "{:?}",
        py.commands()
    );
    assert!(!py.commands_seen().contains("@py"));
}

#[test]
fn a_login_the_map_sends_elsewhere_gets_530_and_no_backend_hears_of_it() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let py = PyFtpd::start();
    let other = Scripted::start("220 other\r\n", std::sync::Arc::new(|_: &str| None));
    let proxy = Proxy::spawn(py.addr, |s: &mut Settings| {
        s.backends = pool(&[("py", py.addr), ("other", other.addr)]);
        s.backends.user_routes.insert(USER.into(), "py".into());
        s.backends.user_at_backend = true;
    });
    let (mut c, greeting) = Client::connect(proxy.addr);
    assert_eq!(greeting.text(), "Service ready; send AUTH TLS to continue.");
    c.auth_tls();
    assert_eq!(c.cmd("PBSZ 0").code, 200);
    assert_eq!(c.cmd("PROT P").code, 200);
    assert_eq!(
        c.cmd("PWD").code,
        530,
        "nothing reaches a backend before USER"
    );
    let feat = c.cmd("FEAT");
    assert_eq!(feat.code, 211);
    assert!(connected(&proxy).is_empty(), "no backend before USER");
    let g = c.cmd(&format!("USER {USER}@other"));
    assert_eq!(
        (g.code, g.text()),
        (530, "User alice is served by py, not other.")
    );
    assert!(connected(&proxy).is_empty());
    // The session goes on: the right login is routed.
    assert_eq!(c.cmd(&format!("USER {USER}")).code, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).code, 230);
    assert_eq!(connected(&proxy), ["py"]);
    // A later USER for another backend is refused; the session keeps its own.
    let g = c.cmd("USER bob@other");
    assert_eq!(g.code, 530, "{g:?}");
    assert_eq!(c.cmd("PWD").code, 257);
    // Only the health checks' QUITs reached the other backend.
    assert!(
        other.seen().iter().all(|l| l == "QUIT"),
        "{:?}",
        other.seen()
    );
}

#[test]
fn implicit_sessions_are_greeted_by_the_edge_and_routed_at_user() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let py = PyFtpd::start();
    let proxy = Proxy::spawn(py.addr, |s: &mut Settings| {
        s.listen.clear();
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
        s.backends = pool(&[("py", py.addr), ("dead", dead_port())]);
        s.backends.user_at_backend = true;
    });
    let (mut c, greeting) = Client::connect_implicit(proxy.implicit.unwrap());
    assert_eq!((greeting.code, greeting.text()), (220, "Service ready."));
    assert_eq!(c.cmd(&format!("USER {USER}@py")).code, 331);
    assert_eq!(c.cmd(&format!("PASS {PASS}")).code, 230);
    py.write_file("i.bin", b"implicit");
    assert_eq!(c.cmd("PBSZ 0").code, 200);
    assert_eq!(c.cmd("PROT P").code, 200);
    let (_, got, fin) = c.download("RETR i.bin");
    assert_eq!((fin.code, got.as_slice()), (226, &b"implicit"[..]));
    assert_eq!(connected(&proxy), ["py"]);
}

#[test]
fn failover_past_a_dead_backend_then_421_when_none_or_the_routed_one_is_down() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let py = PyFtpd::start();
    let doomed = PyFtpd::start();
    let proxy = Proxy::spawn(py.addr, |s: &mut Settings| {
        s.backends = pool(&[("a", doomed.addr), ("py", py.addr)]);
        s.backends.user_routes.insert("carol".into(), "a".into());
        s.backends.health_interval = Duration::from_secs(3600);
    });
    wait_checked(&proxy);
    drop(doomed); // healthy at the check, gone now
    for _ in 0..2 {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure(USER, PASS);
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    assert_eq!(connected(&proxy), ["py", "py"]);
    // Tried once: the failure marked it down, so the second session went
    // straight to the healthy one.
    assert_eq!(unreachable(&proxy), ["a"]);
    // A user routed to the dead backend is not sent elsewhere.
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    let g = c.cmd("USER carol");
    assert_eq!(g.code, 421, "{g:?}");
    assert_eq!(unreachable(&proxy), ["a", "a"]);

    let dead = dead_port();
    let none = Proxy::spawn(dead, |s: &mut Settings| {
        s.backends = pool(&[("a", dead), ("b", dead_port())]);
    });
    let (mut c, _) = Client::connect(none.addr);
    c.auth_tls();
    let g = c.read();
    assert_eq!(
        (g.code, g.text()),
        (
            421,
            "Service not available: the FTP server cannot be reached."
        )
    );
    assert_eq!(unreachable(&none), ["a", "b"]);
}

/// Waits until every backend of `proxy` has had its first health check.
fn wait_checked(proxy: &Proxy) -> Vec<(String, Health, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states: Vec<_> = proxy
            .status
            .backends()
            .into_iter()
            .map(|b| (b.name, b.health, b.error))
            .collect();
        if states.iter().all(|(_, h, _)| *h != Health::Unknown) || Instant::now() > deadline {
            return states;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a logged-in session through `proxy` (the backend is reached after TLS).
fn session(proxy: &Proxy) -> Client {
    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(USER, PASS);
    c
}

#[test]
fn round_robin_and_least_connections_spread_sessions() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let a = PyFtpd::try_start_on(on(2), &PyFtpdOptions::default()).unwrap();
    let b = PyFtpd::try_start_on(on(3), &PyFtpdOptions::default()).unwrap();
    let rr = Proxy::spawn(a.addr, |s: &mut Settings| {
        s.backends = pool(&[("a", a.addr), ("b", b.addr)]);
        s.backends.selection = Selection::RoundRobin;
    });
    for _ in 0..4 {
        let mut c = session(&rr);
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    assert_eq!(connected(&rr), ["a", "b", "a", "b"]);

    let lc = Proxy::spawn(a.addr, |s: &mut Settings| {
        s.backends = pool(&[("a", a.addr), ("b", b.addr)]);
        s.backends.selection = Selection::LeastConnections;
    });
    let first = session(&lc);
    let second = session(&lc);
    assert_eq!(connected(&lc), ["a", "b"], "the idle one gets the next");
    drop(first);
    lc.events.closed(1, Duration::from_secs(10));
    let _third = session(&lc);
    assert_eq!(connected(&lc), ["a", "b", "a"], "a has no session left");
    drop(second);
}

#[test]
fn a_backend_that_accepts_but_never_greets_is_found_down() {
    if !tool_available("pyftpdlib") {
        return;
    }
    let py = PyFtpd::start();
    let hung = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never greets
    let hung_addr = hung.local_addr().unwrap();
    let proxy = Proxy::spawn(py.addr, |s: &mut Settings| {
        s.backends = pool(&[("hung", hung_addr), ("py", py.addr)]);
        s.backends.health_interval = Duration::from_secs(1);
    });
    let states = wait_checked(&proxy);
    assert_eq!(
        states,
        [
            (
                "hung".to_string(),
                Health::Down,
                Some("no greeting within 3s".to_string())
            ),
            ("py".to_string(), Health::Up, None)
        ]
    );
    // first-available skips the hung one without trying it.
    let mut c = session(&proxy);
    assert_eq!(c.cmd("PWD").code, 257);
    assert_eq!(connected(&proxy), ["py"]);
    assert!(unreachable(&proxy).is_empty());
}
