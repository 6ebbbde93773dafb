//! The edge policy: every decision of PROTOCOL.md §15 that turns on the
//! operator's settings, in one screen. Each check returns the [`Refusal`]
//! (why, and the exact reply) or `None` to allow; the session state machine
//! asks, the driver reports every refusal as one event.

use std::net::{IpAddr, SocketAddr};

use super::{ControlTls, Prot};
use crate::config::{Ccc, Requirement};
use crate::ftp::command::Verb;
use crate::ftp::reply::Reply;

/// The policy knobs of one session, fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// USER/PASS/ACCT (and anything but a few harmless verbs) need TLS first.
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
}

/// Verbs allowed before TLS under `control_tls: required` (PROTOCOL.md §2.3).
const BEFORE_TLS: &[Verb] = &[
    Verb::Feat,
    Verb::Quit,
    Verb::Noop,
    Verb::Host,
    Verb::Opts,
    Verb::Syst,
    Verb::Help,
];

impl Policy {
    /// Control TLS: before AUTH only harmless verbs pass (§2.3; security verbs
    /// are the session's own business and are never asked about here).
    pub fn before_tls(&self, control: ControlTls, verb: &Verb) -> Option<Refusal> {
        if control != ControlTls::Plain || self.control_tls == Requirement::Optional {
            return None;
        }
        match verb {
            Verb::User | Verb::Pass | Verb::Acct => Some(Refusal::LoginBeforeTls),
            v if BEFORE_TLS.contains(v) => None,
            _ => Some(Refusal::CommandBeforeTls),
        }
    }

    /// Data TLS: a transfer under PROT C (§4, §15).
    pub fn transfer(&self, prot: Prot) -> Option<Refusal> {
        (self.data_tls == Requirement::Required && prot != Prot::Private)
            .then_some(Refusal::ClearData)
    }

    /// CCC on a TLS control connection (§3.5).
    pub fn ccc(&self) -> Option<Refusal> {
        (self.implicit || self.ccc == Ccc::Deny).then_some(Refusal::CccDenied)
    }
}

/// AUTH once a login has succeeded (§2.2).
pub fn auth(logged_in: bool) -> Option<Refusal> {
    logged_in.then_some(Refusal::AuthAfterLogin)
}

/// PORT/EPRT: only the control peer, only ports >= 1024 (RFC 2577 §3-§4).
pub fn data_target(peer: IpAddr, target: SocketAddr) -> Option<Refusal> {
    if target.ip() != peer {
        return Some(Refusal::ForeignDataTarget {
            target: target.ip(),
            peer,
        });
    }
    (target.port() < 1024).then_some(Refusal::PrivilegedDataPort)
}

/// A protected data connection under `require_session_reuse` (§5.3): it
/// must have resumed a session its control session's binding accepts.
pub fn data_session(require_reuse: bool, bound: bool) -> Option<Refusal> {
    (require_reuse && !bound).then_some(Refusal::SessionNotResumed)
}

/// A protected data connection presents the control connection's client
/// certificate, or none when the control connection had none (§10.2).
pub fn data_client_cert(control: Option<&[u8]>, data: Option<&[u8]>) -> Option<Refusal> {
    (control != data).then_some(Refusal::ClientCertMismatch)
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Policy {
        Policy {
            control_tls: Requirement::Required,
            data_tls: Requirement::Required,
            ccc: Ccc::Deny,
            implicit: false,
            public_v4: false,
        }
    }

    #[test]
    fn section_15_codes() {
        let p = strict();
        let code = |r: Option<Refusal>| r.map(|r| r.reply().code);
        assert_eq!(
            code(p.before_tls(ControlTls::Plain, &Verb::User)),
            Some(530)
        );
        assert_eq!(
            code(p.before_tls(ControlTls::Plain, &Verb::Retr)),
            Some(530)
        );
        assert_eq!(code(p.before_tls(ControlTls::Plain, &Verb::Feat)), None);
        assert_eq!(code(p.before_tls(ControlTls::Secured, &Verb::User)), None);
        assert_eq!(code(p.transfer(Prot::Clear)), Some(522));
        assert_eq!(code(p.transfer(Prot::Private)), None);
        assert_eq!(code(p.ccc()), Some(534));
        assert_eq!(code(auth(true)), Some(534));
        assert_eq!(code(Some(Refusal::Rein)), Some(502));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            code(data_target(peer, "127.0.0.2:2000".parse().unwrap())),
            Some(500)
        );
        assert_eq!(
            code(data_target(peer, "127.0.0.1:21".parse().unwrap())),
            Some(504)
        );
        assert_eq!(
            code(data_target(peer, "127.0.0.1:1024".parse().unwrap())),
            None
        );
        assert_eq!(code(data_session(true, false)), Some(522));
        assert_eq!(code(data_session(false, false)), None);
        assert_eq!(code(data_client_cert(Some(b"a"), Some(b"b"))), Some(522));
        assert_eq!(code(data_client_cert(Some(b"a"), None)), Some(522));
        assert_eq!(code(data_client_cert(None, Some(b"a"))), Some(522));
        assert_eq!(code(data_client_cert(Some(b"a"), Some(b"a"))), None);
    }

    #[test]
    fn optional_policies_allow() {
        let p = Policy {
            control_tls: Requirement::Optional,
            data_tls: Requirement::Optional,
            ccc: Ccc::Allow,
            ..strict()
        };
        assert_eq!(p.before_tls(ControlTls::Plain, &Verb::User), None);
        assert_eq!(p.transfer(Prot::Clear), None);
        assert_eq!(p.ccc(), None);
        let implicit = Policy {
            implicit: true,
            ..p
        };
        assert_eq!(implicit.ccc(), Some(Refusal::CccDenied));
    }
}
