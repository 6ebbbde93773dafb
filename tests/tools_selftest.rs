//! Self-test of the real-tool harness in `tests/support/tools/`: starts
//! every real backend (pyftpdlib, vsftpd, proftpd) and drives it with the
//! real clients in plaintext mode (curl `ftp://`, lftp, CPython `ftplib.FTP`),
//! with no proxy involved, to prove the launchers, clients and command logs
//! work. Under `CI=true` a missing tool fails the test instead of skipping.

#[path = "support/tools/mod.rs"]
mod tools;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tools::command_log::CommandLog;
use tools::{
    curl_download, curl_list, curl_upload, lftp_run, py_client, run_with_timeout, sha256_file,
    tool_available, tools_available, write_random_file, CurlOptions, FtpBackend, LftpOptions,
    Proftpd, PyClientOptions, PyFtpd, PyFtpdOptions, ReservedPort, Vsftpd,
};

/// Uploads and downloads through `backend` with every client, in passive
/// and active mode, and checks bytes and the command log.
fn roundtrip(backend: &dyn FtpBackend) {
    let name = backend.name();
    let addr = backend.addr();
    let (user, pass) = (backend.user(), backend.pass());
    let local = tempfile::tempdir().unwrap();
    // The readiness probe (a greeting, no command) leaves the log empty.
    assert_eq!(
        backend.commands(),
        Vec::<String>::new(),
        "{name}: probe logged"
    );

    // curl upload, EPSV.
    let up = local.path().join("up.bin");
    let up_sha = write_random_file(&up, 3 * 1024 * 1024 + 7);
    let curl = CurlOptions::plain().login(user, pass);
    curl_upload(addr, &up, "up.bin", &curl).assert_success();
    assert_eq!(
        sha256_file(backend.path("up.bin")),
        up_sha,
        "{name}: stored bytes"
    );

    // ftplib download, PASV.
    let py = PyClientOptions::plain().login(user, pass);
    let got = local.path().join("py.bin");
    let out = py_client(addr, &py, &["get", "up.bin", got.to_str().unwrap()]);
    out.assert_success();
    assert_eq!(
        out.field("sha256"),
        Some(up_sha.as_str()),
        "{name}: ftplib sha\n{out}"
    );
    assert_eq!(
        out.field("code"),
        Some("226"),
        "{name}: ftplib reply\n{out}"
    );
    assert_eq!(sha256_file(&got), up_sha);

    // ftplib upload in active mode (PORT), then REST + RETR.
    let up2 = local.path().join("up2.bin");
    let up2_sha = write_random_file(&up2, 100_000);
    py_client(
        addr,
        &py.clone().active(),
        &["put", up2.to_str().unwrap(), "up2.bin"],
    )
    .assert_success();
    assert_eq!(
        sha256_file(backend.path("up2.bin")),
        up2_sha,
        "{name}: active STOR"
    );
    let part = local.path().join("part.bin");
    let out = py_client(
        addr,
        &py,
        &["get", "up2.bin", part.to_str().unwrap(), "--rest", "1000"],
    );
    out.assert_success();
    assert_eq!(out.field("bytes"), Some("99000"), "{name}: REST\n{out}");

    // curl download, PASV and active EPRT, and a listing with PORT.
    let c1 = local.path().join("curl-pasv.bin");
    curl_download(addr, "up.bin", &c1, &curl.clone().pasv()).assert_success();
    assert_eq!(sha256_file(&c1), up_sha);
    let c2 = local.path().join("curl-eprt.bin");
    curl_download(addr, "up.bin", &c2, &curl.clone().active()).assert_success();
    assert_eq!(sha256_file(&c2), up_sha);
    let list = curl_list(addr, "", &curl.clone().active().no_eprt());
    list.assert_success();
    assert!(list.stdout.contains("up2.bin"), "{name}: listing\n{list}");

    // lftp: put, get back, list, mirror a directory of small files.
    let src = local.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..20 {
        write_random_file(src.join(format!("f{i:02}.dat")), 1000 + i);
    }
    let lftp = LftpOptions::plain().login(user, pass);
    let out = lftp_run(
        addr,
        &lftp,
        &[
            "put up.bin -o lftp.bin",
            "get lftp.bin -o lftp-back.bin",
            "mirror -R src tree",
            "cls -1 tree",
        ],
        local.path(),
    );
    out.assert_success();
    assert_eq!(sha256_file(local.path().join("lftp-back.bin")), up_sha);
    assert_eq!(sha256_file(backend.path("lftp.bin")), up_sha);
    assert!(out.stdout.contains("f19.dat"), "{name}: lftp cls\n{out}");
    for i in 0..20 {
        let f = format!("f{i:02}.dat");
        assert_eq!(
            sha256_file(src.join(&f)),
            sha256_file(backend.path(&format!("tree/{f}"))),
            "{name}: mirrored {f}"
        );
    }
    // lftp active mode, PORT.
    lftp_run(
        addr,
        &lftp.clone().active().no_epsv(),
        &["get up2.bin"],
        local.path(),
    )
    .assert_success();
    assert_eq!(sha256_file(local.path().join("up2.bin")), up2_sha);

    // The command log.
    assert!(backend.wait_for_command("QUIT"), "{name}: no QUIT logged");
    for cmd in [
        "USER",
        "PASS",
        "STOR up.bin",
        "RETR up.bin",
        "REST 1000",
        "EPSV",
        "PASV",
        "EPRT",
        "PORT",
        "LIST",
    ] {
        assert!(
            backend.wait_for_command(cmd),
            "{name}: command log lacks {cmd:?}:\n{}",
            backend.commands_seen()
        );
    }
    let cmds = backend.commands();
    let rest = cmds.iter().position(|c| c == "REST 1000").unwrap();
    assert_eq!(
        cmds[rest + 1],
        "RETR up2.bin",
        "{name}: REST then RETR:\n{cmds:?}"
    );
}

