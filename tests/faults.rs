//! Fault injection (issue 8, "Trust at the edge"): a backend killed or
//! stalled mid-transfer, hostile backend replies (oversized, endless, a
//! surplus or forged 227), clients that reset their connections, dribble
//! bytes or send garbage instead of TLS, and a client that never reads.
//!
//! Each scenario has its own proxy and backend (a real daemon has its own
//! temp dir) and ends with a leak check against a baseline taken when it
//! started ([`Baseline`], [`assert_no_leaks`]): this process's open fds
//! (`/proc/self/fd`), the proxy's sessions, passive ports, TLS bindings and
//! runtime tasks, and the backend's connections. Nothing lost: a failed
//! upload is never a `Complete` record, never a 2xx to the client, and its
//! backend data connection is reset, never closed cleanly.
//!
//! Why one `#[test]`: fds are counted per process and libtest runs the tests
//! of one binary on parallel threads, so a second test here would open and
//! close sockets while a scenario counts them. Every scenario runs in
//! sequence inside the one test below; no other test lives in this binary.
//! (Proxy tasks are per runtime, and each scenario's proxy has its own.)
//!
//! Waiting is by signal: replies, the `Closed` event, the in-process
//! backends' connection counts (condition variables). Only cleanup that
//! continues after the last signal is polled, with a deadline ([`settle`]).
//!
//! Scenarios named in [`DEFECTS`] demonstrate a defect of src/ that is
//! reported, not fixed here: they fail (`DEFECT` in the output) until it is
//! fixed, and then come off the list.
//!
//! `FTPSGATE_FAULTS=word cargo test --test faults -- --nocapture` runs only
//! the scenarios whose name contains `word` and prints each one's time.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ftpsgate::config::BackendData;
use ftpsgate::data::DataError;
use ftpsgate::error::Side;
use ftpsgate::events::{Direction, Ended, SessionEvent, TransferRecord, TransferResult};
use rustls::{ClientConnection, StreamOwned};
use support::harness::{connect_from, Client, Ctl, Proxy, Scripted};
use support::tools::{random_bytes, tool_available, FtpBackend, PyFtpd};

/// A TLS data connection of the test client.
type Data = StreamOwned<ClientConnection, TcpStream>;

/// Limit for signalled waits (events, replies, backend connection counts).
const WAIT: Duration = Duration::from_secs(30);
/// Limit for the bounded polls of [`settle`].
const SETTLE: Duration = Duration::from_secs(10);
/// Interval of those polls.
const POLL: Duration = Duration::from_millis(20);
/// The timeouts the scenarios shorten (idle, data, stall).
const SHORT: Duration = Duration::from_secs(2);
/// What "at once" allows on a loaded two-core machine.
const PROMPT: Duration = Duration::from_secs(3);
const MIB: usize = 1024 * 1024;

struct Scenario {
    name: &'static str,
    pyftpdlib: bool,
    run: fn(),
}

/// Scenarios that demonstrate a defect of src/ (reported, not fixed here):
/// they fail until it is fixed. Take a name off this list with the fix.
/// (Empty: the surplus 227 during a transfer is now refused.)
const DEFECTS: &[&str] = &[];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "backend killed mid-download",
        pyftpdlib: true,
        run: backend_killed_mid_download,
    },
    Scenario {
        name: "backend killed mid-download, active backend leg",
        pyftpdlib: true,
        run: backend_killed_mid_download_active,
    },
    Scenario {
        name: "backend dies after a short data connection",
        pyftpdlib: false,
        run: backend_dies_after_a_short_data_connection,
    },
    Scenario {
        name: "backend killed mid-upload",
        pyftpdlib: true,
        run: backend_killed_mid_upload,
    },
    Scenario {
        name: "backend stalled mid-download",
        pyftpdlib: true,
        run: backend_stalled_mid_download,
    },
    Scenario {
        name: "backend stalled mid-upload",
        pyftpdlib: true,
        run: backend_stalled_mid_upload,
    },
    Scenario {
        name: "backend stalled mid-upload, active backend leg",
        pyftpdlib: true,
        run: backend_stalled_mid_upload_active,
    },
    Scenario {
        name: "backend reply line over 8 KiB",
        pyftpdlib: false,
        run: backend_reply_line_over_8_kib,
    },
    Scenario {
        name: "backend multi-line reply over 4 MiB",
        pyftpdlib: false,
        run: backend_reply_over_4_mib,
    },
    Scenario {
        name: "backend multi-line reply over 100000 lines",
        pyftpdlib: false,
        run: backend_reply_over_100k_lines,
    },
    Scenario {
        name: "backend endless multi-line reply",
        pyftpdlib: false,
        run: backend_endless_multiline_reply,
    },
    Scenario {
        name: "backend endless reply line",
        pyftpdlib: false,
        run: backend_endless_reply_line,
    },
    Scenario {
        name: "backend unsolicited 227",
        pyftpdlib: false,
        run: backend_unsolicited_227,
    },
    Scenario {
        name: "backend surplus 227 after PASV",
        pyftpdlib: false,
        run: backend_surplus_227_after_pasv,
    },
    Scenario {
        name: "backend unsolicited 227 during an upload",
        pyftpdlib: false,
        run: backend_unsolicited_227_during_an_upload,
    },
    Scenario {
        name: "backend unsolicited 227 during a download",
        pyftpdlib: false,
        run: backend_unsolicited_227_during_a_download,
    },
    Scenario {
        name: "backend 227 naming a foreign host",
        pyftpdlib: false,
        run: backend_227_naming_a_foreign_host,
    },
    Scenario {
        name: "client RST mid-download",
        pyftpdlib: true,
        run: client_reset_mid_download,
    },
    Scenario {
        name: "client RST mid-upload",
        pyftpdlib: false,
        run: client_reset_mid_upload,
    },
    Scenario {
        name: "client RST after the whole upload, no close_notify",
        pyftpdlib: false,
        run: client_reset_after_the_whole_upload,
    },
    Scenario {
        name: "client RST on control and data mid-upload",
        pyftpdlib: false,
        run: client_vanishes_mid_upload,
    },
    Scenario {
        name: "client RST mid-upload to a real daemon",
        pyftpdlib: true,
        run: client_reset_mid_upload_to_pyftpdlib,
    },
    Scenario {
        name: "slowloris on plaintext control",
        pyftpdlib: false,
        run: slowloris_on_plaintext_control,
    },
    Scenario {
        name: "slowloris on TLS control (a partial record)",
        pyftpdlib: false,
        run: slowloris_on_tls_control,
    },
    Scenario {
        name: "slowloris on data: no ClientHello",
        pyftpdlib: true,
        run: data_connection_never_says_hello,
    },
    Scenario {
        name: "slowloris on data: a dribbled ClientHello",
        pyftpdlib: true,
        run: data_connection_dribbles_its_hello,
    },
    Scenario {
        name: "TLS garbage after AUTH TLS",
        pyftpdlib: false,
        run: tls_garbage_after_auth_tls,
    },
    Scenario {
        name: "TLS garbage on the implicit listener",
        pyftpdlib: false,
        run: tls_garbage_on_the_implicit_listener,
    },
    Scenario {
        name: "TLS garbage record mid-session",
        pyftpdlib: false,
        run: tls_garbage_record_mid_session,
    },
    Scenario {
        name: "TLS garbage on a PROT P data connection",
        pyftpdlib: true,
        run: tls_garbage_on_a_data_connection,
    },
    Scenario {
        name: "client never reads its control replies",
        pyftpdlib: false,
        run: client_never_reads_its_replies,
    },
];

