//! Accept loops for the explicit and implicit listeners: connection limit,
//! one spawned session task per client with its tracing span, and graceful
//! stop on a `CancellationToken` (listeners close, sessions answer 421 at
//! their next line boundary, running transfers get a bounded grace period).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::config::Settings;
use crate::data::broker::PortPool;
use crate::session::driver::Driver;
use crate::tls::TlsContext;

/// How long running sessions get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// State shared by all sessions of one proxy.
pub struct Shared {
    /// Validated settings.
    pub settings: Settings,
    /// TLS configurations.
    pub tls: TlsContext,
    /// Client-facing passive ports.
    pub pool: Arc<PortPool>,
    sessions: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext first, AUTH TLS upgrades.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(Mode, TcpListener)>,
}

impl Server {
    /// Binds every listener and prepares TLS. Errors name the listener or key.
    pub async fn bind(settings: Settings) -> anyhow::Result<Server> {
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
                let l = crate::data::broker::listen_on(*addr, 1024)
                    .with_context(|| format!("cannot listen on {addr}"))?;
                listeners.push((mode, l));
            }
        }
        let shared = Arc::new(Shared {
            pool: PortPool::new(settings.passive_ports),
            sessions: Arc::new(Semaphore::new(settings.max_sessions)),
            settings,
            tls,
            next_id: AtomicU64::new(1),
        });
        Ok(Server { shared, listeners })
    }

    /// The bound addresses, in configuration order.
    pub fn local_addrs(&self) -> Vec<(Mode, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(m, l)| l.local_addr().ok().map(|a| (*m, a)))
            .collect()
    }

    /// The certificate's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.shared.tls.fingerprint
    }

    /// Serves until `shutdown` is cancelled, then drains sessions (bounded).
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        for (mode, listener) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, ?mode, "listening");
            }
            let shared = self.shared.clone();
            let stop = shutdown.clone();
            let sessions = tracker.clone();
            tracker.spawn(accept_loop(listener, mode, shared, stop, sessions));
        }
        shutdown.cancelled().await;
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("shutdown grace period over; remaining sessions are dropped");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    mode: Mode,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (mut tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(permit) = shared.sessions.clone().try_acquire_owned() else {
            warn!(%peer, "session limit reached; refusing connection");
            if mode == Mode::Explicit {
                let _ = tcp
                    .write_all(b"421 Too many connections; try again later.\r\n")
                    .await;
            }
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("session", id, client = %peer, user = tracing::field::Empty);
        let shared = shared.clone();
        let stop = stop.clone();
        tracker.spawn(
            async move {
                let _permit = permit;
                info!(?mode, "accepted");
                match Driver::new(shared, tcp, mode == Mode::Implicit, stop) {
                    Ok(d) => d.run(mode == Mode::Implicit).await,
                    Err(e) => warn!(error = %e, "cannot start session"),
                }
            }
            .instrument(span),
        );
    }
}
