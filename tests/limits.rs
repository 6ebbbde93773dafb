//! The configurable limits of issue 9: bandwidth caps per session and in
//! total, the largest upload, the command-line and reply caps. Each has a
//! documented reply; a cap's lower bound on duration is asserted (a rate can
//! only make a transfer slower; how fast the machine is does not matter).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ftpsgate::data::DataError;
use ftpsgate::events::TransferResult;
use support::harness::{Client, Proxy, Scripted};
use support::tools::{random_bytes, sha256_bytes, FtpBackend, PyFtpd};

#[test]
fn a_session_rate_cap_paces_downloads_and_uploads() {
    let Some(b) = PyFtpd::available() else { return };
    let payload = random_bytes(768 * 1024, 31);
    b.write_file("r.bin", &payload);
    let proxy = Proxy::spawn(b.addr, |s| s.rate_session = Some(256 * 1024));
    let mut c = Client::logged_in(proxy.addr, &b);
    let started = Instant::now();
    let (_, got, fin) = c.download("RETR r.bin");
    assert_eq!(
        (fin.code, sha256_bytes(&got)),
        (226, sha256_bytes(&payload))
    );
    // 768 KiB at 256 KiB/s: three seconds, less the one-second burst at most.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let (_, fin) = c.upload("STOR up.bin", &payload);
    assert_eq!(fin.code, 226);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(std::fs::read(b.path("up.bin")).unwrap(), payload);
}

#[test]
fn a_total_rate_cap_is_shared_by_concurrent_sessions() {
    let Some(b) = PyFtpd::available() else { return };
    let payload = random_bytes(512 * 1024, 32);
    b.write_file("t.bin", &payload);
    let proxy = Proxy::spawn(b.addr, |s| s.rate_total = Some(256 * 1024));
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut c = Client::logged_in(proxy.addr, &b);
            let want = sha256_bytes(&payload);
            std::thread::spawn(move || {
                let (_, got, fin) = c.download("RETR t.bin");
                assert_eq!((fin.code, sha256_bytes(&got)), (226, want));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 1 MiB in all at 256 KiB/s: four seconds, less the burst.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_upload_over_the_maximum_size_gets_552_and_is_not_kept_complete() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |s| s.max_upload = Some(1024 * 1024));
    let mut c = Client::logged_in(proxy.addr, &b);
    let small = random_bytes(512 * 1024, 33);
    let (_, fin) = c.upload("STOR small.bin", &small);
    assert_eq!(fin.code, 226);
    let (mut d, _) = c.start("STOR big.bin");
    // The proxy cuts the data connection once the cap is passed.
    let _ = std::io::Write::write_all(&mut d, &random_bytes(3 * 1024 * 1024, 34));
    d.conn.send_close_notify();
    let _ = d.conn.complete_io(&mut d.sock);
    drop(d);
    let fin = c.read();
    assert_eq!(fin.code, 552, "{fin:?}");
    assert_eq!(c.cmd("NOOP").code, 200);
    let kept = std::fs::metadata(b.path("big.bin")).map_or(0, |m| m.len());
    assert!(
        kept <= 1024 * 1024 + 256 * 1024,
        "the backend kept {kept} bytes"
    );
    let records = proxy.events.transfers(2);
    assert_eq!(
        records[1].result,
        TransferResult::Failed(DataError::TooLarge(1024 * 1024))
    );
    assert_eq!(records[1].code, 552);
}

#[test]
fn the_command_line_and_reply_caps_are_configurable() {
    let big = format!(
        "211-status\r\n{}211 End\r\n",
        " a line of status\r\n".repeat(8000)
    );
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| l.starts_with("STAT").then(|| big.clone())),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.max_command_line = 600;
        s.max_reply = 64 * 1024;
    });
    let (mut c, _) = Client::connect(proxy.addr);
    c.auth_tls();
    let mut line = vec![b'A'; 700];
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line);
    assert_eq!(c.read().code, 500);
    assert_eq!(c.cmd(&format!("NOOP {}", "x".repeat(500))).code, 200);
    // A reply over 64 KiB is a broken backend: 421 and the session ends.
    assert_eq!(c.cmd("USER alice").code, 331);
    assert_eq!(c.cmd("PASS x").code, 230);
    assert_eq!(c.cmd("STAT").code, 421);
    assert!(c.try_read().is_none());
}