#[test]
fn every_fault_ends_its_session_and_leaves_nothing_behind() {
    let only = std::env::var("FTPSGATE_FAULTS").ok();
    let pyftpdlib = tool_available("pyftpdlib"); // SKIPPED line, or a panic in CI
    let mut ran = 0;
    let (mut failed, mut defects) = (Vec::new(), Vec::new());
    for s in SCENARIOS {
        if only.as_deref().is_some_and(|o| !s.name.contains(o)) || (s.pyftpdlib && !pyftpdlib) {
            continue;
        }
        let started = Instant::now();
        // A failed scenario drops its proxy and backend while unwinding; the
        // others still run, each against its own baseline.
        let outcome = std::panic::catch_unwind(s.run);
        let took = started.elapsed();
        let known = DEFECTS.contains(&s.name);
        match outcome {
            Ok(()) if known => {
                eprintln!(
                    "ok      {:5.1} s  {} (fixed? take it off DEFECTS)",
                    took.as_secs_f64(),
                    s.name
                )
            }
            Ok(()) => eprintln!("ok      {:5.1} s  {}", took.as_secs_f64(), s.name),
            Err(_) if known => {
                eprintln!("DEFECT  {:5.1} s  {}", took.as_secs_f64(), s.name);
                defects.push(s.name);
            }
            Err(_) => {
                eprintln!("FAILED  {:5.1} s  {}", took.as_secs_f64(), s.name);
                failed.push(s.name);
            }
        }
        ran += 1;
    }
    assert!(ran > 0, "no scenario ran");
    assert!(
        failed.is_empty() && defects.is_empty(),
        "failed scenarios: {failed:#?}\nknown defects still present (see DEFECTS): {defects:#?}"
    );
}

// ---------------------------------------------------------------- backend killed

/// pyftpdlib is SIGKILLed after the client has 1 MiB of a 64 MiB download:
/// the data connection ends without close_notify, the client gets 421 and
/// never a 226. (The proxy notices the dead control connection first here;
/// [`backend_dies_after_a_short_data_connection`] makes the data
/// connection's FIN come first.)
fn backend_killed_mid_download() {
    killed_mid_download(BackendData::Passive);
}

/// The same with the backend connecting to the proxy for its data (PORT).
fn backend_killed_mid_download_active() {
    killed_mid_download(BackendData::Active);
}

fn killed_mid_download(backend_data: BackendData) {
    const LEN: usize = 64 * MIB;
    let (b, pid) = pyftpd_with_file("big.bin", LEN);
    let proxy = Proxy::spawn(b.addr, |s| s.backend_data = backend_data);
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("RETR big.bin");
        let mut first = vec![0u8; MIB];
        d.read_exact(&mut first).unwrap();
        signal(pid, "KILL");
        let (more, end) = drain(&mut d);
        assert!(
            end.is_err(),
            "download of a killed backend ended with close_notify after {} bytes",
            MIB + more
        );
        assert!(MIB + more < LEN);
        assert_eq!(replies_until_closed(&mut c), [421]);
    }
    let r = one_transfer(&proxy);
    assert_ne!(r.result, TransferResult::Complete, "{r:?}");
    assert_eq!(r.code, 421, "{r:?}");
    assert_ended(&proxy, Side::Backend, "backend");
    assert_backend_data(&b, backend_data);
    assert_no_leaks(&proxy, &base, BackendSide::Gone(b.addr.port()));
}

/// The order a kill cannot guarantee: the backend sends 1 MiB of a file,
/// closes the data connection cleanly, waits until the proxy has
/// seen that FIN (the proxy half-closes the leg in turn), and only then
/// dies without a final reply. The FIN is not the end of the file: the
/// client's data connection must end without close_notify, and it gets 421.
fn backend_dies_after_a_short_data_connection() {
    const SENT: usize = MIB;
    let backend = RawBackend::start(|s| {
        let mut passive = None;
        plain_session(s, move |verb, w| match verb {
            "PASV" => pasv(w, &mut passive),
            "RETR" => {
                w.write_all(b"150 Opening BINARY mode data connection\r\n")?;
                let (mut data, _) = passive.take().expect("PASV first").accept()?;
                data.write_all(&vec![0x5a; SENT])?;
                data.shutdown(std::net::Shutdown::Write)?;
                let _ = data.read(&mut [0u8; 1]); // the proxy's FIN
                Err(io::Error::other("died without a final reply"))
            }
            _ => Ok(false),
        })
    });
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (mut d, _) = c.start("RETR big.bin");
        let (got, end) = drain(&mut d);
        assert!(
            end.is_err(),
            "the download ended with close_notify after {got} bytes, with no 226 from the backend"
        );
        assert!(got <= SENT);
        assert_eq!(replies_until_closed(&mut c), [421]);
    }
    let r = one_transfer(&proxy);
    assert_ne!(r.result, TransferResult::Complete, "{r:?}");
    assert_eq!(r.code, 421, "{r:?}");
    assert_ended(&proxy, Side::Backend, "backend closed");
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend));
}

/// pyftpdlib is SIGKILLed 4 MiB into a 64 MiB upload: the client's writes
/// fail, it gets no 2xx (426 and 421, or 421 alone), and the record is not
/// `Complete`.
fn backend_killed_mid_upload() {
    const LEN: usize = 64 * MIB;
    let (b, pid) = pyftpd_with_file("unused", 0);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let base = Baseline::take(&proxy);
    let codes = {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("STOR up.bin");
        let sent = upload_until_refused(&mut d, LEN, || signal(pid, "KILL"));
        assert!(sent < LEN, "every write succeeded after the backend died");
        drop(d);
        replies_until_closed(&mut c)
    };
    assert!(matches!(codes[..], [421] | [426, 421]), "{codes:?}");
    assert!(file_len(&b.root.join("up.bin")) < LEN as u64);
    let r = one_transfer(&proxy);
    assert_ne!(r.result, TransferResult::Complete, "{r:?}");
    // The record carries the transfer's own reply: 426 when the client got
    // one before the session's 421, else the 421 that ended it.
    assert_eq!(
        (r.direction, r.code),
        (Direction::Upload, codes[0]),
        "{r:?}"
    );
    assert_ended(&proxy, Side::Backend, "backend");
    assert_no_leaks(&proxy, &base, BackendSide::Gone(b.addr.port()));
}

// ---------------------------------------------------------------- backend stalled

