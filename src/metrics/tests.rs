//! Events in, exposition out: every event moves exactly its series; the state
//! gauges come from the snapshot; both text formats; the HTTP routes and the
//! readiness probe against a listening and a closed port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::backends::Health;
use crate::data::DataError;
use crate::error::Side;
use crate::events::{DataMode, Ended, TlsDetails};
use crate::session::{Prot, Refusal};

fn info(mode: Mode) -> SessionInfo {
    SessionInfo {
        id: 1,
        client: "127.0.0.1:40000".parse().unwrap(),
        mode,
        user: Some("alice".into()),
        backend: None,
    }
}

fn tls(resumed: bool) -> TlsDetails {
    TlsDetails {
        version: "TLSv1.3",
        suite: "TLS13_AES_256_GCM_SHA384",
        resumed,
        client_cert: None,
    }
}

fn record(verb: Verb, result: TransferResult, bytes: u64) -> TransferRecord {
    TransferRecord {
        started: SystemTime::now(),
        verb,
        path: "f".into(),
        direction: Direction::Download,
        bytes,
        duration: Duration::from_millis(30),
        code: 226,
        data_tls: Some(tls(true)),
        prot: Prot::Private,
        binary: true,
        data_mode: Some(DataMode::Passive),
        result,
    }
}

/// The value of the sample line `series` (name and labels exactly), if any.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// One event of each kind (the transfers in three outcomes).
fn one_of_each() -> Vec<SessionEvent> {
    vec![
        SessionEvent::Opened,
        SessionEvent::TlsEstablished(tls(false)),
        SessionEvent::BackendConnected {
            name: "main".into(),
            backend: "127.0.0.1:21".parse().unwrap(),
            elapsed: Duration::from_millis(3),
        },
        SessionEvent::LoginFailed { code: 530 },
        SessionEvent::LoginSucceeded,
        SessionEvent::PolicyRefused(Refusal::ClearData),
        SessionEvent::PolicyAudited(Refusal::CccDenied),
        SessionEvent::TransferFinished(record(Verb::Retr, TransferResult::Complete, 1000)),
        SessionEvent::TransferFinished(record(
            Verb::Retr,
            TransferResult::Refused(Refusal::ClearData),
            0,
        )),
        SessionEvent::TransferFinished(record(
            Verb::List,
            TransferResult::Failed(DataError::ClientConnect),
            5,
        )),
        SessionEvent::Rejected { reason: "banned" },
        SessionEvent::Banned {
            until: SystemTime::now(),
        },
        SessionEvent::BackendUnreachable {
            backend: "main".into(),
            error: "refused".into(),
        },
        SessionEvent::Closed {
            error: Some(Ended {
                side: Side::Internal,
                routine: true,
                message: "idle".into(),
            }),
            duration: Duration::from_secs(1),
        },
    ]
}

#[test]
fn every_event_moves_its_series() {
    let m = Metrics::new();
    let s = info(Mode::Explicit);
    for e in &one_of_each() {
        m.event(&s, e);
    }
    m.event(&info(Mode::Implicit), &SessionEvent::Opened);
    let t = m.render(State::default(), Format::Prometheus);
    let expect = [
        ("ftpsgate_sessions_total{mode=\"explicit\"}", 1.0),
        ("ftpsgate_sessions_total{mode=\"implicit\"}", 1.0),
        ("ftpsgate_sessions_closed_total{ending=\"routine\"}", 1.0),
        ("ftpsgate_tls_handshakes_total{mode=\"explicit\",channel=\"control\",handshake=\"full\"}", 1.0),
        ("ftpsgate_tls_handshakes_total{mode=\"explicit\",channel=\"data\",handshake=\"resumed\"}", 3.0),
        ("ftpsgate_logins_total{result=\"success\"}", 1.0),
        ("ftpsgate_logins_total{result=\"failure\"}", 1.0),
        ("ftpsgate_policy_refusals_total{reason=\"clear_data\"}", 1.0),
        ("ftpsgate_policy_audited_total{reason=\"ccc_denied\"}", 1.0),
        ("ftpsgate_transfers_total{verb=\"RETR\",result=\"complete\"}", 1.0),
        ("ftpsgate_transfers_total{verb=\"RETR\",result=\"refused\"}", 1.0),
        ("ftpsgate_transfers_total{verb=\"LIST\",result=\"failed\"}", 1.0),
        ("ftpsgate_transfer_bytes_total{direction=\"download\"}", 1005.0),
        ("ftpsgate_transfer_bytes_total{direction=\"upload\"}", 0.0),
        // The refused transfer never started: not in the histogram.
        ("ftpsgate_transfer_duration_seconds_count{direction=\"download\"}", 2.0),
        ("ftpsgate_transfer_duration_seconds_bucket{direction=\"download\",le=\"0.01\"}", 0.0),
        ("ftpsgate_transfer_duration_seconds_bucket{direction=\"download\",le=\"0.05\"}", 2.0),
        ("ftpsgate_backend_connect_seconds_count", 1.0),
        ("ftpsgate_backend_connect_seconds_bucket{le=\"0.005\"}", 1.0),
        ("ftpsgate_backend_connect_failures_total{backend=\"main\"}", 1.0),
        ("ftpsgate_connections_rejected_total{reason=\"banned\"}", 1.0),
        ("ftpsgate_bans_total", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&t, series), Some(value), "{series}\n{t}");
    }
}

