//! Real clients under `require_session_reuse` (issue 8, defect 11): every
//! data connection of OpenSSL (curl, TLS 1.3 and 1.2), GnuTLS (lftp),
//! CPython ftplib with the session-passing subclass, and Go (rclone, with
//! parallel control connections sharing one session cache) resumes, with no
//! refusal and, for the one-connection clients, one control session.

mod support;

use std::path::Path;
use std::time::Duration;

use ftpsgate::events::{TransferRecord, TransferResult};
use support::harness::Proxy;
use support::tools::{
    curl_download, lftp_run, py_client, random_bytes, rclone_copy, run_with_timeout, sha256_file,
    tools_available, CurlOptions, FtpBackend, LftpOptions, PyClientOptions, PyFtpd, Tls,
};

const FILES: [&str; 3] = ["a.bin", "b.bin", "c.bin"];

/// pyftpdlib with three files, and a proxy that requires session reuse.
fn setup(tools: &[&str]) -> Option<(PyFtpd, Proxy)> {
    if !tools_available(tools) || !tools_available(&["pyftpdlib"]) {
        return None;
    }
    let b = PyFtpd::start();
    for (i, f) in FILES.iter().enumerate() {
        b.write_file(f, &random_bytes(200_000, 40 + i as u64));
    }
    let proxy = Proxy::spawn(b.addr, |s| {
        s.require_session_reuse = ftpsgate::config::Reuse::Required;
        s.implicit_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    Some((b, proxy))
}

/// Every transfer completed over a resumed data session; no refusal.
fn assert_all_resumed(proxy: &Proxy, transfers: usize) -> Vec<TransferRecord> {
    let records = proxy.events.transfers(transfers);
    assert_eq!(proxy.events.refusals(), [], "{records:#?}");
    for r in &records {
        assert_eq!(r.result, TransferResult::Complete, "{r:#?}");
        let tls = r.data_tls.as_ref().expect("PROT P");
        assert!(tls.resumed, "{} {} did not resume", r.verb, r.path);
    }
    records
}

fn same_files(b: &PyFtpd, dir: &Path) {
    for f in FILES {
        assert_eq!(sha256_file(dir.join(f)), sha256_file(b.path(f)), "{f}");
    }
}

fn curl_three_downloads(tls12: bool) {
    let Some((b, proxy)) = setup(&["curl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CurlOptions::explicit().login(&b.user, &b.pass);
    if tls12 {
        opts = opts.tls12();
    }
    // Several URLs on one command line share one control connection.
    for f in &FILES[..2] {
        opts = opts
            .arg(&format!("ftp://{}/{f}", proxy.addr))
            .arg("-o")
            .arg(dir.path().join(f).to_str().unwrap());
    }
    curl_download(proxy.addr, FILES[2], &dir.path().join(FILES[2]), &opts).assert_success();
    same_files(&b, dir.path());
    assert_all_resumed(&proxy, 3);
    assert_eq!(proxy.events.opened(), 1, "one control connection");
}

#[test]
fn curl_tls13_resumes_every_data_connection() {
    curl_three_downloads(false);
}

#[test]
fn curl_tls12_resumes_every_data_connection() {
    curl_three_downloads(true);
}

/// Uploads between downloads, on TLS 1.2 (session IDs, reusable). On TLS
/// 1.3 an upload's data connection gets no ticket (an uploading client that
/// never reads it can reset the connection and lose data, curl#6149), and
/// curl 7.88 then has no resumable session for the next data connection:
/// docs/session-reuse.md says so and recommends TLS 1.2 for such clients.
#[test]
fn curl_uploads_between_downloads_keep_resuming() {
    let Some((b, proxy)) = setup(&["curl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.bin");
    std::fs::write(&up, random_bytes(300_000, 9)).unwrap();
    let base = format!("ftp://{}", proxy.addr);
    let login = format!("{}:{}", b.user, b.pass);
    let common = [
        "-sS",
        "--ssl-reqd",
        "-k",
        "--tls-max",
        "1.2",
        "--user",
        login.as_str(),
    ];
    // Download, upload, download, upload: `--next` keeps the connection.
    let mut cmd = std::process::Command::new("curl");
    cmd.args(common)
        .arg(format!("{base}/a.bin"))
        .arg("-o")
        .arg(dir.path().join("a.bin"));
    cmd.arg("--next")
        .args(common)
        .arg("-T")
        .arg(&up)
        .arg(format!("{base}/up1.bin"));
    cmd.arg("--next")
        .args(common)
        .arg(format!("{base}/b.bin"))
        .arg("-o")
        .arg(dir.path().join("b.bin"));
    cmd.arg("--next")
        .args(common)
        .arg("-T")
        .arg(&up)
        .arg(format!("{base}/up2.bin"));
    run_with_timeout(cmd, Duration::from_secs(60)).assert_success();
    for f in ["up1.bin", "up2.bin"] {
        assert_eq!(sha256_file(b.path(f)), sha256_file(&up), "{f}");
    }
    for f in ["a.bin", "b.bin"] {
        assert_eq!(
            sha256_file(dir.path().join(f)),
            sha256_file(b.path(f)),
            "{f}"
        );
    }
    assert_all_resumed(&proxy, 4);
    assert_eq!(proxy.events.opened(), 1);
}

#[test]
fn lftp_resumes_every_data_connection() {
    let Some((b, proxy)) = setup(&["lftp"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("up.bin"), random_bytes(100_000, 3)).unwrap();
    let opts = LftpOptions::explicit().login(&b.user, &b.pass);
    lftp_run(
        proxy.addr,
        &opts,
        &["get a.bin", "put up.bin", "get b.bin", "get c.bin"],
        dir.path(),
    )
    .assert_success();
    same_files(&b, dir.path());
    assert_all_resumed(&proxy, 4);
    assert_eq!(proxy.events.opened(), 1);
}

#[test]
fn ftplib_with_the_session_passing_subclass_resumes_every_data_connection() {
    let Some((b, proxy)) = setup(&["python3"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.bin");
    let opts = PyClientOptions::explicit()
        .login(&b.user, &b.pass)
        .reuse_session();
    py_client(
        proxy.addr,
        &opts,
        &["get", "a.bin", out.to_str().unwrap(), "--repeat", "3"],
    )
    .assert_success();
    assert_eq!(sha256_file(&out), sha256_file(b.path("a.bin")));
    assert_all_resumed(&proxy, 3);
    assert_eq!(proxy.events.opened(), 1);
}

/// rclone opens parallel control connections that share one Go session
/// cache: a data connection may present a sibling's session. Same user,
/// same address: accepted (docs/session-reuse.md), so nothing is refused.
#[test]
fn rclone_with_parallel_control_connections_is_never_refused() {
    let Some((b, proxy)) = setup(&["rclone"]) else {
        return;
    };
    for (tls, addr) in [
        (Tls::Explicit, proxy.addr),
        (Tls::Implicit, proxy.implicit.unwrap()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let r = rclone_copy(addr, tls, &b.user, &b.pass, "", dir.path());
        r.assert_success();
        same_files(&b, dir.path());
    }
    let records = proxy.events.transfers(6);
    assert_eq!(proxy.events.refusals(), [], "{records:#?}");
    let retrs: Vec<_> = records
        .iter()
        .filter(|r| r.verb == ftpsgate::ftp::command::Verb::Retr)
        .collect();
    assert_eq!(retrs.len(), 6, "three files, twice, no retry");
    assert!(retrs.iter().all(|r| r.result == TransferResult::Complete));
}