/// pyftpdlib is SIGSTOPped 1 MiB into a 64 MiB download (it stops sending):
/// after `stall_timeout` the client's data connection is dropped without
/// close_notify and it gets 426; once the backend runs again it answers the
/// proxy's ABOR and the session goes on.
fn backend_stalled_mid_download() {
    const LEN: usize = 64 * MIB;
    let (b, pid) = pyftpd_with_file("big.bin", LEN);
    let proxy = Proxy::spawn(b.addr, |s| s.stall_timeout = SHORT);
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("RETR big.bin");
        let mut first = vec![0u8; MIB];
        d.read_exact(&mut first).unwrap();
        signal(pid, "STOP");
        let stopped = Instant::now();
        let (more, end) = drain(&mut d);
        assert!(end.is_err(), "a stalled download ended with close_notify");
        assert!(MIB + more < LEN);
        let fin = c.read();
        signal(pid, "CONT");
        assert_eq!(fin.code, 426, "{fin:?}");
        assert!(fin.text().contains("stalled"), "{fin:?}");
        // What the backend had queued in the kernel drains first, then the stall timeout runs.
        assert!(
            stopped.elapsed() < SHORT + PROMPT,
            "{:?}",
            stopped.elapsed()
        );
        assert_eq!(c.cmd("NOOP").code, 200, "session usable after the abort");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert_eq!(
        (r.result.clone(), r.code),
        (TransferResult::Failed(DataError::Stalled), 426),
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

/// pyftpdlib is SIGSTOPped 4 MiB into a 64 MiB upload (it stops reading):
/// the client's writes end in an error, it gets 426 (never 226), the proxy
/// aborts the backend's transfer and the session goes on.
fn backend_stalled_mid_upload() {
    stalled_mid_upload(BackendData::Passive);
}

/// The same with the backend connecting to the proxy for its data (PORT).
fn backend_stalled_mid_upload_active() {
    stalled_mid_upload(BackendData::Active);
}

fn stalled_mid_upload(backend_data: BackendData) {
    const LEN: usize = 64 * MIB;
    let (b, pid) = pyftpd_with_file("unused", 0);
    let proxy = Proxy::spawn(b.addr, |s| {
        s.stall_timeout = SHORT;
        s.backend_data = backend_data;
    });
    let base = Baseline::take(&proxy);
    let sent;
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("STOR up.bin");
        let mut stopped = None;
        sent = upload_until_refused(&mut d, LEN, || {
            signal(pid, "STOP");
            stopped = Some(Instant::now());
        });
        assert!(sent < LEN, "every write succeeded into a stopped backend");
        drop(d);
        let fin = c.read();
        signal(pid, "CONT");
        assert_eq!(fin.code, 426, "{fin:?}");
        assert!(fin.text().contains("stalled"), "{fin:?}");
        // The kernel buffers on the way fill first, then the stall timeout runs.
        let took = stopped.expect("stopped").elapsed();
        assert!(took < SHORT + PROMPT, "426 after {took:?}");
        assert_eq!(c.cmd("NOOP").code, 200, "session usable after the abort");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert!(file_len(&b.root.join("up.bin")) < LEN as u64);
    assert_eq!(
        (r.direction, r.result.clone(), r.code),
        (
            Direction::Upload,
            TransferResult::Failed(DataError::Stalled),
            426
        ),
        "{r:?} (client wrote {sent} bytes)"
    );
    assert_backend_data(&b, backend_data);
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

// ---------------------------------------------------------------- hostile replies

/// A 9000-byte reply line (the cap is 8 KiB): 421, the session ends.
fn backend_reply_line_over_8_kib() {
    reply_too_big("SYST", format!("215 {}\r\n", "x".repeat(9000)));
}

/// A complete multi-line reply of 4.7 MB in 47 000 lines (the cap is 4 MiB).
fn backend_reply_over_4_mib() {
    let line = format!(" {}\r\n", "y".repeat(98));
    reply_too_big(
        "STAT",
        format!("211-status\r\n{}211 End\r\n", line.repeat(47_000)),
    );
}

/// A complete multi-line reply of 150 000 short lines, 600 kB (the cap is
/// 100 000 lines).
fn backend_reply_over_100k_lines() {
    reply_too_big(
        "STAT",
        format!("211-status\r\n{}211 End\r\n", " z\r\n".repeat(150_000)),
    );
}

fn reply_too_big(verb: &'static str, answer: String) {
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| l.eq_ignore_ascii_case(verb).then(|| answer.clone())),
    );
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let g = c.cmd(verb);
        assert_eq!(g.code, 421, "{verb}: {:?}...", g.lines.first());
        assert!(c.try_read().is_none(), "closed after the 421");
    }
    assert_ended(&proxy, Side::Backend, "reply too long");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// SYST answered with `215-` and then short lines for as long as the proxy
/// reads: 421 once the cap is reached, and the backend connection closed
/// (the backend's endless writes fail; a proxy that stopped reading without
/// closing would leave its writer blocked and the connection counted).
fn backend_endless_multiline_reply() {
    endless_reply(b"215-endless\r\n", b" more of the same\r\n");
}

/// SYST answered with `215 ` and then `x` forever, no line end.
fn backend_endless_reply_line() {
    endless_reply(b"215 ", b"x");
}

fn endless_reply(head: &'static [u8], unit: &'static [u8]) {
    let chunk = unit.repeat(64 * 1024 / unit.len());
    let backend = RawBackend::start(move |conn| {
        plain_session(conn, |verb, w| {
            if verb != "SYST" {
                return Ok(false);
            }
            w.write_all(head)?;
            loop {
                w.write_all(&chunk)?; // until the proxy closes the connection
            }
        })
    });
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let g = c.cmd("SYST");
        assert_eq!(g.code, 421, "{:?}...", g.lines.first());
        assert!(c.try_read().is_none(), "closed after the 421");
    }
    assert_ended(&proxy, Side::Backend, "reply too long");
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend));
}

/// NOOP is answered `200` plus a surplus `227` naming a listening port: the
/// proxy ends the session (421) at once, never pairs the 227 with a later
/// PASV, and never connects to the port it names.
fn backend_unsolicited_227() {
    let trap = Trap::on("127.0.0.1:0");
    let forged = pasv_reply([127, 0, 0, 1], trap.port());
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| l.starts_with("NOOP").then(|| format!("200 OK\r\n{forged}"))),
    );
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        assert_eq!(c.cmd("NOOP").lines, ["200 OK"]);
        // No command follows: the surplus reply alone must end the session.
        ctl_tcp(&c).set_read_timeout(Some(WAIT)).unwrap();
        let g = c.try_read().expect("421 without a further command");
        assert_eq!(g.code, 421, "{g:?}");
        assert!(c.try_read().is_none());
    }
    assert!(!backend.saw("PASV"), "{:?}", backend.seen());
    trap.assert_untouched();
    assert_ended(&proxy, Side::Backend, "unsolicited backend reply 227");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// PASV is answered with two 227s: the first one sets up the data leg, the
/// second is surplus and ends the session; neither port is connected.
fn backend_surplus_227_after_pasv() {
    let (first, second) = (Trap::on("127.0.0.1:0"), Trap::on("127.0.0.1:0"));
    let answer = format!(
        "{}{}",
        pasv_reply([127, 0, 0, 1], first.port()),
        pasv_reply([127, 0, 0, 1], second.port())
    );
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| (l == "PASV").then(|| answer.clone())),
    );
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        assert_eq!(c.cmd("EPSV").code, 229);
        let g = c.try_read().expect("421 without a further command");
        assert_eq!(g.code, 421, "{g:?}");
        assert!(c.try_read().is_none());
    }
    first.assert_untouched();
    second.assert_untouched();
    assert_ended(&proxy, Side::Backend, "unsolicited backend reply 227");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// DEFECT (see [`DEFECTS`]): STOR is answered `150` and at once a surplus
