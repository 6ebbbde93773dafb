//! Data connections: where they come from ([`broker`]: passive port pool,
//! peer-checked accepts, backend connects from the control source address)
//! and how their bytes move ([`relay`]: TLS on the client leg, close_notify
//! and half-close semantics mapped onto the plaintext backend leg).

pub mod broker;
pub mod relay;

use std::time::Duration;

/// How long the client has to open its data connection after the transfer starts.
pub const DATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a data-connection TLS handshake may take.
pub const DATA_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A transfer that moves no byte for this long is failed.
pub const DATA_STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to keep reading for the client's close_notify after a download.
pub const CLOSE_NOTIFY_GRACE: Duration = Duration::from_secs(2);

/// Why a data transfer failed; each maps to one client reply in the session driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The client never opened (or we could not open) the client data connection.
    #[error("client data connection not established")]
    ClientConnect,
    /// Could not connect to or accept from the backend data port.
    #[error("backend data connection not established")]
    BackendConnect,
    /// The client's data TLS handshake failed.
    #[error("data connection TLS handshake failed")]
    Handshake,
    /// Session reuse is required and the data connection did not resume the control session.
    #[error("TLS session of the data connection did not resume the control connection's session")]
    NotResumed,
    /// The data connection was set up under a different PROT level than the transfer needs.
    #[error("PROT level changed after the data connection was opened")]
    ProtMismatch,
    /// The client leg failed mid-transfer.
    #[error("client data connection failed: {0}")]
    Client(String),
    /// The upload ended with TCP FIN but no TLS close_notify (possible truncation).
    #[error("upload ended without TLS close_notify")]
    Truncated,
    /// The backend leg failed mid-transfer.
    #[error("backend data connection failed: {0}")]
    Backend(String),
    /// No byte moved for [`DATA_STALL_TIMEOUT`].
    #[error("data transfer stalled")]
    Stalled,
    /// ABOR, session end or shutdown.
    #[error("aborted")]
    Aborted,
}
