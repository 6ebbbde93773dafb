//! Prometheus metrics (issue 9, STYLE.md 2.14 "counting is not logging"):
//! [`Metrics`] is an [`EventSink`], so every counter and histogram is updated
//! from the same [`SessionEvent`]s the log is written from, and a number on
//! the dashboard can never disagree with a line in the log. What is state
//! rather than a fact (sessions open, passive ports, bans active) is read at
//! scrape time from a [`State`] snapshot the caller supplies. [`http`] serves
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! Every series is listed in README.md ("Metrics"); names follow Prometheus
//! conventions (`ftpsgate_` prefix, `_total` counters, `_seconds` and
//! `_bytes` units) and every label has a small, fixed set of values.

pub mod http;
mod state;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::events::{
    Direction, EventSink, SessionEvent, SessionInfo, TransferRecord, TransferResult,
};
use crate::ftp::command::Verb;
use crate::session::Mode;

pub use http::{readiness, serve, Endpoint, StateFn};
pub use state::{BackendState, State};
use state::{Snapshot, StateCollector};

/// Buckets of `ftpsgate_transfer_duration_seconds`: 10 ms to 30 min.
const TRANSFER_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0, 1800.0,
];

/// Buckets of `ftpsgate_backend_connect_seconds`: 1 ms to 10 s.
const CONNECT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// Prometheus text 0.0.4 (the default for curl and older scrapers).
    Prometheus,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it names it.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndingLabel {
    ending: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    mode: &'static str,
    channel: &'static str,
    handshake: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    verb: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn transfer_histogram() -> Histogram {
    Histogram::new(TRANSFER_BUCKETS)
}

/// The registry and every family in it; one per process, shared by every
/// session (all updates are atomic, so [`EventSink::event`] never blocks).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions: Family<ModeLabel, Counter>,
    closed: Family<EndingLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    logins: Family<ResultLabel, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    audited: Family<ReasonLabel, Counter>,
    transfers: Family<TransferLabels, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    transfer_seconds: Histograms<DirectionLabel>,
    backend_connect: Histogram,
    backend_failures: Family<BackendLabel, Counter>,
    bans: Counter,
    state: Arc<Snapshot>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every ftpsgate family registered; the label values
    /// a dashboard always wants (both modes, both directions, both login
    /// results) exist at 0 from the start.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("ftpsgate"),
            sessions: Family::default(),
            closed: Family::default(),
            rejected: Family::default(),
            handshakes: Family::default(),
            logins: Family::default(),
            refusals: Family::default(),
            audited: Family::default(),
            transfers: Family::default(),
            bytes: Family::default(),
            transfer_seconds: Family::new_with_constructor(transfer_histogram),
            backend_connect: Histogram::new(CONNECT_BUCKETS),
            backend_failures: Family::default(),
            bans: Counter::default(),
            state: Default::default(),
        };
        m.register();
        for mode in ["explicit", "implicit"] {
            let _ = m.sessions.get_or_create(&ModeLabel { mode });
        }
        for result in ["success", "failure"] {
            let _ = m.logins.get_or_create(&ResultLabel { result });
        }
        for direction in ["download", "upload"] {
            let _ = m.bytes.get_or_create(&DirectionLabel { direction });
        }
        m
    }

    /// The session, TLS, login and policy series (then [`Self::register_data`]).
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "sessions",
            "Client sessions started, by listener mode",
            self.sessions.clone(),
        );
        r.register(
            "sessions_closed",
            "Client sessions ended: clean (QUIT or client close), routine (timeout, shutdown, client gone) or error",
            self.closed.clone(),
        );
        r.register(
            "connections_rejected",
            "Connections turned away at connect with 421, by reason",
            self.rejected.clone(),
        );
        r.register(
            "tls_handshakes",
            "Completed TLS handshakes by listener mode, channel (control or data) and handshake (full or resumed)",
            self.handshakes.clone(),
        );
        r.register(
            "logins",
            "Logins the backend answered, by result",
            self.logins.clone(),
        );
        r.register(
            "policy_refusals",
            "Requests the edge policy refused, by reason",
            self.refusals.clone(),
        );
        r.register(
            "policy_audited",
            "Sessions in which audit mode let through a request enforcing would refuse, by reason (once per session and reason)",
            self.audited.clone(),
        );
        self.register_data();
    }

    /// The transfer, backend and ban series and the state collector.
    fn register_data(&mut self) {
        let r = &mut self.registry;
        r.register(
            "transfers",
            "Transfer attempts by verb and result (complete, refused, declined, failed, aborted)",
            self.transfers.clone(),
        );
        r.register_with_unit(
            "transfer",
            "Payload bytes moved by transfers, by direction",
            Unit::Bytes,
            self.bytes.clone(),
        );
        r.register_with_unit(
            "transfer_duration",
            "Transfer duration from the command to its final reply (refused transfers excluded), by direction",
            Unit::Seconds,
            self.transfer_seconds.clone(),
        );
        r.register_with_unit(
            "backend_connect",
            "Time to connect to the backend",
            Unit::Seconds,
            self.backend_connect.clone(),
        );
        r.register(
            "backend_connect_failures",
            "Failed connects to a backend, by backend (the session tried the next one, or got 421)",
            self.backend_failures.clone(),
        );
        r.register(
            "bans",
            "Client addresses banned after repeated login failures",
            self.bans.clone(),
        );
        r.register_collector(Box::new(StateCollector(self.state.clone())));
    }

    /// Encodes every series, with `state` as the state gauges.
    pub fn render(&self, state: State, format: Format) -> String {
        *self.state.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
        let mut out = String::new();
        // Writing to a String cannot fail; the encoders only propagate fmt errors.
        let _ = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }

    fn transfer(&self, session: &SessionInfo, r: &TransferRecord) {
        let result = result_label(&r.result);
        self.transfers
            .get_or_create(&TransferLabels {
                verb: verb_label(&r.verb),
                result,
            })
            .inc();
        let direction = DirectionLabel {
            direction: direction_label(r.direction),
        };
        self.bytes.get_or_create(&direction).inc_by(r.bytes);
        if !matches!(r.result, TransferResult::Refused(_)) {
            self.transfer_seconds
                .get_or_create(&direction)
                .observe(r.duration.as_secs_f64());
        }
        if let Some(tls) = &r.data_tls {
            self.handshake(session.mode, "data", tls.resumed);
        }
    }

    fn handshake(&self, mode: Mode, channel: &'static str, resumed: bool) {
        let handshake = if resumed { "resumed" } else { "full" };
        self.handshakes
            .get_or_create(&HandshakeLabels {
                mode: mode_label(mode),
                channel,
                handshake,
            })
            .inc();
    }
}

