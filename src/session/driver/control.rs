//! The two control connections of a session as the driver sees them: the
//! client's ([`ClientCtl`]: plaintext or TLS, framed into command lines) and
//! the backend's ([`BackendCtl`]: plaintext, parsed into replies). Every read
//! is cancel-safe so the control loop can `select!` over them.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::BackendAddr;
use crate::error::SessionError;
use crate::ftp::command::Command;
use crate::ftp::line::{LineDecoder, LineEvent};
use crate::ftp::reply::{Reply, ReplyParser};
use crate::proxy_protocol::Outbound;
use crate::stream::MaybeTls;

/// Connecting to the backend.
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for a backend reply to an ordinary command.
pub const BACKEND_REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The client side of the control connection: stream plus line framing.
pub struct ClientCtl {
    /// The stream; `None` only while AUTH TLS or CCC swaps it.
    pub stream: Option<MaybeTls>,
    /// A reply the client does not take within this long ends the session.
    write_timeout: Duration,
    buf: Vec<u8>,
    start: usize,
    decoder: LineDecoder,
}

/// One client input event.
#[derive(Debug)]
pub enum ClientEvent {
    /// A complete command line.
    Line(Vec<u8>),
    /// A line over the cap, discarded through its terminator.
    TooLong,
    /// No terminator within the hard cap.
    Overflow,
    /// The client closed the connection.
    Eof,
}

impl ClientCtl {
    /// A plaintext control connection whose replies must be taken within
    /// `write_timeout`, with command lines up to `max_line` bytes.
    pub fn new(tcp: TcpStream, write_timeout: Duration, max_line: usize) -> ClientCtl {
        ClientCtl {
            stream: Some(MaybeTls::Plain(tcp)),
            write_timeout,
            buf: Vec::new(),
            start: 0,
            decoder: LineDecoder::with_max_line(max_line),
        }
    }

    fn stream(&mut self) -> io::Result<&mut MaybeTls> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("control stream unavailable"))
    }

    /// Bytes received but not yet framed into a command (pipelined input).
    pub fn has_buffered(&self) -> bool {
        self.start < self.buf.len() || self.decoder.has_partial()
    }

    /// Next framed event; cancel-safe (no bytes are lost if dropped mid-read).
    pub async fn next(&mut self) -> io::Result<ClientEvent> {
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

    /// Writes one reply and flushes it, within the write deadline: a client
    /// that stops reading cannot hold its session (and backend) open.
    pub async fn send(&mut self, reply: &Reply) -> Result<(), SessionError> {
        debug!(code = reply.code, "reply");
        let limit = self.write_timeout;
        let s = self.stream().map_err(SessionError::ClientIo)?;
        let write = async {
            s.write_all(&reply.encode()).await?;
            s.flush().await
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| SessionError::ClientStalled)?
            .map_err(SessionError::ClientIo)
    }

    /// Sends close_notify (TLS) and FIN, bounded.
    pub async fn close(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.shutdown()).await;
        }
    }
}

/// The backend side of the control connection, connected.
pub struct BackendCtl {
    /// The socket (ABOR writes Telnet urgent data on it directly).
    pub stream: TcpStream,
    parser: ReplyParser,
    /// The backend's address.
    pub peer: SocketAddr,
    /// The proxy's address toward the backend (also the source of data connections).
    pub local: SocketAddr,
}

impl BackendCtl {
    /// Connects to the backend (every address its name resolves to, in
    /// order), bounded by [`BACKEND_CONNECT_TIMEOUT`], and sends `proxy`'s
    /// PROXY header first when configured. Returns the time taken.
    pub async fn connect(
        target: &BackendAddr,
        max_reply: usize,
        proxy: &Outbound,
    ) -> Result<(BackendCtl, Duration), SessionError> {
        let started = Instant::now();
        let stream = crate::backends::connect(target, BACKEND_CONNECT_TIMEOUT)
            .await
            .map_err(SessionError::BackendDown)?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_err(SessionError::BackendDown)?;
        let local = stream.local_addr().map_err(SessionError::BackendDown)?;
        let mut backend = BackendCtl {
            stream,
            parser: ReplyParser::with_max_bytes(max_reply),
            peer,
            local,
        };
        if let Some(header) = proxy.header(peer).map_err(SessionError::InternalIo)? {
            backend.write(&header).await?;
        }
        Ok((backend, started.elapsed()))
    }

    /// Sends one command when nothing is outstanding. Anything the backend
    /// sent before it is a surplus reply: it would otherwise be taken as this
    /// command's answer (PROTOCOL.md §1.4), so the session ends instead.
    pub async fn send(&mut self, cmd: &Command) -> Result<(), SessionError> {
        self.check_surplus()?;
        self.send_unchecked(cmd).await
    }

    /// Sends one command while a reply may be outstanding (ABOR).
    pub async fn send_unchecked(&mut self, cmd: &Command) -> Result<(), SessionError> {
        debug!(%cmd, "to backend");
        self.write(&cmd.encode()).await
    }

    /// Fails if the backend has sent anything that no command asked for.
    fn check_surplus(&mut self) -> Result<(), SessionError> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err(SessionError::BackendClosed),
                Ok(n) => self.parser.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(SessionError::BackendIo(e)),
            }
        }
        match self.parser.next_reply().map_err(SessionError::BadReply)? {
            Some(r) if r.code == 421 => Err(SessionError::BackendGoodbye(r)),
            Some(r) => Err(SessionError::Unsolicited(r.code)),
            None if !self.parser.is_idle() => Err(SessionError::Unsolicited(0)),
            None => Ok(()),
        }
    }

    /// Writes raw bytes (Telnet sequences), within [`BACKEND_REPLY_TIMEOUT`].
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        tokio::time::timeout(BACKEND_REPLY_TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| SessionError::BackendTimeout)?
            .map_err(SessionError::BackendIo)
    }

    /// Next reply; cancel-safe.
    pub async fn next(&mut self) -> Result<Reply, SessionError> {
        loop {
            if let Some(r) = self.parser.next_reply().map_err(SessionError::BadReply)? {
                return Ok(r);
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(SessionError::BackendIo)?;
            if n == 0 {
                return Err(SessionError::BackendClosed);
            }
            self.parser.push(&chunk[..n]);
        }
    }

    /// Next reply within `limit`.
    pub async fn reply_within(&mut self, limit: Duration) -> Result<Reply, SessionError> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| SessionError::BackendTimeout)?
    }

    /// Next reply within [`BACKEND_REPLY_TIMEOUT`].
    pub async fn reply(&mut self) -> Result<Reply, SessionError> {
        self.reply_within(BACKEND_REPLY_TIMEOUT).await
    }
}
