//! The proxy as a whole: [`Server::bind`] binds every listener (what is fixed
//! at bind time) and builds the first [`Live`] state; [`Server::run`] accepts
//! until shutdown. Each accept loop only accepts, applies the session limit,
//! and spawns one session task with its tracing span; the session takes its
//! snapshot of the live state there. On a listener behind a balancer (PROXY
//! protocol) only the trusted balancers may connect, and the header is read
//! in the connection's own task first: the limits, bans and the session see
//! the real client address. Shutdown: listeners close, sessions
//! answer 421 at their next line boundary, running transfers get a bounded
//! grace period.

mod accept;

use accept::{Acceptor, Admit, MAX_PENDING_HEADERS};

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admission::Admission;
use crate::backends::health;
use crate::config::{Settings, Target};
use crate::data::ports::{listen_on, PortPool};
use crate::events::Events;
use crate::live::{FileStamps, Live, LiveState};
use crate::metrics::{self, Metrics};
use crate::reload::Reloader;
use crate::session::Mode;
use crate::tls::reuse::Bindings;
use crate::tls::TlsContext;

/// How often expired bans are swept (and their expiry logged).
const BAN_SWEEP: Duration = Duration::from_secs(10);
/// How long cut sessions get to write their records and 421 after the grace period.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// What every accept loop shares.
pub(crate) struct Shared {
    live: Arc<LiveState>,
    /// Cancelled when the shutdown grace period is over: running transfers are cut.
    cut: CancellationToken,
    pool: Arc<PortPool>,
    events: Events,
    admission: Arc<Admission>,
    bindings: Arc<Bindings>,
    next_id: AtomicU64,
}

/// A read-only view of a running proxy, for health checks, metrics and tests.
#[derive(Clone)]
pub struct Status {
    shared: Arc<Shared>,
}

impl Status {
    /// Client sessions running now.
    pub fn sessions_open(&self) -> usize {
        self.shared.admission.sessions_open()
    }

    /// Addresses banned now after repeated login failures.
    pub fn bans_active(&self) -> usize {
        self.shared.admission.bans_active()
    }

    /// Passive data listeners open now.
    pub fn passive_ports_in_use(&self) -> usize {
        self.shared.pool.in_use()
    }

    /// Ports of the passive range not in use (`None` without a range).
    pub fn passive_ports_free(&self) -> Option<usize> {
        self.shared.pool.free()
    }

    /// Control sessions registered for TLS session binding.
    pub fn bindings(&self) -> usize {
        self.shared.bindings.len()
    }

    /// Each backend of the pool in force: health and sessions.
    pub fn backends(&self) -> Vec<metrics::BackendState> {
        let live = self.shared.live.snapshot();
        live.pool
            .members()
            .iter()
            .map(|m| metrics::BackendState {
                name: m.name.clone(),
                health: m.health(),
                error: m.last_error(),
                sessions: m.sessions(),
            })
            .collect()
    }
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    /// Each listener with its configured address (which names its PROXY settings).
    listeners: Vec<(Mode, SocketAddr, TcpListener)>,
    /// The metrics endpoint, with `--metrics`.
    metrics: Option<metrics::Endpoint>,
}

impl Server {
    /// Binds every listener and prepares TLS. Errors name the listener or key.
    pub async fn bind(settings: Settings) -> anyhow::Result<Server> {
        Self::bind_with(settings, Events::tracing()).await
    }

    /// As [`Server::bind`], reporting session events to `events`.
    pub async fn bind_with(settings: Settings, events: Events) -> anyhow::Result<Server> {
        use anyhow::Context;
        let cert_files = FileStamps::of(&settings);
        let tls = TlsContext::from_settings(&settings)?;
        if tls.ephemeral {
            info!(sha256 = %tls.fingerprint, "no cert/key configured: generated an ephemeral self-signed certificate");
        } else {
            info!(sha256 = %tls.fingerprint, "certificate loaded");
        }
        let mut listeners = Vec::new();
        for (mode, addrs) in [
            (Mode::Explicit, &settings.listen),
            (Mode::Implicit, &settings.implicit_listen),
        ] {
            for addr in addrs {
                let l =
                    listen_on(*addr, 1024).with_context(|| format!("cannot listen on {addr}"))?;
                listeners.push((mode, *addr, l));
            }
        }
        let (events, metrics) = bind_metrics(&settings, events).await?;
        let shared = Arc::new(Shared {
            pool: PortPool::new(settings.passive_ports),
            admission: Admission::new(settings.max_sessions),
            events,
            live: Arc::new(LiveState::new(Live::new(
                settings, tls, 1, cert_files, None,
            ))),
            cut: CancellationToken::new(),
            bindings: Bindings::new(),
            next_id: AtomicU64::new(1),
        });
        Ok(Server {
            shared,
            listeners,
            metrics,
        })
    }