/// `227`; the upload then fails on the backend (`451` after the data). A
/// 227 is no transfer verdict (RFC 959 §5.4: 226/250, 4xx, 5xx), so the
/// client must not get a 2xx and the record must not be `Complete`. Today
/// `await_transfer` takes any non-1xx reply as the final one: the client
/// gets the 227 for its failed upload, the record is `Complete` with code
/// 227, and the backend's real 451 ends the session as a surplus reply.
fn backend_unsolicited_227_during_an_upload() {
    let backend = RawBackend::start(|s| {
        let mut passive = None;
        plain_session(s, move |verb, w| match verb {
            "PASV" => pasv(w, &mut passive),
            "STOR" => {
                w.write_all(b"150 Ok to send data\r\n")?;
                w.write_all(pasv_reply([127, 0, 0, 1], 1).as_bytes())?;
                let (data, _) = passive.take().expect("PASV first").accept()?;
                receive(data);
                w.write_all(b"451 Local error; file not stored\r\n")?;
                Ok(true)
            }
            _ => Ok(false),
        })
    });
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (_, fin) = c.upload("STOR up.bin", &vec![0x3c; MIB]);
        let rest = replies_until_closed(&mut c);
        let r = one_transfer(&proxy);
        assert!(
            !(200..300).contains(&fin.code) && r.result != TransferResult::Complete,
            "the upload the backend failed (451) got {:?}, then {rest:?}; record {:?} {}",
            fin.lines,
            r.result,
            r.code
        );
    }
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend));
}

/// DEFECT (see [`DEFECTS`]): RETR is answered `150` and at once a surplus
/// `227`; the backend then sends 1 MiB, closes the data connection and
/// reports the failure (`451`). The 227 is no transfer verdict, so the
/// download must end without close_notify and the client must not get a
/// 2xx. Today the 227 confirms the download: the truncated file ends with
/// close_notify and a 2xx, and the record is `Complete`.
fn backend_unsolicited_227_during_a_download() {
    let backend = RawBackend::start(|s| {
        let mut passive = None;
        plain_session(s, move |verb, w| match verb {
            "PASV" => pasv(w, &mut passive),
            "RETR" => {
                w.write_all(b"150 Opening BINARY mode data connection\r\n")?;
                w.write_all(pasv_reply([127, 0, 0, 1], 1).as_bytes())?;
                let (mut data, _) = passive.take().expect("PASV first").accept()?;
                data.write_all(&vec![0x5a; MIB])?;
                drop(data);
                w.write_all(b"451 Read error; transfer aborted\r\n")?;
                Ok(true)
            }
            _ => Ok(false),
        })
    });
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (mut d, _) = c.start("RETR big.bin");
        let (got, end) = drain(&mut d);
        let fin = c.read();
        let rest = replies_until_closed(&mut c);
        let r = one_transfer(&proxy);
        assert!(
            end.is_err() && !(200..300).contains(&fin.code) && r.result != TransferResult::Complete,
            "the download the backend failed (451) after {got} bytes ended with {end:?} \
             (Ok: close_notify) and {:?}, then {rest:?}; record {:?} {}",
            fin.lines,
            r.result,
            r.code
        );
    }
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend));
}

/// A [`plain_session`] answer to PASV: a fresh data listener.
fn pasv(w: &mut TcpStream, passive: &mut Option<TcpListener>) -> io::Result<bool> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    w.write_all(pasv_reply([127, 0, 0, 1], l.local_addr()?.port()).as_bytes())?;
    *passive = Some(l);
    Ok(true)
}

/// The backend's 227 names 127.0.0.2 (a trap listens there on the same
/// port): the proxy connects to the backend's own address, 127.0.0.1, and
/// the download is byte-exact.
fn backend_227_naming_a_foreign_host() {
    // Shared, so the listener (part of the baseline) outlives the data thread.
    let data = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let port = data.local_addr().unwrap().port();
    let trap = Trap::on(&format!("127.0.0.2:{port}"));
    let payload = random_bytes(300_000, 27);
    let (listener, sent) = (data.clone(), payload.clone());
    let server = thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(&sent).unwrap();
        peer
    });
    let forged = pasv_reply([127, 0, 0, 2], port);
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| match l {
            "PASV" => Some(forged.clone()),
            "RETR f.bin" => Some("150 Opening\r\n226 Done\r\n".into()),
            _ => None,
        }),
    );
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (_, got, fin) = c.download("RETR f.bin");
        assert_eq!(fin.code, 226, "{fin:?}");
        assert!(
            got == payload,
            "{} bytes, not the backend's file",
            got.len()
        );
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let peer = server.join().unwrap();
    assert_eq!(peer.ip(), support::harness::lo(1), "proxy's data source");
    trap.assert_untouched();
    assert_eq!(one_transfer(&proxy).result, TransferResult::Complete);
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

// ---------------------------------------------------------------- client resets

