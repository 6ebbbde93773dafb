//! Live operation of the real binary (issue 9): SIGHUP reloads the
//! configuration and certificate without cutting transfers, a bad file is
//! refused, renewed certificate files are picked up without a signal,
//! SIGTERM drains and then cuts (each cut transfer keeps its record), the
//! transfer log (JSON and xferlog) is reopened for logrotate, and the log
//! speaks to systemd (sd_notify, journald priorities) or as JSON.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use support::harness::Client;
use support::tools::{random_bytes, sha256_bytes, FtpBackend, PyFtpd};

/// A running `ftpsgate serve --config FILE`, its log lines on a channel.
struct Gate {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Gate {
    fn start(config: &Path, envs: &[(&str, String)]) -> Gate {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftpsgate"));
        cmd.args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first.trim().rsplit(' ').next().unwrap().parse().unwrap();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Gate {
            child,
            addr,
            lines,
            seen: Vec::new(),
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (on the log itself) for a line containing `needle`.
    fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?} within {limit:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ftpsgate did not exit within {limit:?}"
            );
            // Collect the log meanwhile; the process exit has no signal to wait on here.
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(path: &Path, backend: SocketAddr, extra: &str) {
    std::fs::write(
        path,
        format!(
            "listen: ['127.0.0.1:0']\nbackend: '{backend}'\nbackend_connect: on-accept\n{extra}"
        ),
    )
    .unwrap();
}

fn json_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for `path` to hold `n` lines (the log writer runs on its own thread).
fn wait_lines(path: &Path, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text;
        }
        // Bounded poll: the writer thread flushes asynchronously, with no signal.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_new_policy_to_new_sessions_without_cutting_a_download() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    let payload = random_bytes(24 * 1024 * 1024, 61);
    b.write_file("big.bin", &payload);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, xfer) = (dir.path().join("f.yaml"), dir.path().join("xfer.log"));
    let logs = format!("transfer_log: {}\n", xfer.display());
    write_config(&cfg, b.addr, &format!("data_tls: required\n{logs}"));
    let mut gate = Gate::start(&cfg, &[]);
    let mut a = Client::logged_in(gate.addr, &b);
    let (mut d, first) = a.start("RETR big.bin");
    assert_eq!(first.code / 100, 1);
    let mut got = vec![0u8; 1 << 20];
    d.read_exact(&mut got).unwrap();
    // logrotate: move the log away, then SIGHUP with a changed policy.
    std::fs::rename(&xfer, dir.path().join("xfer.log.1")).unwrap();
    write_config(&cfg, b.addr, &format!("data_tls: optional\n{logs}"));
    gate.signal("-HUP");
    gate.wait_log("configuration reloaded", Duration::from_secs(10));
    d.read_to_end(&mut got).unwrap();
    got.drain(..0);
    assert_eq!(a.read().code, 226);
    assert_eq!(
        sha256_bytes(&got),
        sha256_bytes(&payload),
        "the download survived the reload"
    );
    // The old session keeps its policy; a new one gets the new one.
    assert_eq!(a.cmd("PROT C").code, 200);
    let _ = a.epsv();
    assert_eq!(a.cmd("NLST").code, 522);
    let mut c = Client::logged_in(gate.addr, &b);
    assert_eq!(c.cmd("PROT C").code, 200);
    let addr = c.epsv();
    c.send_raw(b"NLST\r\n");
    let mut listing = String::new();
    std::net::TcpStream::connect(addr)
        .unwrap()
        .read_to_string(&mut listing)
        .unwrap();
    assert_eq!(c.read().code / 100, 1);
    assert_eq!(c.read().code, 226);
    assert!(listing.contains("big.bin"));
    // The records written after the reopen are in the new file.
    let text = wait_lines(&xfer, 3);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let retr = records
        .iter()
        .find(|r| r["verb"] == "RETR")
        .expect("RETR record");
    assert_eq!(retr["bytes"], payload.len() as u64);
    assert_eq!(retr["result"], "complete");
    assert_eq!(retr["path"], "big.bin");
    assert!(records
        .iter()
        .any(|r| r["verb"] == "NLST" && r["result"] == "refused"));
    assert!(records
        .iter()
        .any(|r| r["verb"] == "NLST" && r["result"] == "complete"));
    assert!(gate.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn a_bad_file_on_sighup_is_refused_and_the_old_state_keeps_serving() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("f.yaml");
    write_config(&cfg, b.addr, "");
    let mut gate = Gate::start(&cfg, &[]);
    std::fs::write(&cfg, "listen: ['127.0.0.1:0']\nbackend: nohost\n").unwrap();
    gate.signal("-HUP");
    let line = gate.wait_log("reload refused", Duration::from_secs(10));
    assert!(line.contains("backend"), "{line}");
    // A listener change is applied only at restart, and said so.
    write_config(&cfg, b.addr, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    gate.signal("-HUP");
    let line = gate.wait_log("only after a restart", Duration::from_secs(10));
    assert!(line.contains("listen"), "{line}");
    Client::logged_in(gate.addr, &b);
}

/// A rustls client verifier that records the certificate it was shown.
#[derive(Debug, Default)]
struct Seen(std::sync::Mutex<Vec<u8>>);

impl rustls::client::danger::ServerCertVerifier for Seen {
    fn verify_server_cert(
        &self,
        end: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = end.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate the proxy presents to a new control connection.
fn presented(addr: SocketAddr) -> Vec<u8> {
    let seen = std::sync::Arc::new(Seen::default());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(seen.clone())
    .with_no_client_auth();
    let (mut c, _) = Client::connect(addr);
    c.tls = std::sync::Arc::new(config);
    c.auth_tls();
    let der = seen.0.lock().unwrap().clone();
    der
}

fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Written next to the target and renamed, as ACME clients do.
    std::fs::write(dir.join("cert.tmp"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.tmp"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.tmp"), &k).unwrap();
    std::fs::rename(dir.join("cert.tmp"), &c).unwrap();
    (c, k, cert.der().to_vec())
}

#[test]
fn renewed_certificate_files_are_served_without_a_signal() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, old) = write_pair(dir.path(), "old.example");
    let cfg = dir.path().join("f.yaml");
    let tls = format!("cert: {}\nkey: {}\n", cert.display(), key.display());
    write_config(&cfg, b.addr, &tls);
    let mut gate = Gate::start(&cfg, &[]);
    let mut c = Client::logged_in(gate.addr, &b);
    assert_eq!(presented(gate.addr), old);
    let (_, _, new) = write_pair(dir.path(), "new.example");
    gate.wait_log("certificate files changed on disk", Duration::from_secs(20));
    assert_eq!(
        presented(gate.addr),
        new,
        "new sessions get the renewed certificate"
    );
    // A session from before keeps working, and resumes its data connections.
    b.write_file("after.bin", b"renewed");
    let (_, got, fin) = c.download("RETR after.bin");
    assert_eq!((fin.code, got.as_slice()), (226, &b"renewed"[..]));
}

#[test]
fn sigterm_drains_then_cuts_running_transfers_each_with_its_record() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    b.write_file("big.bin", &random_bytes(32 * 1024 * 1024, 62));
    let dir = tempfile::tempdir().unwrap();
    let (cfg, xfer) = (dir.path().join("f.yaml"), dir.path().join("xfer.log"));
    let extra = format!("shutdown_grace: 1\ntransfer_log: {}\n", xfer.display());
    write_config(&cfg, b.addr, &extra);
    let mut gate = Gate::start(&cfg, &[]);
    let mut busy = Client::logged_in(gate.addr, &b);
    let mut idle = Client::logged_in(gate.addr, &b);
    let (mut d, _) = busy.start("RETR big.bin");
    let mut chunk = vec![0u8; 64 * 1024];
    d.read_exact(&mut chunk).unwrap(); // then stop reading: the transfer stays open
    gate.signal("-TERM");
    // The idle session is told at once; the transfer runs through the grace period.
    let bye = idle.read();
    assert_eq!(bye.code, 421, "{bye:?}");
    let cut = busy.read();
    assert_eq!(
        (cut.code, cut.text()),
        (426, "Service shutting down; transfer aborted.")
    );
    assert_eq!(busy.read().code, 421);
    assert!(gate.wait_exit(Duration::from_secs(15)).success());
    let records = json_records(&xfer);
    let retr = records
        .iter()
        .find(|r| r["verb"] == "RETR")
        .expect("the cut transfer's record");
    assert_eq!(retr["result"], "failed");
    assert_eq!(retr["reason"], "cut at shutdown");
    assert_eq!(retr["code"], 426);
    assert!(!gate
        .seen
        .iter()
        .any(|l| l.contains("WARN") && l.contains("stop signal")));
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    b.write_file("big.bin", &random_bytes(32 * 1024 * 1024, 63));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("f.yaml");
    write_config(&cfg, b.addr, "shutdown_grace: 300\n");
    let mut gate = Gate::start(&cfg, &[]);
    let mut busy = Client::logged_in(gate.addr, &b);
    let (mut d, _) = busy.start("RETR big.bin");
    let mut chunk = vec![0u8; 64 * 1024];
    d.read_exact(&mut chunk).unwrap();
    gate.signal("-TERM");
    gate.wait_log("stop signal", Duration::from_secs(10));
    gate.signal("-TERM");
    let started = Instant::now();
    assert_eq!(busy.read().code, 426);
    assert!(gate.wait_exit(Duration::from_secs(15)).success());
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn sighup_and_sigusr1_reopen_the_xferlog() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    b.write_file("a b.bin", &random_bytes(1000, 64));
    let dir = tempfile::tempdir().unwrap();
    let (cfg, xfer) = (dir.path().join("f.yaml"), dir.path().join("xferlog"));
    let extra = format!(
        "transfer_log: {}\ntransfer_log_format: xferlog\n",
        xfer.display()
    );
    write_config(&cfg, b.addr, &extra);
    let mut gate = Gate::start(&cfg, &[]);
    let mut c = Client::logged_in(gate.addr, &b);
    assert_eq!(c.download("RETR a b.bin").2.code, 226);
    let first = wait_lines(&xfer, 1);
    let fields: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(fields.len(), 18, "{first}");
    assert_eq!(
        &fields[5..],
        [
            "1",
            "127.0.0.1",
            "1000",
            "a_b.bin",
            "b",
            "_",
            "o",
            "r",
            "alice",
            "ftp",
            "0",
            "*",
            "c"
        ]
    );
    std::fs::rename(&xfer, dir.path().join("xferlog.1")).unwrap();
    gate.signal("-USR1");
    gate.wait_log("transfer log reopened", Duration::from_secs(10));
    assert_eq!(c.upload("STOR up.bin", b"12345").1.code, 226);
    let second = wait_lines(&xfer, 1);
    assert!(
        second.contains(" up.bin b _ i r alice ftp 0 * c"),
        "{second}"
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let Some(b) = PyFtpd::available() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, sock) = (dir.path().join("f.yaml"), dir.path().join("notify"));
    write_config(&cfg, b.addr, "");
    let listener = UnixDatagram::bind(&sock).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut gate = Gate::start(&cfg, &[("NOTIFY_SOCKET", sock.display().to_string())]);
    assert_eq!(next(), "READY=1");
    gate.signal("-HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(), "READY=1");
    gate.signal("-TERM");
    assert_eq!(next(), "STOPPING=1");
    assert!(gate.wait_exit(Duration::from_secs(10)).success());
}

#[test]
fn journald_lines_carry_syslog_priorities_and_json_lines_parse() {
    use std::os::unix::fs::MetadataExt;
    let Some(b) = PyFtpd::available() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("f.yaml");
    for json in [false, true] {
        let format = if json { "log_format: json\n" } else { "" };
        write_config(&cfg, b.addr, format);
        let log = dir.path().join(format!("stderr-{json}"));
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
        // A failed login gives a warning line.
        let (mut c, _) = Client::connect(addr);
        c.auth_tls();
        c.cmd(&format!("USER {}", b.user));
        assert_eq!(c.cmd("PASS wrong").code, 530);
        drop(c);
        assert!(Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("<4>") && l.contains("login failed")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("<6>") && l.contains("listening")),
            "{text}"
        );
        assert!(
            !text.contains("2026-") && !text.contains("Z  INFO"),
            "no own timestamps: {text}"
        );
        if json {
            let mut in_session = 0;
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(&l[3..]).unwrap();
                assert!(v["level"].is_string(), "{l}");
                in_session += usize::from(v["span"]["client"].is_string());
            }
            assert!(in_session >= 2, "session lines carry their span: {text}");
        }
    }
    let _ = std::io::stdout().flush();
}
