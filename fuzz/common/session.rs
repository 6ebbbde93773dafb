//! Target `session`: the control-session state machine [`Session`] fed an
//! arbitrary sequence of events under an arbitrary [`Policy`], with its
//! security invariants checked after every step.
//!
//! Input: policy (each of `control_tls`, `data_tls` and `ccc` may be in
//! audit mode) and client address first, then events until the bytes run
//! out (at most [`MAX_EVENTS`]):
//! - a client command: a verb from [`VERBS`] (any case) with an argument that
//!   is empty, a word from [`ARGS`], a PORT/EPRT address (the client's own or
//!   another, any port) or random bytes; or a wholly random line. Lines that
//!   `Command::parse` refuses never reach the session, as in the driver;
//! - data ready (`set_data`), at any time: a superset of the driver, which
//!   hands a set-up in only after `Passive`/`Active`;
//! - a backend reply to any command (`on_reply`), at any time.
//!
//! Each action is followed up as the driver would: `StartTls` by the
//! handshake (`on_tls_established`) or, when it fails, the end of the
//! session, and only then; `Forward` by 1xx replies and a final one
//! (`on_reply`); `Passive`/`Active` by the backend's answer and, when it is
//! usable, `set_data`; `Transfer` by client commands during the transfer
//! (`during_transfer`); `Quit` ends the session.
//!
//! Invariants (checked in [`check`]):
//! - (a) with `control_tls: required`, while control is plain: no
//!   `Forward`/`Feat`/`Quit` of a verb outside the before-TLS list (so never
//!   USER/PASS/ACCT), no `Passive`/`Active`/`Transfer`, no `SetProt`/`ClearControl`;
//! - (b) with `data_tls: required`: `Transfer` only under PROT P, with `protect`;
//! - (c) every reply in an action, and every reply the driver would build from
//!   the follow-up (relayed with the backend hidden, FEAT rewritten, 227/229),
//!   is well formed ([`assert_well_formed`]);
//! - (d) `StartTls` only for AUTH, on a plain control connection, not implicit;
//! - (e) nothing panics;
//! - and: control changes only by the handshake or by `ClearControl` (Secured
//!   to Cleared, `ccc: allow`, not implicit), never back to TLS after CCC; an
//!   implicit session is never plain; PROT changes only with `SetProt`; the
//!   backend is never sent a security, data-setup or transfer verb, nor REIN
//!   (they are the proxy's own); `Active` targets only the client's own
//!   address at a port >= 1024 (RFC 2577); a transfer command gets exactly
//!   what the policy says (530 before TLS, 522 under PROT C with
//!   `data_tls: required`, 425 without a set-up, else `Transfer` with the
//!   set-up); ABOR and only ABOR aborts a running transfer;
//! - audit mode lets through exactly what `required` would refuse, and
//!   reports exactly that (`take_audits`); `required` and `optional` report nothing;
//! - `on_reply` reports a login only for USER/PASS/ACCT: success on 230 (and
//!   202 to PASS/ACCT), failure on 5xx, naming the last USER; after a
//!   success AUTH is refused for good; TYPE switches the binary flag only
//!   when the backend accepts it (I and L are binary).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use ftpsgate::config::{Ccc, Requirement};
use ftpsgate::ftp::addr;
use ftpsgate::ftp::command::{Class, Command, Verb};
use ftpsgate::ftp::reply::Reply;
use ftpsgate::ftp::rewrite::{self, BackendPassive, Hide};
use ftpsgate::session::{
    Action, ControlTls, DuringTransfer, Login, Policy, Prot, Refusal, Session,
};

use super::{assert_well_formed, Input};

/// Events per run at most (keeps every run short).
pub const MAX_EVENTS: usize = 200;

/// Verbs the generator uses: all the verbs the session treats specially,
/// plus a few it forwards.
pub const VERBS: &[&str] = &[
    "AUTH", "PBSZ", "PROT", "CCC", "USER", "PASS", "ACCT", "RETR", "STOR", "STOU", "APPE", "LIST",
    "NLST", "MLSD", "PASV", "EPSV", "PORT", "EPRT", "REIN", "FEAT", "QUIT", "NOOP", "HOST", "OPTS",
    "SYST", "HELP", "MODE", "STRU", "ABOR", "STAT", "ADAT", "MIC", "CONF", "ENC", "LPRT", "LPSV",
    "SPSV", "ESTA", "ESTP", "CWD", "XMKD", "SITE", "TYPE",
];

