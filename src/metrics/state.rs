//! The state gauges: what is read at scrape time rather than counted from
//! events ([`State`], supplied by the caller of [`super::Metrics::render`]),
//! and the probe's latest result, encoded by a collector in the registry.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// The proxy's state at one scrape: gauges that are read, not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

/// What the state collector encodes: the latest [`State`] handed to
/// [`super::Metrics::render`] and the latest probe result (0 none yet, 1 up, 2 down).
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) current: Mutex<Option<State>>,
    pub(super) backend: AtomicU8,
}

/// Encodes the state gauges at scrape time.
#[derive(Debug)]
pub(super) struct StateCollector(pub(super) Arc<Snapshot>);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = *self.0.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut gauge = |name: &'static str, help: &str, value: i64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        match self.0.backend.load(Ordering::Relaxed) {
            0 => {}
            b => gauge(
                "backend_up",
                "1 when the latest backend probe connected, else 0.",
                i64::from(b == 1),
            )?,
        }
        let Some(s) = state else { return Ok(()) };
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
