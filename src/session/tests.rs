//! Scripted conversations with the pure session state machine: feed commands,
//! assert the exact action (PROTOCOL.md §15 codes, §16 scenarios).

use super::*;
use crate::config::{Ccc, Requirement};

fn policy() -> Policy {
    Policy {
        control_tls: Requirement::Required,
        data_tls: Requirement::Required,
        ccc: Ccc::Deny,
        implicit: false,
        public_v4: false,
    }
}

fn session() -> Session<()> {
    Session::new(policy(), "127.0.0.1".parse().unwrap())
}

fn cmd(line: &str) -> Command {
    Command::parse(line.as_bytes()).unwrap()
}

fn code(a: &Action<()>) -> u16 {
    match a {
        Action::Reply(r) | Action::SetProt(_, r) => r.code,
        Action::Refuse(refusal) | Action::RefuseTransfer { refusal, .. } => refusal.reply().code,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn secured() -> Session<()> {
    let mut s = session();
    assert_eq!(s.on_command(cmd("AUTH TLS")), Action::StartTls);
    s.on_tls_established();
    s
}

#[test]
fn login_before_tls_is_refused_with_530() {
    let mut s = session();
    for line in ["USER alice", "PASS x", "ACCT y", "RETR f", "CWD /", "PASV"] {
        assert_eq!(code(&s.on_command(cmd(line))), 530, "{line}");
    }
    for line in [
        "FEAT",
        "NOOP",
        "SYST",
        "HOST example.test",
        "OPTS UTF8 ON",
        "HELP",
    ] {
        assert!(
            matches!(
                s.on_command(cmd(line)),
                Action::Forward(_) | Action::Feat(_)
            ),
            "{line}"
        );
    }
    assert!(matches!(s.on_command(cmd("QUIT")), Action::Quit(_)));
}

#[test]
fn optional_control_tls_forwards_login() {
    let mut s: Session<()> = Session::new(
        Policy {
            control_tls: Requirement::Optional,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    assert!(matches!(
        s.on_command(cmd("USER alice")),
        Action::Forward(_)
    ));
}

#[test]
fn auth_mechanisms() {
    for m in ["TLS", "tls", "SSL", "TLS-C", "tls-c"] {
        assert_eq!(
            session().on_command(cmd(&format!("AUTH {m}"))),
            Action::StartTls,
            "{m}"
        );
    }
    assert_eq!(code(&session().on_command(cmd("AUTH GSSAPI"))), 504);
    assert_eq!(code(&session().on_command(cmd("AUTH"))), 501);
    assert_eq!(code(&secured().on_command(cmd("AUTH TLS"))), 534);
    assert_eq!(code(&session().on_command(cmd("ADAT xyz"))), 503);
    assert_eq!(code(&session().on_command(cmd("MIC xyz"))), 502);
    assert_eq!(code(&session().on_command(cmd("REIN"))), 502);
}

#[test]
fn auth_after_login_is_534() {
    let mut s: Session<()> = Session::new(
        Policy {
            control_tls: Requirement::Optional,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    let user = cmd("USER alice");
    s.on_command(user.clone());
    s.on_reply(&cmd("PASS x"), &Reply::new(230, "ok"));
    assert_eq!(code(&s.on_command(cmd("AUTH TLS"))), 534);
}

#[test]
fn pbsz_and_prot_ordering_and_levels() {
    let mut s = session();
    assert_eq!(code(&s.on_command(cmd("PBSZ 0"))), 503);
    let mut s2 = secured();
    assert_eq!(code(&s2.on_command(cmd("PROT P"))), 503);
    s = secured();
    assert_eq!(code(&s.on_command(cmd("PBSZ abc"))), 501);
    assert_eq!(
        s.on_command(cmd("PBSZ 1024")),
        Action::Reply(Reply::new(200, "PBSZ=0"))
    );
    assert_eq!(code(&s.on_command(cmd("PBSZ 0"))), 200);
    assert_eq!(code(&s.on_command(cmd("PROT S"))), 536);
    assert_eq!(code(&s.on_command(cmd("PROT E"))), 536);
    assert_eq!(code(&s.on_command(cmd("PROT X"))), 504);
    assert_eq!(code(&s.on_command(cmd("PROT C"))), 200);
    assert_eq!(s.prot(), Prot::Clear);
    assert_eq!(code(&s.on_command(cmd("PROT P"))), 200);
    assert_eq!(s.prot(), Prot::Private);
}

#[test]
fn transfer_without_prot_p_is_522_before_anything_else() {
    let mut s = secured();
    s.set_data(());
    for line in ["RETR f", "STOR f", "APPE f", "STOU", "LIST", "NLST", "MLSD"] {
        assert_eq!(code(&s.on_command(cmd(line))), 522, "{line}");
    }
}

#[test]
fn transfer_needs_a_data_setup() {
    let mut s = secured();
    s.on_command(cmd("PBSZ 0"));
    s.on_command(cmd("PROT P"));
    assert_eq!(code(&s.on_command(cmd("RETR f"))), 425);
    s.set_data(());
    assert_eq!(
        s.on_command(cmd("RETR f")),
        Action::Transfer {
            cmd: cmd("RETR f"),
            upload: false,
            protect: true,
            setup: ()
        }
    );
    // The set-up is consumed by one transfer.
    assert_eq!(code(&s.on_command(cmd("RETR f"))), 425);
}

#[test]
fn data_tls_optional_allows_clear_transfers() {
    let mut s: Session<()> = Session::new(
        Policy {
            data_tls: Requirement::Optional,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    s.on_command(cmd("AUTH TLS"));
    s.on_tls_established();
    s.set_data(());
    assert_eq!(
        s.on_command(cmd("LIST")),
        Action::Transfer {
            cmd: cmd("LIST"),
            upload: false,
            protect: false,
            setup: ()
        }
    );
}

#[test]
fn ccc_codes() {
    assert_eq!(code(&session().on_command(cmd("CCC"))), 533);
    assert_eq!(code(&secured().on_command(cmd("CCC"))), 534);
    let mut s: Session<()> = Session::new(
        Policy {
            ccc: Ccc::Allow,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    s.on_command(cmd("AUTH TLS"));
    s.on_tls_established();
    s.on_command(cmd("PBSZ 0"));
    s.on_command(cmd("PROT P"));
    assert_eq!(s.on_command(cmd("CCC")), Action::ClearControl);
    assert_eq!(s.control(), ControlTls::Cleared);
    assert_eq!(code(&s.on_command(cmd("PROT C"))), 503);
    assert_eq!(code(&s.on_command(cmd("PBSZ 0"))), 503);
    assert_eq!(s.prot(), Prot::Private);
}

#[test]
fn implicit_sessions_start_private_and_refuse_auth() {
    let mut s: Session<()> = Session::new(
        Policy {
            implicit: true,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    assert_eq!(s.prot(), Prot::Private);
    assert_eq!(code(&s.on_command(cmd("AUTH TLS"))), 534);
    assert_eq!(code(&s.on_command(cmd("PBSZ 0"))), 200);
    assert_eq!(code(&s.on_command(cmd("PROT P"))), 200);
    assert!(matches!(
        s.on_command(cmd("USER alice")),
        Action::Forward(_)
    ));
}

#[test]
fn port_and_eprt_bounce_protection() {
    let mut s = secured();
    assert_eq!(
        s.on_command(cmd("PORT 127,0,0,1,4,0")),
        Action::Active("127.0.0.1:1024".parse().unwrap())
    );
    assert_eq!(code(&s.on_command(cmd("PORT 127,0,0,2,4,0"))), 500);
    assert_eq!(code(&s.on_command(cmd("PORT 127,0,0,1,0,21"))), 504);
    assert_eq!(code(&s.on_command(cmd("PORT 1,2,3"))), 501);
    assert_eq!(
        s.on_command(cmd("EPRT |1|127.0.0.1|2000|")),
        Action::Active("127.0.0.1:2000".parse().unwrap())
    );
    assert_eq!(code(&s.on_command(cmd("EPRT |2|::1|2000|"))), 522);
    assert_eq!(code(&s.on_command(cmd("EPRT |3|x|2000|"))), 522);
    assert_eq!(code(&s.on_command(cmd("EPRT |1|10.0.0.1|2000|"))), 500);
}

#[test]
fn epsv_family_and_epsv_all() {
    let mut s = secured();
    assert_eq!(
        s.on_command(cmd("EPSV")),
        Action::Passive { extended: true }
    );
    assert_eq!(
        s.on_command(cmd("EPSV 1")),
        Action::Passive { extended: true }
    );
    assert_eq!(code(&s.on_command(cmd("EPSV 2"))), 522);
    assert_eq!(code(&s.on_command(cmd("EPSV ALL"))), 200);
    assert_eq!(code(&s.on_command(cmd("PASV"))), 501);
    assert_eq!(code(&s.on_command(cmd("PORT 127,0,0,1,4,0"))), 501);
    assert_eq!(
        s.on_command(cmd("EPSV")),
        Action::Passive { extended: true }
    );
    assert_eq!(code(&s.on_command(cmd("LPSV"))), 502);
}

#[test]
fn pasv_on_ipv6_needs_epsv() {
    let mut s: Session<()> = Session::new(policy(), "::1".parse().unwrap());
    s.on_command(cmd("AUTH TLS"));
    s.on_tls_established();
    assert_eq!(code(&s.on_command(cmd("PASV"))), 502);
    assert_eq!(
        s.on_command(cmd("EPSV 2")),
        Action::Passive { extended: true }
    );
}

#[test]
fn host_mode_stru() {
    let mut s = secured();
    assert!(matches!(
        s.on_command(cmd("HOST example.test")),
        Action::Forward(_)
    ));
    s.on_command(cmd("USER alice"));
    assert_eq!(code(&s.on_command(cmd("HOST example.test"))), 503);
    assert_eq!(code(&s.on_command(cmd("MODE B"))), 504);
    assert!(matches!(s.on_command(cmd("MODE S")), Action::Forward(_)));
    assert_eq!(code(&s.on_command(cmd("STRU R"))), 504);
}

#[test]
fn login_results_are_reported_and_stick_for_auth() {
    let mut s: Session<()> = Session::new(
        Policy {
            control_tls: Requirement::Optional,
            ..policy()
        },
        "127.0.0.1".parse().unwrap(),
    );
    s.on_command(cmd("USER alice"));
    assert_eq!(s.user(), Some("alice"));
    assert_eq!(s.on_reply(&cmd("USER alice"), &Reply::new(331, "pw")), None);
    assert_eq!(
        s.on_reply(&cmd("PASS x"), &Reply::new(530, "no")),
        Some(Login::Failed("alice".into(), 530))
    );
    assert_eq!(
        s.on_reply(&cmd("PASS y"), &Reply::new(230, "ok")),
        Some(Login::Succeeded("alice".into()))
    );
    assert_eq!(s.on_reply(&cmd("CWD /"), &Reply::new(250, "ok")), None);
    // Another USER does not make the session fresh again: AUTH stays refused.
    s.on_command(cmd("USER bob"));
    assert_eq!(s.on_reply(&cmd("USER bob"), &Reply::new(331, "pw")), None);
    assert_eq!(code(&s.on_command(cmd("AUTH TLS"))), 534);
}

#[test]
fn only_abor_interrupts_a_transfer() {
    let s = secured();
    assert_eq!(s.during_transfer(&cmd("ABOR")), DuringTransfer::Abort);
    for line in ["STAT", "NOOP", "QUIT", "RETR x"] {
        assert_eq!(
            s.during_transfer(&cmd(line)),
            DuringTransfer::Defer,
            "{line}"
        );
    }
}

#[test]
fn a_new_data_setup_replaces_the_old_one_and_refusal_drops_it() {
    let mut s: Session<u8> = Session::new(policy(), "127.0.0.1".parse().unwrap());
    s.on_command(cmd("AUTH TLS"));
    s.on_tls_established();
    s.set_data(1);
    assert_eq!(
        s.on_command(cmd("EPSV")),
        Action::Passive { extended: true }
    );
    assert!(matches!(s.on_command(cmd("PBSZ 0")), Action::Reply(_)));
    assert!(matches!(
        s.on_command(cmd("PROT P")),
        Action::SetProt(Prot::Private, _)
    ));
    assert_eq!(
        code_u8(&s.on_command(cmd("RETR f"))),
        425,
        "EPSV dropped the old set-up"
    );
    s.set_data(2);
    assert!(matches!(
        s.on_command(cmd("PROT C")),
        Action::SetProt(Prot::Clear, _)
    ));
    assert!(matches!(
        s.on_command(cmd("RETR f")),
        Action::RefuseTransfer {
            refusal: Refusal::ClearData,
            ..
        }
    ));
    s.on_command(cmd("PROT P"));
    assert_eq!(
        code_u8(&s.on_command(cmd("RETR f"))),
        425,
        "the refusal dropped it"
    );
}

fn code_u8(a: &Action<u8>) -> u16 {
    match a {
        Action::Reply(r) => r.code,
        other => panic!("expected a reply, got {other:?}"),
    }
}
