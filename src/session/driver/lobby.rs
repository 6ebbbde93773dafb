//! Before the backend is connected (`backend_connect: after-tls`, the
//! default): ftpsgate greets the client itself and answers what it can
//! without the backend (AUTH TLS, the security verbs, FEAT, NOOP, SYST,
//! HELP, QUIT and the policy refusals), so a client that never completes a
//! TLS handshake never reaches the legacy server. The lobby ends when the
//! control connection is secured, or, under `control_tls: optional`, at the
//! first command that needs the backend.
//!
//! When the backend is chosen by user (`user_routes`, `user_at_backend`),
//! the lobby also serves implicit sessions and lasts until USER: the login
//! is routed ([`crate::backends::route`]), and the session connects there.

use tracing::info;

use super::control::ClientEvent;
use super::{Front, Next};
use crate::backends::route::{self, Misrouted};
use crate::data::transfer::DataSetup;
use crate::error::SessionError;
use crate::ftp::command::{Command, Verb};
use crate::ftp::reply::Reply;
use crate::ftp::rewrite;
use crate::session::Action;

/// How the lobby ended.
#[derive(Debug)]
pub(super) enum Exit {
    /// No lobby: relay the backend's own greeting.
    Greet,
    /// The control connection is under TLS; connect the backend.
    Secured,
    /// This action needs the backend (plaintext sessions under `control_tls: optional`).
    Run(Action<DataSetup>),
    /// The client said QUIT; the backend was never contacted.
    Quit,
    /// USER arrived and was routed: connect to `backend` (or let the
    /// selection choose) and send `user` (the rewritten USER) first.
    Routed {
        /// The USER command to send the backend.
        user: Command,
        /// The backend it must go to.
        backend: Option<String>,
    },
}

/// The lobby of one session.
pub(super) struct Lobby<'f, 'a> {
    front: &'f mut Front<'a>,
    /// HOST and OPTS, answered here and sent to the backend once connected.
    replay: Vec<Command>,
    /// The lobby lasts until USER (the backend is chosen by user).
    until_user: bool,
}

impl<'f, 'a> Lobby<'f, 'a> {
    pub(super) fn new(front: &'f mut Front<'a>, until_user: bool) -> Self {
        Lobby {
            front,
            replay: Vec::new(),
            until_user,
        }
    }

    /// The commands to replay to the backend once it is connected.
    pub(super) fn into_replay(self) -> Vec<Command> {
        self.replay
    }

    /// Greets the client and answers it until it is secured (or needs the backend).
    pub(super) async fn run(&mut self) -> Result<Exit, SessionError> {
        let greeting = match self.front.ctx.info.mode {
            crate::session::Mode::Implicit => "Service ready.",
            crate::session::Mode::Explicit => "Service ready; send AUTH TLS to continue.",
        };
        self.front.reply(220, greeting).await?;
        loop {
            let event = self.wait().await?;
            let cmd = match self.front.frame(event).await? {
                Next::Command(cmd) => cmd,
                Next::Skip => continue,
                Next::End => return Ok(Exit::Quit),
            };
            let action = self.front.decide(cmd);
            if let Some(exit) = self.answer(action).await? {
                return Ok(exit);
            }
        }
    }

    /// Answers one action locally; `Some` when the lobby ends.
    async fn answer(&mut self, action: Action<DataSetup>) -> Result<Option<Exit>, SessionError> {
        let reply = match action {
            Action::Reply(r) | Action::SetProt(_, r) => r,
            Action::Refuse(refusal) => {
                self.front.refuse(refusal).await?;
                return Ok(None);
            }
            Action::StartTls => {
                self.front.auth_tls(false).await?;
                return Ok((!self.until_user).then_some(Exit::Secured));
            }
            Action::Feat(_) => rewrite::feat(None),
            Action::Quit(_) => {
                self.front.reply(221, "Goodbye.").await?;
                return Ok(Some(Exit::Quit));
            }
            Action::Forward(cmd) => match local_answer(&cmd) {
                Some(r) => {
                    if matches!(cmd.verb, Verb::Host | Verb::Opts) {
                        self.replay.push(cmd);
                    }
                    r
                }
                None if self.until_user => return self.route(cmd).await,
                None => return Ok(Some(Exit::Run(Action::Forward(cmd)))),
            },
            _ if self.until_user => Reply::new(530, "Please log in with USER and PASS first."),
            other => return Ok(Some(Exit::Run(other))),
        };
        self.front.client.send(&reply).await?;
        Ok(None)
    }

    /// Before USER nothing goes to a backend; USER is routed (a login the
    /// map sends elsewhere gets 530 and the lobby goes on).
    async fn route(&mut self, cmd: Command) -> Result<Option<Exit>, SessionError> {
        if cmd.verb != Verb::User {
            self.front
                .reply(530, "Please log in with USER and PASS first.")
                .await?;
            return Ok(None);
        }
        match route::route(&cmd.arg_str(), &self.front.ctx.live.settings.backends) {
            Ok(r) => Ok(Some(Exit::Routed {
                user: Command::new(Verb::User, &r.user),
                backend: r.backend,
            })),
            Err(Misrouted(text)) => {
                info!("login refused: {text}");
                self.front.reply(530, &text).await?;
                Ok(None)
            }
        }
    }

    /// The next client event, within the idle timeout and until shutdown.
    async fn wait(&mut self) -> Result<ClientEvent, SessionError> {
        let idle = self.front.ctx.live.settings.idle_timeout;
        tokio::select! {
            ev = self.front.client.next() => ev.map_err(SessionError::ClientIo),
            _ = tokio::time::sleep(idle) => Err(SessionError::Idle),
            _ = self.front.ctx.shutdown.cancelled() => Err(SessionError::Shutdown),
        }
    }
}

/// What the lobby says to the harmless pre-TLS verbs it can answer itself;
/// `None` for a command that needs the backend.
fn local_answer(cmd: &Command) -> Option<Reply> {
    let (code, text) = match cmd.verb {
        Verb::Noop => (200, "NOOP ok."),
        Verb::Syst => (215, "UNIX Type: L8"),
        Verb::Help => (
            214,
            "Send AUTH TLS, then log in; HELP is answered by the server after that.",
        ),
        Verb::Host => (
            220,
            "Host noted; it is passed to the server after AUTH TLS.",
        ),
        Verb::Opts => (
            200,
            "Option noted; it is passed to the server after AUTH TLS.",
        ),
        _ => return None,
    };
    Some(Reply::new(code, text))
}
