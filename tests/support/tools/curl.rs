//! The curl client: [`CurlOptions`] and [`curl_download`], [`curl_upload`],
//! [`curl_list`], each one curl subprocess with `-v` (every command, reply
//! and TLS step on stderr) and a hard timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{run_with_timeout, ClientOutput};
use super::{url_authority, Tls, CLIENT_TIMEOUT, PASS, USER};

/// Options for the curl helpers. `CurlOptions::default()` is explicit FTPS,
/// EPSV, passive, any TLS version, `alice`/`secret`.
#[derive(Clone, Debug)]
pub struct CurlOptions {
    /// Explicit (`ftp://` + `--ssl-reqd`), implicit (`ftps://`) or none.
    pub tls: Tls,
    /// `--disable-epsv`: use PASV.
    pub disable_epsv: bool,
    /// `--ftp-port ADDR`: active mode (EPRT, or PORT with `disable_eprt`).
    pub active: Option<String>,
    /// `--disable-eprt`: PORT instead of EPRT in active mode.
    pub disable_eprt: bool,
    /// `--tls-max 1.2`.
    pub tls_max_1_2: bool,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Extra arguments, passed before the URL.
    pub extra: Vec<String>,
    /// Kill curl after this long.
    pub timeout: Duration,
}

impl Default for CurlOptions {
    fn default() -> Self {
        Self {
            tls: Tls::Explicit,
            disable_epsv: false,
            active: None,
            disable_eprt: false,
            tls_max_1_2: false,
            user: USER.into(),
            pass: PASS.into(),
            extra: Vec::new(),
            timeout: CLIENT_TIMEOUT,
        }
    }
}

impl CurlOptions {
    /// Explicit FTPS (`ftp://` + `--ssl-reqd`).
    pub fn explicit() -> Self {
        Self::default()
    }
    /// Implicit FTPS (`ftps://`).
    pub fn implicit() -> Self {
        Self {
            tls: Tls::Implicit,
            ..Self::default()
        }
    }
    /// Plain FTP, no TLS.
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
    /// PASV instead of EPSV.
    pub fn pasv(mut self) -> Self {
        self.disable_epsv = true;
        self
    }
    /// Active mode from 127.0.0.1 (EPRT unless [`Self::no_eprt`]).
    pub fn active(mut self) -> Self {
        self.active = Some("127.0.0.1".into());
        self
    }
    /// PORT instead of EPRT.
    pub fn no_eprt(mut self) -> Self {
        self.disable_eprt = true;
        self
    }
    /// TLS 1.2 at most.
    pub fn tls12(mut self) -> Self {
        self.tls_max_1_2 = true;
        self
    }
    /// One extra curl argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.into());
        self
    }

    fn command(&self, addr: SocketAddr, remote: &str) -> Command {
        let mut cmd = Command::new("curl");
        // -v: the handshake and every FTP command/reply on stderr, so tests
        // can assert on them (e.g. "SSL re-using session ID").
        cmd.args(["-sS", "-v", "--connect-timeout", "20"]);
        cmd.arg("--max-time")
            .arg(self.timeout.as_secs().max(1).to_string());
        cmd.arg("--user")
            .arg(format!("{}:{}", self.user, self.pass));
        let scheme = match self.tls {
            Tls::None => "ftp",
            Tls::Explicit => {
                cmd.args(["--ssl-reqd", "-k"]);
                "ftp"
            }
            Tls::Implicit => {
                cmd.arg("-k");
                "ftps"
            }
        };
        if self.disable_epsv {
            cmd.arg("--disable-epsv");
        }
        if let Some(a) = &self.active {
            cmd.arg("--ftp-port").arg(a);
        }
        if self.disable_eprt {
            cmd.arg("--disable-eprt");
        }
        if self.tls_max_1_2 {
            cmd.args(["--tls-max", "1.2"]);
        }
        cmd.args(&self.extra);
        cmd.arg(format!(
            "{scheme}://{}/{}",
            url_authority(addr),
            remote.trim_start_matches('/')
        ));
        cmd
    }
}

/// curl downloads FTP path `remote` (relative to the login directory) to
/// the local file `local`.
pub fn curl_download(
    addr: SocketAddr,
    remote: &str,
    local: &Path,
    opts: &CurlOptions,
) -> ClientOutput {
    let mut cmd = opts.command(addr, remote);
    cmd.arg("-o").arg(local);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
}

/// curl uploads the local file `local` to FTP path `remote`.
pub fn curl_upload(
    addr: SocketAddr,
    local: &Path,
    remote: &str,
    opts: &CurlOptions,
) -> ClientOutput {
    let mut cmd = opts.command(addr, remote);
    cmd.arg("-T").arg(local);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
}

/// curl lists FTP directory `dir` (`""` for the login directory); the
/// listing (LIST format) is on stdout.
pub fn curl_list(addr: SocketAddr, dir: &str, opts: &CurlOptions) -> ClientOutput {
    let mut dir = dir.trim_matches('/').to_owned();
    if !dir.is_empty() {
        dir.push('/');
    }
    run_with_timeout(
        opts.command(addr, &dir),
        opts.timeout + Duration::from_secs(5),
    )
}
