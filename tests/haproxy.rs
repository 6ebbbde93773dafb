//! Two ftpsgate instances behind a real HAProxy (issue 10, "Beyond one
//! box"), the second pattern of deploy/README.md: one balancer address, the
//! control port balanced round-robin with PROXY v2, and each instance's
//! passive slice forwarded by the balancer with PROXY v2 too (public ports
//! differ from the bound ones: `public_passive_ports`). Clients connect from
//! 127.0.0.2 and 127.0.0.3; HAProxy reaches ftpsgate from 127.0.0.1, the
//! only trusted balancer. Real clients (curl, CPython ftplib) move
//! byte-exact files to a real backend (pyftpdlib), and every record carries
//! the real client, never the balancer. Last, HAProxy on the other side: in
//! front of the backend with `accept-proxy`, the real parser of the header
//! ftpsgate sends with `backend_proxy_protocol`.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ftpsgate::config::{BackendProxyProtocol, Network, PortRange, ProxyProtocol, ProxyTrust};
use ftpsgate::events::{SessionEvent, TransferResult};
use rand::Rng;
use support::harness::{connect_from, lo, Client, Proxy};
use support::tools::{
    curl_download, curl_upload, py_client, sha256_file, tools_available, write_random_file,
    CurlOptions, FtpBackend, HaProxy, PyClientOptions, PyFtpd,
};

/// HAProxy's front address (the "public" one clients use).
const FRONT: &str = "127.0.0.10";
/// Passive ports per instance.
const SLICE: u16 = 4;
/// Bound passive port = public port + this.
const OFFSET: u16 = 10;

/// The balancer, both instances, and the ports clients use.
struct Cluster {
    instances: [Proxy; 2],
    control: SocketAddr,
    public: [PortRange; 2],
    _haproxy: HaProxy,
}

fn range(low: u16) -> PortRange {
    PortRange {
        low,
        high: low + SLICE - 1,
    }
}

fn instance(backend: SocketAddr, public: PortRange) -> Proxy {
    Proxy::spawn(backend, |s| {
        s.proxy = ProxyTrust {
            accept: ProxyProtocol::V2,
            from: vec!["127.0.0.1/32".parse::<Network>().unwrap()],
        };
        s.passive_ports = Some(range(public.low + OFFSET));
        s.public_passive_ports = Some(public);
    })
}

/// The HAProxy configuration: deploy/haproxy/haproxy.cfg on loopback ports.
fn config(base: u16, instances: &[Proxy; 2], public: &[PortRange; 2]) -> String {
    let mut c = format!(
        "global\n    maxconn 256\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
         timeout client 60s\n    timeout server 60s\n\n\
         frontend ready\n    bind {FRONT}:{ready}\n    tcp-request connection reject\n\n\
         frontend ftp_control\n    bind {FRONT}:{control}\n    default_backend ftpsgate_control\n\n\
         backend ftpsgate_control\n    balance roundrobin\n",
        ready = base + 41,
        control = base + 40,
    );
    for (name, p) in ["a", "b"].iter().zip(instances) {
        c += &format!("    server {name} {} send-proxy-v2\n", p.addr);
    }
    for (name, r) in ["a", "b"].iter().zip(public) {
        c += &format!(
            "\nfrontend passive_{name}\n    bind {FRONT}:{}-{}\n    default_backend passive_{name}\n\n\
             backend passive_{name}\n    server {name} 127.0.0.1:+{OFFSET} send-proxy-v2\n",
            r.low, r.high
        );
    }
    c
}

impl Cluster {
    /// Both instances and HAProxy; its ports are picked below the ephemeral
    /// range and tried again when HAProxy cannot bind them.
    fn start(backend: SocketAddr) -> Cluster {
        for _ in 0..8 {
            let base = rand::thread_rng().gen_range(20_000..30_000u16);
            let public = [range(base), range(base + 20)];
            let instances = [instance(backend, public[0]), instance(backend, public[1])];
            let front: IpAddr = FRONT.parse().unwrap();
            let probe = SocketAddr::new(front, base + 41);
            match HaProxy::start(&config(base, &instances, &public), probe) {
                Ok(haproxy) => {
                    return Cluster {
                        instances,
                        control: SocketAddr::new(front, base + 40),
                        public,
                        _haproxy: haproxy,
                    }
                }
                Err(e) => eprintln!("haproxy did not start on ports from {base}: {e}; retrying"),
            }
        }
        panic!("haproxy could not bind its ports in 8 tries");
    }

    /// Which instance serves a public passive port.
    fn owner(&self, port: u16) -> usize {
        usize::from(!(self.public[0].low..=self.public[0].high).contains(&port))
    }
}

