//! How data connections are made: peer-checked accepts (only the control
//! connection's peer may connect, RFC 2577 §4; through a balancer, the real
//! client its PROXY header names), outbound connects from a
//! fixed source address (legacy backends check data peers), and the data
//! connection's TLS handshake with the session-reuse check (PROTOCOL.md §5).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn, Instrument};

use super::ports::PortLease;
use super::rekey::Capture;
use super::sealed::{self, ClientStream, SealedLeg};
use super::{DataError, DATA_CONNECT_TIMEOUT, DATA_HANDSHAKE_TIMEOUT};
use crate::config::ProxyTrust;
use crate::events::{Direction, TlsDetails};
use crate::proxy_protocol::{read_header, HeaderError, Origin};
use crate::session::Prot;
use crate::tls::reuse::{self, Binding, Token};

/// Connects to `to` from `from_ip` (port chosen by the OS), within the data connect timeout.
pub async fn connect_from(from_ip: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if from_ip.is_ipv4() == to.is_ipv4() {
        socket.bind(SocketAddr::new(from_ip, 0))?;
    }
    tokio::time::timeout(DATA_CONNECT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "data connect timed out"))?
}

/// Accepts the first connection whose source address is `peer` (any, when
/// `None`); others are logged and dropped while waiting continues (an
/// attacker who connects first cannot deny the transfer, PROTOCOL.md §5.5).
pub async fn accept_from(listener: &TcpListener, peer: Option<IpAddr>) -> io::Result<TcpStream> {
    let expected = Expected {
        peer,
        balancer: None,
    };
    accept_expected(listener, &expected).await
}

/// A balancer in front of the session's listener (PROXY protocol).
#[derive(Debug, Clone)]
pub struct Balancer {
    /// Its networks and header versions.
    pub trust: ProxyTrust,
    /// How long its header may take.
    pub limit: Duration,
}

/// Who may open a passive data connection.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The (real) client's address; any, when `None`.
    pub peer: Option<IpAddr>,
    /// Connections from this balancer must start with a PROXY header, and
    /// the client it names is the one checked.
    pub balancer: Option<Balancer>,
}

impl Expected {
    fn admits(&self, from: SocketAddr, real: IpAddr) -> bool {
        match self.peer {
            Some(p) if real != p => {
                warn!(%from, client = %real, expected = %p, "refused data connection from a foreign address");
                false
            }
            _ => true,
        }
    }
}

/// Headers being read at once on one passive port; more connections from the balancer are dropped.
const MAX_PENDING_HEADERS: usize = 16;

type Pending = (TcpStream, SocketAddr, Result<Origin, HeaderError>);

/// [`accept_from`] for `expected`: a connection from its balancer is read
/// for a PROXY header in a task of its own (a balancer that says nothing
/// holds up no other connection), then checked against the real client.
pub async fn accept_expected(listener: &TcpListener, expected: &Expected) -> io::Result<TcpStream> {
    let mut headers: JoinSet<Pending> = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, from) = r?;
                let from = crate::ftp::addr::canonical(from);
                let balancer = expected.balancer.as_ref().filter(|b| b.trust.trusts(from.ip()));
                match balancer {
                    None if expected.admits(from, from.ip()) => return Ok(stream),
                    None => {}
                    Some(_) if headers.len() >= MAX_PENDING_HEADERS => {
                        warn!(%from, "refused data connection: too many PROXY headers awaited");
                    }
                    Some(b) => {
                        let (accept, limit) = (b.trust.accept, b.limit);
                        headers.spawn(async move {
                            let mut stream = stream;
                            let header = read_header(&mut stream, accept, limit).await;
                            (stream, from, header)
                        });
                    }
                }
            }
            Some(done) = headers.join_next(), if !headers.is_empty() => {
                let Ok((stream, from, header)) = done else { continue };
                match header {
                    Ok(origin) => {
                        let real = origin.source.map_or(from.ip(), |s| s.ip());
                        if expected.admits(from, real) {
                            return Ok(stream);
                        }
                    }
                    Err(e) => warn!(%from, error = %e, "refused data connection: PROXY header"),
                }
            }
        }
    }
}

/// The client leg once connected (and secured when PROT P).
#[derive(Debug)]
pub struct ClientLeg {
    /// The stream.
    pub stream: ClientStream,
    /// What TLS negotiated, when PROT P.
    pub tls: Option<TlsDetails>,
    /// The binding token of the session the handshake resumed, if any.
    pub resumed_from: Option<Token>,
    /// The client certificate (leaf, DER) the data handshake presented.
    pub client_cert: Option<Vec<u8>>,
}

/// TLS parameters for the client data leg.
#[derive(Clone)]
pub struct DataTls {
    /// The data-connection TLS configuration (no TLS 1.3 tickets).
    pub config: Arc<ServerConfig>,
    /// For downloads when reuse is checked (required or audited): a bound
    /// handshake gets a fresh ticket. `None` otherwise: no data connection
    /// issues tickets, so the transfer's direction does not matter.
    pub ticketed: Option<Arc<ServerConfig>>,
    /// The control session's reuse binding.
    pub binding: Arc<Binding>,
}

