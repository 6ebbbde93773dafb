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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::admission::Admission;
use crate::backends::{health, original};
use crate::config::{ProxyTrust, Settings, Target};
use crate::data::ports::{listen_on, PortPool};
use crate::data::rate::Rate;
use crate::events::{Events, SessionEvent, SessionInfo};
use crate::ftp::addr::canonical;
use crate::live::{FileStamps, Live, LiveState};
use crate::metrics::{self, Metrics};
use crate::proxy_protocol::{self, HeaderError, Origin};
use crate::reload::Reloader;
use crate::session::driver::{self, SessionContext};
use crate::session::Mode;
use crate::tls::reuse::Bindings;
use crate::tls::TlsContext;

/// How long the 421 for a turned-away connection may take to write.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often expired bans are swept (and their expiry logged).
const BAN_SWEEP: Duration = Duration::from_secs(10);
/// How long cut sessions get to write their records and 421 after the grace period.
const CUT_WAIT: Duration = Duration::from_secs(5);
/// Connections from balancers whose PROXY header is still awaited, per listener.
const MAX_PENDING_HEADERS: usize = 1024;

/// What every accept loop shares.
struct Shared {
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

/// One listener's accept loop.
struct Acceptor {
    listener: TcpListener,
    /// The address as configured (`0.0.0.0:21`), which names its PROXY settings.
    configured: SocketAddr,
    /// Connections whose PROXY header is being read.
    pending: Arc<tokio::sync::Semaphore>,
    admit: Admit,
}

/// What admitting a connection needs; cloned into a task that reads a PROXY header first.
#[derive(Clone)]
struct Admit {
    mode: Mode,
    shared: Arc<Shared>,
    stop: CancellationToken,
    sessions: TaskTracker,
}

/// Who a connection is from once any PROXY header has been read.
#[derive(Debug, Clone)]
struct Arrival {
    /// The real client.
    client: SocketAddr,
    /// The balancer it came through.
    via: Option<SocketAddr>,
    /// The address the client connected to, when a header said so.
    seen_as: Option<SocketAddr>,
    /// The listener's balancer settings, when it came through one.
    balancer: Option<ProxyTrust>,
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
                _ = self.admit.stop.cancelled() => return,
            };
            let peer = canonical(peer);
            let trust = self.trust();
            if !trust.is_on() {
                let arrival = Arrival {
                    client: peer,
                    via: None,
                    seen_as: None,
                    balancer: None,
                };
                self.admit.admit(tcp, arrival).await;
                continue;
            }
            self.balanced(tcp, peer, trust);
        }
    }

    /// This listener's PROXY settings in the live state.
    fn trust(&self) -> ProxyTrust {
        let live = self.admit.shared.live.snapshot();
        let implicit = self.admit.mode == Mode::Implicit;
        live.settings.proxy_trust(implicit, self.configured).clone()
    }

    /// A connection to a listener behind a balancer: only a trusted
    /// balancer may connect, and its header is read in the connection's own
    /// task (bounded), then the connection is admitted as its real client.
    fn balanced(&self, mut tcp: TcpStream, peer: SocketAddr, trust: ProxyTrust) {
        if !trust.trusts(peer.ip()) {
            warn!(%peer, "connection refused: not from a balancer in proxy_protocol_from");
            return self.admit.rejected(peer, proxy_protocol::UNTRUSTED);
        }
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            warn!(%peer, "connection refused: too many PROXY headers awaited");
            return self.admit.rejected(peer, "proxy_pending");
        };
        let admit = self.admit.clone();
        let limit = admit.shared.live.snapshot().settings.proxy_protocol_timeout;
        self.admit.sessions.spawn(async move {
            let header = proxy_protocol::read_header(&mut tcp, trust.accept, limit).await;
            drop(permit);
            match header {
                Ok(origin) => admit.admit(tcp, arrival(peer, origin, trust)).await,
                Err(HeaderError::Closed) => debug!(%peer, "balancer closed before a PROXY header"),
                Err(e) => {
                    warn!(%peer, error = %e, "connection refused: PROXY header");
                    admit.rejected(peer, e.reason());
                }
            }
        });
    }
}