impl EventSink for Metrics {
    fn event(&self, session: &SessionInfo, event: &SessionEvent) {
        match event {
            SessionEvent::Opened => {
                self.sessions
                    .get_or_create(&ModeLabel {
                        mode: mode_label(session.mode),
                    })
                    .inc();
            }
            SessionEvent::TlsEstablished(t) => self.handshake(session.mode, "control", t.resumed),
            SessionEvent::Rejected { reason } => {
                self.rejected.get_or_create(&ReasonLabel { reason }).inc();
            }
            SessionEvent::Banned { .. } => {
                self.bans.inc();
            }
            SessionEvent::BackendUnreachable { backend, .. } => {
                self.backend_failures
                    .get_or_create(&BackendLabel {
                        backend: backend.clone(),
                    })
                    .inc();
            }
            SessionEvent::BackendConnected { elapsed, .. } => {
                self.backend_connect.observe(elapsed.as_secs_f64());
            }
            SessionEvent::LoginSucceeded => {
                self.logins
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
            }
            SessionEvent::LoginFailed { .. } => {
                self.logins
                    .get_or_create(&ResultLabel { result: "failure" })
                    .inc();
            }
            SessionEvent::PolicyRefused(r) => {
                self.refusals
                    .get_or_create(&ReasonLabel { reason: r.reason() })
                    .inc();
            }
            SessionEvent::PolicyAudited(r) => {
                self.audited
                    .get_or_create(&ReasonLabel { reason: r.reason() })
                    .inc();
            }
            SessionEvent::TransferFinished(r) => self.transfer(session, r),
            SessionEvent::Closed { error, .. } => {
                let ending = match error {
                    None => "clean",
                    Some(e) if e.routine => "routine",
                    Some(_) => "error",
                };
                self.closed.get_or_create(&EndingLabel { ending }).inc();
            }
        }
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Explicit => "explicit",
        Mode::Implicit => "implicit",
    }
}

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

fn result_label(r: &TransferResult) -> &'static str {
    match r {
        TransferResult::Complete => "complete",
        TransferResult::Refused(_) => "refused",
        TransferResult::Declined => "declined",
        TransferResult::Failed(_) => "failed",
        TransferResult::Aborted => "aborted",
    }
}

/// The transfer verbs by name; anything else (never expected) is `other`,
/// so a label value can never come from the client.
fn verb_label(v: &Verb) -> &'static str {
    match v {
        Verb::Retr => "RETR",
        Verb::Stor => "STOR",
        Verb::Appe => "APPE",
        Verb::Stou => "STOU",
        Verb::List => "LIST",
        Verb::Nlst => "NLST",
        Verb::Mlsd => "MLSD",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
