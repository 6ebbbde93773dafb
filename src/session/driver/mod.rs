//! The async task for one control session. It owns the client and backend
//! control connections (`control`), feeds each command to the pure
//! [`Session`] and carries out the [`Action`] it returns: stream swaps
//! (`upgrade`), relaying replies (with the backend's address hidden), data
//! set-ups (`data`) and transfers (`transfer`). It reports what happens
//! as [`SessionEvent`]s, one emit per fact, and never decides policy itself.
//!
//! Every wait is bounded: backend connect and replies, the TLS handshake,
//! control idle time, the client's data connection.

mod backend;
mod control;
mod data;
mod front;
mod lobby;
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
use self::front::{Front, Next};
use self::lobby::{Exit, Lobby};
use super::policy::{self, Verdict};
use super::{Action, Login, Policy, Refusal, Session};
use crate::admission::{Admission, Admitted};
use crate::backends::route::{self, Misrouted};
use crate::backends::Slot;
use crate::config::{BackendConnect, ProxyTrust};
use crate::data::connect::DataState;
use crate::data::ports::PortPool;
use crate::data::rate::Rate;
use crate::data::transfer::DataSetup;
use crate::error::{Failure, SessionError};
use crate::events::{Ended, Events, SessionEvent, SessionInfo};
use crate::ftp::command::{Command, Verb};
use crate::ftp::reply::Reply;
use crate::ftp::rewrite::{self, Hide};
use crate::live::Live;
use crate::tls::reuse::Bindings;

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
    /// Cancelled when the proxy shuts down: idle sessions end with 421.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: running transfers are cut.
    pub cut: CancellationToken,
    /// Who this session is.
    pub info: SessionInfo,
    /// The proxy's address on the client's control connection.
    pub local: SocketAddr,
    /// The address the client connected to: a balancer's PROXY header
    /// destination, else `local`. The default address of 227 replies.
    pub seen_as: SocketAddr,
    /// The balancer settings of the listener, when the session came through
    /// one: passive data connections from it carry a PROXY header too.
    pub balancer: Option<ProxyTrust>,
    /// Every live control session's TLS binding.
    pub bindings: Arc<Bindings>,
    /// Limits and bans, for reporting failed logins.
    pub admission: Arc<Admission>,
    /// This session's place under the limits; freed before `Closed` is reported.
    pub admitted: Option<Admitted>,
    /// This session's bandwidth cap (`rate_session`), shared by its transfers.
    pub rate: Option<Arc<Rate>>,
    /// In transparent mode, where the client's connection was going (the
    /// backend); checked against the allow-list at accept.
    pub destination: Option<SocketAddr>,
    /// Reasons already audited in this session: each is reported once.
    pub audited: Vec<&'static str>,
}

impl SessionContext {
    fn emit(&self, event: SessionEvent) {
        self.events.emit(&self.info, event);
    }

    /// Reports what audit mode let through, once per session and reason:
    /// the operator learns which sessions enforcing would break, not how
    /// many commands each one sent.
    fn audit(&mut self, refusal: Refusal) {
        if !self.audited.contains(&refusal.reason()) {
            self.audited.push(refusal.reason());
            self.emit(SessionEvent::PolicyAudited(refusal));
        }
    }

    /// `client_cert: audit`: a control connection without a certificate is reported.
    fn audit_client_cert(&mut self, tls: &upgrade::Established) {
        let mode = self.live.settings.client_cert;
        if let Verdict::Audit(r) = policy::client_cert(mode, tls.client_cert.is_some()) {
            self.audit(r);
        }
    }

    /// The bandwidth caps this session's transfers obey.
    fn rates(&self) -> Vec<Arc<Rate>> {
        self.rate
            .iter()
            .chain(self.live.rate_total.iter())
            .cloned()
            .collect()
    }

    fn policy(&self) -> Policy {
        let s = &self.live.settings;
        Policy {
            control_tls: s.control_tls,
            data_tls: s.data_tls,
            ccc: s.ccc,
            implicit: self.info.mode == super::Mode::Implicit,
            public_v4: self
                .configured_address()
                .unwrap_or(self.seen_as.ip())
                .is_ipv4(),
        }
    }

    /// The address configured for this client's passive replies (split
    /// horizon on the real client address, else `public_address`).
    fn configured_address(&self) -> Option<std::net::IpAddr> {
        let s = &self.live.settings;
        let client = self.info.client.ip();
        rewrite::configured_address(&s.public_address_by_network, s.public_address, client)
    }
}