/// Arguments the session looks at.
pub const ARGS: &[&str] = &[
    "TLS",
    "tls",
    "TLS-C",
    "SSL",
    "TLS-P",
    "GSSAPI",
    "0",
    "1",
    "2",
    "16384",
    "-1",
    "x",
    "P",
    "p",
    "C",
    "S",
    "E",
    "ALL",
    "all",
    "F",
    "alice",
    " P ",
    "example.test",
    "UTF8 ON",
    "I",
    "A N",
    "L 8",
];

/// Client addresses: IPv4, IPv6 and IPv4-mapped IPv6.
const PEERS: &[&str] = &[
    "127.0.0.1",
    "192.0.2.10",
    "::1",
    "2001:db8::10",
    "::ffff:192.0.2.10",
];

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

/// Backend reply codes worth trying more often than chance would.
const CODES: &[u16] = &[
    110, 125, 150, 200, 202, 211, 221, 226, 227, 229, 230, 331, 332, 421, 425, 500, 502, 530, 550,
];

/// The target body.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut fuzz = Fuzz::new(&mut input);
    for _ in 0..MAX_EVENTS {
        if input.is_empty() || !fuzz.step(&mut input) {
            break;
        }
    }
}

/// The session under test and what the checks need to know about it.
struct Fuzz {
    session: Session<()>,
    policy: Policy,
    peer: IpAddr,
    /// A data set-up has been handed in and not used or replaced since.
    has_data: bool,
    /// A backend reply reported a successful login.
    logged_in: bool,
    hide: Hide,
}

impl Fuzz {
    fn new(input: &mut Input) -> Fuzz {
        let flags = input.byte();
        let requirement = |shift: u8| match (flags >> shift) & 3 {
            1 => Requirement::Optional,
            2 => Requirement::Audit,
            _ => Requirement::Required,
        };
        let policy = Policy {
            control_tls: requirement(0),
            data_tls: requirement(2),
            ccc: match (flags >> 4) & 3 {
                1 => Ccc::Allow,
                2 => Ccc::Audit,
                _ => Ccc::Deny,
            },
            implicit: flags & 64 != 0,
            public_v4: flags & 128 != 0,
        };
        let peer: IpAddr = input.pick(PEERS).parse().expect("address");
        let session = Session::new(policy, peer);
        let (control, prot) = match policy.implicit {
            true => (ControlTls::Secured, Prot::Private),
            false => (ControlTls::Plain, Prot::Clear),
        };
        assert_eq!((session.control(), session.prot()), (control, prot));
        let hide = Hide {
            backend: "10.0.0.5:21".parse().expect("address"),
            backend_name: Some("legacy.example".into()),
            proxy: SocketAddr::new(peer, 21),
            proxy_backend_side: "10.0.0.1:40000".parse().expect("address"),
            client: SocketAddr::new(peer, 50000),
        };
        Fuzz {
            session,
            policy,
            peer,
            has_data: false,
            logged_in: false,
            hide,
        }
    }

    /// One event; false when the session is over.
    fn step(&mut self, input: &mut Input) -> bool {
        match input.below(8) {
            0 => {
                self.session.set_data(());
                self.has_data = true;
                true
            }
            1 => {
                if let Some(command) = command(input, self.peer) {
                    let reply = backend_reply(input);
                    self.on_reply(&command, &reply);
                }
                true
            }
            _ => match command(input, self.peer) {
                Some(command) => self.command(input, command),
                None => true,
            },
        }
    }

    /// A backend's final reply to `command`: what it says about the login
    /// and the transfer type.
    fn on_reply(&mut self, command: &Command, reply: &Reply) {
        let binary = self.session.binary();
        let user = self.session.user().unwrap_or_default().to_string();
        let login = self.session.on_reply(command, reply);
        let success = match command.verb {
            Verb::User => reply.code == 230,
            Verb::Pass | Verb::Acct => matches!(reply.code, 202 | 230),
            _ => {
                assert_eq!(login, None, "{command} -> {} is no login", reply.code);
                false
            }
        };
        if matches!(command.verb, Verb::User | Verb::Pass | Verb::Acct) {
            let want = if success {
                Some(Login::Succeeded(user))
            } else if reply.code >= 500 {
                Some(Login::Failed(user, reply.code))
            } else {
                None
            };
            assert_eq!(login, want, "{command} -> {}", reply.code);
        }
        self.logged_in |= success;
        let want = match command.verb {
            Verb::Type if reply.is_success() => {
                let arg = command.arg_str().to_ascii_uppercase();
                arg.starts_with('I') || arg.starts_with('L')
            }
            _ => binary,
        };
        assert_eq!(self.session.binary(), want, "{command} -> {}", reply.code);
    }

