//! The pyftpdlib backend ([`PyFtpd`]): `tests/support/pyftpd_backend.py`
//! with its options, accepting on the listening socket the harness hands it
//! as stdin, and logging every received line verbatim.

use std::io;

use super::process::Launch;
use super::server::{Daemon, Files, FtpServer, Serving};
use super::{python, support_dir, tool_available, PASS, USER};

/// pyftpdlib plaintext backend: user `alice`/`secret`, every received line
/// logged (before it is processed, so once a client has seen a reply the
/// command that caused it is in [`super::FtpBackend::commands`]).
pub type PyFtpd = FtpServer<Pyftpdlib>;

/// The [`Daemon`] behind [`PyFtpd`].
pub struct Pyftpdlib;

/// Options for [`PyFtpd::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PyFtpdOptions {
    /// Commands the server answers with `500 not understood` (and omits
    /// from FEAT), e.g. `["EPSV"]` so the proxy must fall back to PASV.
    pub disabled_commands: Vec<String>,
    /// Address to advertise in 227 replies instead of the real one: e.g.
    /// `0.0.0.0`, or a foreign address. Use a loopback address such as
    /// `127.0.0.2` as the foreign one: tests must never send traffic
    /// outside 127.0.0.0/8, even by mistake.
    pub masquerade_address: Option<String>,
}

impl PyFtpdOptions {
    /// EPSV (and EPRT) disabled: `500` for both.
    pub fn no_epsv() -> Self {
        Self {
            disabled_commands: vec!["EPSV".into(), "EPRT".into()],
            ..Self::default()
        }
    }

    /// PASV replies advertise `addr` (e.g. `"0.0.0.0"`, `"127.0.0.2"`).
    pub fn masquerade(addr: &str) -> Self {
        Self {
            masquerade_address: Some(addr.to_owned()),
            ..Self::default()
        }
    }
}

impl Daemon for Pyftpdlib {
    type Options = PyFtpdOptions;
    const NAME: &'static str = "pyftpdlib";
    const SERVING: Serving = Serving::Listener;
    const USER: &'static str = USER;

    fn configure(files: &Files, opts: &PyFtpdOptions) -> io::Result<Launch> {
        let mut launch = Launch::new(python())
            .arg(support_dir().join("pyftpd_backend.py"))
            .arg("--listen-stdin")
            .args2("--root", &files.root)
            .args2("--log", &files.log)
            .args2("--user", USER)
            .args2("--password", PASS);
        for c in &opts.disabled_commands {
            launch = launch.args2("--disable", c);
        }
        if let Some(m) = &opts.masquerade_address {
            launch = launch.args2("--masquerade", m);
        }
        Ok(launch)
    }

    fn commands(log: &str) -> Vec<String> {
        log.lines().map(str::to_owned).collect()
    }
}

impl PyFtpd {
    /// Started with default options when pyftpdlib is installed; `None`
    /// (a loud skip, or a failure under CI) otherwise: see [`tool_available`].
    pub fn available() -> Option<Self> {
        tool_available("pyftpdlib").then(Self::start)
    }

    /// Starts with default options. Panics if it cannot start.
    pub fn start() -> Self {
        Self::start_with(PyFtpdOptions::default())
    }

    /// Starts with `opts`. Panics if it cannot start.
    pub fn start_with(opts: PyFtpdOptions) -> Self {
        Self::start_with_options(&opts)
    }
}
