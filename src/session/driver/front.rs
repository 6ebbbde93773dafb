//! The client side of a session, with or without a backend connected: the
//! client's control connection, the pure protocol state, and the control
//! connection's TLS binding. It frames client lines into commands, asks the
//! [`Session`] for its decision, sends refusals and local replies, and
//! upgrades the control connection to TLS.

use std::sync::Arc;

use tracing::debug;

use super::control::{ClientCtl, ClientEvent};
use super::{upgrade, SessionContext};
use crate::data::transfer::DataSetup;
use crate::error::{disposition, Failure, SessionError};
use crate::events::SessionEvent;
use crate::ftp::command::{Command, Verb};
use crate::ftp::reply::Reply;
use crate::session::{Action, Refusal, Session};
use crate::tls::reuse::Binding;

/// What one client event amounts to.
pub(super) enum Next {
    /// A command to act on.
    Command(Command),
    /// Already answered (not a command); read on.
    Skip,
    /// The client closed the connection.
    End,
}

/// The client side of a session, with or without a backend: the control
/// connection, the protocol state, and the TLS binding.
pub(super) struct Front<'a> {
    pub(super) ctx: &'a mut SessionContext,
    pub(super) client: &'a mut ClientCtl,
    pub(super) session: Session<DataSetup>,
    /// The control session's TLS reuse binding.
    pub(super) binding: Arc<Binding>,
    /// The control connection's client certificate (leaf, DER).
    pub(super) client_cert: Option<Vec<u8>>,
}

impl Front<'_> {
    /// Turns a client event into a command, answering lines that are not one.
    pub(super) async fn frame(&mut self, event: ClientEvent) -> Result<Next, SessionError> {
        let line = match event {
            ClientEvent::Line(l) => l,
            ClientEvent::TooLong => {
                self.fail(Failure::LineTooLong).await?;
                return Ok(Next::Skip);
            }
            ClientEvent::Overflow => return Err(SessionError::LineOverflow),
            ClientEvent::Eof => return Ok(Next::End),
        };
        let cmd = match Command::parse(&line) {
            Ok(cmd) => cmd,
            Err(e) => {
                self.fail(Failure::Command(&e)).await?;
                return Ok(Next::Skip);
            }
        };
        debug!(cmd = %cmd, "command");
        if cmd.verb == Verb::User {
            let user = cmd.arg_str();
            tracing::Span::current().record("user", user.as_str());
            self.ctx.info.user = Some(user);
        }
        Ok(Next::Command(cmd))
    }

    /// The session's decision on `cmd`, reporting what audit mode let through.
    pub(super) fn decide(&mut self, cmd: Command) -> Action<DataSetup> {
        let action = self.session.on_command(cmd);
        for r in self.session.take_audits() {
            self.ctx.audit(r);
        }
        action
    }

    /// Sends the reply for a failure that keeps the session.
    pub(super) async fn fail(&mut self, failure: Failure<'_>) -> Result<(), SessionError> {
        match disposition(&failure).reply {
            Some(r) => self.client.send(&r).await,
            None => Ok(()),
        }
    }

    pub(super) async fn refuse(&mut self, refusal: Refusal) -> Result<(), SessionError> {
        self.ctx.emit(SessionEvent::PolicyRefused(refusal));
        self.client.send(&refusal.reply()).await
    }

    pub(super) async fn reply(&mut self, code: u16, text: &str) -> Result<(), SessionError> {
        self.client.send(&Reply::new(code, text)).await
    }

    /// AUTH TLS accepted: 234, then the handshake. `queued` says commands
    /// are waiting behind it (queued during a transfer).
    pub(super) async fn auth_tls(&mut self, queued: bool) -> Result<(), SessionError> {
        self.reply(234, "AUTH TLS successful; start the TLS handshake.")
            .await?;
        if self.client.has_buffered() || queued {
            // STARTTLS command injection (CVE-2011-1575 class): never run plaintext
            // that was pipelined behind AUTH (or queued behind a transfer before
            // it) inside the TLS session.
            return Err(SessionError::Pipelined("AUTH"));
        }
        self.secure().await
    }

    /// The control TLS handshake (implicit listener, or after 234).
    pub(super) async fn secure(&mut self) -> Result<(), SessionError> {
        let config = self.ctx.live.tls.control.clone();
        let timeout = self.ctx.live.settings.handshake_timeout;
        let tls = upgrade::start_tls(self.client, config, self.binding.token(), timeout).await?;
        self.session.on_tls_established();
        self.ctx.audit_client_cert(&tls);
        self.client_cert = tls.client_cert;
        self.ctx.emit(SessionEvent::TlsEstablished(tls.details));
        Ok(())
    }
}