#[test]
fn state_gauges_come_from_the_snapshot() {
    let m = Metrics::new();
    let state = State {
        listeners: 2,
        sessions_open: 3,
        passive_ports_in_use: 4,
        passive_ports_free: Some(5),
        tls_bindings: 6,
        bans_active: 7,
        backends: vec![
            backend("east", Health::Up, 2),
            backend("west", Health::Unknown, 0),
        ],
        transparent: false,
    };
    let t = m.render(state.clone(), Format::Prometheus);
    for (series, value) in [
        ("ftpsgate_listeners", 2.0),
        ("ftpsgate_sessions_open", 3.0),
        ("ftpsgate_passive_ports_in_use", 4.0),
        ("ftpsgate_passive_ports_free", 5.0),
        ("ftpsgate_tls_bindings", 6.0),
        ("ftpsgate_bans_active", 7.0),
        ("ftpsgate_backend_up{backend=\"east\"}", 1.0),
        ("ftpsgate_backend_sessions{backend=\"east\"}", 2.0),
        ("ftpsgate_backend_sessions{backend=\"west\"}", 0.0),
    ] {
        assert_eq!(sample(&t, series), Some(value), "{series}\n{t}");
    }
    let unchecked = "ftpsgate_backend_up{backend=\"west\"}";
    assert_eq!(sample(&t, unchecked), None, "not checked yet: no sample");
    let t = m.render(
        State {
            passive_ports_free: None,
            backends: vec![backend("west", Health::Down, 0)],
            ..state
        },
        Format::Prometheus,
    );
    assert_eq!(
        sample(&t, "ftpsgate_passive_ports_free"),
        None,
        "no range: no gauge"
    );
    assert_eq!(sample(&t, "ftpsgate_sessions_open"), Some(3.0));
    assert_eq!(sample(&t, unchecked), Some(0.0));
}

fn backend(name: &str, health: Health, sessions: usize) -> BackendState {
    BackendState {
        name: name.into(),
        health,
        error: (health == Health::Down).then(|| "connection refused".into()),
        sessions,
    }
}

#[test]
fn readiness_needs_a_listener_and_a_backend_up() {
    let state = |listeners, backends, transparent| State {
        listeners,
        backends,
        transparent,
        ..State::default()
    };
    let up = || vec![backend("a", Health::Down, 0), backend("b", Health::Up, 0)];
    assert_eq!(readiness(&state(1, up(), false)), None);
    assert_eq!(
        readiness(&state(0, up(), false)).as_deref(),
        Some("no listener accepting")
    );
    let down = vec![
        backend("a", Health::Down, 0),
        backend("b", Health::Unknown, 0),
    ];
    assert_eq!(
        readiness(&state(1, down, false)).as_deref(),
        Some("no backend up (a: connection refused; b: not checked yet)")
    );
    assert_eq!(
        readiness(&state(1, vec![], true)),
        None,
        "transparent: no pool"
    );
}

#[test]
fn both_text_formats() {
    let m = Metrics::new();
    m.event(&info(Mode::Explicit), &SessionEvent::Opened);
    let om = m.render(State::default(), Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE ftpsgate_sessions counter\n"), "{om}");
    assert!(
        om.contains("# UNIT ftpsgate_backend_connect_seconds seconds\n"),
        "{om}"
    );
    assert_eq!(
        sample(&om, "ftpsgate_sessions_total{mode=\"explicit\"}"),
        Some(1.0)
    );
    let prom = m.render(State::default(), Format::Prometheus);
    assert!(!prom.contains("# EOF"), "{prom}");
    assert!(
        prom.contains("# TYPE ftpsgate_sessions_total counter\n"),
        "{prom}"
    );
    assert_eq!(
        sample(&prom, "ftpsgate_sessions_total{mode=\"explicit\"}"),
        Some(1.0)
    );
    let prometheus_accept =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(
        Format::from_accept(Some(prometheus_accept)),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert!(Format::OpenMetrics
        .content_type()
        .starts_with("application/openmetrics-text"));
    assert!(Format::Prometheus
        .content_type()
        .starts_with("text/plain; version=0.0.4"));
}

/// One HTTP/1.1 request; returns (status, head, body).
async fn get(addr: SocketAddr, method: &str, path: &str, accept: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn ready_state() -> StateFn {
    Arc::new(|| State {
        listeners: 1,
        backends: vec![backend("main", Health::Up, 0)],
        ..State::default()
    })
}

#[tokio::test]
async fn routes_and_readiness() {
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let (addr, task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        ready_state(),
        stop.clone(),
    )
    .await
    .unwrap();
    let (code, head, body) = get(addr, "GET", "/metrics", "application/openmetrics-text").await;
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    let (code, head, body) = get(addr, "GET", "/metrics", "*/*").await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(sample(&body, "ftpsgate_listeners"), Some(1.0));
    assert_eq!((get(addr, "GET", "/healthz", "*/*").await.0), 200);
    let (code, _, body) = get(addr, "GET", "/readyz", "*/*").await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    assert_eq!(get(addr, "GET", "/nope", "*/*").await.0, 404);
    let (code, head, _) = get(addr, "POST", "/metrics", "*/*").await;
    assert_eq!(code, 405);
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );
    let (code, _, body) = get(addr, "HEAD", "/healthz", "*/*").await;
    assert_eq!((code, body.as_str()), (200, ""));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn not_ready_without_backend_or_listeners() {
    let stop = CancellationToken::new();
    let down: StateFn = Arc::new(|| State {
        listeners: 1,
        backends: vec![backend("main", Health::Down, 0)],
        ..State::default()
    });
    let (addr, _task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        down,
        stop.clone(),
    )
    .await
    .unwrap();
    let (code, _, body) = get(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: no backend up (main: connection refused)\n")
    );
    assert_eq!(get(addr, "GET", "/healthz", "*/*").await.0, 200);

    let (addr, _task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Metrics::new()),
        Arc::new(State::default),
        stop.clone(),
    )
    .await
    .unwrap();
    let (code, _, body) = get(addr, "GET", "/readyz", "*/*").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: no listener accepting\n")
    );
    stop.cancel();
}
