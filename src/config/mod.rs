//! Configuration: the YAML [`file::FileConfig`] plus command-line flags
//! resolve into one validated [`Settings`]. `serve`, `check` and a reload all
//! go through [`Settings::resolve`], so `check` cannot disagree with `serve`.
//! Values are typed where they are read ([`values`]); this module only
//! merges them (a flag beats the file) and checks what spans several keys.

pub mod file;
pub mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use values::{BackendAddr, BackendData, Ccc, Host, PortRange, Requirement, UploadEof};

use crate::cli::ServeArgs;

/// A configuration problem, naming the file (or "command line"), the line when
/// known, and the key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, or `command line`.
    pub source_name: String,
    /// The offending key (`listen`, `passive_ports`...), or `yaml` for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The line in the file, when known.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.source_name)?,
            None => write!(f, "{}: ", self.source_name)?,
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Validated settings; every field holds a value that is known to be usable.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Explicit-FTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// Implicit-FTPS listeners.
    pub implicit_listen: Vec<SocketAddr>,
    /// The plaintext FTP server; a name is looked up per connection.
    pub backend: BackendAddr,
    /// PEM certificate chain; `None` means an ephemeral self-signed certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Client-facing passive ports; `None` lets the OS choose.
    pub passive_ports: Option<PortRange>,
    /// Advertised in 227 replies; default the control connection's local address.
    pub public_address: Option<IpAddr>,
    /// Default required: USER/PASS/ACCT before AUTH get 530.
    pub control_tls: Requirement,
    /// Default required: transfers need PROT P, else 522.
    pub data_tls: Requirement,
    /// Default deny (534).
    pub ccc: Ccc,
    /// Default passive.
    pub backend_data: BackendData,
    /// Default false: resumption is offered, not required.
    pub require_session_reuse: bool,
    /// CA bundle for client certificates.
    pub client_ca: Option<PathBuf>,
    /// Default optional (only meaningful with `client_ca`).
    pub client_cert: Requirement,
    /// Default strict.
    pub upload_eof: UploadEof,
    /// Control idle timeout, default 300 s.
    pub idle_timeout: Duration,
    /// Time for the client to open a data connection, default 30 s (then 425).
    pub data_timeout: Duration,
    /// A transfer that moves no byte for this long is failed (426), default 300 s.
    pub stall_timeout: Duration,
    /// Concurrent session limit, default 10000.
    pub max_sessions: usize,
}

impl Settings {
    /// Defaults for everything but the listeners and the backend.
    pub fn new(listen: Vec<SocketAddr>, backend: BackendAddr) -> Settings {
        Settings {
            listen,
            implicit_listen: Vec::new(),
            backend,
            cert: None,
            key: None,
            passive_ports: None,
            public_address: None,
            control_tls: Requirement::Required,
            data_tls: Requirement::Required,
            ccc: Ccc::Deny,
            backend_data: BackendData::Passive,
            require_session_reuse: false,
            client_ca: None,
            client_cert: Requirement::Optional,
            upload_eof: UploadEof::Strict,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(300),
            max_sessions: 10_000,
        }
    }

    /// Reads `--config` (if any), applies the flags on top, and validates.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let (file, name) = match &args.config {
            Some(path) => (file::load(path)?, path.display().to_string()),
            None => (file::FileConfig::default(), "command line".to_string()),
        };
        Merge {
            args,
            file,
            name: &name,
        }
        .settings()
    }
}

/// One resolution: flags over file values, each error reported against where
/// the value came from.
struct Merge<'a> {
    args: &'a ServeArgs,
    file: file::FileConfig,
    name: &'a str,
}

/// A flag value wins over the file's; the second element names the source.
macro_rules! pick {
    ($m:expr, $key:ident) => {
        match $m.args.$key.clone() {
            Some(v) => Some((v, "command line")),
            None => $m.file.$key.clone().map(|v| (v, $m.name)),
        }
    };
}

