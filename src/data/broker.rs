//! Where data connections come from: the client-facing passive port pool
//! (random ports, RFC 2577 §8), peer-checked accepts (only the control
//! connection's peer may connect, RFC 2577 §4), outbound connects from a fixed
//! source address (legacy backends check data peers), and the data-connection
//! TLS handshake with the optional session-reuse check.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{DataError, DATA_CONNECT_TIMEOUT, DATA_HANDSHAKE_TIMEOUT};
use crate::config::PortRange;
use crate::stream::MaybeTls;

/// Client-facing passive ports. Without a range the OS picks ephemeral ports.
#[derive(Debug)]
pub struct PortPool {
    range: Option<PortRange>,
    used: Mutex<HashSet<u16>>,
}

/// A port taken from the pool; it goes back when this is dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        // The lock only guards a HashSet insert/remove; poisoning would need a panic inside it.
        if let Ok(mut used) = self.pool.used.lock() {
            used.remove(&self.port);
        }
    }
}

impl PortPool {
    /// A pool over `range` (or OS-chosen ports).
    pub fn new(range: Option<PortRange>) -> Arc<PortPool> {
        Arc::new(PortPool {
            range,
            used: Mutex::new(HashSet::new()),
        })
    }

    /// Binds a listener on `ip` at a free port from the pool, starting at a random port.
    /// Fails with `AddrInUse` when the range is exhausted.
    pub fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<(TcpListener, Option<PortLease>)> {
        let Some(range) = self.range else {
            return Ok((listen_on(SocketAddr::new(ip, 0), 8)?, None));
        };
        let span = u32::from(range.high - range.low) + 1;
        let start = rand::thread_rng().gen_range(0..span);
        for i in 0..span {
            let port = range.low + ((start + i) % span) as u16;
            {
                let mut used = self
                    .used
                    .lock()
                    .map_err(|_| io::Error::other("port pool lock poisoned"))?;
                if !used.insert(port) {
                    continue;
                }
            }
            let lease = PortLease {
                pool: self.clone(),
                port,
            };
            match listen_on(SocketAddr::new(ip, port), 8) {
                Ok(l) => return Ok((l, Some(lease))),
                Err(e) => debug!(port, error = %e, "passive port busy"),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "passive port range exhausted",
        ))
    }
}

/// A listening socket with SO_REUSEADDR (so a restart does not wait for
/// TIME_WAIT) and the given accept backlog.
pub fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

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
    let stream = tokio::time::timeout(DATA_CONNECT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "data connect timed out"))??;
    Ok(stream)
}

/// Accepts the first connection whose source address is `peer`; others are
/// logged and dropped while waiting continues (an attacker who connects first
/// cannot deny the transfer, PROTOCOL.md §5.5).
pub async fn accept_from(listener: &TcpListener, peer: IpAddr) -> io::Result<TcpStream> {
    loop {
        let (stream, from) = listener.accept().await?;
        if from.ip() == peer {
            return Ok(stream);
        }
        warn!(%from, expected = %peer, "refused data connection from a foreign address");
    }
}

/// The client leg once connected (and secured when PROT P).
#[derive(Debug)]
pub struct ClientLeg {
    /// The stream.
    pub stream: MaybeTls,
    /// TLS was negotiated on it.
    pub protected: bool,
    /// The TLS handshake resumed this control session (matching resumption data).
    pub resumed_this_session: bool,
}

/// TLS parameters for the client data leg.
#[derive(Clone)]
pub struct DataTls {
    /// The data-connection acceptor (no tickets).
    pub acceptor: TlsAcceptor,
    /// The control session's resumption token.
    pub session_token: Arc<[u8]>,
}

/// Runs the server side of the data TLS handshake when `protect`.
pub async fn secure(tcp: TcpStream, protect: bool, tls: &DataTls) -> Result<ClientLeg, DataError> {
    crate::stream::low_latency(&tcp);
    if !protect {
        return Ok(ClientLeg {
            stream: MaybeTls::Plain(tcp),
            protected: false,
            resumed_this_session: false,
        });
    }
    // Sessions a data connection issues (TLS 1.2 renews tickets on resumption)
    // stay bound to this control session.
    let token = tls.session_token.clone();
    let accept = tls
        .acceptor
        .accept_with(crate::stream::Tcp::for_handshake(tcp), move |conn| {
            conn.set_resumption_data(&token)
        });
    let accept = crate::tls::observe_resumption(accept);
    let (stream, resumed_from) = match tokio::time::timeout(DATA_HANDSHAKE_TIMEOUT, accept).await {
        Ok((Ok(s), seen)) => (s, seen),
        Ok((Err(e), _)) => {
            warn!(error = %e, "data TLS handshake failed");
            return Err(DataError::Handshake);
        }
        Err(_) => {
            warn!("data TLS handshake timed out");
            return Err(DataError::Handshake);
        }
    };
    let mut stream = stream;
    stream.get_mut().0.handshaking = false;
    let conn = stream.get_ref().1;
    let resumed = matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    let resumed_this_session = resumed
        && match conn.received_resumption_data() {
            // TLS 1.3 reports the resumed session's application data directly.
            Some(data) => data == &tls.session_token[..],
            // TLS 1.2 does not: check the session state the handshake resumed from.
            None => resumed_from
                .is_some_and(|state| crate::tls::session_carries(&state, &tls.session_token)),
        };
    debug!(resumed, resumed_this_session, version = ?conn.protocol_version(), "data TLS established");
    Ok(ClientLeg {
        stream: MaybeTls::Tls(Box::new(stream)),
        protected: true,
        resumed_this_session,
    })
}

/// A spawned task accepting the client's passive data connection. It starts
/// the TLS handshake as soon as the connection arrives, using the PROT level
/// current at that moment (some clients handshake before sending RETR).
#[derive(Debug)]
pub struct PassiveAccept {
    handle: JoinHandle<Result<ClientLeg, DataError>>,
    _lease: Option<PortLease>,
}

impl PassiveAccept {
    /// Starts accepting on `listener` for `peer`.
    pub fn spawn(
        listener: TcpListener,
        lease: Option<PortLease>,
        peer: IpAddr,
        protect: Arc<AtomicBool>,
        tls: DataTls,
    ) -> PassiveAccept {
        let handle = tokio::spawn(async move {
            let tcp = accept_from(&listener, peer)
                .await
                .map_err(|_| DataError::ClientConnect)?;
            drop(listener);
            secure(tcp, protect.load(Ordering::Acquire), &tls).await
        });
        PassiveAccept {
            handle,
            _lease: lease,
        }
    }

    /// Waits for the client leg (connection and TLS handshake) up to `limit`.
    pub async fn wait(mut self, limit: std::time::Duration) -> Result<ClientLeg, DataError> {
        match tokio::time::timeout(limit, &mut self.handle).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DataError::ClientConnect),
            Err(_) => Err(DataError::ClientConnect),
        }
    }
}

impl Drop for PassiveAccept {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