/// What a passive accept needs to know when the client's data connection
/// arrives: the PROT level, and the direction of the transfer command that
/// is being served, if one is (tickets only ever go to downloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataState {
    /// The PROT level in force.
    pub prot: Prot,
    /// The transfer in progress, once its command has arrived.
    pub pending: Option<Direction>,
}

/// Runs the server side of the data TLS handshake when `protect`; a
/// `download` may be given a fresh ticket (see [`DataTls::ticketed`]).
pub async fn secure(
    tcp: TcpStream,
    protect: bool,
    download: bool,
    tls: &DataTls,
) -> Result<ClientLeg, DataError> {
    crate::stream::low_latency(&tcp);
    if !protect {
        return Ok(ClientLeg {
            stream: ClientStream::Plain(tcp),
            tls: None,
            resumed_from: None,
            client_cert: None,
        });
    }
    let config = match &tls.ticketed {
        Some(ticketed) if download => ticketed,
        _ => &tls.config,
    };
    // This connection's own KeyLog keeps its TLS 1.3 traffic secrets (in
    // memory only) for key updates on the data path's record layer.
    let capture = Arc::new(Capture::default());
    let mut config = ServerConfig::clone(config);
    config.key_log = capture.clone();
    let mut conn = ServerConnection::new(Arc::new(config)).map_err(|_| DataError::Handshake)?;
    // A ticket a bound data connection issues carries this control session's token.
    conn.set_resumption_data(tls.binding.token().as_bytes());
    let mut tcp = tcp;
    let shake = reuse::observe(sealed::handshake(&mut tcp, &mut conn), tls.binding.clone());
    let seen = match tokio::time::timeout(DATA_HANDSHAKE_TIMEOUT, shake).await {
        Ok((Ok(()), seen)) => seen,
        Ok((Err(e), _)) => {
            warn!(error = %e, "data TLS handshake failed");
            return Err(DataError::Handshake);
        }
        Err(_) => {
            warn!("data TLS handshake timed out");
            return Err(DataError::Handshake);
        }
    };
    let details = crate::tls::details(&conn);
    let resumed_from = reuse::resumed_token(&conn, seen.as_deref());
    let client_cert = crate::tls::client_cert(&conn);
    debug!(
        resumed = details.resumed,
        resumed_from = resumed_from.is_some(),
        version = details.version,
        "data TLS established"
    );
    let sealed = SealedLeg::take(tcp, conn, &capture).map_err(DataError::ClientTls)?;
    Ok(ClientLeg {
        stream: ClientStream::Tls(Box::new(sealed)),
        tls: Some(details),
        resumed_from,
        client_cert,
    })
}

/// A spawned task accepting the client's passive data connection. It starts
/// the TLS handshake as soon as the connection arrives, using the PROT level
/// in force at that moment (some clients handshake before sending RETR).
#[derive(Debug)]
pub struct PassiveAccept {
    handle: JoinHandle<Result<ClientLeg, DataError>>,
    _lease: PortLease,
}

impl PassiveAccept {
    /// Starts accepting on `listener` for the `expected` client.
    pub fn spawn(
        listener: TcpListener,
        lease: PortLease,
        expected: Expected,
        mut state: watch::Receiver<DataState>,
        tls: DataTls,
    ) -> PassiveAccept {
        let handle = tokio::spawn(
            async move {
                let tcp = accept_expected(&listener, &expected)
                    .await
                    .map_err(|_| DataError::ClientConnect)?;
                drop(listener);
                let protect = state.borrow().prot == Prot::Private;
                let tickets = protect && tls.ticketed.is_some();
                let download = tickets && pending_download(&mut state).await;
                secure(tcp, protect, download, &tls).await
            }
            .in_current_span(),
        );
        PassiveAccept {
            handle,
            _lease: lease,
        }
    }

    /// Waits for the client leg (connection and TLS handshake) up to `limit`.
    pub async fn wait(mut self, limit: Duration) -> Result<ClientLeg, DataError> {
        match tokio::time::timeout(limit, &mut self.handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => Err(DataError::ClientConnect),
        }
    }
}

/// How long a data connection waits for its transfer command before its
/// handshake, when a download would get a ticket.
const DIRECTION_WAIT: Duration = Duration::from_millis(250);

/// Whether the transfer this data connection serves is a download (only a
/// download may get a fresh ticket, and only when reuse is checked: this
/// is not called otherwise, so by default nothing waits). ftplib and lftp
/// send the command first; curl sends its ClientHello first and the
/// command while the handshake is pending, after its own ~200 ms timer, so
/// with reuse checked each curl data connection costs that much (without
/// the ticket curl on TLS 1.3 could not resume the next one: 522).
async fn pending_download(state: &mut watch::Receiver<DataState>) -> bool {
    let known = tokio::time::timeout(DIRECTION_WAIT, state.wait_for(|s| s.pending.is_some())).await;
    matches!(known, Ok(Ok(s)) if s.pending == Some(Direction::Download))
}

impl Drop for PassiveAccept {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
