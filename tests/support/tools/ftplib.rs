//! The CPython ftplib client: [`PyClientOptions`] and [`py_client`], which
//! runs `tests/support/ftps_client.py` and reports `key=value` results
//! (read them with [`ClientOutput::field`]).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::process::{run_with_timeout, ClientOutput};
use super::{python, support_dir, Tls, CLIENT_TIMEOUT, PASS, USER};

/// Options for [`py_client`] (`tests/support/ftps_client.py`).
/// `PyClientOptions::default()` is explicit FTPS, PROT P, PASV, no session
/// reuse, `alice`/`secret`.
#[derive(Clone, Debug)]
pub struct PyClientOptions {
    /// Explicit (`FTP_TLS`), implicit (`--implicit`) or none (`--plain`).
    pub tls: Tls,
    /// `--reuse-session`: data connections resume the control session.
    pub reuse_session: bool,
    /// `--active`: PORT mode.
    pub active: bool,
    /// `--eprt`: with `active`, EPRT instead of PORT.
    pub eprt: bool,
    /// `--epsv`: EPSV instead of PASV.
    pub epsv: bool,
    /// `--no-prot-p`: skip PBSZ/PROT (implicit mode still protects data).
    pub no_prot_p: bool,
    /// `--tls-max 1.2|1.3`.
    pub tls_max: Option<String>,
    /// `--source IP`: the local address of every connection.
    pub source: Option<String>,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Kill the client after this long.
    pub timeout: Duration,
}

impl Default for PyClientOptions {
    fn default() -> Self {
        Self {
            tls: Tls::Explicit,
            reuse_session: false,
            active: false,
            eprt: false,
            epsv: false,
            no_prot_p: false,
            tls_max: None,
            source: None,
            user: USER.into(),
            pass: PASS.into(),
            timeout: CLIENT_TIMEOUT,
        }
    }
}

impl PyClientOptions {
    /// Explicit FTPS (`ftplib.FTP_TLS`).
    pub fn explicit() -> Self {
        Self::default()
    }
    /// Implicit FTPS.
    pub fn implicit() -> Self {
        Self {
            tls: Tls::Implicit,
            ..Self::default()
        }
    }
    /// Plain `ftplib.FTP`.
    pub fn plain() -> Self {
        Self {
            tls: Tls::None,
            ..Self::default()
        }
    }
    /// Log in as `user`/`pass`.
    pub fn login(mut self, user: &str, pass: &str) -> Self {
        self.user = user.into();
        self.pass = pass.into();
        self
    }
    /// Data connections reuse the control connection's TLS session.
    pub fn reuse_session(mut self) -> Self {
        self.reuse_session = true;
        self
    }
    /// Active (PORT) mode.
    pub fn active(mut self) -> Self {
        self.active = true;
        self
    }
    /// Active mode with EPRT.
    pub fn eprt(mut self) -> Self {
        self.active = true;
        self.eprt = true;
        self
    }
    /// EPSV instead of PASV.
    pub fn epsv(mut self) -> Self {
        self.epsv = true;
        self
    }
    /// No PBSZ/PROT P.
    pub fn no_prot_p(mut self) -> Self {
        self.no_prot_p = true;
        self
    }
    /// Connect from `ip` (another loopback address plays another host).
    pub fn source(mut self, ip: &str) -> Self {
        self.source = Some(ip.into());
        self
    }
    /// Cap the TLS version (`"1.2"` or `"1.3"`).
    pub fn tls_max(mut self, version: &str) -> Self {
        self.tls_max = Some(version.into());
        self
    }
}

/// Runs `ftps_client.py` against `addr` with `args` = a subcommand and its
/// arguments, e.g. `["get", "remote.bin", "/tmp/x/local.bin"]`,
/// `["put", local, "remote.bin"]`, `["list", "--cmd", "MLSD"]`,
/// `["raw", "PBSZ 0", "PROT S"]`. Read results with
/// [`ClientOutput::field`]: `code`, `reply`, `sha256`, `bytes`, `entry`,
/// `data_session_reused`, `tls_version`, `error`, `ok`.
pub fn py_client(addr: SocketAddr, opts: &PyClientOptions, args: &[&str]) -> ClientOutput {
    let mut cmd = Command::new(python());
    cmd.arg(support_dir().join("ftps_client.py"))
        .arg("--host")
        .arg(addr.ip().to_string())
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--user")
        .arg(&opts.user)
        .arg("--password")
        .arg(&opts.pass)
        .arg("--timeout")
        .arg(opts.timeout.as_secs().max(1).to_string());
    match opts.tls {
        Tls::None => {
            cmd.arg("--plain");
        }
        Tls::Implicit => {
            cmd.arg("--implicit");
        }
        Tls::Explicit => {}
    }
    let flags = [
        (opts.reuse_session, "--reuse-session"),
        (opts.active, "--active"),
        (opts.eprt, "--eprt"),
        (opts.epsv, "--epsv"),
        (opts.no_prot_p, "--no-prot-p"),
    ];
    for (on, flag) in flags {
        if on {
            cmd.arg(flag);
        }
    }
    if let Some(v) = &opts.tls_max {
        cmd.arg("--tls-max").arg(v);
    }
    if let Some(ip) = &opts.source {
        cmd.arg("--source").arg(ip);
    }
    cmd.args(args);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
}