/// The real client per the header (the balancer itself for LOCAL/UNKNOWN).
fn arrival(peer: SocketAddr, origin: Origin, trust: ProxyTrust) -> Arrival {
    Arrival {
        client: origin.source.unwrap_or(peer),
        via: Some(peer),
        seen_as: origin.destination,
        balancer: Some(trust),
    }
}

impl Admit {
    /// Reports a connection turned away before any session started.
    fn rejected(&self, client: SocketAddr, reason: &'static str) {
        let info = SessionInfo {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            client,
            mode: self.mode,
            user: None,
            backend: None,
        };
        self.shared
            .events
            .emit(&info, SessionEvent::Rejected { reason });
    }

    /// Turns a connection away: the `Rejected` event, and on the explicit
    /// listener the 421 `reply` (an implicit client expects TLS; it gets a close).
    async fn reject(
        &self,
        mut tcp: TcpStream,
        info: &SessionInfo,
        reason: &'static str,
        reply: &[u8],
    ) {
        self.shared
            .events
            .emit(info, SessionEvent::Rejected { reason });
        if self.mode == Mode::Explicit {
            let _ = tokio::time::timeout(REJECT_WRITE_TIMEOUT, tcp.write_all(reply)).await;
        }
    }

    /// Applies the admission limits to the real client and spawns the session.
    async fn admit(&self, tcp: TcpStream, arrival: Arrival) {
        let peer = arrival.client;
        let live = self.shared.live.snapshot();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let info = SessionInfo {
            id,
            client: peer,
            mode: self.mode,
            user: None,
            backend: None,
        };
        let admitted = match self.shared.admission.admit(peer.ip(), &live.settings) {
            Ok(a) => a,
            Err(turned) => {
                return self
                    .reject(tcp, &info, turned.reason(), turned.reply())
                    .await
            }
        };
        let Ok(local) = tcp.local_addr() else {
            return;
        };
        let destination = match transparent_destination(&tcp, local, &live.settings) {
            Ok(d) => d,
            Err(refused) => {
                if let original::Refused::NotAllowed(dest) = refused {
                    warn!(client = %peer, destination = %dest, "connection refused: original destination not in original_destination_allow");
                }
                return self.reject(tcp, &info, refused.reason(), NO_SERVICE).await;
            }
        };
        let span = tracing::info_span!(
            "session",
            id,
            client = %peer,
            via = tracing::field::Empty,
            user = tracing::field::Empty,
            backend = tracing::field::Empty
        );
        if let Some(via) = arrival.via {
            span.record("via", tracing::field::display(via));
        }
        let rate = live.settings.rate_session.map(Rate::new);
        let local = canonical(local);
        let ctx = SessionContext {
            live,
            pool: self.shared.pool.clone(),
            events: self.shared.events.clone(),
            shutdown: self.stop.clone(),
            cut: self.shared.cut.clone(),
            info,
            local,
            seen_as: arrival.seen_as.unwrap_or(local),
            balancer: arrival.balancer,
            bindings: self.shared.bindings.clone(),
            admission: self.shared.admission.clone(),
            rate,
            admitted: Some(admitted),
            destination,
            audited: Vec::new(),
        };
        self.sessions.spawn(driver::run(ctx, tcp).instrument(span));
    }
}

/// The reply to a connection ftpsgate has no backend for.
const NO_SERVICE: &[u8] = b"421 Service not available: no server to connect to.\r\n";

/// In transparent mode, the backend of a connection accepted on `local`:
/// its original destination, if the allow-list permits it.
fn transparent_destination(
    tcp: &TcpStream,
    local: SocketAddr,
    settings: &Settings,
) -> Result<Option<SocketAddr>, original::Refused> {
    match &settings.backends.target {
        Target::Pool(_) => Ok(None),
        Target::OriginalDestination { allow, port } => {
            original::decide(original::lookup(tcp), local, allow, *port).map(Some)
        }
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
