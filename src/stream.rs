//! [`MaybeTls`]: one stream type for connections that are plaintext or TLS
//! (the control connection before and after AUTH TLS, data connections under
//! PROT C or PROT P), so the session and relay code is written once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client-side connection, plaintext or TLS with ftpsgate as the server.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<Tcp>>),
}

impl MaybeTls {
    /// The underlying TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => &s.get_ref().0.inner,
        }
    }

    /// True once TLS protects the stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Reads the TCP stream under TLS up to `size` bytes at a time and
    /// hands them to rustls from memory (rustls itself asks for 4 KiB per
    /// `recv`); for a data connection about to carry an upload.
    pub fn read_ahead(&mut self, size: usize) {
        if let MaybeTls::Tls(s) = self {
            let tcp = &mut s.get_mut().0;
            if tcp.ahead.is_none() && size > 0 {
                tcp.ahead = Some(ReadAhead::new(size));
            }
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// TCP_NODELAY for a new connection: replies and handshake flights leave at once.
pub fn low_latency(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
}

/// The TCP stream under a TLS session. While `handshaking`, every read and
/// write re-arms TCP_QUICKACK (Linux): a client that leaves Nagle on (lftp,
/// GnuTLS) sends ChangeCipherSpec and Finished as two writes and holds the
/// second until the first is ACKed, and a delayed ACK costs 40 ms per
/// handshake, per file. Off after the handshake: no per-chunk syscalls.
#[derive(Debug)]
pub struct Tcp {
    /// The socket.
    pub inner: TcpStream,
    /// Re-arm TCP_QUICKACK on every I/O call.
    pub handshaking: bool,
    /// Bulk reads under rustls, once turned on.
    ahead: Option<ReadAhead>,
}

impl Tcp {
    /// Wraps a stream for a TLS handshake.
    pub fn for_handshake(inner: TcpStream) -> Tcp {
        Tcp {
            inner,
            handshaking: true,
            ahead: None,
        }
    }

    fn quickack(&self) {
        #[cfg(target_os = "linux")]
        if self.handshaking {
            let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(ahead) = &mut this.ahead {
            return ahead.poll_read(&mut this.inner, cx, buf);
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.quickack();
        r
    }
}

/// rustls reads its peer 4 KiB at a time (and shrinks its buffer back to
/// 4 KiB after each record), so a bulk upload costs a `recv` per 4 KiB. This
/// buffer takes what the socket has, up to its size, in one `recv` and hands
/// it to rustls from memory: the extra copy is of bytes still in cache.
#[derive(Debug)]
struct ReadAhead {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadAhead {
    fn new(size: usize) -> ReadAhead {
        ReadAhead {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn poll_read(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.start == self.end {
            let mut fill = ReadBuf::new(&mut self.buf);
            match Pin::new(inner).poll_read(cx, &mut fill) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            self.start = 0;
            self.end = fill.filled().len();
        }
        let n = out.remaining().min(self.end - self.start);
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.quickack();
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.quickack();
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Small reads through the read-ahead see every byte, in order, and EOF.
    #[tokio::test]
    async fn read_ahead_hands_on_every_byte_then_eof() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (r, _) = l.accept().await.unwrap();
        let mut tcp = Tcp::for_handshake(r);
        tcp.handshaking = false;
        tcp.ahead = Some(ReadAhead::new(1000));
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let data = sent.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 333];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, sent);
    }
}
