//! One listener's accept loop ([`Acceptor`]) and admission ([`Admit`]): a
//! connection behind a trusted balancer has its PROXY header read in its own
//! bounded task first; then the admission limits, bans and (in transparent
//! mode) the original-destination allow-list apply to the real client, and
//! the session task is spawned with its tracing span. A connection turned
//! away gets a `Rejected` event and, on the explicit listener, a 421.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::Shared;
use crate::backends::original;
use crate::config::{ProxyTrust, Settings, Target};
use crate::data::rate::Rate;
use crate::events::{SessionEvent, SessionInfo};
use crate::ftp::addr::canonical;
use crate::proxy_protocol::{self, HeaderError, Origin};
use crate::session::driver::{self, SessionContext};
use crate::session::Mode;

/// How long the 421 for a turned-away connection may take to write.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections from balancers whose PROXY header is still awaited, per listener.
pub(super) const MAX_PENDING_HEADERS: usize = 1024;

/// One listener's accept loop.
pub(super) struct Acceptor {
    pub(super) listener: TcpListener,
    /// The address as configured (`0.0.0.0:21`), which names its PROXY settings.
    pub(super) configured: SocketAddr,
    /// Connections whose PROXY header is being read.
    pub(super) pending: Arc<tokio::sync::Semaphore>,
    pub(super) admit: Admit,
}

/// What admitting a connection needs; cloned into a task that reads a PROXY header first.
#[derive(Clone)]
pub(super) struct Admit {
    pub(super) mode: Mode,
    pub(super) shared: Arc<Shared>,
    pub(super) stop: CancellationToken,
    pub(super) sessions: TaskTracker,
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
    pub(super) async fn run(self) {
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
        let span = session_span(id, peer, arrival.via);
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

/// The span every line of a session is logged in; `user` and `backend`
/// are recorded once known.
fn session_span(id: u64, client: SocketAddr, via: Option<SocketAddr>) -> tracing::Span {
    let span = tracing::info_span!(
        "session",
        id,
        client = %client,
        via = tracing::field::Empty,
        user = tracing::field::Empty,
        backend = tracing::field::Empty
    );
    if let Some(via) = via {
        span.record("via", tracing::field::display(via));
    }
    span
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
