//! Real FTP servers and real FTPS clients for the interop tests: where the
//! tools live, whether each one is usable, and the re-exports the tests use.
//!
//! One file per tool, each saying what it owns:
//! * [`server`]: the one launcher every FTP server goes through
//!   ([`FtpServer`]: temp root, listening socket on 127.0.0.1:0, command log,
//!   readiness, kill on drop) and the [`FtpBackend`] trait;
//! * [`command_log`]: the daemon's command log, read through a FIFO so a
//!   test can block until a command arrives;
//! * [`pyftpd`], [`vsftpd`], [`proftpd`]: what differs per daemon (command
//!   line, config, log format) — [`PyFtpd`], [`Vsftpd`], [`Proftpd`];
//! * [`curl`], [`lftp`], [`ftplib`], [`rclone`]: the real clients, run as
//!   subprocesses with a hard timeout;
//! * [`haproxy`]: Debian's HAProxy as a balancer in front of ftpsgate;
//! * [`process`]: [`run_with_timeout`], [`ClientOutput`], process-group
//!   kills and [`ReservedPort`];
//! * [`files`]: [`sha256_file`], [`write_random_file`] and friends.
//!
//! Include it from an integration test with
//! `#[path = "support/tools/mod.rs"] mod tools;` (or through
//! `tests/support/mod.rs`). It uses only std, `socket2`, `tempfile` and `sha2`.
//!
//! Credentials: pyftpdlib and proftpd log in `alice` / `secret`. vsftpd only
//! logs in real system users (through PAM), so it uses the system user
//! `ftpsgate-test` / `secret` and the PAM service `ftpsgate-vsftpd`, both
//! created by `.ci/install-deps.sh`. Use the backend's `user` and `pass`
//! fields rather than literals.
//!
//! Files: the FTP root is world-writable and vsftpd/proftpd run the session
//! as an unprivileged user, so a file the test creates itself should be
//! written with [`FtpBackend::write_file`] (mode 0666) if the backend must
//! be able to overwrite or append to it.
// Each integration test uses a subset of the helpers and re-exports.
#![allow(dead_code, unused_imports)]

pub mod command_log;
pub mod curl;
pub mod files;
pub mod ftplib;
pub mod haproxy;
pub mod lftp;
pub mod process;
pub mod proftpd;
pub mod pyftpd;
pub mod rclone;
pub mod server;
pub mod vsftpd;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub use self::curl::{curl_download, curl_list, curl_upload, CurlOptions};
pub use self::files::{random_bytes, sha256_bytes, sha256_file, write_random_file};
pub use self::ftplib::{py_client, PyClientOptions};
pub use self::haproxy::HaProxy;
pub use self::lftp::{lftp_run, LftpOptions};
pub use self::process::{run_with_timeout, ClientOutput, ReservedPort};
pub use self::proftpd::Proftpd;
pub use self::pyftpd::{PyFtpd, PyFtpdOptions};
pub use self::rclone::rclone_copy;
pub use self::server::{verb_counts, FtpBackend, FtpServer};
pub use self::vsftpd::{Vsftpd, VSFTPD_PAM_SERVICE, VSFTPD_USER};

/// Debian's HAProxy (the `haproxy` package).
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// Default hard limit for one client subprocess; it is killed after this.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The login of pyftpdlib and proftpd.
pub const USER: &str = "alice";
/// The password of every backend.
pub const PASS: &str = "secret";

/// How a client secures the control connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// No TLS at all (only for talking to backends directly).
    None,
    /// Explicit FTPS: plaintext connect, then `AUTH`; TLS required.
    #[default]
    Explicit,
    /// Implicit FTPS: TLS from the first byte.
    Implicit,
}

/// `host:port` for URLs.
fn url_authority(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// `tests/support` of this crate (where the Python helpers live).
pub fn support_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("support")
}

/// Where `.ci/install-deps.sh` unpacked vsftpd and proftpd: `$FTPSGATE_TOOLS`,
/// default `/opt/ftpsgate-tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("FTPSGATE_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/opt/ftpsgate-tools"),
    }
}

/// The Python interpreter: `$FTPSGATE_PYTHON`, default `python3` on `PATH`.
pub fn python() -> String {
    std::env::var("FTPSGATE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// True when running in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Whether the real tool `name` can be used: `curl`, `lftp`, `rclone`, `haproxy`, `python3`
/// (which must have pyftpdlib; `pyftpdlib` is accepted as a synonym),
/// `vsftpd` or `proftpd` (which also need the setup of
/// `.ci/install-deps.sh`), `podman` (with `runc`, the runtime the
/// container tests name) or `kubernetes-validate` (a Python module).
///
/// A missing tool panics under CI (so CI fails) and otherwise prints
/// `SKIPPED: no {name}` to stderr and returns false:
///
/// ```ignore
/// if !tool_available("lftp") { return; }
/// ```
pub fn tool_available(name: &str) -> bool {
    let problem = match name {
        "curl" => check_runs(Command::new("curl").arg("--version")),
        "lftp" => check_runs(Command::new("lftp").arg("--version")),
        "rclone" => check_runs(Command::new("rclone").arg("version")),
        "haproxy" => check_runs(Command::new(HAPROXY).arg("-v")),
        "python3" | "pyftpdlib" => check_runs(
            Command::new(python())
                .arg("-c")
                .arg("import ftplib, ssl, pyftpdlib"),
        ),
        "podman" => check_runs(Command::new("podman").arg("--version"))
            .or_else(|| check_runs(Command::new("runc").arg("--version"))),
        "kubernetes-validate" => {
            check_runs(Command::new(python()).args(["-m", "kubernetes_validate", "--version"]))
        }
        "vsftpd" => vsftpd::unusable(),
        "proftpd" => proftpd::unusable(),
        other => panic!("tool_available: unknown tool {other:?}"),
    };
    match problem {
        None => true,
        Some(why) if in_ci() => panic!(
            "{name} is required in CI but is not usable ({why}); \
             .ci/install-deps.sh should have installed it"
        ),
        Some(why) => {
            // Straight to the process's stderr, not `eprintln!`: libtest
            // captures the print macros, and a skip must never be quiet.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED: no {name} ({why}; run .ci/install-deps.sh as root)"
            );
            false
        }
    }
}

/// [`tool_available`] for each of `names` (all checked, so every missing
/// one is reported); true if all are available.
pub fn tools_available(names: &[&str]) -> bool {
    let mut all = true;
    for name in names {
        all &= tool_available(name);
    }
    all
}

/// Runs `cmd` quietly; `None` if it exited 0, else why not.
fn check_runs(cmd: &mut Command) -> Option<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`{program}` exited with {s}")),
        Err(e) => Some(format!("cannot run `{program}`: {e}")),
    }
}
