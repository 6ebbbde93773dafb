//! The relay's TLS client leg on ftpsgate's own record layer
//! ([`super::record`], issue 11). A download reads the backend straight into
//! the payload slots of whole records (one `readv`), seals them in place and
//! sends the batch with one `write`; an upload reads the client's records in
//! bulk, opens them in place and hands the plaintext runs to the backend with
//! one `writev`. No plaintext byte is copied in user space and nothing is
//! allocated per record. The close_notify rules are [`super::relay`]'s.

use std::io::{self, IoSlice, IoSliceMut};
use std::ops::Range;

use rustls::ServerConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pump::{backend_done, write_counted, Limits, Progress, Verdict, BUF_SIZE};
use super::record::{self, content, Alert, Opener, RecordError, Sealer, MAX_FRAGMENT, MAX_RECORD};
use super::rekey::Capture;
use super::{rate, DataError};
use crate::config::UploadEof;

/// Ciphertext an upload reads per `recv`, at most (plus room for one record).
const UPLOAD_READ: usize = 256 * 1024;

/// A data connection's TLS session after rustls made the handshake.
pub struct SealedLeg {
    /// The socket.
    pub tcp: TcpStream,
    sealer: Sealer,
    opener: Opener,
    /// The client's KeyUpdate asked for ours.
    update_asked: bool,
}

impl std::fmt::Debug for SealedLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedLeg").field("tcp", &self.tcp).finish()
    }
}

fn tls(e: RecordError) -> DataError {
    DataError::ClientTls(e)
}

/// The client leg of a data connection: plaintext (PROT C), or TLS on
/// ftpsgate's own record layer (PROT P).
#[derive(Debug)]
pub enum ClientStream {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<SealedLeg>),
}

impl ClientStream {
    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(t) => t,
            ClientStream::Tls(s) => &s.tcp,
        }
    }

    /// The socket, giving up any TLS state (no close_notify).
    pub fn into_tcp(self) -> TcpStream {
        match self {
            ClientStream::Plain(t) => t,
            ClientStream::Tls(s) => s.tcp,
        }
    }
}