/// The client resets its data connection 1 MiB into a 64 MiB download: 426,
/// the backend's transfer is aborted, the session goes on.
fn client_reset_mid_download() {
    let (b, pid) = pyftpd_with_file("big.bin", 64 * MIB);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("RETR big.bin");
        let mut first = vec![0u8; MIB];
        d.read_exact(&mut first).unwrap();
        reset(d.sock);
        let fin = c.read();
        assert_eq!(fin.code, 426, "{fin:?}");
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert!(
        matches!(r.result, TransferResult::Failed(DataError::Client(_))) && r.code == 426,
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

/// The client resets its data connection halfway through an 8 MiB upload:
/// the client gets 426, and the backend (which, like many legacy servers,
/// takes a clean close for a complete file) sees its data connection reset.
fn client_reset_mid_upload() {
    upload_then_reset(4 * MIB);
}

/// The client sends every byte of the file and then resets instead of
/// sending close_notify: the proxy cannot know the file is whole, so the
/// backend must still see a reset, not a clean close.
fn client_reset_after_the_whole_upload() {
    upload_then_reset(8 * MIB);
}

fn upload_then_reset(send: usize) {
    let backend = Naive::start();
    let proxy = Proxy::spawn(backend.raw.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (mut d, _) = c.start("STOR up.bin");
        d.write_all(&vec![0x3c; send]).unwrap();
        d.flush().unwrap();
        reset(d.sock);
        let fin = c.read();
        assert_eq!(fin.code, 426, "{fin:?}");
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let ends = backend.data_ends(1);
    assert!(
        matches!(ends[..], [DataEnd::Reset(n)] if n <= send),
        "{ends:?}: the backend leg of a failed upload must be reset"
    );
    assert!(backend.raw.saw("ABOR"), "the backend transfer was aborted");
    let r = one_transfer(&proxy);
    assert!(
        matches!(r.result, TransferResult::Failed(DataError::Client(_))) && r.code == 426,
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend.raw));
}

/// The client resets both its connections 4 MiB into an upload: nobody is
/// left to answer, the backend's data connection is reset, the record is not
/// `Complete`.
fn client_vanishes_mid_upload() {
    let backend = Naive::start();
    let proxy = Proxy::spawn(backend.raw.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let (mut d, _) = c.start("STOR up.bin");
        d.write_all(&vec![0x3c; 4 * MIB]).unwrap();
        d.flush().unwrap();
        reset(d.sock);
        reset(ctl_tcp(&c).try_clone().unwrap());
    }
    let ends = backend.data_ends(1);
    assert!(
        matches!(ends[..], [DataEnd::Reset(_)]),
        "{ends:?}: the backend leg of a failed upload must be reset"
    );
    let r = one_transfer(&proxy);
    assert_ne!(r.result, TransferResult::Complete, "{r:?}");
    assert!(!(200..300).contains(&r.code), "{r:?}");
    assert_ended(&proxy, Side::Client, "");
    assert_no_leaks(&proxy, &base, BackendSide::Raw(&backend.raw));
}

/// The same reset against pyftpdlib: the client gets 426 and never a 2xx,
/// the backend gets ABOR and keeps less than the whole file, the session
/// goes on.
fn client_reset_mid_upload_to_pyftpdlib() {
    const LEN: usize = 8 * MIB;
    let (b, pid) = pyftpd_with_file("unused", 0);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let (mut d, _) = c.start("STOR up.bin");
        d.write_all(&vec![0x3c; LEN / 2]).unwrap();
        d.flush().unwrap();
        reset(d.sock);
        let fin = c.read();
        assert_eq!(fin.code, 426, "{fin:?}");
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert!(file_len(&b.root.join("up.bin")) <= (LEN / 2) as u64);
    assert!(
        matches!(r.result, TransferResult::Failed(DataError::Client(_))) && r.code == 426,
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

// ---------------------------------------------------------------- slowloris

/// `NOOP` and then `x`s, one byte every 250 ms, never a line end: 421 when
/// the idle timeout (2 s) runs out, counted from the last complete line, not
/// reset by each byte.
fn slowloris_on_plaintext_control() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |s| s.idle_timeout = SHORT);
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        let mut bytes = b"NOOP".to_vec();
        bytes.resize(200, b'x'); // 50 s at this pace
        let total = bytes.len();
        let started = Instant::now();
        let slow = Dribbler::start(ctl_tcp(&c).try_clone().unwrap(), bytes);
        let g = c.read();
        let took = started.elapsed();
        let sent = slow.stop();
        assert_eq!(g.code, 421, "{g:?}");
        assert!(g.text().contains("Idle"), "{g:?}");
        assert!(took < SHORT + PROMPT, "421 after {took:?}");
        assert!(sent < total);
        assert!(c.try_read().is_none());
    }
    assert_ended(&proxy, Side::Internal, "idle timeout");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// After login, the one TLS record holding `NOOP\r\n` is sent a byte every
/// 250 ms (7 s in all): 421 when the 2 s idle timeout runs out.
fn slowloris_on_tls_control() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |s| s.idle_timeout = SHORT);
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let Ctl::Tls(s) = &mut c.ctl else {
            panic!("TLS expected")
        };
        let tls = s.get_mut();
        tls.conn.writer().write_all(b"NOOP\r\n").unwrap();
        let mut record = Vec::new();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut record).unwrap();
        }
        let total = record.len();
        let started = Instant::now();
        let slow = Dribbler::start(tls.sock.try_clone().unwrap(), record);
        let g = c.read();
        let took = started.elapsed();
        let sent = slow.stop();
        assert_eq!(g.code, 421, "{g:?}");
        assert!(took < SHORT + PROMPT, "421 after {took:?}");
        assert!(sent < total, "the record was complete ({total} bytes)");
        assert!(c.try_read().is_none());
    }
    assert_ended(&proxy, Side::Internal, "idle timeout");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// RETR, then a data connection that never sends its ClientHello: 425 after
/// the data timeout (2 s), the data connection closed, the backend's
/// transfer aborted, the session usable.
fn data_connection_never_says_hello() {
    slow_data_connection(None);
}

/// As above, with a real ClientHello sent a byte every 250 ms.
fn data_connection_dribbles_its_hello() {
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(
        support::harness::client_config(),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    slow_data_connection(Some(hello));
}

fn slow_data_connection(hello: Option<Vec<u8>>) {
    let (b, pid) = pyftpd_with_file("big.bin", 8 * MIB);
    let proxy = Proxy::spawn(b.addr, |s| s.data_timeout = SHORT);
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let addr = c.epsv();
        c.send_raw(b"RETR big.bin\r\n");
        let data = connect_from(addr, None);
        let slow = hello.map(|h| Dribbler::start(data.try_clone().unwrap(), h));
        let pre = c.read();
        assert_eq!(pre.code / 100, 1, "{pre:?}");
        let started = Instant::now();
        let fin = c.read();
        let took = started.elapsed();
        let sent = slow.map(Dribbler::stop);
        assert_eq!(fin.code, 425, "{fin:?} (dribbled {sent:?} bytes)");
        assert!(took < SHORT + PROMPT, "425 after {took:?}");
        assert_closed_by_proxy(&data);
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert_eq!(
        (r.result.clone(), r.code),
        (TransferResult::Failed(DataError::ClientConnect), 425),
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

// ---------------------------------------------------------------- TLS garbage

/// An HTTP request where a ClientHello belongs (no TLS record at all).
const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: ftp.example\r\n\r\n";

/// A complete TLS handshake record whose body is junk.
fn junk_handshake_record() -> Vec<u8> {
    let mut r = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    r.extend_from_slice(&[0xab; 0x40]);
    r
}

/// After `234`, an HTTP request and (next session) a junk handshake record:
/// the connection closes at once, not at the 15 s handshake timeout.
fn tls_garbage_after_auth_tls() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    for garbage in [HTTP.to_vec(), junk_handshake_record()] {
        let (mut c, _) = Client::connect(proxy.addr);
        assert_eq!(c.cmd("AUTH TLS").code, 234);
        let mut tcp = c.take_plain();
        let started = Instant::now();
        tcp.write_all(&garbage).unwrap();
        assert_closed_by_proxy(&tcp);
        assert!(
            started.elapsed() < PROMPT,
            "closed after {:?}",
            started.elapsed()
        );
    }
    for ended in proxy.events.closed(2, WAIT) {
        let e = ended.expect("ended by the handshake");
        assert!(
            e.side == Side::Client && e.message.contains("handshake"),
            "{e:?}"
        );
    }
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// The same garbage on the implicit listener: closed at once, and the
/// backend is never even connected.
fn tls_garbage_on_the_implicit_listener() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()]
    });
    let base = Baseline::take(&proxy);
    for garbage in [HTTP.to_vec(), junk_handshake_record()] {
        let mut tcp = connect_from(proxy.implicit.unwrap(), None);
        let started = Instant::now();
        tcp.write_all(&garbage).unwrap();
        assert_closed_by_proxy(&tcp);
        assert!(
            started.elapsed() < PROMPT,
            "closed after {:?}",
            started.elapsed()
        );
    }
    for ended in proxy.events.closed(2, WAIT) {
        let e = ended.expect("ended by the handshake");
        assert!(
            e.side == Side::Client && e.message.contains("handshake"),
            "{e:?}"
        );
    }
    let connected = proxy
        .events
        .all()
        .into_iter()
        .filter(|(_, e)| matches!(e, SessionEvent::BackendConnected { .. }))
        .count();
    assert_eq!(connected, 0, "backend connected before TLS");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// A logged-in client writes an application-data record that does not
