//! The proxy as a whole: [`Server::bind`] binds every listener (what is fixed
//! at bind time) and builds the first [`Live`] state; [`Server::run`] accepts
//! until shutdown. Each accept loop only accepts, applies the session limit,
//! and spawns one session task with its tracing span; the session takes its
//! snapshot of the live state there. Shutdown: listeners close, sessions
//! answer 421 at their next line boundary, running transfers get a bounded
//! grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::config::Settings;
use crate::data::ports::{listen_on, PortPool};
use crate::events::{Events, SessionInfo};
use crate::ftp::addr::canonical;
use crate::live::{Live, LiveState};
use crate::metrics::{self, Metrics};
use crate::session::driver::{self, SessionContext};
use crate::session::Mode;
use crate::tls::reuse::Bindings;
use crate::tls::TlsContext;

/// How long running sessions get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every accept loop shares.
struct Shared {
    live: LiveState,
    pool: Arc<PortPool>,
    events: Events,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
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
        self.shared.max_sessions - self.shared.sessions.available_permits()
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
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(Mode, TcpListener)>,
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
                listeners.push((mode, l));
            }
        }
        let (events, metrics) = bind_metrics(&settings, events).await?;
        let shared = Arc::new(Shared {
            pool: PortPool::new(settings.passive_ports),
            sessions: Arc::new(Semaphore::new(settings.max_sessions)),
            max_sessions: settings.max_sessions,
            events,
            live: LiveState::new(Live {
                settings,
                tls,
                generation: 1,
            }),
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
            .filter_map(|(m, l)| l.local_addr().ok().map(|a| (*m, a)))
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
    pub async fn run(mut self, shutdown: CancellationToken) {
        let metrics = self.start_metrics(&shutdown);
        let tracker = TaskTracker::new();
        for (mode, listener) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, ?mode, "listening");
            }
            let accept = Acceptor {
                listener,
                mode,
                shared: self.shared.clone(),
                stop: shutdown.clone(),
                sessions: tracker.clone(),
            };
            tracker.spawn(accept.run());
        }
        shutdown.cancelled().await;
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("shutdown grace period over; remaining sessions are dropped");
        }
        stop_metrics(metrics).await;
    }
}

/// One listener's accept loop.
struct Acceptor {
    listener: TcpListener,
    mode: Mode,
    shared: Arc<Shared>,
    stop: CancellationToken,
    sessions: TaskTracker,
}

impl Acceptor {
    async fn run(self) {
        loop {
            let (tcp, peer) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.cancelled() => return,
            };
            self.admit(tcp, peer).await;
        }
    }

    /// Applies the session limit and spawns the session.
    async fn admit(&self, mut tcp: TcpStream, peer: SocketAddr) {
        let peer = canonical(peer);
        let Ok(permit) = self.shared.sessions.clone().try_acquire_owned() else {
            warn!(%peer, "session limit reached; refusing connection");
            if self.mode == Mode::Explicit {
                let _ = tcp
                    .write_all(b"421 Too many connections; try again later.\r\n")
                    .await;
            }
            return;
        };
        let Ok(local) = tcp.local_addr() else {
            return;
        };
        let local = canonical(local);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("session", id, client = %peer, user = tracing::field::Empty);
        let ctx = SessionContext {
            live: self.shared.live.snapshot(),
            pool: self.shared.pool.clone(),
            events: self.shared.events.clone(),
            shutdown: self.stop.clone(),
            info: SessionInfo {
                id,
                client: peer,
                mode: self.mode,
                user: None,
            },
            local,
            bindings: self.shared.bindings.clone(),
        };
        self.sessions.spawn(
            async move {
                let _permit = permit;
                driver::run(ctx, tcp).await;
            }
            .instrument(span),
        );
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
        let shared = self.shared.clone();
        let backend: metrics::BackendFn =
            Arc::new(move || shared.live.snapshot().settings.backend.clone());
        let stop = CancellationToken::new();
        info!(%addr, "metrics listening");
        let task = endpoint.spawn(state, backend, stop.clone());
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
            // Hook: the ban table's count of addresses banned now, once it exists.
            bans_active: 0,
        }
    }
}