#[test]
fn pyftpdlib_roundtrip() {
    if !tools_available(&["curl", "lftp", "python3", "pyftpdlib"]) {
        return;
    }
    let backend = PyFtpd::start();
    roundtrip(&backend);
}

#[test]
fn vsftpd_roundtrip() {
    if !tools_available(&["curl", "lftp", "python3", "vsftpd"]) {
        return;
    }
    let backend = Vsftpd::start();
    roundtrip(&backend);
}

#[test]
fn proftpd_roundtrip() {
    if !tools_available(&["curl", "lftp", "python3", "proftpd"]) {
        return;
    }
    let backend = Proftpd::start();
    roundtrip(&backend);
}

#[test]
fn pyftpdlib_without_epsv_makes_clients_fall_back_to_pasv() {
    if !tools_available(&["curl", "python3"]) {
        return;
    }
    let backend = PyFtpd::start_with(PyFtpdOptions::no_epsv());
    backend.write_file("a.txt", b"hello\n");
    let local = tempfile::tempdir().unwrap();
    let out_path = local.path().join("a.txt");
    curl_download(backend.addr, "a.txt", &out_path, &CurlOptions::plain()).assert_success();
    assert_eq!(std::fs::read(&out_path).unwrap(), b"hello\n");
    let cmds = backend.commands();
    let epsv = cmds
        .iter()
        .position(|c| c == "EPSV")
        .expect("curl tried EPSV");
    assert_eq!(cmds[epsv + 1], "PASV", "{cmds:?}");

    let out = py_client(backend.addr, &PyClientOptions::plain().epsv(), &["list"]);
    out.assert_failure();
    assert_eq!(out.field("code"), Some("500"), "{out}");
}

/// Logs in over a raw control connection and returns the reply to `PASV`.
fn raw_pasv(backend: &dyn FtpBackend) -> String {
    let stream = TcpStream::connect(backend.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = || {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return line.trim_end().to_owned();
            }
        }
    };
    assert!(reply().starts_with("220"));
    write!(writer, "USER {}\r\n", backend.user()).unwrap();
    assert!(reply().starts_with("331"));
    write!(writer, "PASS {}\r\n", backend.pass()).unwrap();
    assert!(reply().starts_with("230"));
    write!(writer, "PASV\r\n").unwrap();
    let pasv = reply();
    write!(writer, "QUIT\r\n").unwrap();
    pasv
}

#[test]
fn pyftpdlib_masquerade_address_is_advertised() {
    if !tool_available("python3") {
        return;
    }
    let zero = PyFtpd::start_with(PyFtpdOptions::masquerade("0.0.0.0"));
    let pasv = raw_pasv(&zero);
    assert!(
        pasv.starts_with("227") && pasv.contains("(0,0,0,0,"),
        "{pasv}"
    );
    // A "foreign" address that is still loopback: never leave 127.0.0.0/8.
    let foreign = PyFtpd::start_with(PyFtpdOptions::masquerade("127.0.0.2"));
    let pasv = raw_pasv(&foreign);
    assert!(pasv.contains("(127,0,0,2,"), "{pasv}");
    assert!(foreign.saw("PASV") && !foreign.saw("EPSV"));
}