/// decrypt: the session ends at once, its backend connection closed.
fn tls_garbage_record_mid_session() {
    let backend = Scripted::start("220 hi\r\n", Arc::new(|_| None));
    let proxy = Proxy::spawn(backend.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure("alice", "x");
        let mut tcp = ctl_tcp(&c).try_clone().unwrap();
        let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
        record.extend_from_slice(&[0x42; 0x20]);
        let started = Instant::now();
        tcp.write_all(&record).unwrap();
        assert_closed_by_proxy(&tcp);
        assert!(
            started.elapsed() < PROMPT,
            "closed after {:?}",
            started.elapsed()
        );
    }
    assert_ended(&proxy, Side::Client, "client control connection");
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

/// Junk instead of a ClientHello on a PROT P data connection: 522, the data
/// connection closed, the backend's transfer aborted, the session usable.
fn tls_garbage_on_a_data_connection() {
    let (b, pid) = pyftpd_with_file("big.bin", 8 * MIB);
    let proxy = Proxy::spawn(b.addr, |_| {});
    let base = Baseline::take(&proxy);
    {
        let mut c = Client::logged_in(proxy.addr, &b);
        let addr = c.epsv();
        c.send_raw(b"RETR big.bin\r\n");
        let mut data = connect_from(addr, None);
        data.write_all(&junk_handshake_record()).unwrap();
        let pre = c.read();
        assert_eq!(pre.code / 100, 1, "{pre:?}");
        let started = Instant::now();
        let fin = c.read();
        let took = started.elapsed();
        assert_eq!(fin.code, 522, "{fin:?}");
        assert!(took < PROMPT, "522 after {took:?}");
        assert_closed_by_proxy(&data);
        assert_eq!(c.cmd("NOOP").code, 200, "session usable");
        assert_eq!(c.cmd("QUIT").code, 221);
    }
    let r = aborted_transfer(&b, &proxy);
    assert_eq!(
        (r.result.clone(), r.code),
        (TransferResult::Failed(DataError::Handshake), 522),
        "{r:?}"
    );
    assert_no_leaks(&proxy, &base, BackendSide::Daemon(pid));
}

/// tests/hardening.rs (defect 3) checks that a client that never reads is
/// cut off; this variant adds the leak check.
fn client_never_reads_its_replies() {
    let help = format!(
        "214-Help\r\n{}214 End\r\n",
        " HELP line padding the reply out\r\n".repeat(256)
    );
    let backend = Scripted::start(
        "220 hi\r\n",
        Arc::new(move |l: &str| l.starts_with("HELP").then(|| help.clone())),
    );
    let proxy = Proxy::spawn(backend.addr, |s| {
        s.idle_timeout = SHORT;
        // HELP before TLS reaches the backend only when it is connected at accept.
        s.backend_connect = ftpsgate::config::BackendConnect::OnAccept;
    });
    let base = Baseline::take(&proxy);
    {
        let (mut c, _) = Client::connect(proxy.addr);
        c.send_raw(&b"HELP\r\n".repeat(2000));
        assert_ended(&proxy, Side::Client, "stopped reading");
    }
    assert_no_leaks(&proxy, &base, BackendSide::Scripted(&backend));
}

// ---------------------------------------------------------------- leak check

/// What a scenario's proxy and process had when it started.
struct Baseline {
    /// This process's open fds and what each one is.
    fds: BTreeMap<u32, String>,
    /// The proxy runtime's tasks: one accept loop per listener, plus
    /// [`BACKGROUND_TASKS`].
    tasks: usize,
}

impl Baseline {
    /// Takes the baseline once the proxy's accept loops run.
    fn take(proxy: &Proxy) -> Baseline {
        let tasks = 1 + usize::from(proxy.implicit.is_some()) + BACKGROUND_TASKS;
        // `Proxy::spawn` returns when the listeners are bound; the accept
        // loops are spawned just after, on the proxy's own thread.
        settle("the accept loops start", || {
            let n = proxy.alive_tasks();
            (n == tasks)
                .then_some(())
                .ok_or(format!("{n} tasks, want {tasks}"))
        });
        // An earlier scenario's daemon log (a FIFO in its deleted temp dir)
        // is closed by its reader thread once the daemon is gone. (Only
        // temp dirs count: a deleted file the test runner inherited stays.)
        settle("an earlier daemon's log closes", || {
            let stale: Vec<_> = open_fds()
                .into_values()
                .filter(|t| t.contains("/ftpsgate-") && t.ends_with("(deleted)"))
                .collect();
            stale.is_empty().then_some(()).ok_or(format!("{stale:?}"))
        });
        assert_eq!(proxy.status.sessions_open(), 0);
        Baseline {
            fds: open_fds(),
            tasks,
        }
    }
}

/// The backend side of a scenario, and how its connections are counted.
enum BackendSide<'a> {
    /// An in-process [`Scripted`] backend: its open connections (signalled).
    Scripted(&'a Scripted),
    /// A [`RawBackend`] of this file: its open connections (signalled).
    Raw(&'a RawBackend),
    /// A running pyftpdlib process: no socket left but its listener.
    Daemon(u32),
    /// A killed daemon: no TCP connection to or from its port left.
    Gone(u16),
}

/// Every session the proxy opened has closed, the backend holds no
/// connection, and the proxy's ports, bindings, tasks and this process's
/// fds are back to `base`.
fn assert_no_leaks(proxy: &Proxy, base: &Baseline, backend: BackendSide<'_>) {
    let opened = proxy.events.opened();
    let closed = proxy.events.closed(opened, WAIT).len();
    assert_eq!(closed, opened, "sessions still running");
    match backend {
        BackendSide::Scripted(s) => assert!(s.wait_open(0, WAIT), "backend connections left"),
        BackendSide::Raw(r) => assert!(r.wait_open(0, WAIT), "backend connections left"),
        // The daemon closes its side once it reads the proxy's FIN: no
        // signal reaches this process, so poll.
        BackendSide::Daemon(pid) => settle("the daemon's connections close", || {
            let sockets = daemon_sockets(pid);
            (sockets.len() == 1).then_some(()).ok_or(format!(
                "pyftpdlib sockets {sockets:?}, want its listener only"
            ))
        }),
        // A dead process's connections linger in the kernel until both FINs are acknowledged.
        BackendSide::Gone(port) => settle("connections to the dead backend close", || {
            let left = tcp_connections(port);
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        }),
    }
    // After `Closed` the session task still returns its permit and drops its
    // sockets, a finished download's close_notify drain task runs up to
    // CLOSE_NOTIFY_GRACE (2 s), and aborted accept tasks are reaped by the
    // runtime: none of that emits anything, so poll, with a deadline.
    settle("leak check", || {
        let mut wrong = Vec::new();
        let s = &proxy.status;
        for (what, n) in [
            ("sessions open", s.sessions_open()),
            ("passive ports in use", s.passive_ports_in_use()),
            ("TLS bindings", s.bindings()),
        ] {
            if n != 0 {
                wrong.push(format!("{what}: {n}"));
            }
        }
        let tasks = proxy.alive_tasks();
        if tasks != base.tasks {
            wrong.push(format!("tasks: {tasks}, baseline {}", base.tasks));
        }
        let fds = open_fds();
        if fds.len() != base.fds.len() {
            let diff = |a: &BTreeMap<u32, String>, b: &BTreeMap<u32, String>| {
                a.iter()
                    .filter(|(fd, t)| b.get(fd) != Some(t))
                    .map(|(fd, t)| format!("{fd} {t}"))
                    .collect::<Vec<_>>()
            };
            wrong.push(format!(
                "fds: {} (baseline {}), new {:?}, gone {:?}",
                fds.len(),
                base.fds.len(),
                diff(&fds, &base.fds),
                diff(&base.fds, &fds)
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    });
}

/// Tasks a running proxy keeps besides its accept loops: the ban sweeper,
/// the certificate watcher and the backend health checker (idle with one
/// backend and no metrics endpoint, as in these scenarios).
const BACKGROUND_TASKS: usize = 3;

/// Polls `probe` until it succeeds, every [`POLL`] up to [`SETTLE`];
/// panics with its last complaint. Only for cleanup that goes on after the
/// last signal a test can wait for.
fn settle(what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        match probe() {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not within {SETTLE:?}: {why}")
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// This process's open fds and their targets.
fn open_fds() -> BTreeMap<u32, String> {
    let mut fds = BTreeMap::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse() else {
            continue;
        };
        if let Ok(target) = fs::read_link(entry.path()) {
            let target = target.display().to_string();
            // The directory handle of this very listing.
            if !(target.starts_with("/proc/") && target.ends_with("/fd")) {
                fds.insert(fd, target);
            }
        }
    }
    fds
}

/// The sockets process `pid` has open.
fn daemon_sockets(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .filter(|t| t.starts_with("socket:"))
                .collect()
        })
        .unwrap_or_default()
}

/// TCP connections (any state holding a connection) from or to `port`.
fn tcp_connections(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let port_of = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            // LISTEN, TIME_WAIT and CLOSE hold no connection.
            let live = !matches!(f[3], "0A" | "06" | "07");
            if live && (port_of(f[1]) == Some(port) || port_of(f[2]) == Some(port)) {
                found.push(format!("{} -> {} state {}", f[1], f[2], f[3]));
            }
        }
    }
    found
}

// ---------------------------------------------------------------- helpers

/// A pyftpdlib backend with `name` of `len` bytes, and its process id.
fn pyftpd_with_file(name: &str, len: usize) -> (PyFtpd, u32) {
    let b = PyFtpd::start();
    b.write_file(name, &vec![0x5a; len]);
    let pid = daemon_pid(&b.root);
    (b, pid)
}

/// The process whose command line names `root` (pyftpdlib's `--root`).
fn daemon_pid(root: &Path) -> u32 {
    let needle = root.as_os_str().as_bytes();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            return pid;
        }
    }
    panic!("no process serves {}", root.display());
}

