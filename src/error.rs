//! Errors that know which side caused them (after pingora's `ErrorSource`)
//! and the one place every error becomes an FTP reply (STYLE.md 2.6, shaped
//! like libunftp's `handle_control_channel_error` and rustls'
//! `AlertDescription` mapping): [`disposition`] says what the client is
//! told and whether the session goes on.

use std::io;

use crate::data::DataError;
use crate::ftp::command::CommandError;
use crate::ftp::reply::{Reply, ReplyError};

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The FTPS client.
    Client,
    /// The plaintext backend server.
    Backend,
    /// ftpsgate itself (timeouts, shutdown, resources).
    Internal,
}

/// An error that ends a control session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading from or writing to the client's control connection failed.
    #[error("client control connection: {0}")]
    ClientIo(#[source] io::Error),
    /// The client did not take a reply within the write deadline (it stopped reading).
    #[error("client stopped reading its replies")]
    ClientStalled,
    /// The control TLS handshake failed; the state is unknown, nothing is said.
    #[error("control TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The control TLS handshake did not finish in time.
    #[error("control TLS handshake timed out")]
    HandshakeTimeout,
    /// Bytes followed AUTH or CCC in the same read (CVE-2011-1575 class).
    #[error("commands pipelined after {0}; closing")]
    Pipelined(&'static str),
    /// A TLS record after CCC was larger than TLS allows or did not complete in time.
    #[error("oversized or incomplete TLS record after CCC")]
    CccRecord,
    /// A command line without terminator beyond the hard cap.
    #[error("command line overflow")]
    LineOverflow,
    /// The client queued more commands during a transfer than are kept.
    #[error("too many commands queued during a transfer")]
    TooManyQueued,
    /// Repeated failed logins got the client's address banned.
    #[error("address banned after repeated login failures")]
    Banned,
    /// The client closed its control connection while a transfer ran.
    #[error("client closed the control connection during a transfer")]
    ClientLeftTransfer,
    /// The backend could not be reached at session start.
    #[error("cannot connect to the backend: {0}")]
    BackendDown(#[source] io::Error),
    /// Reading from or writing to the backend's control connection failed.
    #[error("backend control connection: {0}")]
    BackendIo(#[source] io::Error),
    /// The backend closed its control connection.
    #[error("backend closed the control connection")]
    BackendClosed,
    /// The backend broke the reply grammar or the size caps.
    #[error("bad backend reply: {0}")]
    BadReply(#[source] ReplyError),
    /// The backend did not answer in time.
    #[error("backend reply timed out")]
    BackendTimeout,
    /// A backend reply nobody asked for (0: an incomplete one).
    #[error("unsolicited backend reply {0}")]
    Unsolicited(u16),
    /// The backend ended the session with this reply (relayed as the last word).
    #[error("backend closed the session with {}", .0.code)]
    BackendGoodbye(Reply),
    /// The backend refused the session in its greeting (already relayed).
    #[error("backend refused the session")]
    BackendRefused,
    /// The data moved but the backend never sent the transfer's final reply.
    #[error("no final reply from the backend after the transfer")]
    NoFinalReply,
    /// The control connection was idle too long.
    #[error("idle timeout")]
    Idle,
    /// The proxy is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// ftpsgate's own failure (a broken invariant or a local resource).
    #[error("internal: {0}")]
    Internal(&'static str),
    /// ftpsgate's own I/O failure (a local socket).
    #[error("internal: {0}")]
    InternalIo(#[source] io::Error),
}

impl SessionError {
    /// Who caused it.
    pub fn side(&self) -> Side {
        use SessionError::*;
        match self {
            ClientIo(_) | ClientStalled | Handshake(_) | HandshakeTimeout | Pipelined(_)
            | CccRecord | LineOverflow | TooManyQueued | ClientLeftTransfer | Banned => {
                Side::Client
            }
            BackendDown(_) | BackendIo(_) | BackendClosed | BadReply(_) | BackendTimeout
            | Unsolicited(_) | BackendGoodbye(_) | BackendRefused | NoFinalReply => Side::Backend,
            Idle | Shutdown | Internal(_) | InternalIo(_) => Side::Internal,
        }
    }

    /// An everyday ending, not worth a warning: idle timeout, shutdown, a
    /// client that went away or never finished its handshake.
    pub fn is_routine(&self) -> bool {
        use SessionError::*;
        matches!(
            self,
            ClientIo(_) | Handshake(_) | HandshakeTimeout | ClientLeftTransfer | Idle | Shutdown
        )
    }

    /// The reply the client gets before the connection closes, if any.
    pub fn reply(&self) -> Option<Reply> {
        disposition(&Failure::Session(self)).reply
    }
}

/// Anything that goes wrong while serving one client command.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The session cannot go on.
    Session(&'a SessionError),
    /// The line is not a command.
    Command(&'a CommandError),
    /// The line was longer than the cap and was discarded.
    LineTooLong,
    /// A transfer failed (the control connection is fine).
    Transfer(&'a DataError),
}

/// What the client is told, and whether the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposition {
    /// The reply, if anything can be said (nothing after a failed handshake).
    pub reply: Option<Reply>,
    /// The control connection closes after the reply.
    pub close: bool,
}

/// The one map from an error to the client's reply (PROTOCOL.md §15 codes).
pub fn disposition(failure: &Failure<'_>) -> Disposition {
    let (reply, close) = match failure {
        Failure::Session(e) => (session_reply(e), true),
        Failure::Command(CommandError::BadVerb) => (
            Some(Reply::new(500, CommandError::BadVerb.to_string())),
            false,
        ),
        Failure::Command(CommandError::ControlChar) => (
            Some(Reply::new(501, CommandError::ControlChar.to_string())),
            false,
        ),
        Failure::LineTooLong => (Some(Reply::new(500, "Command line too long.")), false),
        Failure::Transfer(e) => (Some(transfer_reply(e)), false),
    };
    Disposition { reply, close }
}

fn unavailable() -> Option<Reply> {
    Some(Reply::new(
        421,
        "Service not available, closing control connection.",
    ))
}

fn session_reply(e: &SessionError) -> Option<Reply> {
    use SessionError::*;
    match e {
        ClientIo(_) | ClientStalled | Handshake(_) | HandshakeTimeout | Pipelined(_)
        | CccRecord | ClientLeftTransfer | BackendRefused => None,
        LineOverflow => Some(Reply::new(500, "Command line too long; closing.")),
        Banned => Some(Reply::new(
            421,
            "Too many failed logins from your address; try again later.",
        )),
        TooManyQueued => Some(Reply::new(421, "Too many commands during a transfer.")),
        BackendDown(_) => Some(Reply::new(
            421,
            "Service not available: the FTP server cannot be reached.",
        )),
        BackendGoodbye(r) => Some(r.clone()),
        Idle => Some(Reply::new(421, "Idle timeout; closing control connection.")),
        Shutdown => Some(Reply::new(
            421,
            "Service shutting down; closing control connection.",
        )),
        BackendIo(_) | BackendClosed | BadReply(_) | BackendTimeout | Unsolicited(_)
        | NoFinalReply | Internal(_) | InternalIo(_) => unavailable(),
    }
}

/// The client reply for a failed transfer (PROTOCOL.md §15).
fn transfer_reply(e: &DataError) -> Reply {
    match e {
        DataError::ClientConnect | DataError::BackendConnect => {
            Reply::new(425, "Can't open data connection.")
        }
        DataError::NoPassivePort => Reply::new(
            425,
            "Can't open data connection: no passive port available.",
        ),
        DataError::BackendPassiveReply => Reply::new(
            425,
            "Can't open data connection (backend passive reply unusable).",
        ),
        DataError::Handshake => Reply::new(522, "Data connection TLS handshake failed."),
        DataError::Policy(refusal) => refusal.reply(),
        DataError::ProtMismatch => Reply::new(
            425,
            "PROT level changed after the data connection was opened; retry.",
        ),
        DataError::Truncated => Reply::new(
            426,
            "Upload ended without TLS close_notify; transfer aborted.",
        ),
        DataError::ClientTls(e) => {
            Reply::new(426, format!("Data connection TLS: {e}; transfer aborted."))
        }
        DataError::Stalled => Reply::new(426, "Data connection stalled; transfer aborted."),
        DataError::Shutdown => Reply::new(426, "Service shutting down; transfer aborted."),
        DataError::TooLarge(max) => Reply::new(
            552,
            format!("Upload exceeds the maximum size of {max} bytes; transfer aborted."),
        ),
        DataError::Client(_) | DataError::Backend(_) | DataError::Aborted => {
            Reply::new(426, "Connection closed; transfer aborted.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_error_ends_the_session_and_knows_its_side() {
        let d = disposition(&Failure::Session(&SessionError::BackendClosed));
        assert_eq!(d.reply.unwrap().code, 421);
        assert!(d.close);
        assert!(SessionError::HandshakeTimeout.reply().is_none());
        assert_eq!(SessionError::HandshakeTimeout.side(), Side::Client);
        assert_eq!(
            SessionError::Idle.reply().unwrap().text(),
            "Idle timeout; closing control connection."
        );
        let goodbye = SessionError::BackendGoodbye(Reply::new(421, "bye"));
        assert_eq!(goodbye.reply().unwrap().text(), "bye");
        assert_eq!(goodbye.side(), Side::Backend);
    }

    #[test]
    fn command_and_transfer_errors_keep_the_session() {
        for (f, code) in [
            (Failure::Command(&CommandError::BadVerb), 500),
            (Failure::Command(&CommandError::ControlChar), 501),
            (Failure::LineTooLong, 500),
            (
                Failure::Transfer(&DataError::Policy(
                    crate::session::Refusal::SessionNotResumed,
                )),
                522,
            ),
            (Failure::Transfer(&DataError::ClientConnect), 425),
            (Failure::Transfer(&DataError::Truncated), 426),
        ] {
            let d = disposition(&f);
            assert_eq!(d.reply.unwrap().code, code, "{f:?}");
            assert!(!d.close);
        }
    }
}
