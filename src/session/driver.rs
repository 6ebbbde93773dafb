//! The async task for one control session: owns the client and backend
//! control streams and the pending data set-up, feeds commands to the pure
//! [`Session`], and carries out its [`Action`]s: AUTH TLS stream upgrade,
//! relaying replies (scrubbed of the backend's address), CCC, and QUIT. The
//! data half (PASV/EPSV/PORT/EPRT set-up, transfers, ABOR) is in `transfer`.
//!
//! Every wait is bounded: backend connect and replies, the TLS handshake,
//! control idle time, the client's data connection.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{rewrite_feat, Action, Policy, Prot, Session};
use crate::config::Settings;
use crate::data::broker::PassiveAccept;
use crate::error::{SessionError, Side};
use crate::ftp::command::Command;
use crate::ftp::line::{LineDecoder, LineEvent};
use crate::ftp::reply::{Reply, ReplyParser};
use crate::listener::Shared;
use crate::stream::MaybeTls;

mod transfer;

/// Connecting to the backend.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for a backend reply to an ordinary command.
pub const BACKEND_REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The control TLS handshake.
pub const CONTROL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a backend gets to notice ABOR during an upload before its data
/// connection is reset.
pub const ABORT_NOTICE_TIMEOUT: Duration = Duration::from_secs(2);
/// Replies the backend owes after ABOR.
pub const ABORT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the client's close_notify after CCC.
pub const CCC_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands a client may queue while a transfer runs.
const MAX_DEFERRED: usize = 32;

/// The client side of the control connection: stream plus line framing.
struct ClientCtl {
    stream: Option<MaybeTls>,
    buf: Vec<u8>,
    start: usize,
    decoder: LineDecoder,
}

/// One client input event.
#[derive(Debug)]
enum ClientEvent {
    Line(Vec<u8>),
    TooLong,
    Overflow,
    Eof,
}