    /// A client command, its checks, and the driver's follow-up.
    fn command(&mut self, input: &mut Input, command: Command) -> bool {
        let before = (self.session.control(), self.session.prot());
        let action = self.session.on_command(command.clone());
        check(self, before, &command, &action);
        self.follow_up(input, action)
    }

    fn follow_up(&mut self, input: &mut Input, action: Action<()>) -> bool {
        match action {
            Action::StartTls => {
                if !input.bool() {
                    return false; // The handshake failed: the session ends.
                }
                self.session.on_tls_established();
                assert_eq!(self.session.control(), ControlTls::Secured);
            }
            Action::Forward(command) => self.forward(input, &command),
            Action::Feat(_) => assert_well_formed(&rewrite::feat(Some(&backend_reply(input)))),
            Action::Passive { extended } => self.passive(input, extended),
            Action::Active(_) => {
                if input.bool() {
                    self.session.set_data(());
                    self.has_data = true;
                }
            }
            Action::Transfer { .. } => self.transfer(input),
            Action::Quit(_) => return false,
            Action::Reply(_)
            | Action::Refuse(_)
            | Action::RefuseTransfer { .. }
            | Action::SetProt(..)
            | Action::ClearControl => {}
        }
        true
    }

    /// The backend's 1xx replies and final reply, relayed with its address hidden.
    fn forward(&mut self, input: &mut Input, command: &Command) {
        loop {
            let mut reply = backend_reply(input);
            let preliminary = reply.is_preliminary();
            if !preliminary {
                self.on_reply(command, &reply);
            }
            rewrite::hide_backend(&mut reply, &self.hide);
            assert_well_formed(&reply);
            if !preliminary || input.is_empty() {
                break;
            }
        }
    }

    /// The backend's answer to PASV/EPSV; when usable, a set-up and a 227/229.
    fn passive(&mut self, input: &mut Input, extended: bool) {
        let reply = match input.below(3) {
            0 => {
                let host = SocketAddrV4::new([192, 168, 9, 9].into(), input.u16());
                Reply::new(227, addr::pasv_reply_text(host))
            }
            1 => Reply::new(229, addr::epsv_reply_text(input.u16())),
            _ => backend_reply(input),
        };
        let BackendPassive::Connect(target) = rewrite::backend_passive(&reply, self.hide.backend)
        else {
            return;
        };
        assert_eq!(target.ip(), self.hide.backend.ip());
        self.session.set_data(());
        self.has_data = true;
        let public = self
            .policy
            .public_v4
            .then(|| IpAddr::from([198, 51, 100, 7]));
        let advertised = rewrite::advertised_v4(public, self.peer);
        assert_well_formed(&rewrite::passive_reply(extended, advertised, input.u16()));
    }

    /// Client commands while the transfer runs, and the backend's 1xx for it.
    fn transfer(&mut self, input: &mut Input) {
        let active = input.bool();
        assert_well_formed(&rewrite::client_preliminary(backend_reply(input), active));
        for _ in 0..input.below(3) {
            if let Some(command) = command(input, self.peer) {
                let abort = command.verb == Verb::Abor;
                let during = self.session.during_transfer(&command);
                assert_eq!(during == DuringTransfer::Abort, abort, "{command}");
            }
        }
    }
}

