//! The control-session state machine, pure: no sockets, no clock.
//!
//! [`Session::on_command`] takes one parsed client command and decides what
//! happens: a local reply (RFC 2228 security verbs), a policy refusal
//! ([`policy`]), a TLS start, a forward to the backend, or a data
//! set-up/transfer for the driver to carry out. It owns the PROT/PBSZ state,
//! the login state and the prepared data set-up (`D`, opaque here: the driver
//! hands it in after PASV/PORT and gets it back with the transfer), so the
//! driver mirrors none of it.
//!
//! [`driver`] is the async task that owns the sockets and executes actions.

pub mod driver;
pub mod policy;
pub mod refusal;

use std::net::{IpAddr, SocketAddr};

use crate::ftp::addr::{self, AddrError};
use crate::ftp::command::{Class, Command, Verb};
use crate::ftp::reply::Reply;
pub use policy::{Policy, Verdict};
pub use refusal::Refusal;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext first, AUTH TLS upgrades.
    Explicit,
    /// TLS from the first byte.
    Implicit,
}

/// Protection of the control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlTls {
    /// No TLS yet.
    Plain,
    /// Under TLS.
    Secured,
    /// TLS was cleared with CCC; control is plaintext again.
    Cleared,
}

/// Data protection level (RFC 2228 PROT; only C and P exist for TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// Clear.
    Clear,
    /// Private: TLS on data connections.
    Private,
}

/// What the driver must do for one client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<D> {
    /// Answer locally; the backend is not involved.
    Reply(Reply),
    /// Refused by the edge policy: reply and report it.
    Refuse(Refusal),
    /// A transfer command refused by policy before any 1xx; the prepared data
    /// set-up has been dropped.
    RefuseTransfer {
        /// The refused command.
        cmd: Command,
        /// Why.
        refusal: Refusal,
    },
    /// PROT accepted: data connections from now on use this level.
    SetProt(Prot, Reply),
    /// Reply 234, then run the TLS handshake on the control connection.
    StartTls,
    /// Reply 200 under TLS, send close_notify, continue in plaintext (CCC).
    ClearControl,
    /// Send to the backend and relay its reply.
    Forward(Command),
    /// Forward FEAT and rewrite the reply (or synthesise one).
    Feat(Command),
    /// Open a client-facing passive listener; `extended` answers 229 instead of 227.
    Passive {
        /// EPSV rather than PASV.
        extended: bool,
    },
    /// The client listens at this address (PORT/EPRT, already checked).
    Active(SocketAddr),
    /// Run a transfer over the prepared set-up.
    Transfer {
        /// The command for the backend.
        cmd: Command,
        /// Client → backend.
        upload: bool,
        /// TLS on the client data leg.
        protect: bool,
        /// The data set-up handed in with [`Session::set_data`].
        setup: D,
    },
    /// Forward QUIT, relay the reply, close.
    Quit(Command),
}

/// What a client command means while a transfer runs (PROTOCOL.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuringTransfer {
    /// ABOR: stop the transfer now.
    Abort,
    /// Anything else waits until the transfer's final reply.
    Defer,
}

/// A login result seen in a backend reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// 230 (or 202 to PASS/ACCT).
    Succeeded(String),
    /// 530 (or another 5xx) to USER/PASS/ACCT.
    Failed(String, u16),
}

/// One control session's protocol state.
#[derive(Debug)]
pub struct Session<D> {
    policy: Policy,
    control: ControlTls,
    pbsz: bool,
    prot: Prot,
    user: Option<String>,
    /// A login has succeeded at some point: AUTH stays refused even after
    /// another USER (the backend session cannot be reset, RFC 4217 §4.2).
    has_logged_in: bool,
    /// What audit mode let through since the driver last asked.
    audits: Vec<Refusal>,
    /// The backend accepted TYPE I (binary); RFC 959 starts in ASCII.
    binary: bool,
    epsv_all: bool,
    data: Option<D>,
    peer: IpAddr,
}

impl<D> Session<D> {
    /// A new session for a client at `peer`. Implicit sessions start secured
    /// with PBSZ 0 and PROT P in force (MS-FTPS 3.2.5.1).
    pub fn new(policy: Policy, peer: IpAddr) -> Session<D> {
        let implicit = policy.implicit;
        Session {
            policy,
            control: if implicit {
                ControlTls::Secured
            } else {
                ControlTls::Plain
            },
            pbsz: implicit,
            prot: if implicit { Prot::Private } else { Prot::Clear },
            user: None,
            has_logged_in: false,
            audits: Vec::new(),
            binary: false,
            epsv_all: false,
            data: None,
            peer,
        }
    }

    /// The control connection's protection.
    pub fn control(&self) -> ControlTls {
        self.control
    }

    /// The current PROT level.
    pub fn prot(&self) -> Prot {
        self.prot
    }

