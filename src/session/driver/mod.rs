//! The async task for one control session. It owns the client and backend
//! control connections ([`control`]), feeds each command to the pure
//! [`Session`] and carries out the [`Action`] it returns: stream swaps
//! ([`upgrade`]), relaying replies (with the backend's address hidden), data
//! set-ups ([`data`]) and transfers ([`transfer`]). It reports what happens
//! as [`SessionEvent`]s, one emit per fact, and never decides policy itself.
//!
//! Every wait is bounded: backend connect and replies, the TLS handshake,
//! control idle time, the client's data connection.

mod control;
mod data;
mod transfer;
mod upgrade;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use self::control::{BackendCtl, ClientCtl, ClientEvent};
use super::policy::{self, Verdict};
use super::{Action, Login, Policy, Prot, Refusal, Session};
use crate::data::ports::PortPool;
use crate::data::transfer::DataSetup;
use crate::error::{disposition, Failure, SessionError};
use crate::events::{Ended, Events, SessionEvent, SessionInfo};
use crate::ftp::command::{Command, Verb};
use crate::ftp::reply::Reply;
use crate::ftp::rewrite::{self, Hide};
use crate::live::Live;
use crate::tls::reuse::{Binding, Bindings};

/// Commands a client may queue while a transfer runs.
const MAX_DEFERRED: usize = 32;
/// How long the backend gets to answer QUIT.
const QUIT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session task starts with.
pub struct SessionContext {
    /// The settings and TLS in force when the session was accepted.
    pub live: Arc<Live>,
    /// Client-facing passive ports.
    pub pool: Arc<PortPool>,
    /// Where events go.
    pub events: Events,
    /// Cancelled when the proxy shuts down.
    pub shutdown: CancellationToken,
    /// Who this session is.
    pub info: SessionInfo,
    /// The proxy's address on the client's control connection.
    pub local: SocketAddr,
    /// Every live control session's TLS binding.
    pub bindings: Arc<Bindings>,
}

impl SessionContext {
    fn emit(&self, event: SessionEvent) {
        self.events.emit(&self.info, event);
    }

    /// `client_cert: audit`: a control connection without a certificate is reported.
    fn audit_client_cert(&self, tls: &upgrade::Established) {
        let mode = self.live.settings.client_cert;
        if let Verdict::Audit(r) = policy::client_cert(mode, tls.client_cert.is_some()) {
            self.emit(SessionEvent::PolicyAudited(r));
        }
    }

    fn policy(&self) -> Policy {
        let s = &self.live.settings;
        Policy {
            control_tls: s.control_tls,
            data_tls: s.data_tls,
            ccc: s.ccc,
            implicit: self.info.mode == super::Mode::Implicit,
            public_v4: s.public_address.is_some_and(|a| a.is_ipv4()),
        }
    }
}

/// Runs one session to its end; the listener spawns this per connection.
pub async fn run(mut ctx: SessionContext, tcp: TcpStream) {
    let started = Instant::now();
    crate::stream::low_latency(&tcp);
    ctx.emit(SessionEvent::Opened);
    let mut client = ClientCtl::new(tcp, ctx.live.settings.idle_timeout);
    let error = match serve(&mut ctx, &mut client).await {
        Ok(()) => None,
        Err(e) => {
            if let Some(r) = e.reply() {
                let _ = client.send(&r).await;
            }
            Some(Ended {
                side: e.side(),
                routine: e.is_routine(),
                message: e.to_string(),
            })
        }
    };
    client.close().await;
    ctx.emit(SessionEvent::Closed {
        error,
        duration: started.elapsed(),
    });
}

