//! The metrics endpoint (issue 9) against a real backend: `/metrics` scraped
//! before and after real transfers (the harness client, then curl) moves
//! exactly the series those transfers are facts of; `/healthz` answers while
//! the proxy serves; `/readyz` is 200 with the backend up and 503 once it is
//! gone.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ftpsgate::events::TransferResult;
use support::harness::{Client, Proxy};
use support::http::get;
use support::tools::{
    curl_download, random_bytes, tools_available, CurlOptions, FtpBackend, PyFtpd, PASS, USER,
};

/// One `/metrics` exposition.
struct Scrape(String);

impl Scrape {
    fn take(addr: SocketAddr) -> Scrape {
        let (code, body) = get(addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        Scrape(body)
    }

    /// The value of the sample `series` (name and labels exactly as
    /// exposed); 0 when the series does not exist yet.
    fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// How much `series` grew since `before`.
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value(series)
    }
}

/// Waits (bounded) until the state gauge `series` reads `want`. The session
/// task gives back its session permit, and a dropped passive listener its
/// port lease, just after the last event is emitted, with no event of their
/// own to wait on; so this one check polls, with a deadline.
fn settles(addr: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = Scrape::take(addr).value(series);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} = {got}, want {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn setup() -> Option<(PyFtpd, Proxy, SocketAddr)> {
    if !tools_available(&["pyftpdlib"]) {
        return None;
    }
    let b = PyFtpd::start();
    let proxy = Proxy::spawn(b.addr(), |s| {
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
    });
    let metrics = proxy.metrics_addr().expect("metrics endpoint bound");
    Some((b, proxy, metrics))
}

#[test]
fn a_real_transfer_and_a_refused_one_move_exactly_their_series() {
    let Some((b, proxy, m)) = setup() else { return };
    let file = random_bytes(123_457, 9);
    b.write_file("f.bin", &file);
    let before = Scrape::take(m);
    assert_eq!(before.value("ftpsgate_sessions_open"), 0.0);
    assert_eq!(before.value("ftpsgate_listeners"), 1.0);

    let (mut c, _) = Client::connect(proxy.addr);
    c.login_secure(USER, PASS);
    let backend_label = format!("{{backend=\"{}\"}}", b.addr());
    let sessions = format!("ftpsgate_backend_sessions{backend_label}");
    assert_eq!(
        Scrape::take(m).value(&sessions),
        1.0,
        "the session counts on its backend"
    );
    assert_eq!(c.cmd("TYPE I").code, 200);
    let (_, got, fin) = c.download("RETR f.bin");
    assert_eq!((fin.code, got.len()), (226, file.len()));
    let (_, fin) = c.upload("STOR up.bin", &file[..1000]);
    assert_eq!(fin.code, 226);
    // A passive listener is state: in use after EPSV, given back when the
    // PROT C transfer is refused (522 before anything reaches the backend).
    c.epsv();
    assert_eq!(Scrape::take(m).value("ftpsgate_passive_ports_in_use"), 1.0);
    assert_eq!(Scrape::take(m).value("ftpsgate_sessions_open"), 1.0);
    assert_eq!(c.cmd("PROT C").code, 200);
    assert_eq!(c.cmd("RETR f.bin").code, 522);
    assert_eq!(c.cmd("QUIT").code, 221);
    // The metrics sink comes first: once the recorder saw Closed, it is counted.
    proxy.events.closed(1, Duration::from_secs(30));
    let records = proxy.events.transfers(3);
    let after = Scrape::take(m);

    let d = |series: &str| after.delta(&before, series);
    assert_eq!(d("ftpsgate_sessions_total{mode=\"explicit\"}"), 1.0);
    assert_eq!(d("ftpsgate_sessions_closed_total{ending=\"clean\"}"), 1.0);
    assert_eq!(d("ftpsgate_logins_total{result=\"success\"}"), 1.0);
    assert_eq!(d("ftpsgate_logins_total{result=\"failure\"}"), 0.0);
    assert_eq!(
        d("ftpsgate_transfers_total{verb=\"RETR\",result=\"complete\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_transfers_total{verb=\"STOR\",result=\"complete\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_transfers_total{verb=\"RETR\",result=\"refused\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_transfer_bytes_total{direction=\"download\"}"),
        file.len() as f64
    );
    assert_eq!(
        d("ftpsgate_transfer_bytes_total{direction=\"upload\"}"),
        1000.0
    );
    assert_eq!(
        d("ftpsgate_transfer_duration_seconds_count{direction=\"download\"}"),
        1.0,
        "the refused transfer never started"
    );
    assert_eq!(
        d("ftpsgate_transfer_duration_seconds_count{direction=\"upload\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_policy_refusals_total{reason=\"clear_data\"}"),
        1.0
    );
    assert_eq!(d("ftpsgate_backend_connect_seconds_count"), 1.0);
    assert_eq!(
        d(&format!(
            "ftpsgate_backend_connect_failures_total{backend_label}"
        )),
        0.0
    );
    assert_eq!(
        after.value(&format!("ftpsgate_backend_sessions{backend_label}")),
        0.0
    );
    assert_eq!(
        d("ftpsgate_tls_handshakes_total{mode=\"explicit\",channel=\"control\",handshake=\"full\"}"),
        1.0
    );
    // Data handshakes: exactly what the two transfer records say.
    let resumed = records
        .iter()
        .filter_map(|r| r.data_tls.as_ref())
        .filter(|t| t.resumed)
        .count() as f64;
    let complete = records
        .iter()
        .filter(|r| r.result == TransferResult::Complete)
        .count();
    assert_eq!(complete, 2, "{records:#?}");
    let data = |h: &str| {
        d(&format!(
            "ftpsgate_tls_handshakes_total{{mode=\"explicit\",channel=\"data\",handshake=\"{h}\"}}"
        ))
    };
    assert_eq!((data("resumed"), data("full")), (resumed, 2.0 - resumed));
    assert_eq!(
        after.value(&format!("ftpsgate_backend_up{backend_label}")),
        1.0
    );
    settles(m, "ftpsgate_passive_ports_in_use", 0.0);
    settles(m, "ftpsgate_sessions_open", 0.0);
}

#[test]
fn ready_while_the_backend_answers_not_ready_once_it_is_gone() {
    let Some((b, proxy, m)) = setup() else { return };
    assert_eq!(get(m, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(m, "/readyz"), (200, "ready\n".into()));
    let backend = b.addr();
    drop(b);
    // The probe runs every few seconds and nothing signals a backend that
    // went away, so this polls the endpoint itself, with a deadline past
    // one probe interval plus its connect timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = get(m, "/readyz");
        if code != 200 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with(&format!("not ready: no backend up ({backend}: ")),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    assert_eq!(get(m, "/healthz").0, 200, "still serving");
    let up = format!("ftpsgate_backend_up{{backend=\"{backend}\"}}");
    assert_eq!(Scrape::take(m).value(&up), 0.0);
    assert!(Scrape::take(m).0.contains(&format!("{up} 0")));
    drop(proxy);
}

#[test]
fn a_curl_download_is_counted() {
    if !tools_available(&["curl"]) {
        return;
    }
    let Some((b, proxy, m)) = setup() else { return };
    let file = random_bytes(50_001, 3);
    b.write_file("c.bin", &file);
    let before = Scrape::take(m);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.bin");
    curl_download(proxy.addr, "c.bin", &out, &CurlOptions::default()).assert_success();
    assert_eq!(std::fs::read(&out).unwrap(), file);
    proxy.events.closed(1, Duration::from_secs(30));
    let after = Scrape::take(m);
    let d = |series: &str| after.delta(&before, series);
    assert_eq!(d("ftpsgate_sessions_total{mode=\"explicit\"}"), 1.0);
    assert_eq!(d("ftpsgate_logins_total{result=\"success\"}"), 1.0);
    assert_eq!(
        d("ftpsgate_transfers_total{verb=\"RETR\",result=\"complete\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_transfer_bytes_total{direction=\"download\"}"),
        file.len() as f64
    );
    assert_eq!(
        d("ftpsgate_tls_handshakes_total{mode=\"explicit\",channel=\"control\",handshake=\"full\"}"),
        1.0
    );
    assert_eq!(
        d("ftpsgate_policy_refusals_total{reason=\"clear_data\"}"),
        0.0
    );
}
