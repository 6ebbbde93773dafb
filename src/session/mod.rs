//! The control-session state machine, pure: no sockets, no clock.
//!
//! [`Session::on_command`] takes one parsed client command and decides what
//! happens: a local reply (RFC 2228 security verbs, policy refusals), a TLS
//! start, a forward to the backend, or a data set-up/transfer for the driver
//! to carry out. It owns the PROT/PBSZ state, the login state and the policy
//! of PROTOCOL.md §2-§4 with the reply codes fixed in §15.
//!
//! [`driver`] is the async task that owns the sockets and executes actions.

pub mod driver;

use std::net::{IpAddr, SocketAddr};

use crate::config::{Ccc, Requirement};
use crate::ftp::addr::{self, AddrError};
use crate::ftp::command::{Class, Command};
use crate::ftp::reply::Reply;

/// The policy knobs the state machine needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// USER/PASS/ACCT need TLS first.
    pub control_tls: Requirement,
    /// Transfers need PROT P.
    pub data_tls: Requirement,
    /// CCC honoured or refused.
    pub ccc: Ccc,
    /// The session came in on an implicit-FTPS listener.
    pub implicit: bool,
    /// An IPv4 `--public-address` is configured (PASV possible on IPv6 control).
    pub public_v4: bool,
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
pub enum Action {
    /// Answer locally; the backend is not involved.
    Reply(Reply),
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
    /// Refuse a transfer and drop any pending data set-up.
    RefuseTransfer(Reply),
    /// Run a transfer.
    Transfer {
        /// The command for the backend.
        cmd: Command,
        /// Client → backend.
        upload: bool,
        /// TLS on the client data leg.
        protect: bool,
    },
    /// Forward QUIT, relay the reply, close.
    Quit(Command),
}

/// One control session's protocol state.
#[derive(Debug)]
pub struct Session {
    policy: Policy,
    control: ControlTls,
    pbsz: bool,
    prot: Prot,
    user_sent: bool,
    logged_in: bool,
    epsv_all: bool,
    data_ready: bool,
    peer: IpAddr,
}

const NEED_TLS: &str = "TLS required: send AUTH TLS first, then log in.";