/// TLS first on the implicit listener, then the backend, then the command loop.
async fn serve(ctx: &mut SessionContext, client: &mut ClientCtl) -> Result<(), SessionError> {
    let binding = Arc::new(ctx.bindings.register(ctx.info.client.ip()));
    let mut session = Session::new(ctx.policy(), ctx.info.client.ip());
    let mut client_cert = None;
    if ctx.policy().implicit {
        let config = ctx.live.tls.control.clone();
        let tls = upgrade::start_tls(client, config, binding.token()).await?;
        session.on_tls_established();
        ctx.audit_client_cert(&tls);
        client_cert = tls.client_cert;
        ctx.emit(SessionEvent::TlsEstablished(tls.details));
    }
    let (backend, elapsed) = match BackendCtl::connect(&ctx.live.settings.backend).await {
        Ok(connected) => connected,
        Err(e) => {
            ctx.emit(SessionEvent::BackendUnreachable {
                error: e.to_string(),
            });
            return Err(e);
        }
    };
    ctx.emit(SessionEvent::BackendConnected {
        backend: backend.peer,
        elapsed,
    });
    let hide = Hide {
        backend: backend.peer,
        backend_name: ctx.live.settings.backend.name().map(str::to_string),
        proxy: ctx.local,
        proxy_backend_side: backend.local,
        client: ctx.info.client,
    };
    let (prot, _) = watch::channel(session.prot());
    let mut driver = Driver {
        ctx,
        client,
        session,
        backend,
        hide,
        deferred: VecDeque::new(),
        prot,
        binding,
        client_cert,
    };
    driver.greeting().await?;
    driver.command_loop().await
}

/// What one client event amounts to.
enum Next {
    /// A command to act on.
    Command(Command),
    /// Already answered (not a command); read on.
    Skip,
    /// The client closed the connection.
    End,
}

/// One session's control loop, with the backend connected.
struct Driver<'a> {
    ctx: &'a mut SessionContext,
    client: &'a mut ClientCtl,
    session: Session<DataSetup>,
    backend: BackendCtl,
    hide: Hide,
    deferred: VecDeque<ClientEvent>,
    /// The PROT level, for passive accepts that start TLS on arrival.
    prot: watch::Sender<Prot>,
    /// The control session's TLS reuse binding.
    binding: Arc<Binding>,
    /// The control connection's client certificate (leaf, DER).
    client_cert: Option<Vec<u8>>,
}

