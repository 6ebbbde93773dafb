//! What the two pumps share (the plaintext one in [`super::relay`], the TLS
//! one in [`super::sealed`]): a transfer's [`Limits`], the byte counters the
//! stall watchdog and the transfer record read ([`Progress`]), counted
//! writes, and the end of a download's backend leg.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::rate::Rate;
use super::DataError;
use crate::config::UploadEof;

/// Relay buffer size: large reads keep syscalls and TLS records per byte low.
pub const BUF_SIZE: usize = 256 * 1024;
/// The backend's verdict on a download (its final reply was 2xx), when awaited.
pub(super) type Verdict = Option<oneshot::Receiver<bool>>;

/// What bounds one transfer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// No byte moved for this long fails the transfer.
    pub stall: Duration,
    /// Bandwidth caps that apply (session, total).
    pub rates: Vec<Arc<Rate>>,
    /// An upload past this many bytes is aborted.
    pub max_upload: Option<u64>,
    /// Upload ending without close_notify: strict or lenient.
    pub eof: UploadEof,
}

/// The end of a download's backend leg: our FIN, then the backend's verdict.
pub(super) async fn backend_done(
    backend: &mut TcpStream,
    finish: Verdict,
) -> Result<(), DataError> {
    // Our FIN first: ProFTPD lingers (TimeoutLinger, 10 s) until the reader
    // closes before it sends its 226.
    let _ = backend.shutdown().await;
    // A backend that dies closes its data socket with a plain FIN, which looks like
    // the end of the file: close_notify waits for the backend's own verdict.
    if let Some(finish) = finish {
        if finish.await != Ok(true) {
            return Err(DataError::Backend(std::io::ErrorKind::ConnectionAborted));
        }
    }
    Ok(())
}

/// What the stall watchdog looks at (bytes taken by the receiving peer, on
/// the wire) and what the transfer record reports (payload bytes).
#[derive(Debug, Default)]
pub(super) struct Progress {
    wire: AtomicU64,
    payload: AtomicU64,
}

impl Progress {
    /// `n` more bytes accepted by a receiving socket.
    pub(super) fn add_wire(&self, n: usize) {
        self.wire.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` more payload bytes delivered.
    pub(super) fn add_payload(&self, n: usize) {
        self.payload.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Payload bytes delivered so far.
    pub(super) fn payload(&self) -> u64 {
        self.payload.load(Ordering::Relaxed)
    }
}

/// Writes all of `data`, counting every byte as it is accepted (as payload
/// too when `plain`).
pub(super) async fn write_counted<W: AsyncWrite + Unpin>(
    out: &mut W,
    mut data: &[u8],
    moved: &Progress,
    plain: bool,
) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = out.write(data).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        moved.add_wire(n);
        if plain {
            moved.add_payload(n);
        }
        data = &data[n..];
    }
    Ok(())
}

/// Returns once no byte moved for `stall`.
pub(super) async fn watchdog(moved: &Progress, stall: Duration) {
    let tick = (stall / 4).max(Duration::from_millis(100));
    let mut last = u64::MAX;
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        let now = moved.wire.load(Ordering::Relaxed);
        if now != last {
            quiet = Duration::ZERO;
            last = now;
            continue;
        }
        quiet += tick;
        if quiet >= stall {
            return;
        }
    }
}