/// Runs one session to its end; the listener spawns this per connection.
pub async fn run(mut ctx: SessionContext, tcp: TcpStream) {
    let started = Instant::now();
    crate::stream::low_latency(&tcp);
    ctx.emit(SessionEvent::Opened);
    let s = &ctx.live.settings;
    let mut client = ClientCtl::new(tcp, s.idle_timeout, s.max_command_line);
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
    ctx.admitted.take();
    ctx.emit(SessionEvent::Closed {
        error,
        duration: started.elapsed(),
    });
}

/// TLS first on the implicit listener, then (after TLS under
/// `backend_connect: after-tls`) the backend, then the command loop.
async fn serve(ctx: &mut SessionContext, client: &mut ClientCtl) -> Result<(), SessionError> {
    let session = Session::new(ctx.policy(), ctx.info.client.ip());
    let binding = Arc::new(ctx.bindings.register(ctx.info.client.ip()));
    let implicit = ctx.policy().implicit;
    let routing = ctx.live.settings.backends.routes_by_user();
    let after_tls = ctx.live.settings.backend_connect == BackendConnect::AfterTls;
    let mut front = Front {
        ctx,
        client,
        session,
        binding,
        client_cert: None,
    };
    if implicit {
        front.secure().await?;
    }
    let exit = if routing || (!implicit && after_tls) {
        let mut lobby = Lobby::new(&mut front, routing);
        let exit = lobby.run().await?;
        (exit, lobby.into_replay())
    } else {
        (Exit::Greet, Vec::new())
    };
    let (exit, replay) = exit;
    let routed = match &exit {
        Exit::Quit => return Ok(()),
        Exit::Routed { backend, .. } => backend.clone(),
        _ => None,
    };
    let backend = backend::connect(front.ctx, routed.as_deref()).await?;
    let mut driver = Driver::new(front, backend);
    let first = match exit {
        Exit::Greet => {
            driver.greeting().await?;
            None
        }
        Exit::Secured => driver.swallow_greeting(replay).await.map(|()| None)?,
        Exit::Run(action) => driver
            .swallow_greeting(replay)
            .await
            .map(|()| Some(action))?,
        Exit::Routed { user, .. } => {
            driver.swallow_greeting(replay).await?;
            Some(Action::Forward(user))
        }
        Exit::Quit => None,
    };
    if let Some(action) = first {
        if driver.execute(action).await? {
            return Ok(());
        }
    }
    driver.command_loop().await
}

/// One session's control loop, with the backend connected.
struct Driver<'a> {
    front: Front<'a>,
    backend: BackendCtl,
    /// The backend's name, for routing a later USER.
    backend_name: String,
    /// Counts this session on its pool member.
    _slot: Option<Slot>,
    hide: Hide,
    deferred: VecDeque<ClientEvent>,
    /// PROT level and pending transfer, for passive accepts that start TLS on arrival.
    data_state: watch::Sender<DataState>,
}

impl<'a> Driver<'a> {
    fn new(front: Front<'a>, connected: backend::Connected) -> Driver<'a> {
        let backend = connected.ctl;
        let hide = Hide {
            backend: backend.peer,
            backend_name: connected.host_name,
            proxy: front.ctx.seen_as,
            proxy_backend_side: backend.local,
            client: front.ctx.info.client,
        };
        let (data_state, _) = watch::channel(DataState {
            prot: front.session.prot(),
            pending: None,
        });
        Driver {
            front,
            backend,
            backend_name: connected.name,
            _slot: connected.slot,
            hide,
            deferred: VecDeque::new(),
            data_state,
        }
    }

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

    /// The client was greeted by ftpsgate: the backend's greeting is read
    /// but not relayed (a refusal becomes 421), then the commands the lobby
    /// noted (HOST, OPTS) are replayed, their answers logged.
    async fn swallow_greeting(&mut self, replay: Vec<Command>) -> Result<(), SessionError> {
        loop {
            let r = self.backend.reply().await?;
            match r.code {
                100..=199 => continue,
                220 => break,
                _ => return Err(SessionError::BackendGoodbye(Reply::new(421, r.text()))),
            }
        }
        for cmd in replay {
            self.backend.send(&cmd).await?;
            let r = self.backend.reply().await?;
            debug!(%cmd, code = r.code, "replayed to the backend");
        }
        Ok(())
    }

    async fn command_loop(&mut self) -> Result<(), SessionError> {
        loop {
            let event = match self.deferred.pop_front() {
                Some(ev) => ev,
                None => self.wait_client().await?,
            };
            let cmd = match self.front.frame(event).await? {
                Next::Command(cmd) => cmd,
                Next::Skip => continue,
                Next::End => return Ok(()),
            };
            let action = self.front.decide(cmd);
            if self.execute(action).await? {
                return Ok(());
            }
        }
    }

    /// Waits for the next client event, the idle timeout, shutdown, or an unsolicited backend reply.
    async fn wait_client(&mut self) -> Result<ClientEvent, SessionError> {
        let idle = self.front.ctx.live.settings.idle_timeout;
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
            ev = self.front.client.next() => ev.map_err(SessionError::ClientIo),
            _ = tokio::time::sleep(idle) => Err(SessionError::Idle),
            _ = self.front.ctx.shutdown.cancelled() => Err(SessionError::Shutdown),
        }
    }

