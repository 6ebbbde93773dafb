//! Why the edge refuses a request ([`Refusal`]), with the one reply and the
//! one reason label each refusal has (PROTOCOL.md §15). Policy decides
//! ([`super::policy`]); this only names and words the outcome.

use std::net::IpAddr;

use crate::ftp::reply::Reply;

/// Why the edge refused a request; each has exactly one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// USER/PASS/ACCT before AUTH TLS under `control_tls: required` (530).
    LoginBeforeTls,
    /// Another command that is not allowed before AUTH TLS (530).
    CommandBeforeTls,
    /// A transfer under PROT C with `data_tls: required` (522, before any 1xx).
    ClearData,
    /// CCC under `ccc: deny` or on an implicit session (534).
    CccDenied,
    /// AUTH after a completed login: a legacy backend cannot be reset (534).
    AuthAfterLogin,
    /// REIN: the backend session cannot be reinitialised (502).
    Rein,
    /// PORT/EPRT naming a host other than the client (bounce, RFC 2577 §3; 500).
    ForeignDataTarget {
        /// The address the client named.
        target: IpAddr,
        /// The control connection's peer.
        peer: IpAddr,
    },
    /// PORT/EPRT to a port below 1024 (RFC 2577 §3; 504).
    PrivilegedDataPort,
    /// The data connection's TLS session did not resume the control
    /// connection's under `require_session_reuse` (522 after the 150).
    SessionNotResumed,
    /// The data connection presented a different client certificate than
    /// the control connection (RFC 4217 §15.1.2; 522 after the 150).
    ClientCertMismatch,
    /// No client certificate under `client_cert: required` (the TLS handshake
    /// fails; only ever seen as an audit under `client_cert: audit`).
    ClientCertMissing,
}

impl Refusal {
    /// The exact reply (PROTOCOL.md §15).
    pub fn reply(&self) -> Reply {
        match self {
            Refusal::LoginBeforeTls | Refusal::CommandBeforeTls => {
                Reply::new(530, "TLS required: send AUTH TLS first, then log in.")
            }
            Refusal::ClearData => Reply::new(
                522,
                "Data connections must be encrypted: send PBSZ 0 and PROT P first.",
            ),
            Refusal::CccDenied => Reply::new(534, "CCC denied by policy."),
            Refusal::AuthAfterLogin => Reply::new(
                534,
                "AUTH after login is not allowed; reconnect and send AUTH TLS first.",
            ),
            Refusal::Rein => Reply::new(
                502,
                "REIN not implemented: reconnect to start a new session.",
            ),
            Refusal::ForeignDataTarget { target, peer } => Reply::new(
                500,
                format!("Refusing to connect to {target} (only to {peer})."),
            ),
            Refusal::PrivilegedDataPort => {
                Reply::new(504, "Refusing to connect to a port below 1024.")
            }
            Refusal::SessionNotResumed => Reply::new(
                522,
                "Data connection refused: TLS session reuse required (resume the control connection's TLS session).",
            ),
            Refusal::ClientCertMismatch => Reply::new(
                522,
                "Data connection refused: its client certificate differs from the control connection's.",
            ),
            Refusal::ClientCertMissing => {
                Reply::new(421, "A client certificate is required.")
            }
        }
    }

    /// A stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::LoginBeforeTls => "login_before_tls",
            Refusal::CommandBeforeTls => "command_before_tls",
            Refusal::ClearData => "clear_data",
            Refusal::CccDenied => "ccc_denied",
            Refusal::AuthAfterLogin => "auth_after_login",
            Refusal::Rein => "rein",
            Refusal::ForeignDataTarget { .. } => "foreign_data_target",
            Refusal::PrivilegedDataPort => "privileged_data_port",
            Refusal::SessionNotResumed => "session_not_resumed",
            Refusal::ClientCertMismatch => "client_cert_mismatch",
            Refusal::ClientCertMissing => "client_cert_missing",
        }
    }
}