/// Sends `sig` to `pid` and waits until it took effect (stopped, running, dead).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig} {pid}");
    let want: &[char] = match sig {
        "STOP" => &['T'],
        "KILL" => &['Z', 'X'],
        _ => return,
    };
    // The kernel acts on the signal when it next schedules the process.
    settle(&format!("SIG{sig} takes effect"), || {
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()));
        match state {
            None => Ok(()),
            Some(s) if want.contains(&s) => Ok(()),
            Some(s) => Err(format!("state {s}")),
        }
    });
}

/// The client's control socket.
fn ctl_tcp(c: &Client) -> &TcpStream {
    match &c.ctl {
        Ctl::Plain(r) => r.get_ref(),
        Ctl::Tls(r) => &r.get_ref().sock,
        Ctl::Taken => panic!("control connection taken"),
    }
}

/// Closes `tcp` with a reset (SO_LINGER 0).
fn reset(tcp: TcpStream) {
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads a data connection to its end: bytes read, and `Ok` for a
/// close_notify, the error otherwise.
fn drain(d: &mut Data) -> (usize, io::Result<()>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    loop {
        match d.read(&mut buf) {
            Ok(0) => return (n, Ok(())),
            Ok(k) => n += k,
            Err(e) => return (n, Err(e)),
        }
    }
}

/// Writes 1 MiB chunks of an upload of `len` bytes, calling `fault` after
/// 4 MiB, until a write fails; returns the bytes written.
fn upload_until_refused(d: &mut Data, len: usize, fault: impl FnOnce()) -> usize {
    // A proxy that never lets go of a blocked upload fails the test here.
    d.sock.set_write_timeout(Some(WAIT)).unwrap();
    let chunk = vec![0xa5u8; MIB];
    let mut fault = Some(fault);
    let mut sent = 0;
    while sent < len {
        if sent == 4 * MIB {
            if let Some(f) = fault.take() {
                f();
            }
        }
        if d.write_all(&chunk).and_then(|()| d.flush()).is_err() {
            break;
        }
        sent += chunk.len();
    }
    sent
}

/// The backend was asked for its data leg the way `mode` says.
fn assert_backend_data(b: &PyFtpd, mode: BackendData) {
    let verb = match mode {
        BackendData::Passive => "PASV",
        BackendData::Active => "PORT",
    };
    assert!(b.saw(verb), "{mode:?}: {:?}", b.commands());
}

/// Reply codes until the proxy closes the control connection.
fn replies_until_closed(c: &mut Client) -> Vec<u16> {
    std::iter::from_fn(|| c.try_read().map(|g| g.code)).collect()
}

/// The scenario's one transfer record.
/// The one transfer record of a transfer ftpsgate had to abort, once the
/// backend has seen the ABOR.
fn aborted_transfer(b: &impl FtpBackend, proxy: &Proxy) -> TransferRecord {
    assert!(
        b.wait_for_command("ABOR"),
        "the backend transfer was aborted"
    );
    one_transfer(proxy)
}

fn one_transfer(proxy: &Proxy) -> TransferRecord {
    let records = proxy.events.transfers(1);
    assert_eq!(records.len(), 1, "{records:?}");
    records[0].clone()
}

/// The first session ended for `side`, with `needle` in its message.
fn assert_ended(proxy: &Proxy, side: Side, needle: &str) {
    let closed = proxy.events.closed(1, WAIT);
    let ended: &Option<Ended> = closed.first().expect("session closed");
    let e = ended.as_ref().expect("session ended by an error");
    assert!(e.side == side && e.message.contains(needle), "{e:?}");
}

/// The proxy closes its end of `tcp` (EOF or reset, after any alert)
/// within [`PROMPT`]: at once, not when some longer timeout runs out.
fn assert_closed_by_proxy(tcp: &TcpStream) {
    let mut tcp = tcp.try_clone().unwrap();
    let deadline = Instant::now() + PROMPT;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "still open after {PROMPT:?}");
        tcp.set_read_timeout(Some(left)).unwrap();
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("still open after {PROMPT:?}: {e}"),
        }
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` with CRLF.
fn pasv_reply(ip: [u8; 4], port: u16) -> String {
    let [a, b, c, d] = ip;
    format!(
        "227 Entering Passive Mode ({a},{b},{c},{d},{},{})\r\n",
        port >> 8,
        port & 0xff
    )
}

/// A listener nobody may connect to.
struct Trap(TcpListener);

impl Trap {
    fn on(addr: &str) -> Trap {
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        Trap(l)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("{:?} was connected: {other:?}", self.0.local_addr()),
        }
    }
}

/// A slow client: writes its bytes one at a time, 250 ms apart.
struct Dribbler {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<usize>,
}

impl Dribbler {
    fn start(mut tcp: TcpStream, bytes: Vec<u8>) -> Dribbler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let mut sent = 0;
            for b in bytes {
                if tcp.write_all(&[b]).is_err() {
                    break;
                }
                sent += 1;
                // The pace of the slow client (and its stop signal).
                match stopped.recv_timeout(Duration::from_millis(250)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            sent
        });
        Dribbler { stop, thread }
    }

    /// Stops and returns how many bytes were sent.
    fn stop(self) -> usize {
        drop(self.stop);
        self.thread.join().unwrap()
    }
}

// ---------------------------------------------------------------- in-process backends

/// A backend whose control connections each run `serve` on a thread of
/// their own; it counts open connections (signalled, like [`Scripted`]) and
/// records every command line.
struct RawBackend {
    addr: SocketAddr,
    open: Arc<(Mutex<usize>, Condvar)>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RawBackend {
    fn start(serve: impl Fn(Session) -> io::Result<()> + Send + Sync + 'static) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new((Mutex::new(0usize), Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let serve = Arc::new(serve);
        let (open2, seen2) = (open.clone(), seen.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (open, seen, serve) = (open2.clone(), seen2.clone(), serve.clone());
                *open.0.lock().unwrap() += 1;
                thread::spawn(move || {
                    // Bounded, so a proxy that never lets go fails the leak check but ends.
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                    if let Ok(session) = Session::new(conn, seen) {
                        let _ = serve(session);
                    }
                    *open.0.lock().unwrap() -= 1;
                    open.1.notify_all();
                });
            }
        });
        RawBackend { addr, open, seen }
    }

    /// Waits (up to `limit`) until exactly `n` connections are open.
    fn wait_open(&self, n: usize, limit: Duration) -> bool {
        let (lock, cv) = &*self.open;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv.wait_timeout_while(guard, limit, |o| *o != n).unwrap();
        *guard == n
    }

    /// True if a command line with this verb arrived.
    fn saw(&self, verb: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|l| verb_of(l) == verb)
    }
}

/// One control connection of a [`RawBackend`].
struct Session {
    r: BufReader<TcpStream>,
    w: TcpStream,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Session {
    fn new(conn: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> io::Result<Session> {
        Ok(Session {
            w: conn.try_clone()?,
            r: BufReader::new(conn),
            seen,
        })
    }

    /// The next command line (lossy UTF-8, Telnet bytes kept), None at EOF.
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        if self.r.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        self.seen.lock().unwrap().push(line.clone());
        Ok(Some(line))
    }
}

/// The verb of a command line, upper-cased, after any Telnet IP/DM bytes
/// (an urgent ABOR arrives as `IAC IP IAC DM ABOR`).
fn verb_of(line: &str) -> String {
    line.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
        .split(' ')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// A plain login-and-200 backend session; `special(verb, writer)` answers
/// first and returns true when it did.
fn plain_session(
    mut s: Session,
    mut special: impl FnMut(&str, &mut TcpStream) -> io::Result<bool>,
) -> io::Result<()> {
    s.w.write_all(b"220 raw backend\r\n")?;
    while let Some(line) = s.line()? {
        let verb = verb_of(&line);
        if special(&verb, &mut s.w)? {
            continue;
        }
        let answer: &[u8] = match verb.as_str() {
            "USER" => b"331 Password required\r\n",
            "PASS" => b"230 Logged in\r\n",
            "QUIT" => {
                s.w.write_all(b"221 Bye\r\n")?;
                return Ok(());
            }
            _ => b"200 OK\r\n",
        };
        s.w.write_all(answer)?;
    }
    Ok(())
}

/// How an upload's data connection ended, as the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataEnd {
    /// A clean close after this many bytes: a legacy server stores it as the
    /// complete file and answers 226.
    Fin(usize),
    /// A reset after this many bytes.
    Reset(usize),
    /// Another error after this many bytes.
    Failed(io::ErrorKind, usize),
}

/// A naive legacy backend: passive data only, and an upload is complete
/// when its data connection closes cleanly (226), failed when it is reset
/// (426). It notices ABOR only between commands, as vsftpd without
/// `async_abor_enable` does.
struct Naive {
    raw: RawBackend,
    ends: Arc<(Mutex<Vec<DataEnd>>, Condvar)>,
}

impl Naive {
    fn start() -> Naive {
        let ends = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let e = ends.clone();
        let raw = RawBackend::start(move |s| naive_session(s, &e));
        Naive { raw, ends }
    }

    /// Waits until `n` uploads have ended and returns how they ended.
    fn data_ends(&self, n: usize) -> Vec<DataEnd> {
        let (lock, cv) = &*self.ends;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv.wait_timeout_while(guard, WAIT, |e| e.len() < n).unwrap();
        guard.clone()
    }
}

fn naive_session(mut s: Session, ends: &(Mutex<Vec<DataEnd>>, Condvar)) -> io::Result<()> {
    s.w.write_all(b"220 naive FTP\r\n")?;
    let mut passive: Option<TcpListener> = None;
    while let Some(line) = s.line()? {
        let answer = match verb_of(&line).as_str() {
            "USER" => "331 Password required".to_string(),
            "PASS" => "230 Logged in".to_string(),
            "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let port = l.local_addr()?.port();
                passive = Some(l);
                pasv_reply([127, 0, 0, 1], port).trim_end().to_string()
            }
            "STOR" => {
                let Some(l) = passive.take() else {
                    s.w.write_all(b"425 Use PASV first\r\n")?;
                    continue;
                };
                s.w.write_all(b"150 Ok to send data\r\n")?;
                let (data, _) = l.accept()?;
                let end = receive(data);
                ends.0.lock().unwrap().push(end);
                ends.1.notify_all();
                match end {
                    DataEnd::Fin(_) => "226 Transfer complete".to_string(),
                    _ => "426 Connection lost; transfer aborted".to_string(),
                }
            }
            "ABOR" => "226 ABOR successful".to_string(),
            "QUIT" => {
                s.w.write_all(b"221 Bye\r\n")?;
                return Ok(());
            }
            _ => "200 OK".to_string(),
        };
        s.w.write_all(format!("{answer}\r\n").as_bytes())?;
    }
    Ok(())
}

/// Reads an upload's data connection to its end.
fn receive(mut data: TcpStream) -> DataEnd {
    let _ = data.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    loop {
        match data.read(&mut buf) {
            Ok(0) => return DataEnd::Fin(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return DataEnd::Reset(n),
            Err(e) => return DataEnd::Failed(e.kind(), n),
        }
    }
}
