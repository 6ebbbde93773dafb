//! The edge policy: every decision of PROTOCOL.md §15 that turns on the
//! operator's settings, in one screen. Each configurable check returns a
//! [`Verdict`]: allow, refuse (with its [`Refusal`]), or, in audit mode,
//! allow and report what `required` would have refused. The session state
//! machine asks; the driver reports every refusal and audit as one event.

use std::net::{IpAddr, SocketAddr};

use super::refusal::Refusal;
use super::{ControlTls, Prot};
use crate::config::{Ccc, Requirement, Reuse};
use crate::ftp::command::Verb;

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

/// What a configurable check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse with this reason's reply.
    Refuse(Refusal),
    /// Go ahead, but report that enforcing would refuse it (audit mode).
    Audit(Refusal),
}

/// A rule under `required` refuses, under `audit` reports, under `optional` allows.
fn enforce(requirement: Requirement, broken: bool, why: Refusal) -> Verdict {
    match (broken, requirement) {
        (false, _) | (true, Requirement::Optional) => Verdict::Allow,
        (true, Requirement::Required) => Verdict::Refuse(why),
        (true, Requirement::Audit) => Verdict::Audit(why),
    }
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
    pub fn before_tls(&self, control: ControlTls, verb: &Verb) -> Verdict {
        if control != ControlTls::Plain {
            return Verdict::Allow;
        }
        let why = match verb {
            Verb::User | Verb::Pass | Verb::Acct => Refusal::LoginBeforeTls,
            v if BEFORE_TLS.contains(v) => return Verdict::Allow,
            _ => Refusal::CommandBeforeTls,
        };
        enforce(self.control_tls, true, why)
    }

    /// Data TLS: a transfer under PROT C (§4, §15).
    pub fn transfer(&self, prot: Prot) -> Verdict {
        enforce(self.data_tls, prot != Prot::Private, Refusal::ClearData)
    }

    /// CCC on a TLS control connection (§3.5); never on implicit sessions.
    pub fn ccc(&self) -> Verdict {
        match (self.implicit, self.ccc) {
            (true, _) | (false, Ccc::Deny) => Verdict::Refuse(Refusal::CccDenied),
            (false, Ccc::Audit) => Verdict::Audit(Refusal::CccDenied),
            (false, Ccc::Allow) => Verdict::Allow,
        }
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
pub fn data_session(reuse: Reuse, bound: bool) -> Verdict {
    let requirement = match reuse {
        Reuse::Off => Requirement::Optional,
        Reuse::Required => Requirement::Required,
        Reuse::Audit => Requirement::Audit,
    };
    enforce(requirement, !bound, Refusal::SessionNotResumed)
}

/// A protected data connection presents the control connection's client
/// certificate, or none when the control connection had none (§10.2).
/// Enforced whenever client certificates are verified, except in audit mode.
pub fn data_client_cert(mode: Requirement, control: Option<&[u8]>, data: Option<&[u8]>) -> Verdict {
    let requirement = match mode {
        Requirement::Audit => Requirement::Audit,
        _ => Requirement::Required,
    };
    enforce(requirement, control != data, Refusal::ClientCertMismatch)
}

/// A control connection without a client certificate: refused by the TLS
/// handshake itself under `required`; reported under `audit`.
pub fn client_cert(mode: Requirement, presented: bool) -> Verdict {
    match mode {
        Requirement::Audit => enforce(mode, !presented, Refusal::ClientCertMissing),
        _ => Verdict::Allow,
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

    fn refused(v: Verdict) -> Option<u16> {
        match v {
            Verdict::Refuse(r) => Some(r.reply().code),
            _ => None,
        }
    }

    #[test]
    fn section_15_codes() {
        let p = strict();
        let plain = ControlTls::Plain;
        assert_eq!(refused(p.before_tls(plain, &Verb::User)), Some(530));
        assert_eq!(refused(p.before_tls(plain, &Verb::Retr)), Some(530));
        assert_eq!(p.before_tls(plain, &Verb::Feat), Verdict::Allow);
        assert_eq!(
            p.before_tls(ControlTls::Secured, &Verb::User),
            Verdict::Allow
        );
        assert_eq!(refused(p.transfer(Prot::Clear)), Some(522));
        assert_eq!(p.transfer(Prot::Private), Verdict::Allow);
        assert_eq!(refused(p.ccc()), Some(534));
        let code = |r: Option<Refusal>| r.map(|r| r.reply().code);
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
        assert_eq!(refused(data_session(Reuse::Required, false)), Some(522));
        assert_eq!(data_session(Reuse::Off, false), Verdict::Allow);
        let req = Requirement::Required;
        assert_eq!(
            refused(data_client_cert(req, Some(b"a"), Some(b"b"))),
            Some(522)
        );
        assert_eq!(refused(data_client_cert(req, Some(b"a"), None)), Some(522));
        assert_eq!(refused(data_client_cert(req, None, Some(b"a"))), Some(522));
        assert_eq!(
            data_client_cert(req, Some(b"a"), Some(b"a")),
            Verdict::Allow
        );
    }

    #[test]
    fn optional_policies_allow() {
        let p = Policy {
            control_tls: Requirement::Optional,
            data_tls: Requirement::Optional,
            ccc: Ccc::Allow,
            ..strict()
        };
        assert_eq!(p.before_tls(ControlTls::Plain, &Verb::User), Verdict::Allow);
        assert_eq!(p.transfer(Prot::Clear), Verdict::Allow);
        assert_eq!(p.ccc(), Verdict::Allow);
        let implicit = Policy {
            implicit: true,
            ..p
        };
        assert_eq!(implicit.ccc(), Verdict::Refuse(Refusal::CccDenied));
    }

    #[test]
    fn audit_mode_allows_and_reports_what_required_refuses() {
        let p = Policy {
            control_tls: Requirement::Audit,
            data_tls: Requirement::Audit,
            ccc: Ccc::Audit,
            ..strict()
        };
        assert_eq!(
            p.before_tls(ControlTls::Plain, &Verb::User),
            Verdict::Audit(Refusal::LoginBeforeTls)
        );
        assert_eq!(p.before_tls(ControlTls::Plain, &Verb::Noop), Verdict::Allow);
        assert_eq!(p.transfer(Prot::Clear), Verdict::Audit(Refusal::ClearData));
        assert_eq!(p.transfer(Prot::Private), Verdict::Allow);
        assert_eq!(p.ccc(), Verdict::Audit(Refusal::CccDenied));
        assert_eq!(
            data_session(Reuse::Audit, false),
            Verdict::Audit(Refusal::SessionNotResumed)
        );
        assert_eq!(data_session(Reuse::Audit, true), Verdict::Allow);
        let audit = Requirement::Audit;
        assert_eq!(
            data_client_cert(audit, Some(b"a"), None),
            Verdict::Audit(Refusal::ClientCertMismatch)
        );
        assert_eq!(
            client_cert(audit, false),
            Verdict::Audit(Refusal::ClientCertMissing)
        );
        assert_eq!(client_cert(Requirement::Required, false), Verdict::Allow);
    }
}