    /// Carries out one action. Returns true when the session is over.
    async fn execute(&mut self, action: Action<DataSetup>) -> Result<bool, SessionError> {
        match action {
            Action::Reply(r) => self.front.client.send(&r).await?,
            Action::Refuse(refusal) => self.front.refuse(refusal).await?,
            Action::RefuseTransfer { cmd, refusal } => {
                self.front.refuse(refusal).await?;
                self.record_refused(&cmd, refusal);
            }
            Action::SetProt(level, r) => {
                self.data_state.send_modify(|s| s.prot = level);
                self.front.client.send(&r).await?;
            }
            Action::StartTls => self.front.auth_tls(!self.deferred.is_empty()).await?,
            Action::ClearControl => self.clear_control().await?,
            Action::Forward(cmd) if cmd.verb == Verb::User && self.routes_by_user() => {
                self.relogin(cmd).await?
            }
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

    async fn reply(&mut self, code: u16, text: &str) -> Result<(), SessionError> {
        self.front.reply(code, text).await
    }

    async fn fail(&mut self, failure: Failure<'_>) -> Result<(), SessionError> {
        self.front.fail(failure).await
    }

    /// Relays a backend reply with the backend's address hidden.
    async fn relay(&mut self, mut reply: Reply) -> Result<(), SessionError> {
        rewrite::hide_backend(&mut reply, &self.hide);
        self.front.client.send(&reply).await
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
            match self.front.session.on_reply(cmd, &r) {
                Some(Login::Succeeded(user)) => {
                    self.front.binding.logged_in(&user);
                    self.front.ctx.emit(SessionEvent::LoginSucceeded);
                }
                Some(Login::Failed(_, code)) => {
                    let ctx = &mut self.front.ctx;
                    ctx.emit(SessionEvent::LoginFailed { code });
                    let ip = ctx.info.client.ip();
                    if let Some(until) = ctx.admission.login_failed(ip, &ctx.live.settings) {
                        ctx.emit(SessionEvent::Banned { until });
                        self.relay(r).await?;
                        return Err(SessionError::Banned);
                    }
                }
                None => {}
            }
            return self.relay(r).await;
        }
    }

    fn routes_by_user(&self) -> bool {
        self.front.ctx.live.settings.backends.routes_by_user()
    }

    /// A USER once the backend is chosen is routed like the first one; a
    /// login that belongs on another backend gets 530 (a session keeps its
    /// backend).
    async fn relogin(&mut self, cmd: Command) -> Result<(), SessionError> {
        match route::route(&cmd.arg_str(), &self.front.ctx.live.settings.backends) {
            Ok(r) if r.backend.as_ref().map_or(true, |b| *b == self.backend_name) => {
                self.forward(&Command::new(Verb::User, &r.user)).await
            }
            Ok(r) => {
                let text = format!(
                    "User {} is served by another server; connect again to log in there.",
                    r.user
                );
                self.front.reply(530, &text).await
            }
            Err(Misrouted(text)) => self.front.reply(530, &text).await,
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

    async fn clear_control(&mut self) -> Result<(), SessionError> {
        if self.front.client.has_buffered() || !self.deferred.is_empty() {
            // Nothing sent under TLS after CCC may be read as plaintext, and vice versa.
            return Err(SessionError::Pipelined("CCC"));
        }
        self.reply(
            200,
            "CCC accepted; control connection continues in plaintext.",
        )
        .await?;
        upgrade::clear_control(self.front.client).await
    }
}