fn tools() -> bool {
    tools_available(&["haproxy", "curl", "pyftpdlib"])
}

/// The client address of every transfer record of `proxy` (waits for `n`).
fn transfer_clients(proxy: &Proxy, n: usize) -> Vec<(IpAddr, TransferResult, u16)> {
    proxy.events.transfers(n);
    proxy
        .events
        .all()
        .into_iter()
        .filter_map(|(i, e)| match e {
            SessionEvent::TransferFinished(r) => Some((i.client.ip(), r.result, r.code)),
            _ => None,
        })
        .collect()
}

#[test]
fn real_clients_through_haproxy_reach_both_instances_as_themselves() {
    if !tools() {
        return;
    }
    let b = PyFtpd::start();
    let cluster = Cluster::start(b.addr);
    let dir = tempfile::tempdir().unwrap();
    let (up, down) = (dir.path().join("up.bin"), dir.path().join("down.bin"));
    let sha = write_random_file(&up, 3 * 1024 * 1024 + 17);
    // curl from 127.0.0.2: EPSV, so the 229 must name the public port.
    let curl = CurlOptions::explicit().arg("--interface").arg("127.0.0.2");
    curl_upload(cluster.control, &up, "curl.bin", &curl).assert_success();
    curl_download(cluster.control, "curl.bin", &down, &curl).assert_success();
    assert_eq!(sha256_file(&down), sha);
    assert_eq!(sha256_file(b.path("curl.bin")), sha);
    // CPython ftplib from 127.0.0.3: PASV, the 227 port is the public one.
    let py = PyClientOptions::explicit().source("127.0.0.3");
    let put = py_client(
        cluster.control,
        &py,
        &["put", up.to_str().unwrap(), "py.bin"],
    );
    assert_eq!(put.assert_success().field("code"), Some("226"), "{put}");
    let pydown = dir.path().join("py.bin");
    let get = py_client(
        cluster.control,
        &py,
        &["get", "py.bin", pydown.to_str().unwrap()],
    );
    assert_eq!(
        get.assert_success().field("sha256"),
        Some(sha.as_str()),
        "{get}"
    );
    assert_eq!(sha256_file(b.path("py.bin")), sha);
    // Four sessions, round-robin: two through each instance, each record
    // with its real client and never HAProxy's 127.0.0.1.
    let mut all = Vec::new();
    for proxy in &cluster.instances {
        let records = transfer_clients(proxy, 2);
        assert_eq!(records.len(), 2, "{records:?}");
        all.extend(records);
    }
    for (client, result, code) in &all {
        assert!([lo(2), lo(3)].contains(client), "record for {client}");
        assert_eq!((result, *code), (&TransferResult::Complete, 226));
    }
    for who in [lo(2), lo(3)] {
        assert_eq!(all.iter().filter(|(c, ..)| *c == who).count(), 2, "{all:?}");
    }
}

#[test]
fn through_haproxy_a_passive_port_admits_only_the_sessions_real_client() {
    if !tools() {
        return;
    }
    let b = PyFtpd::start();
    let payload = support::tools::random_bytes(256 * 1024, 9);
    b.write_file("d.bin", &payload);
    let cluster = Cluster::start(b.addr);
    let (mut c, g) = Client::connect_from(cluster.control, Some(lo(2)));
    assert_eq!(g.code, 220);
    c.login_secure(&b.user, &b.pass);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let data = c.epsv();
    assert_eq!(data.ip(), cluster.control.ip());
    let owner = cluster.owner(data.port());
    // Another client (127.0.0.3) on the same public port: HAProxy forwards
    // it with its own header, and ftpsgate drops it.
    let mut intruder = connect_from(data, Some(lo(3)));
    let _ = intruder.write_all(b"\x16\x03\x01\x00\x05hello");
    let mut buf = [0u8; 16];
    assert!(
        matches!(intruder.read(&mut buf), Ok(0) | Err(_)),
        "intruder got data"
    );
    // The session's own client passes the peer check.
    c.send_raw(b"RETR d.bin\r\n");
    let mut d = c.data_tls(data);
    // pyftpdlib says 125 when it has accepted ftpsgate's data connection
    // before reading RETR, 150 when its event loop sees RETR first.
    let pre = c.read().code;
    assert!(pre == 125 || pre == 150, "1xx: {pre}");
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    assert_eq!(c.read().code, 226);
    assert_eq!(got, payload);
    let records = transfer_clients(&cluster.instances[owner], 1);
    assert_eq!(records, [(lo(2), TransferResult::Complete, 226)]);
}

