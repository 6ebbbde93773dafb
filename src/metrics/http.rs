//! The metrics endpoint (hyper, HTTP/1.1): `GET /metrics` (OpenMetrics text
//! when the `Accept` header asks for it, else Prometheus text 0.0.4),
//! `GET /healthz` (200 while the process serves) and `GET /readyz` (200 when
//! listeners accept and a backend passed its latest health check,
//! [`crate::backends::health`]; else 503 and a one-line reason).
//! Everything is bounded: connections in flight, the time a connection may
//! take, the time to read a request head.

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
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Format, Metrics, State};
use crate::backends::health::CHECK_TIMEOUT;
use crate::backends::Health;

/// How long `/readyz` waits for the first health check after start.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(CHECK_TIMEOUT.as_secs() + 1);

/// Scrape connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// The longest one connection may stay open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
/// Time to read a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the proxy's state at each scrape (and for `/readyz`).
pub type StateFn = Arc<dyn Fn() -> State + Send + Sync>;

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

    /// Serves until `shutdown` is cancelled.
    pub fn spawn(self, state: StateFn, shutdown: CancellationToken) -> JoinHandle<()> {
        let app = Arc::new(App {
            metrics: self.metrics,
            state,
        });
        tokio::spawn(accept_loop(self.listener, app, shutdown))
    }
}

/// Binds `addr` and serves `metrics` until `shutdown`; returns the bound
/// address and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    state: StateFn,
    shutdown: CancellationToken,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let endpoint = Endpoint::bind(addr, metrics).await?;
    let addr = endpoint.local_addr();
    Ok((addr, endpoint.spawn(state, shutdown)))
}

/// What every request handler shares.
struct App {
    metrics: Arc<Metrics>,
    state: StateFn,
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
    /// this waits (bounded) for the first health check rather than answer 503.
    async fn not_ready(&self) -> Option<String> {
        let deadline = tokio::time::Instant::now() + FIRST_CHECK_WAIT;
        let state = loop {
            let state = (self.state)();
            let unchecked = state.backends.iter().all(|b| b.health == Health::Unknown);
            if !unchecked || state.transparent || tokio::time::Instant::now() >= deadline {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        readiness(&state)
    }
}

/// Why `state` is not ready (pure): no listener, or no backend passed its
/// latest check. Transparent mode has no pool to check.
pub fn readiness(state: &State) -> Option<String> {
    if state.listeners == 0 {
        return Some("no listener accepting".into());
    }
    if state.transparent || state.backends.iter().any(|b| b.health == Health::Up) {
        return None;
    }
    let why: Vec<String> = state
        .backends
        .iter()
        .map(|b| match (&b.health, &b.error) {
            (Health::Unknown, _) => format!("{}: not checked yet", b.name),
            (_, Some(e)) => format!("{}: {e}", b.name),
            (_, None) => format!("{}: down", b.name),
        })
        .collect();
    Some(format!("no backend up ({})", why.join("; ")))
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