    /// The bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<(Mode, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(m, _, l)| l.local_addr().ok().map(|a| (*m, a)))
            .collect()
    }

    /// A view of the running proxy's state.
    pub fn status(&self) -> Status {
        Status {
            shared: self.shared.clone(),
        }
    }

    /// The certificate's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        self.shared.live.snapshot().tls.fingerprint.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains sessions (bounded).
    pub async fn run(self, shutdown: CancellationToken) {
        self.run_until(shutdown, CancellationToken::new()).await;
    }

    /// A handle that applies new settings to new sessions (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader::new(self.shared.live.clone())
    }

    /// Serves until `shutdown` is cancelled. Then the listeners close, idle
    /// sessions are told 421, and running transfers get `shutdown_grace`
    /// (or until `now` is cancelled: a second signal); transfers still
    /// running after that are cut, each with its record, and the sessions
    /// end with 421.
    pub async fn run_until(mut self, shutdown: CancellationToken, now: CancellationToken) {
        let metrics = self.start_metrics(&shutdown);
        let tracker = TaskTracker::new();
        for (mode, configured, listener) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, ?mode, "listening");
            }
            let accept = Acceptor {
                listener,
                configured,
                pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HEADERS)),
                admit: Admit {
                    mode,
                    shared: self.shared.clone(),
                    stop: shutdown.clone(),
                    sessions: tracker.clone(),
                },
            };
            tracker.spawn(accept.run());
        }
        tokio::spawn(sweep_bans(self.shared.clone(), shutdown.clone()));
        tokio::spawn(Reloader::new(self.shared.live.clone()).watch_certificates(shutdown.clone()));
        // One backend is checked only for /readyz; a pool always (failover).
        let checks = metrics.is_some();
        tokio::spawn(health::run(
            self.shared.live.clone(),
            checks,
            shutdown.clone(),
        ));
        shutdown.cancelled().await;
        tracker.close();
        let grace = self.shared.live.snapshot().settings.shutdown_grace;
        let drained = tokio::select! {
            r = tokio::time::timeout(grace, tracker.wait()) => r.is_ok(),
            _ = now.cancelled() => false,
        };
        if !drained {
            let open = self.shared.admission.sessions_open();
            info!(
                sessions = open,
                "shutdown: cutting the transfers still running"
            );
            self.shared.cut.cancel();
            if tokio::time::timeout(CUT_WAIT, tracker.wait())
                .await
                .is_err()
            {
                warn!("sessions still running after the cut; dropping them");
            }
        }
        stop_metrics(metrics).await;
    }
}

/// Forgets expired bans every [`BAN_SWEEP`], logging each expiry.
async fn sweep_bans(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(BAN_SWEEP) => {}
            _ = stop.cancelled() => return,
        }
        let window = shared.live.snapshot().settings.ban_window;
        shared.admission.sweep(window);
    }
}

// ---- Metrics (issue 9): the endpoint is bound with the listeners, serves
// until the sessions have drained, and reports not ready from shutdown on.

/// With `--metrics`: a [`Metrics`] sink added to `events`, and its endpoint bound.
async fn bind_metrics(
    settings: &Settings,
    events: Events,
) -> anyhow::Result<(Events, Option<metrics::Endpoint>)> {
    use anyhow::Context;
    let Some(addr) = settings.metrics else {
        return Ok((events, None));
    };
    let registry = Arc::new(Metrics::new());
    let endpoint = metrics::Endpoint::bind(addr, registry.clone())
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics)"))?;
    Ok((events.with_first(registry), Some(endpoint)))
}

/// A running metrics endpoint: its own stop and its task.
type MetricsTask = (CancellationToken, tokio::task::JoinHandle<()>);

impl Server {
    /// The metrics endpoint's bound address, with `--metrics`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|e| e.local_addr())
    }

    /// Starts the metrics endpoint; listeners count as accepting until `shutdown`.
    fn start_metrics(&mut self, shutdown: &CancellationToken) -> Option<MetricsTask> {
        let endpoint = self.metrics.take()?;
        let addr = endpoint.local_addr();
        let (status, listeners) = (self.status(), self.listeners.len());
        let accepting = shutdown.clone();
        let state: metrics::StateFn = Arc::new(move || metrics::State {
            listeners: if accepting.is_cancelled() {
                0
            } else {
                listeners
            },
            ..status.metrics_state()
        });
        let stop = CancellationToken::new();
        info!(%addr, "metrics listening");
        let task = endpoint.spawn(state, stop.clone());
        Some((stop, task))
    }
}

async fn stop_metrics(metrics: Option<MetricsTask>) {
    if let Some((stop, task)) = metrics {
        stop.cancel();
        let _ = task.await;
    }
}

impl Status {
    /// The state gauges the metrics endpoint reads at each scrape.
    pub fn metrics_state(&self) -> metrics::State {
        metrics::State {
            listeners: 0,
            sessions_open: self.sessions_open(),
            passive_ports_in_use: self.passive_ports_in_use(),
            passive_ports_free: self.passive_ports_free(),
            tls_bindings: self.bindings(),
            bans_active: self.bans_active(),
            backends: self.backends(),
            transparent: matches!(
                self.shared.live.snapshot().settings.backends.target,
                Target::OriginalDestination { .. }
            ),
        }
    }
}