#[test]
fn behind_haproxy_direct_connections_and_forged_headers_are_refused() {
    if !tools() {
        return;
    }
    let b = PyFtpd::start();
    let cluster = Cluster::start(b.addr);
    let a = &cluster.instances[0];
    // Straight to an instance, not through the balancer: closed, no greeting.
    let mut direct = connect_from(a.addr, Some(lo(2)));
    let mut buf = [0u8; 64];
    assert!(matches!(direct.read(&mut buf), Ok(0) | Err(_)));
    // A header from there is a forgery and is not read, let alone believed.
    let mut forged = connect_from(a.addr, Some(lo(2)));
    let header = ftpsgate::proxy_protocol::encode(
        ftpsgate::config::BackendProxyProtocol::V2,
        "127.0.0.3:1000".parse().unwrap(),
        a.addr,
    )
    .unwrap()
    .unwrap();
    let _ = forged.write_all(&header);
    assert!(matches!(forged.read(&mut buf), Ok(0) | Err(_)));
    let evs = a.events.wait_until(Duration::from_secs(10), |evs| {
        evs.iter()
            .filter(|(_, e)| matches!(e, SessionEvent::Rejected { .. }))
            .count()
            >= 2
    });
    let rejected: Vec<(IpAddr, &str)> = evs
        .iter()
        .filter_map(|(i, e)| match e {
            SessionEvent::Rejected { reason } => Some((i.client.ip(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        [(lo(2), "proxy_untrusted"), (lo(2), "proxy_untrusted")]
    );
    assert_eq!(a.events.opened(), 0);
    // Through the balancer the same client is served.
    let (_, g) = Client::connect_from(cluster.control, Some(lo(2)));
    assert_eq!(g.code, 220);
}

/// HAProxy as a PROXY-aware server in front of the legacy backend
/// (`bind ... accept-proxy`, as ProFTPD's mod_proxy_protocol would be): with
/// `backend_proxy_protocol` ftpsgate's header reaches a real parser, which
/// takes the real client from it (HAProxy logs `%ci` from the header), and
/// the FTP session behind the header is intact (a byte-exact download).
#[test]
fn a_proxy_aware_backend_front_learns_the_real_client_from_ftpsgate() {
    if !tools() {
        return;
    }
    let b = PyFtpd::start();
    let sha = write_random_file(b.path("pp.bin"), 1024 * 1024 + 3);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log.sock");
    let log = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (haproxy, front) = accept_proxy_front(b.addr, &sock);
    for (i, version) in [BackendProxyProtocol::V1, BackendProxyProtocol::V2]
        .into_iter()
        .enumerate()
    {
        let proxy = Proxy::spawn(front, |s| s.backend_proxy_protocol = version);
        let source = lo(5 + i as u8);
        let curl = CurlOptions::explicit()
            .arg("--interface")
            .arg(&source.to_string());
        let down = dir.path().join(format!("down{i}.bin"));
        curl_download(proxy.addr, "pp.bin", &down, &curl).assert_success();
        assert_eq!(sha256_file(&down), sha, "{version:?}");
        let want = format!("pp-client {source}:");
        let lines = log_lines_until(&log, &want);
        assert!(
            lines.iter().any(|l| l.contains(&want)),
            "{version:?}: HAProxy never logged {want:?}: {lines:?}"
        );
    }
    drop(haproxy);
}

/// HAProxy on 127.0.0.1 (the backend's own IP, so its PASV ports stay
/// reachable) accepting PROXY v1/v2 and logging each client at connect.
fn accept_proxy_front(backend: SocketAddr, sock: &std::path::Path) -> (HaProxy, SocketAddr) {
    for _ in 0..8 {
        let port = rand::thread_rng().gen_range(20_000..30_000u16);
        let front = SocketAddr::new(lo(1), port);
        let config = format!(
            "global\n    log {sock} local0 info\n\
             defaults\n    mode tcp\n    log global\n    option logasap\n\
             \x20   log-format \"pp-client %ci:%cp\"\n    timeout connect 5s\n\
             \x20   timeout client 60s\n    timeout server 60s\n\
             frontend legacy\n    bind {front} accept-proxy\n    default_backend ftp\n\
             backend ftp\n    server pyftpd {backend}\n",
            sock = sock.display()
        );
        match HaProxy::start(&config, front) {
            Ok(h) => return (h, front),
            Err(e) => eprintln!("haproxy did not start on {front}: {e}; retrying"),
        }
    }
    panic!("haproxy could not bind a port in 8 tries");
}

/// Syslog lines from HAProxy until one contains `want` (or 10 s pass).
fn log_lines_until(log: &std::os::unix::net::UnixDatagram, want: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = log.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = line.contains(want);
            lines.push(line);
            if done {
                break;
            }
        }
    }
    lines
}