#[test]
fn clients_are_killed_at_their_timeout() {
    let start = Instant::now();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 30; echo never"]);
    let out = run_with_timeout(cmd, Duration::from_millis(300));
    assert!(out.timed_out && !out.success(), "{out}");
    assert!(!out.stdout.contains("never"));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn random_files_are_deterministic_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let start = Instant::now();
    let sha = write_random_file(&a, 64 * 1024 * 1024);
    eprintln!(
        "64 MiB random file written and hashed in {:?}",
        start.elapsed()
    );
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 64 * 1024 * 1024);
    assert_eq!(sha256_file(&a), sha);
    assert_eq!(write_random_file(&b, 64 * 1024 * 1024), sha);
    assert_ne!(write_random_file(&b, 1000), write_random_file(&a, 1001));
    assert_eq!(write_random_file(&b, 0), tools::sha256_bytes(b""));
}

#[test]
fn servers_serve_at_once_log_exactly_and_close_their_port_on_drop() {
    if !tools_available(&["python3", "vsftpd", "proftpd"]) {
        return;
    }
    let backends: Vec<Box<dyn FtpBackend>> = vec![
        Box::new(PyFtpd::start()),
        Box::new(Vsftpd::start()),
        Box::new(Proftpd::start()),
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    for b in &backends {
        raw_pasv(b.as_ref());
        // vsftpd and pyftpdlib log a command before answering it, so it is
        // there at once; ProFTPD logs after the reply, so wait for its QUIT.
        assert!(
            b.wait_for_command("QUIT"),
            "{}: {}",
            b.name(),
            b.commands_seen()
        );
        assert!(
            b.saw("USER") && b.saw("PASV"),
            "{}: {:?}",
            b.name(),
            b.commands()
        );
    }
    drop(backends);
    for addr in addrs {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still served");
    }
}

#[test]
fn a_daemon_that_cannot_start_fails_fast_with_its_complaint() {
    if !tools_available(&["vsftpd", "proftpd"]) {
        return;
    }
    let start = Instant::now();
    // vsftpd complains on the control connection, ProFTPD on stderr.
    let err = Vsftpd::try_start(&"no_such_option=YES".to_owned())
        .err()
        .expect("vsftpd started with a bad config");
    assert!(err.to_string().contains("no_such_option"), "{err}");
    let err = Proftpd::try_start(&"NoSuchDirective on".to_owned())
        .err()
        .expect("proftpd started with a bad config");
    assert!(err.to_string().contains("NoSuchDirective"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn command_log_reads_exactly_and_wakes_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let log = CommandLog::create(&dir.path().join("log.fifo")).unwrap();
    let open = || OpenOptions::new().append(true).open(log.path()).unwrap();
    assert_eq!(log.text(), "");
    // Written before `text` is called, so `text` has it (the barrier).
    let mut session = open();
    writeln!(session, "USER alice").unwrap();
    assert_eq!(log.text(), "USER alice\n");
    // A writer that goes away (an inetd session ending) does not end the log.
    drop(session);
    let mut session = open();
    let writer = std::thread::spawn(move || writeln!(session, "QUIT").unwrap());
    assert!(log.wait_for(|t| t.contains("QUIT"), Duration::from_secs(10)));
    writer.join().unwrap();
    let start = Instant::now();
    assert!(!log.wait_for(|t| t.contains("NEVER"), Duration::from_millis(200)));
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(log.text(), "USER alice\nQUIT\n");
}

#[test]
fn reserved_port_is_free_for_reuseaddr_listeners_only() {
    let reserved = ReservedPort::new();
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, reserved.port()).into();
    // A bind without SO_REUSEADDR (and so any ephemeral allocation) is refused...
    let plain = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    assert!(plain.bind(&addr.into()).is_err(), "{addr} not reserved");
    // ...while a SO_REUSEADDR listener, as ftpsgate's passive ones, can use
    // it, again and again.
    for _ in 0..2 {
        let listener = TcpListener::bind(addr).unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        listener.accept().unwrap();
    }
}
