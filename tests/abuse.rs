//! Abuse control at the edge (issue 9): the per-address session limit and
//! bans after repeated login failures, with real logins against pyftpdlib.

mod support;

use std::time::{Duration, Instant};

use ftpsgate::events::SessionEvent;
use support::harness::{lo, Client, Proxy};
use support::tools::{tool_available, PyFtpd};

#[test]
fn the_per_address_limit_turns_away_only_that_address() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    let proxy = Proxy::spawn(b.addr, |s| s.max_sessions_per_ip = 2);
    let first = Client::connect(proxy.addr);
    let second = Client::connect(proxy.addr);
    assert_eq!((first.1.code, second.1.code), (220, 220));
    let (mut third, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 421);
    assert_eq!(
        g.text(),
        "Too many connections from your address; try again later."
    );
    assert!(third.try_read().is_none());
    // Another address is not affected, and a closed session frees its place.
    let (mut other, g) = Client::connect_from(proxy.addr, Some(lo(2)));
    assert_eq!(g.code, 220);
    other.login_secure(&b.user, &b.pass);
    drop(first);
    proxy.events.closed(1, Duration::from_secs(10));
    let (_again, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 220);
    let rejected = proxy
        .events
        .all()
        .into_iter()
        .filter(|(_, e)| {
            matches!(
                e,
                SessionEvent::Rejected {
                    reason: "max_sessions_per_ip"
                }
            )
        })
        .count();
    assert_eq!(rejected, 1);
}

#[test]
fn repeated_login_failures_ban_the_address_until_the_ban_expires() {
    let Some(b) = tool_available("pyftpdlib").then(PyFtpd::start) else {
        return;
    };
    let proxy = Proxy::spawn(b.addr, |s| {
        s.ban_failures = 3;
        s.ban_duration = Duration::from_secs(3);
    });
    // Three wrong passwords over two sessions: the third bans the address.
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    for _ in 0..2 {
        assert_eq!(c.cmd(&format!("USER {}", b.user)).code, 331);
        assert_eq!(c.cmd("PASS wrong").code, 530);
    }
    let (mut c2, _) = Client::connect(proxy.addr);
    c2.auth_tls();
    assert_eq!(c2.cmd(&format!("USER {}", b.user)).code, 331);
    assert_eq!(c2.cmd("PASS wrong").code, 530);
    let bye = c2.read();
    assert_eq!(bye.code, 421, "{bye:?}");
    assert!(c2.try_read().is_none(), "closed after the ban");
    let banned_at = Instant::now();
    // Banned: 421 at connect, for this address only.
    let (_, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 421);
    assert_eq!(
        g.text(),
        "Too many failed logins from your address; try again later."
    );
    let (mut other, g) = Client::connect_from(proxy.addr, Some(lo(2)));
    assert_eq!(g.code, 220);
    other.login_secure(&b.user, &b.pass);
    assert_eq!(proxy.status.bans_active(), 1);
    // The ban expires by time: a bounded wait on the proxy's own view of it.
    let deadline = banned_at + Duration::from_secs(10);
    while proxy.status.bans_active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(proxy.status.bans_active(), 0);
    assert!(banned_at.elapsed() >= Duration::from_secs(3));
    let (mut back, g) = Client::connect(proxy.addr);
    assert_eq!(g.code, 220);
    back.login_secure(&b.user, &b.pass);
    let events = proxy.events.all();
    let count = |f: &dyn Fn(&SessionEvent) -> bool| events.iter().filter(|(_, e)| f(e)).count();
    assert_eq!(
        count(&|e| matches!(e, SessionEvent::LoginFailed { code: 530 })),
        3
    );
    assert_eq!(count(&|e| matches!(e, SessionEvent::Banned { .. })), 1);
    assert_eq!(
        count(&|e| matches!(e, SessionEvent::Rejected { reason: "banned" })),
        1
    );
    drop(c);
}