impl ClientCtl {
    fn stream(&mut self) -> io::Result<&mut MaybeTls> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("control stream unavailable"))
    }

    /// Bytes received but not yet framed into a command (pipelined input).
    fn has_buffered(&self) -> bool {
        self.start < self.buf.len() || self.decoder.has_partial()
    }

    /// Next framed event; cancel-safe (no bytes are lost if dropped mid-read).
    async fn next(&mut self) -> io::Result<ClientEvent> {
        loop {
            if self.start < self.buf.len() {
                let (n, ev) = self.decoder.decode(&self.buf[self.start..]);
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                match ev {
                    Some(LineEvent::Line(l)) => return Ok(ClientEvent::Line(l)),
                    Some(LineEvent::TooLong) => return Ok(ClientEvent::TooLong),
                    Some(LineEvent::Overflow) => return Ok(ClientEvent::Overflow),
                    None => {}
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream()?.read(&mut chunk).await?;
            if n == 0 {
                return Ok(ClientEvent::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        debug!(code = reply.code, "reply");
        let s = self.stream()?;
        s.write_all(&reply.encode()).await?;
        s.flush().await
    }
}

/// The backend side of the control connection.
struct BackendCtl {
    stream: TcpStream,
    parser: ReplyParser,
}

impl BackendCtl {
    async fn send(&mut self, cmd: &Command) -> Result<(), SessionError> {
        debug!(%cmd, "to backend");
        self.stream
            .write_all(&cmd.encode())
            .await
            .map_err(SessionError::backend_io)
    }

    /// Next reply; cancel-safe.
    async fn next(&mut self) -> Result<Reply, SessionError> {
        loop {
            match self.parser.next_reply() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(SessionError::backend(format!("bad reply: {e}"))),
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(SessionError::backend_io)?;
            if n == 0 {
                return Err(SessionError::backend(
                    "backend closed the control connection",
                ));
            }
            self.parser.push(&chunk[..n]);
        }
    }

    async fn reply_within(&mut self, limit: Duration) -> Result<Reply, SessionError> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| SessionError::backend("backend reply timed out"))?
    }
}

/// Where the client side of the next transfer comes from.
enum ClientData {
    Passive(PassiveAccept),
    Active(SocketAddr),
}

/// Where the backend side of the next transfer comes from.
enum BackendDataLeg {
    Passive(SocketAddr),
    Active(TcpListener),
}

struct DataSetup {
    client: ClientData,
    backend: BackendDataLeg,
}

/// One session task.
pub struct Driver {
    shared: Arc<Shared>,
    session: Session,
    client: ClientCtl,
    backend: Option<BackendCtl>,
    peer: SocketAddr,
    local: SocketAddr,
    backend_peer: Option<SocketAddr>,
    backend_local: Option<SocketAddr>,
    setup: Option<DataSetup>,
    deferred: VecDeque<ClientEvent>,
    protect: Arc<AtomicBool>,
    token: Arc<[u8]>,
    shutdown: CancellationToken,
}

impl Driver {
    /// A session for an accepted client connection.
    pub fn new(
        shared: Arc<Shared>,
        tcp: TcpStream,
        implicit: bool,
        shutdown: CancellationToken,
    ) -> io::Result<Driver> {
        let peer = tcp.peer_addr()?;
        let local = tcp.local_addr()?;
        crate::stream::low_latency(&tcp);
        let settings: &Settings = &shared.settings;
        let policy = Policy {
            control_tls: settings.control_tls,
            data_tls: settings.data_tls,
            ccc: settings.ccc,
            implicit,
            public_v4: settings.public_address.is_some_and(|a| a.is_ipv4()),
        };
        let session = Session::new(policy, peer.ip());
        let protect = Arc::new(AtomicBool::new(session.prot() == Prot::Private));
        let token: [u8; 16] = rand::random();
        Ok(Driver {
            shared,
            session,
            client: ClientCtl {
                stream: Some(MaybeTls::Plain(tcp)),
                buf: Vec::new(),
                start: 0,
                decoder: LineDecoder::new(),
            },
            backend: None,
            peer,
            local,
            backend_peer: None,
            backend_local: None,
            setup: None,
            deferred: VecDeque::new(),
            protect,
            token: Arc::from(&token[..]),
            shutdown,
        })
    }

    /// Runs the session to its end.
    pub async fn run(mut self, implicit: bool) {
        match self.run_inner(implicit).await {
            Ok(()) => debug!("session closed"),
            Err(e) => {
                if let Some(r) = e.reply() {
                    let _ = self.client.send(&r).await;
                }
                match e.side {
                    Side::Client => info!(error = %e, "session ended by client"),
                    _ => warn!(error = %e, "session ended"),
                }
            }
        }
        self.close_client().await;
    }

    async fn close_client(&mut self) {
        if let Some(mut s) = self.client.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
    }

    async fn run_inner(&mut self, implicit: bool) -> Result<(), SessionError> {
        if implicit {
            self.start_tls().await?;
        }
        self.connect_backend().await?;
        loop {
            let ev = match self.deferred.pop_front() {
                Some(ev) => ev,
                None => self.wait_client().await?,
            };
            let line = match ev {
                ClientEvent::Line(l) => l,
                ClientEvent::TooLong => {
                    self.reply(500, "Command line too long.").await?;
                    continue;
                }
                ClientEvent::Overflow => {
                    return Err(SessionError::client_reply(
                        Reply::new(500, "Command line too long; closing."),
                        "line overflow",
                    ));
                }
                ClientEvent::Eof => return Ok(()),
            };
            let cmd = match Command::parse(&line) {
                Ok(c) => c,
                Err(e) => {
                    let code = match e {
                        crate::ftp::command::CommandError::BadVerb => 500,
                        crate::ftp::command::CommandError::ControlChar => 501,
                    };
                    self.reply(code, &e.to_string()).await?;
                    continue;
                }
            };
            debug!(cmd = %cmd, "command");
            if cmd.verb == "USER" {
                tracing::Span::current().record("user", cmd.arg_str().as_str());
            }
            let action = self.session.on_command(cmd);
            self.protect
                .store(self.session.prot() == Prot::Private, Ordering::Release);
            if self.execute(action).await? {
                return Ok(());
            }
        }
    }

    /// Waits for the next client event, the idle timeout, shutdown, or an unsolicited backend reply.
    async fn wait_client(&mut self) -> Result<ClientEvent, SessionError> {
        let idle = self.shared.settings.idle_timeout;
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| SessionError::internal("no backend"))?;
        tokio::select! {
            ev = self.client.next() => ev.map_err(SessionError::client_io),
            r = backend.next() => {
                let r = r?;
                if r.code == 421 {
                    return Err(SessionError::backend_reply(r, "backend closed the session"));
                }
                Err(SessionError::backend(format!("unsolicited backend reply {}", r.code)))
            }
            _ = tokio::time::sleep(idle) => Err(SessionError::internal_reply(Reply::new(421, "Idle timeout; closing control connection."), "idle timeout")),
            _ = self.shutdown.cancelled() => Err(SessionError::internal_reply(Reply::new(421, "Service shutting down; closing control connection."), "shutdown")),
        }
    }

    async fn reply(&mut self, code: u16, text: &str) -> Result<(), SessionError> {
        self.client
            .send(&Reply::new(code, text))
            .await
            .map_err(SessionError::client_io)
    }

    async fn relay(&mut self, mut reply: Reply) -> Result<(), SessionError> {
        self.scrub(&mut reply);
        self.client
            .send(&reply)
            .await
            .map_err(SessionError::client_io)
    }

    /// Removes the backend's address from reply text; the client sees the proxy's.
    fn scrub(&self, reply: &mut Reply) {
        let (Some(bp), Some(_)) = (self.backend_peer, self.backend_local) else {
            return;
        };
        reply.scrub(bp.to_string().as_bytes(), self.local.to_string().as_bytes());
        reply.scrub(
            bp.ip().to_string().as_bytes(),
            self.local.ip().to_string().as_bytes(),
        );
        if let (IpAddr::V4(b), IpAddr::V4(l)) = (bp.ip(), self.local.ip()) {
            let comma = |ip: std::net::Ipv4Addr| ip.octets().map(|o| o.to_string()).join(",");
            reply.scrub(comma(b).as_bytes(), comma(l).as_bytes());
        }
        if let Some((host, _)) = self.shared.settings.backend.rsplit_once(':') {
            if host.parse::<IpAddr>().is_err() {
                reply.scrub(host.as_bytes(), self.local.ip().to_string().as_bytes());
            }
        }
    }

    async fn start_tls(&mut self) -> Result<(), SessionError> {
        let Some(MaybeTls::Plain(tcp)) = self.client.stream.take() else {
            return Err(SessionError::internal("TLS requested on a TLS stream"));
        };
        let acceptor = TlsAcceptor::from(self.shared.tls.control.clone());
        let token = self.token.clone();
        let accept = acceptor.accept_with(crate::stream::Tcp::for_handshake(tcp), move |conn| {
            conn.set_resumption_data(&token)
        });
        let mut tls = match tokio::time::timeout(CONTROL_HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(SessionError::client_silent(format!(
                    "control TLS handshake failed: {e}"
                )))
            }
            Err(_) => {
                return Err(SessionError::client_silent(
                    "control TLS handshake timed out".into(),
                ))
            }
        };
        tls.get_mut().0.handshaking = false;
        {
            let conn = tls.get_ref().1;
            let subject = conn.peer_certificates().and_then(|c| c.first()).map(|der| {
                x509_parser::parse_x509_certificate(der.as_ref())
                    .map(|(_, cert)| cert.subject().to_string())
                    .unwrap_or_else(|_| "(unparsable)".into())
            });
            info!(
                version = ?conn.protocol_version(),
                suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
                client_cert = subject.as_deref().unwrap_or("none"),
                "control TLS established"
            );
        }
        self.client.stream = Some(MaybeTls::Tls(Box::new(tls)));
        self.session.on_tls_established();
        Ok(())
    }

    async fn connect_backend(&mut self) -> Result<(), SessionError> {
        let target = self.shared.settings.backend.clone();
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target).await?.collect();
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        let stream = match tokio::time::timeout(BACKEND_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(SessionError::backend_down(format!(
                    "cannot connect to backend: {e}"
                )))
            }
            Err(_) => {
                return Err(SessionError::backend_down(
                    "backend connect timed out".into(),
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        self.backend_peer = stream.peer_addr().ok();
        self.backend_local = stream.local_addr().ok();
        info!(backend = %target, "backend connected");
        let mut backend = BackendCtl {
            stream,
            parser: ReplyParser::new(),
        };
        loop {
            let r = backend
                .reply_within(BACKEND_REPLY_TIMEOUT)
                .await
                .map_err(|e| SessionError::backend_down(e.to_string()))?;
            let done = !r.is_preliminary();
            let ok = r.code == 220;
            self.backend = Some(backend);
            if done && !ok {
                self.relay(r).await?;
                return Err(SessionError::backend_silent("backend refused the session"));
            }
            self.relay(r).await?;
            if done {
                return Ok(());
            }
            backend = self
                .backend
                .take()
                .ok_or_else(|| SessionError::internal("backend vanished"))?;
        }
    }

    fn backend(&mut self) -> Result<&mut BackendCtl, SessionError> {
        self.backend
            .as_mut()
            .ok_or_else(|| SessionError::internal("no backend"))
    }

    /// Sends a command and relays replies up to the final one. Returns the final reply.
    async fn forward(&mut self, cmd: &Command) -> Result<Reply, SessionError> {
        self.backend()?.send(cmd).await?;
        loop {
            let r = self.backend()?.reply_within(BACKEND_REPLY_TIMEOUT).await?;
            let done = !r.is_preliminary();
            if done {
                self.session.on_reply(cmd, &r);
            }
            self.relay(r.clone()).await?;
            if done {
                return Ok(r);
            }
        }
    }

    /// Carries out one action. Returns true when the session is over.
    async fn execute(&mut self, action: Action) -> Result<bool, SessionError> {
        match action {
            Action::Reply(r) => self
                .client
                .send(&r)
                .await
                .map_err(SessionError::client_io)?,
            Action::StartTls => {
                self.reply(234, "AUTH TLS successful; start the TLS handshake.")
                    .await?;
                if self.client.has_buffered() {
                    // STARTTLS command injection (CVE-2011-1575 class): never run plaintext
                    // that was pipelined behind AUTH inside the TLS session.
                    return Err(SessionError::client_silent(
                        "plaintext pipelined after AUTH; closing".into(),
                    ));
                }
                self.start_tls().await?;
            }
            Action::ClearControl => self.clear_control().await?,
            Action::Forward(cmd) => {
                self.forward(&cmd).await?;
            }
            Action::Feat(cmd) => {
                self.backend()?.send(&cmd).await?;
                let r = loop {
                    let r = self.backend()?.reply_within(BACKEND_REPLY_TIMEOUT).await?;
                    if !r.is_preliminary() {
                        break r;
                    }
                };
                let mut feat = rewrite_feat(Some(&r));
                self.scrub(&mut feat);
                self.client
                    .send(&feat)
                    .await
                    .map_err(SessionError::client_io)?;
            }
            Action::Passive { extended } => self.passive(extended).await?,
            Action::Active(target) => self.active(target).await?,
            Action::RefuseTransfer(r) => {
                self.setup = None;
                self.client
                    .send(&r)
                    .await
                    .map_err(SessionError::client_io)?;
            }
            Action::Transfer {
                cmd,
                upload,
                protect,
            } => self.transfer(cmd, upload, protect).await?,
            Action::Quit(cmd) => {
                let r = match self.backend()?.send(&cmd).await {
                    Ok(()) => self
                        .backend()?
                        .reply_within(Duration::from_secs(10))
                        .await
                        .ok(),
                    Err(_) => None,
                };
                let r = r.unwrap_or_else(|| Reply::new(221, "Goodbye."));
                self.relay(r).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn clear_control(&mut self) -> Result<(), SessionError> {
        if self.client.has_buffered() {
            // Nothing sent under TLS after CCC may be read as plaintext, and vice versa.
            return Err(SessionError::client_silent(
                "commands pipelined after CCC; closing".into(),
            ));
        }
        self.reply(
            200,
            "CCC accepted; control connection continues in plaintext.",
        )
        .await?;
        let Some(MaybeTls::Tls(tls)) = self.client.stream.take() else {
            return Err(SessionError::internal("CCC without TLS"));
        };
        let (tcp, mut conn) = tls.into_inner();
        let mut tcp = tcp.inner;
        conn.send_close_notify();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).map_err(SessionError::client_io)?;
        }
        tcp.write_all(&out).await.map_err(SessionError::client_io)?;
        // curl's "active" CCC mode answers with its own close_notify, "passive" mode
        // does not (CURLOPT_FTP_SSL_CCC). TLS records (TLS 1.3 sends the alert as an
        // encrypted application_data record) are fed to rustls and dropped until
        // plaintext arrives; an FTP command never starts with a record type byte.
        loop {
            let mut head = [0u8; 1];
            match tokio::time::timeout(CCC_DRAIN_TIMEOUT, tcp.peek(&mut head)).await {
                Ok(Ok(1)) if (0x14..=0x17).contains(&head[0]) => {
                    let mut rec = [0u8; 5];
                    tcp.read_exact(&mut rec)
                        .await
                        .map_err(SessionError::client_io)?;
                    let len = usize::from(u16::from_be_bytes([rec[3], rec[4]]));
                    if len > 18 * 1024 {
                        return Err(SessionError::client_silent(
                            "oversized TLS record after CCC".into(),
                        ));
                    }
                    let mut record = rec.to_vec();
                    record.resize(5 + len, 0);
                    tcp.read_exact(&mut record[5..])
                        .await
                        .map_err(SessionError::client_io)?;
                    let _ = conn.read_tls(&mut &record[..]);
                    match conn.process_new_packets() {
                        Ok(state) if state.peer_has_closed() => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                _ => break,
            }
        }
        self.client.stream = Some(MaybeTls::Plain(tcp));
        Ok(())
    }
}