/// Runs rustls' side of a data connection's handshake over `tcp`, handing
/// rustls the client's bytes one whole record at a time: when the handshake
/// is done (and its last flight, a session ticket included, is sent),
/// rustls holds no byte that came after the client's Finished, so
/// [`SealedLeg::take`] loses nothing.
pub async fn handshake(tcp: &mut TcpStream, conn: &mut ServerConnection) -> io::Result<()> {
    let mut out = Vec::new();
    let mut rec = vec![0u8; MAX_RECORD];
    loop {
        while conn.wants_write() {
            out.clear();
            conn.write_tls(&mut out)?;
            tcp.write_all(&out).await?;
            crate::stream::quickack(tcp);
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        tcp.read_exact(&mut rec[..record::HEADER]).await?;
        let len = usize::from(u16::from_be_bytes([rec[3], rec[4]]));
        let whole = rec
            .get_mut(..record::HEADER + len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "TLS record too large"))?;
        tcp.read_exact(&mut whole[record::HEADER..]).await?;
        crate::stream::quickack(tcp);
        let mut rest = &whole[..];
        while !rest.is_empty() {
            if conn.read_tls(&mut rest)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS record not taken",
                ));
            }
            if let Err(e) = conn.process_new_packets() {
                // The alert rustls queued goes out before the error does.
                out.clear();
                let _ = conn.write_tls(&mut out);
                let _ = tcp.write_all(&out).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

impl SealedLeg {
    /// Takes the session over from rustls once [`handshake`] is done.
    /// `capture` is the connection's KeyLog (TLS 1.3 key updates).
    pub fn take(
        tcp: TcpStream,
        conn: ServerConnection,
        capture: &Capture,
    ) -> Result<SealedLeg, RecordError> {
        let limit = match conn.negotiated_cipher_suite() {
            Some(rustls::SupportedCipherSuite::Tls13(s)) => s.common.confidentiality_limit,
            Some(rustls::SupportedCipherSuite::Tls12(s)) => s.common.confidentiality_limit,
            None => return Err(RecordError::Unsupported),
        };
        let version = conn.protocol_version();
        let secrets = conn
            .dangerous_extract_secrets()
            .map_err(|_| RecordError::Unsupported)?;
        let (sealer, opener) = record::take_over(secrets, version, limit, capture)?;
        Ok(SealedLeg {
            tcp,
            sealer,
            opener,
            update_asked: false,
        })
    }

    /// Backend → client until the backend's EOF and its 2xx, then close_notify.
    pub(super) async fn download(
        &mut self,
        backend: &mut TcpStream,
        moved: &Progress,
        limits: &Limits,
        finish: Verdict,
    ) -> Result<bool, DataError> {
        let batch = rate::chunk(&limits.rates, BUF_SIZE);
        let frag = batch.min(MAX_FRAGMENT);
        let slot = self.sealer.prefix() + frag + self.sealer.suffix();
        let mut buf = vec![0u8; slot * batch.div_ceil(frag)];
        loop {
            let n = read_slots(backend, &mut buf, slot, self.sealer.prefix(), frag)
                .await
                .map_err(DataError::backend)?;
            if n == 0 {
                break;
            }
            rate::pace(&limits.rates, n).await;
            if self.sealer.update_due(n.div_ceil(frag)) {
                self.key_update(false).await?;
            }
            let len = self.seal_batch(&mut buf, n, slot, frag)?;
            write_counted(&mut self.tcp, &buf[..len], moved, false)
                .await
                .map_err(DataError::client)?;
            moved.add_payload(n);
        }
        backend_done(backend, finish).await?;
        self.close_notify().await
    }

    /// Seals the `n` bytes read into the slots as consecutive records (all
    /// full but the last, so they are contiguous); returns their length.
    fn seal_batch(
        &mut self,
        buf: &mut [u8],
        n: usize,
        slot: usize,
        frag: usize,
    ) -> Result<usize, DataError> {
        let mut out = 0;
        for (i, start) in (0..n).step_by(frag).enumerate() {
            let len = (n - start).min(frag);
            let record = &mut buf[i * slot..];
            out += self
                .sealer
                .seal(content::APPLICATION_DATA, record, len)
                .map_err(tls)?;
        }
        Ok(out)
    }

    /// Sends a KeyUpdate and moves to our next key (TLS 1.3).
    async fn key_update(&mut self, request: bool) -> Result<(), DataError> {
        let mut rec = [0u8; 64];
        let n = self.sealer.key_update(&mut rec, request).map_err(tls)?;
        self.tcp
            .write_all(&rec[..n])
            .await
            .map_err(DataError::client)
    }

    /// Sends close_notify and FIN.
    async fn close_notify(&mut self) -> Result<bool, DataError> {
        let mut rec = [0u8; 64];
        let pre = self.sealer.prefix();
        rec[pre..pre + 2].copy_from_slice(&[1, 0]);
        let n = self.sealer.seal(content::ALERT, &mut rec, 2).map_err(tls)?;
        self.tcp
            .write_all(&rec[..n])
            .await
            .map_err(DataError::client)?;
        self.tcp.shutdown().await.map_err(DataError::client)?;
        Ok(false)
    }

    /// Client → backend until the client's close_notify (answered with
    /// ours); a FIN before it is a truncation, or tolerated when lenient.
    pub(super) async fn upload(
        &mut self,
        backend: &mut TcpStream,
        moved: &Progress,
        limits: &Limits,
    ) -> Result<bool, DataError> {
        let mut buf = vec![0u8; UPLOAD_READ + MAX_RECORD];
        let (mut start, mut end) = (0, 0);
        let mut runs = Vec::with_capacity(UPLOAD_READ / MAX_FRAGMENT + 2);
        loop {
            if buf.len() - end < MAX_RECORD {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            let n = read_some(&self.tcp, &mut buf[end..])
                .await
                .map_err(DataError::client)?;
            if n == 0 {
                if limits.eof == UploadEof::Strict {
                    return Err(DataError::Truncated);
                }
                return Ok(true);
            }
            end += n;
            runs.clear();
            let closed = self.open_records(&mut buf, &mut start, end, &mut runs)?;
            if start == end {
                (start, end) = (0, 0);
            }
            let payload: usize = runs.iter().map(|r: &Range<usize>| r.len()).sum();
            let total = moved.payload() + payload as u64;
            if let Some(max) = limits.max_upload.filter(|&max| total > max) {
                return Err(DataError::TooLarge(max));
            }
            rate::pace(&limits.rates, payload).await;
            write_runs(backend, &buf, &runs, moved)
                .await
                .map_err(DataError::backend)?;
            moved.add_payload(payload);
            if std::mem::take(&mut self.update_asked) {
                self.key_update(false).await?;
            }
            if closed {
                break;
            }
        }
        // Answer the client's close_notify with ours (curl and ftplib wait for it).
        let _ = tokio::time::timeout(super::CLOSE_NOTIFY_GRACE, self.close_notify()).await;
        Ok(false)
    }

    /// Opens every whole record in `buf[*start..end]`, noting where their
    /// payload is; true once the client's close_notify is among them.
    fn open_records(
        &mut self,
        buf: &mut [u8],
        start: &mut usize,
        end: usize,
        runs: &mut Vec<Range<usize>>,
    ) -> Result<bool, DataError> {
        while let Some(len) = self.opener.record_len(&buf[*start..end]).map_err(tls)? {
            if end - *start < len {
                break;
            }
            let at = *start;
            let (typ, r) = self.opener.open(&mut buf[at..at + len]).map_err(tls)?;
            *start += len;
            match typ {
                content::APPLICATION_DATA if !r.is_empty() => runs.push(at + r.start..at + r.end),
                content::APPLICATION_DATA => {}
                content::ALERT => match self.opener.alert(&buf[at + r.start..at + r.end]) {
                    Ok(Alert::CloseNotify) => return Ok(true),
                    Ok(Alert::Ignore) => {}
                    Err(e) => return Err(tls(e)),
                },
                content::HANDSHAKE => {
                    let message = &buf[at + r.start..at + r.end];
                    self.update_asked |= self.opener.key_update(message).map_err(tls)?;
                }
                other => return Err(tls(RecordError::Unexpected(other))),
            }
        }
        Ok(false)
    }
}

/// Record slots per download batch: [`BUF_SIZE`] of payload in full records.
const SLOTS: usize = BUF_SIZE / MAX_FRAGMENT;

/// One `readv` from `from` into the payload windows of the record slots
/// (at most [`SLOTS`]; the batch buffer never has more).
async fn read_slots(
    from: &TcpStream,
    buf: &mut [u8],
    slot: usize,
    prefix: usize,
    frag: usize,
) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let mut windows: [IoSliceMut<'_>; SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(&mut []));
        let mut used = 0;
        for (w, s) in windows.iter_mut().zip(buf.chunks_mut(slot)) {
            *w = IoSliceMut::new(&mut s[prefix..prefix + frag]);
            used += 1;
        }
        match from.try_read_vectored(&mut windows[..used]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// One `recv` from `from` into `buf`.
async fn read_some(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Plaintext runs per `writev` (the kernel takes up to IOV_MAX, 1024).
const RUNS_PER_WRITE: usize = 64;

/// Writes the plaintext runs, `writev` at a time, counting what is accepted.
async fn write_runs(
    out: &mut TcpStream,
    buf: &[u8],
    runs: &[Range<usize>],
    moved: &Progress,
) -> io::Result<()> {
    for group in runs.chunks(RUNS_PER_WRITE) {
        let mut slices: [IoSlice<'_>; RUNS_PER_WRITE] = std::array::from_fn(|_| IoSlice::new(&[]));
        for (s, r) in slices.iter_mut().zip(group) {
            *s = IoSlice::new(&buf[r.clone()]);
        }
        let mut rest = &mut slices[..group.len()];
        while !rest.is_empty() {
            let n = out.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            moved.add_wire(n);
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}