/// The invariants for one command, given the state before it.
fn check(fuzz: &mut Fuzz, before: (ControlTls, Prot), command: &Command, action: &Action<()>) {
    let (control, prot) = before;
    let policy = &fuzz.policy;
    for reply in replies(action) {
        assert_well_formed(&reply); // (c)
    }
    let plain_required =
        policy.control_tls == Requirement::Required && control == ControlTls::Plain;
    if plain_required {
        before_tls(command, action); // (a)
    }
    let audits = fuzz.session.take_audits();
    assert_eq!(
        audits,
        expected_audits(fuzz, control, prot, command),
        "{command} audited"
    );
    let session = &fuzz.session;
    if command.verb == Verb::User {
        if let Action::Forward(_) = action {
            assert_eq!(session.user(), Some(command.arg_str().as_str()));
        }
    }
    if command.verb == Verb::Auth && fuzz.logged_in && control == ControlTls::Plain {
        assert!(
            matches!(action, Action::Refuse(Refusal::AuthAfterLogin)),
            "{command} after a login -> {action:?}"
        );
    }
    check_control(fuzz, control, command, action);
    match action {
        Action::SetProt(level, _) => {
            assert_eq!(control, ControlTls::Secured, "PROT before TLS");
            assert_eq!(session.prot(), *level);
        }
        _ => assert_eq!(session.prot(), prot, "PROT changed by {command}"),
    }
    if let Action::Forward(sent) | Action::Feat(sent) | Action::Quit(sent) = action {
        assert_eq!(sent, command);
        let own = matches!(
            sent.class(),
            Class::Security
                | Class::DataSetup
                | Class::UnsupportedDataSetup
                | Class::Transfer { .. }
        );
        assert!(
            !own && sent.verb != Verb::Rein,
            "{sent} sent to the backend"
        );
    }
    if let Action::Active(target) = action {
        assert_eq!(target.ip(), fuzz.peer, "bounce to {target}");
        assert!(target.port() >= 1024, "active target {target}");
    }
    if matches!(action, Action::Passive { .. } | Action::Active(_)) {
        fuzz.has_data = false; // The new set-up replaces the old one.
    }
    if let Class::Transfer { upload } = command.class() {
        let expected = expected_transfer(fuzz, plain_required, prot);
        check_transfer(expected, upload, command, action, policy); // (b)
    }
    if matches!(
        action,
        Action::Transfer { .. } | Action::RefuseTransfer { .. }
    ) {
        fuzz.has_data = false; // Used, or dropped with the refusal.
    }
}

/// (a): under `control_tls: required` on a plain connection.
fn before_tls(command: &Command, action: &Action<()>) {
    match action {
        Action::Forward(c) | Action::Feat(c) | Action::Quit(c) => {
            assert!(BEFORE_TLS.contains(&c.verb), "{c} forwarded before TLS")
        }
        Action::Passive { .. }
        | Action::Active(_)
        | Action::Transfer { .. }
        | Action::SetProt(..)
        | Action::ClearControl => panic!("{command} -> {action:?} before TLS"),
        Action::Reply(_) | Action::Refuse(_) | Action::RefuseTransfer { .. } | Action::StartTls => {
        }
    }
}

/// (d) and the control-protection transitions.
fn check_control(fuzz: &Fuzz, control: ControlTls, command: &Command, action: &Action<()>) {
    let policy = &fuzz.policy;
    let after = fuzz.session.control();
    match action {
        Action::StartTls => {
            assert_eq!(command.verb, Verb::Auth);
            assert!(
                control == ControlTls::Plain && !policy.implicit,
                "StartTls when {control:?}"
            );
            assert_eq!(after, control);
        }
        Action::ClearControl => {
            assert_eq!(command.verb, Verb::Ccc);
            assert_eq!(control, ControlTls::Secured);
            assert!(
                matches!(policy.ccc, Ccc::Allow | Ccc::Audit) && !policy.implicit,
                "CCC allowed"
            );
            assert_eq!(after, ControlTls::Cleared);
        }
        _ => assert_eq!(after, control, "control changed by {command}"),
    }
    if policy.implicit {
        assert_ne!(after, ControlTls::Plain);
    }
}

/// What audit mode must report for `command`, given the state before it:
/// exactly the refusal `required` would have given, where the setting is `audit`.
fn expected_audits(
    fuzz: &Fuzz,
    control: ControlTls,
    prot: Prot,
    command: &Command,
) -> Vec<Refusal> {
    let policy = &fuzz.policy;
    let class = command.class();
    if command.verb == Verb::Rein {
        return Vec::new();
    }
    if class == Class::Security {
        let ccc_audited = command.verb == Verb::Ccc
            && control == ControlTls::Secured
            && policy.ccc == Ccc::Audit
            && !policy.implicit;
        return if ccc_audited {
            vec![Refusal::CccDenied]
        } else {
            Vec::new()
        };
    }
    let mut out = Vec::new();
    if control == ControlTls::Plain && !BEFORE_TLS.contains(&command.verb) {
        match policy.control_tls {
            Requirement::Audit => out.push(match command.verb {
                Verb::User | Verb::Pass | Verb::Acct => Refusal::LoginBeforeTls,
                _ => Refusal::CommandBeforeTls,
            }),
            Requirement::Required => return out, // refused: nothing further is asked
            Requirement::Optional => {}
        }
    }
    if matches!(class, Class::Transfer { .. })
        && prot != Prot::Private
        && policy.data_tls == Requirement::Audit
    {
        out.push(Refusal::ClearData);
    }
    out
}

