//! Session errors that know which side caused them (after pingora's
//! `ErrorSource`) and the one place they become FTP replies (STYLE.md 2.6).

use std::fmt;
use std::io;

use crate::ftp::reply::Reply;

/// Who caused a session error.
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
#[derive(Debug)]
pub struct SessionError {
    /// Who caused it.
    pub side: Side,
    /// What happened, for the log.
    pub message: String,
    /// The last reply the client gets, if anything can still be said.
    reply: Option<Reply>,
}

fn service_unavailable() -> Reply {
    Reply::new(421, "Service not available, closing control connection.")
}

impl SessionError {
    fn new(side: Side, message: impl Into<String>, reply: Option<Reply>) -> SessionError {
        SessionError {
            side,
            message: message.into(),
            reply,
        }
    }

    /// The backend broke the protocol or vanished: 421.
    pub fn backend(message: impl Into<String>) -> SessionError {
        Self::new(Side::Backend, message, Some(service_unavailable()))
    }

    /// An I/O error on the backend control connection: 421.
    pub fn backend_io(e: io::Error) -> SessionError {
        Self::backend(format!("backend control connection: {e}"))
    }

    /// The backend is unreachable at session start: 421.
    pub fn backend_down(message: String) -> SessionError {
        Self::new(
            Side::Backend,
            message,
            Some(Reply::new(
                421,
                "Service not available: the FTP server cannot be reached.",
            )),
        )
    }

    /// The backend said goodbye itself; its reply has already been relayed.
    pub fn backend_silent(message: &str) -> SessionError {
        Self::new(Side::Backend, message, None)
    }

    /// The backend closed the session with this reply (relayed as the last word).
    pub fn backend_reply(reply: Reply, message: &str) -> SessionError {
        Self::new(Side::Backend, message, Some(reply))
    }

    /// The client connection failed; nothing can be said.
    pub fn client_io(e: io::Error) -> SessionError {
        Self::new(
            Side::Client,
            format!("client control connection: {e}"),
            None,
        )
    }

    /// The client must be cut off without a reply (failed TLS handshake, injection attempt).
    pub fn client_silent(message: String) -> SessionError {
        Self::new(Side::Client, message, None)
    }

    /// The client is cut off after this reply.
    pub fn client_reply(reply: Reply, message: &str) -> SessionError {
        Self::new(Side::Client, message, Some(reply))
    }

    /// Our own failure: 421.
    pub fn internal(message: &str) -> SessionError {
        Self::new(Side::Internal, message, Some(service_unavailable()))
    }

    /// Our own I/O failure: 421.
    pub fn internal_io(e: io::Error) -> SessionError {
        Self::new(Side::Internal, e.to_string(), Some(service_unavailable()))
    }

    /// Idle timeout or shutdown, with its reply.
    pub fn internal_reply(reply: Reply, message: &str) -> SessionError {
        Self::new(Side::Internal, message, Some(reply))
    }

    /// The reply the client gets before the connection closes, if any.
    pub fn reply(&self) -> Option<Reply> {
        self.reply.clone()
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.side, self.message)
    }
}

impl std::error::Error for SessionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(SessionError::backend("x").reply().unwrap().code, 421);
        assert!(SessionError::client_silent("x".into()).reply().is_none());
        assert_eq!(
            SessionError::backend_down("x".into()).reply().unwrap().code,
            421
        );
        let r = SessionError::internal_reply(Reply::new(421, "Idle"), "idle")
            .reply()
            .unwrap();
        assert_eq!(r.text(), "Idle");
    }
}