impl Driver<'_> {
    /// Relays the backend's greeting (120 then 220 possible, PROTOCOL.md §2.1).
    async fn greeting(&mut self) -> Result<(), SessionError> {
        loop {
            let r = self.backend.reply().await?;
            let (done, ok) = (!r.is_preliminary(), r.code == 220);
            self.relay(r).await?;
            match (done, ok) {
                (true, true) => return Ok(()),
                (true, false) => return Err(SessionError::BackendRefused),
                _ => {}
            }
        }
    }

    async fn command_loop(&mut self) -> Result<(), SessionError> {
        loop {
            let event = match self.deferred.pop_front() {
                Some(ev) => ev,
                None => self.wait_client().await?,
            };
            let cmd = match self.frame(event).await? {
                Next::Command(cmd) => cmd,
                Next::Skip => continue,
                Next::End => return Ok(()),
            };
            let action = self.session.on_command(cmd);
            for r in self.session.take_audits() {
                self.ctx.emit(SessionEvent::PolicyAudited(r));
            }
            if self.execute(action).await? {
                return Ok(());
            }
        }
    }

    /// Turns a client event into a command, answering lines that are not one.
    async fn frame(&mut self, event: ClientEvent) -> Result<Next, SessionError> {
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

    /// Waits for the next client event, the idle timeout, shutdown, or an unsolicited backend reply.
    async fn wait_client(&mut self) -> Result<ClientEvent, SessionError> {
        let idle = self.ctx.live.settings.idle_timeout;
        tokio::select! {
            // Backend input first: a surplus reply must never wait behind the
            // next client command and then be taken as its answer.
            biased;
            r = self.backend.next() => {
                let r = r?;
                if r.code == 421 {
                    return Err(SessionError::BackendGoodbye(r));
                }
                Err(SessionError::Unsolicited(r.code))
            }
            ev = self.client.next() => ev.map_err(SessionError::ClientIo),
            _ = tokio::time::sleep(idle) => Err(SessionError::Idle),
            _ = self.ctx.shutdown.cancelled() => Err(SessionError::Shutdown),
        }
    }

    /// Carries out one action. Returns true when the session is over.
    async fn execute(&mut self, action: Action<DataSetup>) -> Result<bool, SessionError> {
        match action {
            Action::Reply(r) => self.client.send(&r).await?,
            Action::Refuse(refusal) => self.refuse(refusal).await?,
            Action::RefuseTransfer { cmd, refusal } => {
                self.refuse(refusal).await?;
                self.record_refused(&cmd, refusal);
            }
            Action::SetProt(level, r) => {
                self.prot.send_replace(level);
                self.client.send(&r).await?;
            }
            Action::StartTls => self.start_tls().await?,
            Action::ClearControl => self.clear_control().await?,
            Action::Forward(cmd) => self.forward(&cmd).await?,
            Action::Feat(cmd) => self.feat(&cmd).await?,
            Action::Passive { extended } => self.passive(extended).await?,
            Action::Active(target) => self.active(target).await?,
            Action::Transfer {
                cmd,
                upload,
                protect,
                setup,
            } => self.transfer(cmd, upload, protect, setup).await?,
            Action::Quit(cmd) => {
                self.quit(&cmd).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends the reply for a failure that keeps the session; a session failure is returned.
    async fn fail(&mut self, failure: Failure<'_>) -> Result<(), SessionError> {
        let d = disposition(&failure);
        if let Some(r) = &d.reply {
            self.client.send(r).await?;
        }
        Ok(())
    }

    async fn refuse(&mut self, refusal: Refusal) -> Result<(), SessionError> {
        self.ctx.emit(SessionEvent::PolicyRefused(refusal));
        self.client.send(&refusal.reply()).await
    }

    async fn reply(&mut self, code: u16, text: &str) -> Result<(), SessionError> {
        self.client.send(&Reply::new(code, text)).await
    }

    /// Relays a backend reply with the backend's address hidden.
    async fn relay(&mut self, mut reply: Reply) -> Result<(), SessionError> {
        rewrite::hide_backend(&mut reply, &self.hide);
        self.client.send(&reply).await
    }

    /// Sends a command and relays replies up to the final one.
    async fn forward(&mut self, cmd: &Command) -> Result<(), SessionError> {
        self.backend.send(cmd).await?;
        loop {
            let r = self.backend.reply().await?;
            if r.is_preliminary() {
                self.relay(r).await?;
                continue;
            }
            match self.session.on_reply(cmd, &r) {
                Some(Login::Succeeded(user)) => {
                    self.binding.logged_in(&user);
                    self.ctx.emit(SessionEvent::LoginSucceeded);
                }
                Some(Login::Failed(_, code)) => self.ctx.emit(SessionEvent::LoginFailed { code }),
                None => {}
            }
            return self.relay(r).await;
        }
    }

    /// FEAT: the backend's list rewritten; its 1xx replies are dropped.
    async fn feat(&mut self, cmd: &Command) -> Result<(), SessionError> {
        self.backend.send(cmd).await?;
        let r = loop {
            let r = self.backend.reply().await?;
            if !r.is_preliminary() {
                break r;
            }
        };
        self.relay(rewrite::feat(Some(&r))).await
    }

    /// QUIT: the backend's goodbye (or ours if it has none) is the last reply.
    async fn quit(&mut self, cmd: &Command) -> Result<(), SessionError> {
        let r = match self.backend.send(cmd).await {
            Ok(()) => self.backend.reply_within(QUIT_REPLY_TIMEOUT).await.ok(),
            Err(_) => None,
        };
        self.relay(r.unwrap_or_else(|| Reply::new(221, "Goodbye.")))
            .await
    }

    async fn start_tls(&mut self) -> Result<(), SessionError> {
        self.reply(234, "AUTH TLS successful; start the TLS handshake.")
            .await?;
        if self.client.has_buffered() || !self.deferred.is_empty() {
            // STARTTLS command injection (CVE-2011-1575 class): never run plaintext
            // that was pipelined behind AUTH (or queued behind a transfer before
            // it) inside the TLS session.
            return Err(SessionError::Pipelined("AUTH"));
        }
        let config = self.ctx.live.tls.control.clone();
        let tls = upgrade::start_tls(self.client, config, self.binding.token()).await?;
        self.session.on_tls_established();
        self.ctx.audit_client_cert(&tls);
        self.client_cert = tls.client_cert;
        self.ctx.emit(SessionEvent::TlsEstablished(tls.details));
        Ok(())
    }

    async fn clear_control(&mut self) -> Result<(), SessionError> {
        if self.client.has_buffered() || !self.deferred.is_empty() {
            // Nothing sent under TLS after CCC may be read as plaintext, and vice versa.
            return Err(SessionError::Pipelined("CCC"));
        }
        self.reply(
            200,
            "CCC accepted; control connection continues in plaintext.",
        )
        .await?;
        upgrade::clear_control(self.client).await
    }
}
