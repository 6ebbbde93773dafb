//! The byte pump for one transfer (PROTOCOL.md §5.2, §7.3, §14.1-2).
//!
//! Downloads: backend EOF → write everything to the client, wait for the
//! backend's 2xx final reply, send close_notify, half-close, and only then
//! report success (the session
//! driver holds the backend's 226 until this returns). The client's own
//! close_notify is drained in the background for a short grace period.
//!
//! Uploads: the client's close_notify → answer with ours, FIN the backend
//! leg, report success. A TCP FIN without close_notify is a possible
//! truncation: in strict mode the backend leg is *not* half-closed; it is
//! handed back so the driver can ABOR the backend first and then reset it.
//!
//! Plaintext (PROT C) legs are pumped here; TLS legs by [`super::sealed`],
//! with the same end-of-transfer rules. One buffer per transfer, no
//! per-chunk allocation, no per-chunk timer: a stall watchdog checks a byte
//! counter instead, and TCP_NOTSENT_LOWAT makes that counter move at the
//! receiving peer's pace.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use super::pump::Limits;
use super::pump::{backend_done, watchdog, write_counted, Progress, Verdict, BUF_SIZE};
use super::rate;
use super::sealed::ClientStream;
use super::{DataError, CLOSE_NOTIFY_GRACE};

/// Unsent bytes a data socket may queue in the kernel before writes wait
/// (TCP_NOTSENT_LOWAT): bytes in flight are not limited, so throughput is
/// not, but a write completes at the receiver's pace. Linux wakes a writer
/// once unsent bytes fall below half of this, so a reader at 800 B/s shows
/// progress every 40 s or so, far inside the stall timeout.
const NOTSENT_LOWAT: u32 = 64 * 1024;

/// What the relay did.
#[derive(Debug)]
pub struct Outcome {
    /// Payload bytes moved.
    pub bytes: u64,
    /// Success, or why not.
    pub result: Result<(), DataError>,
    /// The backend leg, returned unclosed when an upload failed so the driver
    /// can abort the backend transfer before resetting it.
    pub backend: Option<TcpStream>,
    /// The upload ended without close_notify but was accepted (lenient mode).
    pub lenient_eof: bool,
}

/// Moves one transfer's bytes; `upload` is client → backend.
pub async fn relay(
    mut client: ClientStream,
    mut backend: TcpStream,
    upload: bool,
    limits: &Limits,
    cancel: CancellationToken,
    finish: Verdict,
) -> Outcome {
    let moved = Progress::default();
    // Writes complete as the peer takes bytes, not when megabytes of send
    // buffer free up at once: a slow but live reader shows progress at its own
    // pace, a peer that takes nothing shows none (and is a stall).
    for tcp in [client.tcp(), &backend] {
        let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT);
    }
    if upload {
        // Any drop before the explicit clean close below resets the connection, so a
        // failed upload can never look like a complete file to the backend.
        let _ = backend.set_zero_linger();
    }
    let pump = async {
        match (&mut client, upload) {
            (ClientStream::Tls(c), true) => c.upload(&mut backend, &moved, limits).await,
            (ClientStream::Tls(c), false) => c.download(&mut backend, &moved, limits, finish).await,
            (ClientStream::Plain(c), true) => pump_upload(c, &mut backend, &moved, limits).await,
            (ClientStream::Plain(c), false) => {
                pump_download(&mut backend, c, &moved, limits, finish).await
            }
        }
    };
    let result = tokio::select! {
        r = pump => r,
        _ = cancel.cancelled() => Err(DataError::Aborted),
        _ = watchdog(&moved, limits.stall) => Err(DataError::Stalled),
    };
    finish_legs(client.into_tcp(), backend, upload, moved.payload(), result).await
}

/// Closes both legs according to the result: a clean end closes cleanly
/// (the backend's upload leg with FIN, the client's download leg drained
/// off the critical path); a failure drops the client leg without
/// close_notify and hands the backend leg back for the abort.
async fn finish_legs(
    client: TcpStream,
    mut backend: TcpStream,
    upload: bool,
    bytes: u64,
    result: Result<bool, DataError>,
) -> Outcome {
    match result {
        Ok(lenient_eof) => {
            if upload {
                let _ = socket2::SockRef::from(&backend).set_linger(None);
                let _ = backend.shutdown().await;
            } else {
                tokio::spawn(drain(client));
            }
            Outcome {
                bytes,
                result: Ok(()),
                backend: None,
                lenient_eof,
            }
        }
        Err(e) => {
            drop(client);
            Outcome {
                bytes,
                result: Err(e),
                backend: Some(backend),
                lenient_eof: false,
            }
        }
    }
}

/// A plaintext (PROT C) download.
async fn pump_download(
    backend: &mut TcpStream,
    client: &mut TcpStream,
    moved: &Progress,
    limits: &Limits,
    finish: Verdict,
) -> Result<bool, DataError> {
    let mut buf = vec![0u8; rate::chunk(&limits.rates, BUF_SIZE)];
    loop {
        let n = backend.read(&mut buf).await.map_err(DataError::backend)?;
        if n == 0 {
            break;
        }
        rate::pace(&limits.rates, n).await;
        write_counted(client, &buf[..n], moved, true)
            .await
            .map_err(DataError::client)?;
    }
    backend_done(backend, finish).await?;
    client.shutdown().await.map_err(DataError::client)?;
    Ok(false)
}

/// A plaintext (PROT C) upload: the client's FIN ends it.
async fn pump_upload(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    moved: &Progress,
    limits: &Limits,
) -> Result<bool, DataError> {
    let mut buf = vec![0u8; rate::chunk(&limits.rates, BUF_SIZE)];
    loop {
        let n = client.read(&mut buf).await.map_err(DataError::client)?;
        if n == 0 {
            return Ok(false);
        }
        let total = moved.payload() + n as u64;
        if let Some(max) = limits.max_upload.filter(|&max| total > max) {
            return Err(DataError::TooLarge(max));
        }
        rate::pace(&limits.rates, n).await;
        write_counted(backend, &buf[..n], moved, true)
            .await
            .map_err(DataError::backend)?
    }
}

/// Reads (and discards) whatever the client still sends after a download,
/// typically its close_notify and FIN, for a bounded time, so the socket is
/// not closed with unread data (which would make the kernel send RST).
async fn drain(mut client: TcpStream) {
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(CLOSE_NOTIFY_GRACE, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
