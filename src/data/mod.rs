//! Data connections: where they come from ([`ports`]: the passive port pool;
//! [`connect`]: peer-checked accepts, connects from the control source
//! address, the data TLS handshake), what one transfer is ([`transfer`]: a
//! value that owns both legs, runs the relay and reports its outcome), and
//! how its bytes move ([`relay`]: close_notify and half-close semantics
//! mapped onto the plaintext backend leg; [`sealed`]: the TLS client leg on
//! ftpsgate's own record layer, [`record`] and [`rekey`], once rustls has
//! made the handshake).

pub mod connect;
pub mod ports;
mod pump;
pub mod rate;
pub mod record;
pub mod rekey;
pub mod relay;
pub mod sealed;
pub mod transfer;

use std::io;
use std::time::Duration;

use crate::session::Refusal;

/// How long a data-connection TLS handshake may take.
pub const DATA_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an outbound data connect (to the client or the backend) may take.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep reading for the client's close_notify after a download.
pub const CLOSE_NOTIFY_GRACE: Duration = Duration::from_secs(2);

/// Why a data transfer failed; [`crate::error::disposition`] gives each its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The client never opened (or we could not open) the client data connection.
    #[error("client data connection not established")]
    ClientConnect,
    /// Could not connect to or accept from the backend data port.
    #[error("backend data connection not established")]
    BackendConnect,
    /// No client-facing passive port was free.
    #[error("no passive port available")]
    NoPassivePort,
    /// The backend's 227/229 named no usable port.
    #[error("backend passive reply unusable")]
    BackendPassiveReply,
    /// The client's data TLS handshake failed.
    #[error("data connection TLS handshake failed")]
    Handshake,
    /// The edge policy refused the data connection (session reuse, client certificate).
    #[error("refused by policy: {}", .0.reason())]
    Policy(Refusal),
    /// The data connection was set up under a different PROT level than the transfer needs.
    #[error("PROT level changed after the data connection was opened")]
    ProtMismatch,
    /// The client leg failed mid-transfer.
    #[error("client data connection failed: {0}")]
    Client(io::ErrorKind),
    /// The client leg's TLS records broke a rule ftpsgate's record layer enforces.
    #[error("client data connection TLS: {0}")]
    ClientTls(record::RecordError),
    /// The upload ended with TCP FIN but no TLS close_notify (possible truncation).
    #[error("upload ended without TLS close_notify")]
    Truncated,
    /// The backend leg failed mid-transfer, or the backend did not confirm it.
    #[error("backend data connection failed: {0}")]
    Backend(io::ErrorKind),
    /// An upload went past `max_upload` (552).
    #[error("upload larger than the maximum of {0} bytes")]
    TooLarge(u64),
    /// No byte moved for the stall timeout.
    #[error("data transfer stalled")]
    Stalled,
    /// ABOR, or the session ended.
    #[error("aborted")]
    Aborted,
    /// The shutdown grace period ended while the transfer ran.
    #[error("cut at shutdown")]
    Shutdown,
}

impl DataError {
    /// A client-leg I/O failure.
    pub fn client(e: io::Error) -> DataError {
        DataError::Client(e.kind())
    }

    /// A backend-leg I/O failure.
    pub fn backend(e: io::Error) -> DataError {
        DataError::Backend(e.kind())
    }
}