impl Merge<'_> {
    fn err(&self, key: &str, source: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source_name: source.to_string(),
            key: key.to_string(),
            message: message.into(),
            line: None,
        }
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        let (listen, implicit_listen) = self.listeners()?;
        let Some((backend, _)) = pick!(self, backend) else {
            return Err(self.err(
                "backend",
                self.name,
                "missing: the plaintext FTP server as HOST:PORT",
            ));
        };
        let mut s = Settings::new(listen, backend);
        s.implicit_listen = implicit_listen;
        self.tls(&mut s)?;
        self.policy(&mut s);
        self.limits(&mut s)?;
        Ok(s)
    }

    fn listeners(&self) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), ConfigError> {
        let list = |flag: &Vec<SocketAddr>, file: &Option<Vec<file::ListenAddr>>| {
            if flag.is_empty() {
                file.iter().flatten().map(|a| a.0).collect()
            } else {
                flag.clone()
            }
        };
        let listen = list(&self.args.listen, &self.file.listen);
        let implicit = list(&self.args.implicit_listen, &self.file.implicit_listen);
        if listen.is_empty() && implicit.is_empty() {
            return Err(self.err(
                "listen",
                self.name,
                "no listener: set listen (explicit FTPS) and/or implicit_listen",
            ));
        }
        Ok((listen, implicit))
    }

    fn tls(&self, s: &mut Settings) -> Result<(), ConfigError> {
        s.cert = pick!(self, cert).map(|(v, _)| v);
        s.key = pick!(self, key).map(|(v, _)| v);
        match (&s.cert, &s.key) {
            (Some(_), None) => {
                return Err(self.err("key", self.name, "cert is set but key is not"))
            }
            (None, Some(_)) => {
                return Err(self.err("cert", self.name, "key is set but cert is not"))
            }
            _ => {}
        }
        s.client_ca = pick!(self, client_ca).map(|(v, _)| v);
        if let Some((v, src)) = pick!(self, client_cert) {
            if s.client_ca.is_none() {
                return Err(self.err(
                    "client_cert",
                    src,
                    "needs client_ca (the CA bundle to verify against)",
                ));
            }
            s.client_cert = v;
        }
        for (key, path) in [
            ("cert", &s.cert),
            ("key", &s.key),
            ("client_ca", &s.client_ca),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(self.err(key, self.name, format!("{}: no such file", p.display())));
                }
            }
        }
        Ok(())
    }

    fn policy(&self, s: &mut Settings) {
        let file = &self.file;
        let args = self.args;
        s.control_tls = args
            .control_tls
            .or(file.control_tls)
            .unwrap_or(s.control_tls);
        s.data_tls = args.data_tls.or(file.data_tls).unwrap_or(s.data_tls);
        s.ccc = args.ccc.or(file.ccc).unwrap_or(s.ccc);
        s.backend_data = args
            .backend_data
            .or(file.backend_data)
            .unwrap_or(s.backend_data);
        s.upload_eof = args.upload_eof.or(file.upload_eof).unwrap_or(s.upload_eof);
        s.require_session_reuse = args
            .require_session_reuse
            .or(file.require_session_reuse)
            .unwrap_or(false);
        s.passive_ports = args.passive_ports.or(file.passive_ports);
        s.public_address = args.public_address.or(file.public_address);
    }

    fn limits(&self, s: &mut Settings) -> Result<(), ConfigError> {
        let seconds = |key: &str, v: Option<(u64, &str)>, into: &mut Duration| {
            if let Some((v, src)) = v {
                if v == 0 {
                    return Err(self.err(key, src, "must be at least 1 second"));
                }
                *into = Duration::from_secs(v);
            }
            Ok(())
        };
        seconds(
            "idle_timeout",
            pick!(self, idle_timeout),
            &mut s.idle_timeout,
        )?;
        seconds(
            "data_timeout",
            pick!(self, data_timeout),
            &mut s.data_timeout,
        )?;
        seconds(
            "stall_timeout",
            pick!(self, stall_timeout),
            &mut s.stall_timeout,
        )?;
        if let Some((v, src)) = pick!(self, max_sessions) {
            if v == 0 {
                return Err(self.err("max_sessions", src, "must be at least 1"));
            }
            s.max_sessions = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut ServeArgs)) -> ServeArgs {
        let mut a = ServeArgs {
            listen: vec!["127.0.0.1:2121".parse().unwrap()],
            backend: Some("127.0.0.1:21".parse().unwrap()),
            ..Default::default()
        };
        f(&mut a);
        a
    }

    #[test]
    fn defaults_are_secure() {
        let s = Settings::resolve(&args(|_| {})).unwrap();
        assert_eq!(s.control_tls, Requirement::Required);
        assert_eq!(s.data_tls, Requirement::Required);
        assert_eq!(s.ccc, Ccc::Deny);
        assert_eq!(s.upload_eof, UploadEof::Strict);
        assert!(!s.require_session_reuse);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Settings::resolve(&args(|a| a.idle_timeout = Some(0))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: idle_timeout: must be at least 1 second"
        );
        let e = Settings::resolve(&args(|a| a.backend = None)).unwrap_err();
        assert_eq!(e.key, "backend");
        let e = Settings::resolve(&args(|a| a.listen.clear())).unwrap_err();
        assert_eq!(e.key, "listen");
        let e =
            Settings::resolve(&args(|a| a.client_cert = Some(Requirement::Required))).unwrap_err();
        assert_eq!(e.key, "client_cert");
    }

    #[test]
    fn file_keys_and_flag_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, "listen: ['127.0.0.1:990']\nbackend: legacy.example:21\ndata_tls: optional\npassive_ports: 50000-50010\nrequire_session_reuse: true\n").unwrap();
        let a = ServeArgs {
            config: Some(path.clone()),
            data_tls: Some(Requirement::Required),
            require_session_reuse: Some(false),
            ..Default::default()
        };
        let s = Settings::resolve(&a).unwrap();
        assert_eq!(s.data_tls, Requirement::Required);
        assert!(!s.require_session_reuse, "a flag turns a YAML boolean off");
        assert_eq!(
            s.passive_ports,
            Some(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(s.backend.to_string(), "legacy.example:21");

        std::fs::write(
            &path,
            "listen: ['127.0.0.1:990']\nbackend: h:21\nbogus: 1\n",
        )
        .unwrap();
        let e = Settings::resolve(&ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "bogus");
        assert!(e.to_string().starts_with(&path.display().to_string()));
    }
}
