//! The state gauges: what is read at scrape time rather than counted from
//! events ([`State`], supplied by the caller of [`super::Metrics::render`]:
//! sessions, ports, bans, and each backend's health and sessions), encoded
//! by a collector in the registry.

use std::sync::{Arc, Mutex};

use crate::backends::Health;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// One backend at one scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    /// Its configured name.
    pub name: String,
    /// The latest health check's verdict.
    pub health: Health,
    /// Why the latest check failed.
    pub error: Option<String>,
    /// Sessions connected to it now.
    pub sessions: usize,
}

/// The proxy's state at one scrape: gauges that are read, not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Listeners accepting connections (0 before start and once shutdown began).
    pub listeners: usize,
    /// Client sessions running now.
    pub sessions_open: usize,
    /// Passive data listeners open now.
    pub passive_ports_in_use: usize,
    /// Free ports of the passive range (`None` without a configured range).
    pub passive_ports_free: Option<usize>,
    /// Control sessions registered for TLS session binding.
    pub tls_bindings: usize,
    /// Client addresses banned now.
    pub bans_active: usize,
    /// The backend pool (empty in transparent mode).
    pub backends: Vec<BackendState>,
    /// Transparent mode: each connection's original destination is its backend.
    pub transparent: bool,
}

/// What the state collector encodes: the latest [`State`] handed to
/// [`super::Metrics::render`].
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) current: Mutex<Option<State>>,
}

/// Encodes the state gauges at scrape time.
#[derive(Debug)]
pub(super) struct StateCollector(pub(super) Arc<Snapshot>);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self
            .0
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(s) = state else { return Ok(()) };
        encode_backends(&s.backends, &mut encoder)?;
        let mut gauge = |name: &'static str, help: &str, value: i64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            "listeners",
            "Listeners accepting client connections.",
            n(s.listeners),
        )?;
        gauge(
            "sessions_open",
            "Client sessions running now.",
            n(s.sessions_open),
        )?;
        gauge(
            "passive_ports_in_use",
            "Passive data listeners open now.",
            n(s.passive_ports_in_use),
        )?;
        if let Some(free) = s.passive_ports_free {
            gauge(
                "passive_ports_free",
                "Ports of the passive range not in use.",
                n(free),
            )?;
        }
        gauge(
            "tls_bindings",
            "Control sessions registered for TLS session binding.",
            n(s.tls_bindings),
        )?;
        gauge(
            "bans_active",
            "Client addresses banned now.",
            n(s.bans_active),
        )
    }
}

/// `backend_up{backend}` (omitted until checked) and `backend_sessions{backend}`.
fn encode_backends(
    backends: &[BackendState],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let up: Vec<_> = backends
        .iter()
        .filter(|b| b.health != Health::Unknown)
        .collect();
    if !up.is_empty() {
        let mut family = encoder.encode_descriptor(
            "backend_up",
            "1 when the backend's latest health check got its 220 greeting, else 0.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for b in up {
            let labels = [("backend", b.name.as_str())];
            ConstGauge::new(i64::from(b.health == Health::Up))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    if !backends.is_empty() {
        let mut family = encoder.encode_descriptor(
            "backend_sessions",
            "Client sessions connected to the backend now.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for b in backends {
            let labels = [("backend", b.name.as_str())];
            ConstGauge::new(n(b.sessions)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