impl Session {
    /// A new session for a client at `peer`. Implicit sessions start secured
    /// with PBSZ 0 and PROT P in force (MS-FTPS 3.2.5.1).
    pub fn new(policy: Policy, peer: IpAddr) -> Session {
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
            user_sent: false,
            logged_in: false,
            epsv_all: false,
            data_ready: false,
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

    /// The driver completed the control TLS handshake.
    pub fn on_tls_established(&mut self) {
        self.control = ControlTls::Secured;
    }

    /// The driver set up a data path (passive listener or active target).
    pub fn on_data_ready(&mut self, ready: bool) {
        self.data_ready = ready;
    }

    /// Records login results from backend replies.
    pub fn on_reply(&mut self, cmd: &Command, reply: &Reply) {
        match cmd.verb.as_str() {
            "USER" => self.logged_in = reply.code == 230,
            "PASS" | "ACCT" => self.logged_in = reply.code == 230 || reply.code == 202,
            _ => {}
        }
    }

    /// Decides what to do with one client command.
    pub fn on_command(&mut self, cmd: Command) -> Action {
        let class = cmd.class();
        if class == Class::Security {
            return self.security(&cmd);
        }
        if cmd.verb == "REIN" {
            return reply(
                502,
                "REIN not implemented: reconnect to start a new session.",
            );
        }
        if self.control == ControlTls::Plain && self.policy.control_tls == Requirement::Required {
            let allowed = matches!(
                cmd.verb.as_str(),
                "FEAT" | "QUIT" | "NOOP" | "HOST" | "OPTS" | "SYST" | "HELP"
            );
            if !allowed {
                return reply(530, NEED_TLS);
            }
        }
        match class {
            Class::Login => {
                if cmd.verb == "USER" {
                    self.user_sent = true;
                    self.logged_in = false;
                }
                Action::Forward(cmd)
            }
            Class::UnsupportedDataSetup => reply(502, "Command not implemented; use EPSV or PASV."),
            Class::DataSetup => self.data_setup(&cmd),
            Class::Transfer { upload } => self.transfer(cmd, upload),
            Class::Security | Class::Other => match cmd.verb.as_str() {
                "FEAT" => Action::Feat(cmd),
                "QUIT" => Action::Quit(cmd),
                "HOST" if self.user_sent => reply(503, "HOST must come before USER."),
                "MODE" if !cmd.arg_str().eq_ignore_ascii_case("S") => {
                    reply(504, "Only stream mode (MODE S) is supported.")
                }
                "STRU" if !cmd.arg_str().eq_ignore_ascii_case("F") => {
                    reply(504, "Only file structure (STRU F) is supported.")
                }
                _ => Action::Forward(cmd),
            },
        }
    }

    fn security(&mut self, cmd: &Command) -> Action {
        let arg = cmd.arg_str().to_ascii_uppercase();
        match cmd.verb.as_str() {
            "AUTH" => {
                if self.policy.implicit || self.control == ControlTls::Secured {
                    return reply(534, "TLS is already active on this connection.");
                }
                if self.control == ControlTls::Cleared {
                    return reply(534, "AUTH after CCC is not allowed.");
                }
                if self.logged_in {
                    return reply(
                        534,
                        "AUTH after login is not allowed; reconnect and send AUTH TLS first.",
                    );
                }
                match arg.as_str() {
                    "TLS" | "TLS-C" | "SSL" | "TLS-P" => Action::StartTls,
                    "" => reply(501, "AUTH needs a mechanism, e.g. AUTH TLS."),
                    _ => reply(504, "Unsupported security mechanism; use AUTH TLS."),
                }
            }
            "ADAT" => reply(503, "ADAT is not used with TLS."),
            "PBSZ" => {
                if self.control != ControlTls::Secured {
                    return reply(
                        503,
                        "PBSZ needs an active TLS session (send AUTH TLS first).",
                    );
                }
                match arg.parse::<u32>() {
                    Ok(0) => {
                        self.pbsz = true;
                        reply(200, "PBSZ=0")
                    }
                    Ok(_) => {
                        self.pbsz = true;
                        reply(200, "PBSZ=0")
                    }
                    Err(_) => reply(501, "PBSZ needs a number (send PBSZ 0)."),
                }
            }
            "PROT" => {
                if self.control == ControlTls::Cleared {
                    return reply(503, "PROT is not accepted after CCC.");
                }
                if !self.pbsz || self.control != ControlTls::Secured {
                    return reply(503, "Send PBSZ 0 before PROT.");
                }
                match arg.as_str() {
                    "P" => {
                        self.prot = Prot::Private;
                        reply(200, "Protection level set to Private.")
                    }
                    "C" => {
                        self.prot = Prot::Clear;
                        reply(200, "Protection level set to Clear.")
                    }
                    "S" | "E" => reply(536, "Only PROT C and PROT P are supported with TLS."),
                    "" => reply(501, "PROT needs a level (C or P)."),
                    _ => reply(504, "Unknown protection level."),
                }
            }
            "CCC" => {
                if self.control != ControlTls::Secured {
                    return reply(533, "CCC needs a TLS-protected control connection.");
                }
                if self.policy.implicit || self.policy.ccc == Ccc::Deny {
                    return reply(534, "CCC denied by policy.");
                }
                self.control = ControlTls::Cleared;
                Action::ClearControl
            }
            // MIC, CONF, ENC
            _ => reply(
                502,
                "Command not implemented: TLS protects the whole connection.",
            ),
        }
    }

    fn data_setup(&mut self, cmd: &Command) -> Action {
        let arg = cmd.arg_str();
        let v6 = self.peer.is_ipv6();
        let own_family = addr::family_number(self.peer);
        match cmd.verb.as_str() {
            "EPSV" => {
                if arg.eq_ignore_ascii_case("ALL") {
                    self.epsv_all = true;
                    return reply(200, "EPSV ALL accepted.");
                }
                match arg.as_str() {
                    "" => Action::Passive { extended: true },
                    "1" | "2" if arg == own_family.to_string() => {
                        Action::Passive { extended: true }
                    }
                    "1" | "2" => reply(
                        522,
                        format!("Network protocol not supported, use ({own_family})"),
                    ),
                    _ => reply(501, "Syntax error in EPSV argument."),
                }
            }
            _ if self.epsv_all => reply(501, "EPSV ALL in effect: only EPSV is allowed."),
            "PASV" => {
                if v6 && !self.policy.public_v4 {
                    return reply(502, "PASV cannot express an IPv6 address; use EPSV.");
                }
                Action::Passive { extended: false }
            }
            "PORT" => match addr::parse_port_arg(&arg) {
                Ok(a) => self.check_active(SocketAddr::V4(a)),
                Err(_) => reply(501, "Syntax error in PORT argument."),
            },
            // EPRT
            _ => match addr::parse_eprt_arg(&arg) {
                Ok(a) if a.is_ipv6() != v6 => reply(
                    522,
                    format!("Network protocol not supported, use ({own_family})"),
                ),
                Ok(a) => self.check_active(a),
                Err(AddrError::Family) => reply(
                    522,
                    format!("Network protocol not supported, use ({own_family})"),
                ),
                Err(AddrError::Syntax) => reply(501, "Syntax error in EPRT argument."),
            },
        }
    }

    /// Bounce protection (RFC 2577 §3-§4): only the control peer, only ports >= 1024.
    fn check_active(&self, target: SocketAddr) -> Action {
        if target.ip() != self.peer {
            return reply(
                500,
                format!(
                    "Refusing to connect to {} (only to {}).",
                    target.ip(),
                    self.peer
                ),
            );
        }
        if target.port() < 1024 {
            return reply(504, "Refusing to connect to a port below 1024.");
        }
        Action::Active(target)
    }

    fn transfer(&mut self, cmd: Command, upload: bool) -> Action {
        if self.policy.data_tls == Requirement::Required && self.prot != Prot::Private {
            self.data_ready = false;
            return Action::RefuseTransfer(Reply::new(
                522,
                "Data connections must be encrypted: send PBSZ 0 and PROT P first.",
            ));
        }
        if !self.data_ready {
            return reply(425, "Use PASV, EPSV, PORT or EPRT first.");
        }
        self.data_ready = false;
        Action::Transfer {
            cmd,
            upload,
            protect: self.prot == Prot::Private,
        }
    }
}

fn reply(code: u16, text: impl Into<String>) -> Action {
    Action::Reply(Reply::new(code, text))
}

/// Verbs the proxy owns or cannot rewrite; backend FEAT lines for them are dropped.
const HIDDEN_FEATURES: &[&str] = &[
    "AUTH", "ADAT", "PBSZ", "PROT", "CCC", "MIC", "CONF", "ENC", "EPSV", "EPRT", "SPSV", "ESTA",
    "ESTP", "LPSV", "LPRT",
];

/// Builds the client's FEAT reply from the backend's (or synthesises one when
/// the backend refused FEAT): backend security and un-rewritable data-setup
/// lines removed, `AUTH TLS`, `PBSZ`, `PROT`, `EPSV`, `EPRT` added (RFC 2389 §3, RFC 4217 §6).
pub fn rewrite_feat(backend: Option<&Reply>) -> Reply {
    let mut body: Vec<Vec<u8>> = Vec::new();
    if let Some(r) = backend.filter(|r| r.code == 211) {
        for line in r.body() {
            let text = String::from_utf8_lossy(line);
            let label = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if label.is_empty() || HIDDEN_FEATURES.contains(&label.as_str()) {
                continue;
            }
            body.push(format!(" {}", text.trim()).into_bytes());
        }
    }
    for f in [" AUTH TLS", " PBSZ", " PROT", " EPSV", " EPRT"] {
        body.push(f.as_bytes().to_vec());
    }
    Reply::multi(211, "Features:", body, "End")
}

#[cfg(test)]
mod tests;