/// What a transfer command must get.
#[derive(Debug, PartialEq)]
enum Expected {
    BeforeTls,
    ClearData,
    NoSetup,
    Transfer { protect: bool },
}

fn expected_transfer(fuzz: &Fuzz, plain_required: bool, prot: Prot) -> Expected {
    if plain_required {
        Expected::BeforeTls
    } else if fuzz.policy.data_tls == Requirement::Required && prot != Prot::Private {
        Expected::ClearData
    } else if !fuzz.has_data {
        Expected::NoSetup
    } else {
        Expected::Transfer {
            protect: prot == Prot::Private,
        }
    }
}

fn check_transfer(
    expected: Expected,
    upload: bool,
    command: &Command,
    action: &Action<()>,
    policy: &Policy,
) {
    let got = match action {
        Action::Refuse(Refusal::CommandBeforeTls) => Expected::BeforeTls,
        Action::RefuseTransfer {
            cmd,
            refusal: Refusal::ClearData,
        } if cmd == command => Expected::ClearData,
        Action::Reply(r) if r.code == 425 => Expected::NoSetup,
        Action::Transfer {
            cmd,
            upload: up,
            protect,
            setup: (),
        } if cmd == command && *up == upload => {
            if policy.data_tls == Requirement::Required {
                assert!(*protect, "(b) transfer without PROT P"); // (b)
            }
            Expected::Transfer { protect: *protect }
        }
        other => panic!("{command} -> {other:?}, expected {expected:?}"),
    };
    assert_eq!(got, expected, "{command}");
}

/// The replies an action sends to the client.
fn replies(action: &Action<()>) -> Vec<Reply> {
    match action {
        Action::Reply(r) | Action::SetProt(_, r) => vec![r.clone()],
        Action::Refuse(refusal) | Action::RefuseTransfer { refusal, .. } => vec![refusal.reply()],
        _ => Vec::new(),
    }
}

/// A client command line derived from the input, parsed as the driver does.
pub fn command(input: &mut Input, peer: IpAddr) -> Option<Command> {
    let choice = input.byte();
    if choice < 16 {
        return Command::parse(input.chunk()).ok();
    }
    let verb = input.pick(VERBS);
    let mut line = match choice & 1 {
        0 => verb.to_string(),
        _ => verb.to_ascii_lowercase(),
    }
    .into_bytes();
    let arg: Vec<u8> = match input.below(4) {
        0 => Vec::new(),
        1 => input.pick(ARGS).as_bytes().to_vec(),
        2 => data_target(input, peer).into_bytes(),
        _ => input.chunk().to_vec(),
    };
    if !arg.is_empty() || choice & 2 != 0 {
        line.push(b' ');
        line.extend_from_slice(&arg);
    }
    Command::parse(&line).ok()
}

/// A PORT or EPRT argument naming the client, another host, or the client
/// in the other address family, at any port.
fn data_target(input: &mut Input, peer: IpAddr) -> String {
    let ip = match input.below(4) {
        0 | 1 => peer,
        2 => IpAddr::from([192, 0, 2, 99]),
        _ => match peer {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(IpAddr::from([10, 1, 1, 1]), IpAddr::V4),
        },
    };
    let target = SocketAddr::new(ip, input.u16());
    match (input.bool(), target) {
        (false, SocketAddr::V4(v4)) => addr::format_port(v4),
        _ => addr::format_eprt(target),
    }
}

/// A backend reply: a likely or any code, one line or several, text bytes
/// without LF (the reply parser never yields one; see the `reply` target).
pub fn backend_reply(input: &mut Input) -> Reply {
    let choice = input.byte();
    let code = match choice & 1 {
        0 => input.pick(CODES),
        _ => 100 + input.u16() % 500,
    };
    let lines = 1 + usize::from(choice >> 1) % 4;
    let lines = (0..lines)
        .map(|_| {
            input
                .chunk()
                .iter()
                .copied()
                .filter(|&b| b != b'\n')
                .collect()
        })
        .collect();
    Reply { code, lines }
}