    /// The user name last sent with USER.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The policy this session runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What audit mode let through since the last call ("would refuse").
    pub fn take_audits(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.audits)
    }

    /// Applies a verdict: `Some(refusal)` to refuse; an audit is noted and allowed.
    fn verdict(&mut self, verdict: Verdict) -> Option<Refusal> {
        match verdict {
            Verdict::Allow => None,
            Verdict::Refuse(r) => Some(r),
            Verdict::Audit(r) => {
                self.audits.push(r);
                None
            }
        }
    }

    /// The driver completed the control TLS handshake.
    pub fn on_tls_established(&mut self) {
        self.control = ControlTls::Secured;
    }

    /// The driver prepared a data set-up for the next transfer.
    pub fn set_data(&mut self, setup: D) {
        self.data = Some(setup);
    }

    /// Whether the backend is in binary mode (TYPE I), for transfer records.
    pub fn binary(&self) -> bool {
        self.binary
    }

    /// Records login results (and TYPE) from the backend's final reply to `cmd`.
    pub fn on_reply(&mut self, cmd: &Command, reply: &Reply) -> Option<Login> {
        if cmd.verb == Verb::Type && reply.is_success() {
            let arg = cmd.arg_str().to_ascii_uppercase();
            self.binary = arg.starts_with('I') || arg.starts_with('L');
        }
        let ok = match cmd.verb {
            Verb::User => reply.code == 230,
            Verb::Pass | Verb::Acct => reply.code == 230 || reply.code == 202,
            _ => return None,
        };
        let user = self.user.clone().unwrap_or_default();
        if ok {
            self.has_logged_in = true;
            Some(Login::Succeeded(user))
        } else if reply.code >= 500 {
            Some(Login::Failed(user, reply.code))
        } else {
            None
        }
    }

    /// What a command that arrives during a transfer means.
    pub fn during_transfer(&self, cmd: &Command) -> DuringTransfer {
        match cmd.verb {
            Verb::Abor => DuringTransfer::Abort,
            _ => DuringTransfer::Defer,
        }
    }

    /// Decides what to do with one client command.
    pub fn on_command(&mut self, cmd: Command) -> Action<D> {
        let class = cmd.class();
        if class == Class::Security {
            return self.security(&cmd);
        }
        if cmd.verb == Verb::Rein {
            return Action::Refuse(Refusal::Rein);
        }
        if let Some(refusal) = self.verdict(self.policy.before_tls(self.control, &cmd.verb)) {
            return Action::Refuse(refusal);
        }
        match class {
            Class::Login => {
                if cmd.verb == Verb::User {
                    self.user = Some(cmd.arg_str());
                }
                Action::Forward(cmd)
            }
            Class::UnsupportedDataSetup => reply(502, "Command not implemented; use EPSV or PASV."),
            Class::DataSetup => self.data_setup(&cmd),
            Class::Transfer { upload } => self.transfer(cmd, upload),
            Class::Security | Class::Other => self.other(cmd),
        }
    }

    fn other(&mut self, cmd: Command) -> Action<D> {
        match cmd.verb {
            Verb::Feat => Action::Feat(cmd),
            Verb::Quit => Action::Quit(cmd),
            Verb::Host if self.user.is_some() => reply(503, "HOST must come before USER."),
            Verb::Mode if !cmd.arg_str().eq_ignore_ascii_case("S") => {
                reply(504, "Only stream mode (MODE S) is supported.")
            }
            Verb::Stru if !cmd.arg_str().eq_ignore_ascii_case("F") => {
                reply(504, "Only file structure (STRU F) is supported.")
            }
            _ => Action::Forward(cmd),
        }
    }

    fn security(&mut self, cmd: &Command) -> Action<D> {
        let arg = cmd.arg_str().to_ascii_uppercase();
        match cmd.verb {
            Verb::Auth => self.auth(&arg),
            Verb::Adat => reply(503, "ADAT is not used with TLS."),
            Verb::Pbsz => self.pbsz(&arg),
            Verb::Prot => self.prot_command(&arg),
            Verb::Ccc => self.ccc(),
            // MIC, CONF, ENC
            _ => reply(
                502,
                "Command not implemented: TLS protects the whole connection.",
            ),
        }
    }

    fn auth(&mut self, mechanism: &str) -> Action<D> {
        if self.policy.implicit || self.control == ControlTls::Secured {
            return reply(534, "TLS is already active on this connection.");
        }
        if self.control == ControlTls::Cleared {
            return reply(534, "AUTH after CCC is not allowed.");
        }
        if let Some(refusal) = policy::auth(self.has_logged_in) {
            return Action::Refuse(refusal);
        }
        match mechanism {
            "TLS" | "TLS-C" | "SSL" | "TLS-P" => Action::StartTls,
            "" => reply(501, "AUTH needs a mechanism, e.g. AUTH TLS."),
            _ => reply(504, "Unsupported security mechanism; use AUTH TLS."),
        }
    }

    fn pbsz(&mut self, size: &str) -> Action<D> {
        if self.control != ControlTls::Secured {
            return reply(
                503,
                "PBSZ needs an active TLS session (send AUTH TLS first).",
            );
        }
        // TLS streams: any size is answered with PBSZ=0 (RFC 2228 §3 PBSZ).
        match size.parse::<u32>() {
            Ok(_) => {
                self.pbsz = true;
                reply(200, "PBSZ=0")
            }
            Err(_) => reply(501, "PBSZ needs a number (send PBSZ 0)."),
        }
    }

    fn prot_command(&mut self, level: &str) -> Action<D> {
        if self.control == ControlTls::Cleared {
            return reply(503, "PROT is not accepted after CCC.");
        }
        if !self.pbsz || self.control != ControlTls::Secured {
            return reply(503, "Send PBSZ 0 before PROT.");
        }
        let (prot, text) = match level {
            "P" => (Prot::Private, "Protection level set to Private."),
            "C" => (Prot::Clear, "Protection level set to Clear."),
            "S" | "E" => return reply(536, "Only PROT C and PROT P are supported with TLS."),
            "" => return reply(501, "PROT needs a level (C or P)."),
            _ => return reply(504, "Unknown protection level."),
        };
        self.prot = prot;
        Action::SetProt(prot, Reply::new(200, text))
    }

    fn ccc(&mut self) -> Action<D> {
        if self.control != ControlTls::Secured {
            return reply(533, "CCC needs a TLS-protected control connection.");
        }
        if let Some(refusal) = self.verdict(self.policy.ccc()) {
            return Action::Refuse(refusal);
        }
        self.control = ControlTls::Cleared;
        Action::ClearControl
    }

    fn data_setup(&mut self, cmd: &Command) -> Action<D> {
        let action = self.data_setup_action(cmd);
        if matches!(action, Action::Passive { .. } | Action::Active(_)) {
            // A new set-up replaces the old one.
            self.data = None;
        }
        action
    }

    fn data_setup_action(&mut self, cmd: &Command) -> Action<D> {
        let arg = cmd.arg_str();
        let own_family = addr::family_number(self.peer);
        let unsupported = || {
            reply(
                522,
                format!("Network protocol not supported, use ({own_family})"),
            )
        };
        match cmd.verb {
            Verb::Epsv => {
                if arg.eq_ignore_ascii_case("ALL") {
                    self.epsv_all = true;
                    return reply(200, "EPSV ALL accepted.");
                }
                match arg.as_str() {
                    "" => Action::Passive { extended: true },
                    "1" | "2" if arg == own_family.to_string() => {
                        Action::Passive { extended: true }
                    }
                    "1" | "2" => unsupported(),
                    _ => reply(501, "Syntax error in EPSV argument."),
                }
            }
            _ if self.epsv_all => reply(501, "EPSV ALL in effect: only EPSV is allowed."),
            Verb::Pasv => {
                if self.peer.is_ipv6() && !self.policy.public_v4 {
                    return reply(502, "PASV cannot express an IPv6 address; use EPSV.");
                }
                Action::Passive { extended: false }
            }
            Verb::Port => match addr::parse_port_arg(&arg) {
                Ok(a) => self.active_target(SocketAddr::V4(a)),
                Err(_) => reply(501, "Syntax error in PORT argument."),
            },
            // EPRT
            _ => match addr::parse_eprt_arg(&arg) {
                Ok(a) if a.is_ipv6() != self.peer.is_ipv6() => unsupported(),
                Ok(a) => self.active_target(a),
                Err(AddrError::Family) => unsupported(),
                Err(AddrError::Syntax) => reply(501, "Syntax error in EPRT argument."),
            },
        }
    }

    fn active_target(&self, target: SocketAddr) -> Action<D> {
        match policy::data_target(self.peer, target) {
            Some(refusal) => Action::Refuse(refusal),
            None => Action::Active(target),
        }
    }

    fn transfer(&mut self, cmd: Command, upload: bool) -> Action<D> {
        if let Some(refusal) = self.verdict(self.policy.transfer(self.prot)) {
            self.data = None;
            return Action::RefuseTransfer { cmd, refusal };
        }
        let Some(setup) = self.data.take() else {
            return reply(425, "Use PASV, EPSV, PORT or EPRT first.");
        };
        Action::Transfer {
            cmd,
            upload,
            protect: self.prot == Prot::Private,
            setup,
        }
    }
}

fn reply<D>(code: u16, text: impl Into<String>) -> Action<D> {
    Action::Reply(Reply::new(code, text))
}

#[cfg(test)]
mod tests;
