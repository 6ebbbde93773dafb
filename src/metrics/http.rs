//! The metrics endpoint (hyper, HTTP/1.1): `GET /metrics` (OpenMetrics text
//! when the `Accept` header asks for it, else Prometheus text 0.0.4),
//! `GET /healthz` (200 while the process serves) and `GET /readyz` (200 when
//! listeners accept and the latest backend probe connected, else 503 and a
//! one-line reason). The backend probe is a TCP connect every
//! [`PROBE_INTERVAL`]. Everything is bounded: connections in flight, the
//! time a connection may take, the time to read a request head.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Format, Metrics, State};
use crate::config::BackendAddr;

/// How often the backend is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe's connect may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrape connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// The longest one connection may stay open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
/// Time to read a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the proxy's state at each scrape (and for `/readyz`).
pub type StateFn = Arc<dyn Fn() -> State + Send + Sync>;

/// Names the backend in force at each probe (a reload may change it).
pub type BackendFn = Arc<dyn Fn() -> BackendAddr + Send + Sync>;

/// The latest backend probe.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    /// None finished yet.
    Pending,
    /// The backend accepted a TCP connection.
    Up,
    /// It did not.
    Down {
        /// The address probed.
        backend: String,
        /// Why.
        error: String,
    },
}

/// A bound, not yet serving metrics endpoint: bound at [`crate::Server`]
/// bind time so a busy port fails start-up and the address is known early.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
}

impl Endpoint {
    /// Binds `addr` (port 0 picks one) for `metrics`.
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Endpoint {
            listener,
            addr,
            metrics,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry this endpoint serves.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves (and probes the backend `backend` names) until `shutdown` is cancelled.
    pub fn spawn(
        self,
        state: StateFn,
        backend: BackendFn,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let (tx, rx) = watch::channel(Probe::Pending);
        let app = Arc::new(App {
            metrics: self.metrics.clone(),
            state,
            probe: rx,
        });
        let probe = probe_loop(backend, self.metrics, tx, shutdown.clone());
        let accept = accept_loop(self.listener, app, shutdown);
        tokio::spawn(async move {
            tokio::join!(probe, accept);
        })
    }
}

/// Binds `addr` and serves `metrics` (probing the fixed `backend`) until
/// `shutdown`; returns the bound address and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    state: StateFn,
    backend: BackendAddr,
    shutdown: CancellationToken,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let endpoint = Endpoint::bind(addr, metrics).await?;
    let addr = endpoint.local_addr();
    let backend: BackendFn = Arc::new(move || backend.clone());
    Ok((addr, endpoint.spawn(state, backend, shutdown)))
}

/// What every request handler shares.
struct App {
    metrics: Arc<Metrics>,
    state: StateFn,
    probe: watch::Receiver<Probe>,
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, stop: CancellationToken) {
    // Dropped on return: connections still open are aborted with it.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        if conns.len() >= MAX_CONNECTIONS {
            debug!("metrics connection limit reached; closing a new connection");
            continue;
        }
        conns.spawn(connection(tcp, app.clone()));
    }
}

async fn connection(tcp: TcpStream, app: Arc<App>) {
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.respond(req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(tcp), service);
    match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
        Ok(Err(e)) => debug!(error = %e, "metrics connection failed"),
        Err(_) => debug!("metrics connection took too long; closed"),
        Ok(Ok(())) => {}
    }
}

impl App {
    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/metrics" => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let format = Format::from_accept(accept);
                let body = self.metrics.render((self.state)(), format);
                response(StatusCode::OK, format.content_type(), body)
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.not_ready().await {
                None => text(StatusCode::OK, "ready\n".into()),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    /// Why the proxy is not ready, or `None` when it is. Right after start
    /// this waits (bounded) for the first probe rather than answer 503.
    async fn not_ready(&self) -> Option<String> {
        if (self.state)().listeners == 0 {
            return Some("no listener accepting".into());
        }
        let mut rx = self.probe.clone();
        let wait = rx.wait_for(|p| *p != Probe::Pending);
        let probe = match tokio::time::timeout(PROBE_TIMEOUT + Duration::from_secs(1), wait).await {
            Ok(Ok(p)) => p.clone(),
            _ => Probe::Pending,
        };
        match probe {
            Probe::Up => None,
            Probe::Down { backend, error } => {
                Some(format!("backend {backend} unreachable: {error}"))
            }
            Probe::Pending => Some("backend not probed yet".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body)
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// Connects to the backend every [`PROBE_INTERVAL`] and publishes the result;
/// logs only changes, so a down backend is one line, not one per probe.
async fn probe_loop(
    backend: BackendFn,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Probe>,
    stop: CancellationToken,
) {
    loop {
        let target = backend().to_string();
        let error = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(&target)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        metrics.set_backend_up(error.is_none());
        let probe = match error {
            None => Probe::Up,
            Some(error) => Probe::Down {
                backend: target.clone(),
                error,
            },
        };
        let before = tx.send_replace(probe.clone());
        match (&before, &probe) {
            (Probe::Up | Probe::Pending, Probe::Down { error, .. }) => {
                warn!(backend = %target, %error, "backend probe failed; not ready")
            }
            (Probe::Down { .. }, Probe::Up) => {
                info!(backend = %target, "backend probe connected; ready")
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
    }
}
