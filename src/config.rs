//! Configuration: the YAML [`FileConfig`] plus command-line flags resolve into
//! one validated [`Settings`]. `serve` and `check` both go through
//! [`Settings::resolve`], so `check` cannot disagree with `serve`. This is the
//! only file that touches serde_yaml.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;

/// A configuration problem, naming the file (or "command line") and the key.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {key}: {message}")]
pub struct ConfigError {
    /// The file, or `command line`.
    pub source_name: String,
    /// The offending key (`listen`, `passive_ports`...), or `yaml` for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The YAML file, keys in snake_case mirroring the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<Vec<String>>,
    implicit_listen: Option<Vec<String>>,
    backend: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    passive_ports: Option<String>,
    public_address: Option<String>,
    control_tls: Option<String>,
    data_tls: Option<String>,
    ccc: Option<String>,
    backend_data: Option<String>,
    require_session_reuse: Option<bool>,
    client_ca: Option<PathBuf>,
    client_cert: Option<String>,
    upload_eof: Option<String>,
    idle_timeout: Option<u64>,
    data_timeout: Option<u64>,
    max_sessions: Option<usize>,
}

/// Whether something is mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Enforced by the proxy.
    Required,
    /// Left to the client.
    Optional,
}

/// Whether CCC is honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ccc {
    /// 200, close_notify, plaintext control from then on.
    Allow,
    /// 534.
    Deny,
}

/// How the proxy opens data connections toward the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendData {
    /// The proxy sends PASV/EPSV and connects.
    Passive,
    /// The proxy listens and sends PORT/EPRT.
    Active,
}

/// What an upload that ends with TCP FIN but no TLS close_notify means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadEof {
    /// Possible truncation: abort the backend transfer, reply 426.
    Strict,
    /// Accept it and log a warning.
    Lenient,
}

/// An inclusive port range with `low <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

/// Validated settings; every field holds a value that is known to be usable.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Explicit-FTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// Implicit-FTPS listeners.
    pub implicit_listen: Vec<SocketAddr>,
    /// Backend `HOST:PORT`, resolved per connection (the backend may be down at start).
    pub backend: String,
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
    /// Concurrent session limit, default 10000.
    pub max_sessions: usize,
}

impl Settings {
    /// Defaults for everything but the listeners and the backend.
    pub fn new(listen: Vec<SocketAddr>, backend: impl Into<String>) -> Settings {
        Settings {
            listen,
            implicit_listen: Vec::new(),
            backend: backend.into(),
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
            max_sessions: 10_000,
        }
    }

    /// Reads `--config` (if any), applies the flags on top, and validates.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let (file, name) = match &args.config {
            Some(path) => (load_file(path)?, path.display().to_string()),
            None => (FileConfig::default(), "command line".to_string()),
        };
        let err = |key: &str, source: &str, message: String| ConfigError {
            source_name: source.to_string(),
            key: key.to_string(),
            message,
        };
        // A value from a flag is reported against the command line, one from the file against the file.
        macro_rules! pick {
            ($key:ident) => {
                match args.$key.clone() {
                    Some(v) => Some((v, "command line")),
                    None => file.$key.clone().map(|v| (v, name.as_str())),
                }
            };
        }
        macro_rules! pick_list {
            ($key:ident) => {
                if !args.$key.is_empty() {
                    (args.$key.clone(), "command line")
                } else {
                    (file.$key.clone().unwrap_or_default(), name.as_str())
                }
            };
        }

        let parse_addrs = |key: &str, (list, src): (Vec<String>, &str)| {
            list.iter()
                .map(|s| {
                    s.parse::<SocketAddr>().map_err(|_| {
                        err(
                            key,
                            src,
                            format!("`{s}` is not an IP:PORT address (IPv6 as [::1]:990)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let listen = parse_addrs("listen", pick_list!(listen))?;
        let implicit_listen = parse_addrs("implicit_listen", pick_list!(implicit_listen))?;
        if listen.is_empty() && implicit_listen.is_empty() {
            return Err(err(
                "listen",
                &name,
                "no listener: set listen (explicit FTPS) and/or implicit_listen".into(),
            ));
        }

        let Some((backend, src)) = pick!(backend) else {
            return Err(err(
                "backend",
                &name,
                "missing: the plaintext FTP server as HOST:PORT".into(),
            ));
        };
        validate_host_port(&backend).map_err(|m| err("backend", src, m))?;

        let mut s = Settings::new(listen, backend);
        s.implicit_listen = implicit_listen;
        s.cert = pick!(cert).map(|(v, _)| v);
        s.key = pick!(key).map(|(v, _)| v);
        match (&s.cert, &s.key) {
            (Some(_), None) => return Err(err("key", &name, "cert is set but key is not".into())),
            (None, Some(_)) => return Err(err("cert", &name, "key is set but cert is not".into())),
            _ => {}
        }
        if let Some((v, src)) = pick!(passive_ports) {
            s.passive_ports = Some(parse_range(&v).map_err(|m| err("passive_ports", src, m))?);
        }
        if let Some((v, src)) = pick!(public_address) {
            s.public_address =
                Some(v.parse().map_err(|_| {
                    err("public_address", src, format!("`{v}` is not an IP address"))
                })?);
        }
        if let Some((v, src)) = pick!(control_tls) {
            s.control_tls = parse_requirement(&v).map_err(|m| err("control_tls", src, m))?;
        }
        if let Some((v, src)) = pick!(data_tls) {
            s.data_tls = parse_requirement(&v).map_err(|m| err("data_tls", src, m))?;
        }
        if let Some((v, src)) = pick!(ccc) {
            s.ccc = match v.as_str() {
                "allow" => Ccc::Allow,
                "deny" => Ccc::Deny,
                _ => return Err(err("ccc", src, format!("`{v}`: expected allow or deny"))),
            };
        }
        if let Some((v, src)) = pick!(backend_data) {
            s.backend_data = match v.as_str() {
                "passive" => BackendData::Passive,
                "active" => BackendData::Active,
                _ => {
                    return Err(err(
                        "backend_data",
                        src,
                        format!("`{v}`: expected passive or active"),
                    ))
                }
            };
        }
        s.require_session_reuse =
            args.require_session_reuse || file.require_session_reuse.unwrap_or(false);
        s.client_ca = pick!(client_ca).map(|(v, _)| v);
        if let Some((v, src)) = pick!(client_cert) {
            s.client_cert = parse_requirement(&v).map_err(|m| err("client_cert", src, m))?;
            if s.client_ca.is_none() {
                return Err(err(
                    "client_cert",
                    src,
                    "needs client_ca (the CA bundle to verify against)".into(),
                ));
            }
        }
        if let Some((v, src)) = pick!(upload_eof) {
            s.upload_eof = match v.as_str() {
                "strict" => UploadEof::Strict,
                "lenient" => UploadEof::Lenient,
                _ => {
                    return Err(err(
                        "upload_eof",
                        src,
                        format!("`{v}`: expected strict or lenient"),
                    ))
                }
            };
        }
        if let Some((v, src)) = pick!(idle_timeout) {
            if v == 0 {
                return Err(err("idle_timeout", src, "must be at least 1 second".into()));
            }
            s.idle_timeout = Duration::from_secs(v);
        }
        if let Some((v, src)) = pick!(data_timeout) {
            if v == 0 {
                return Err(err("data_timeout", src, "must be at least 1 second".into()));
            }
            s.data_timeout = Duration::from_secs(v);
        }
        if let Some((v, src)) = pick!(max_sessions) {
            if v == 0 {
                return Err(err("max_sessions", src, "must be at least 1".into()));
            }
            s.max_sessions = v;
        }
        for (key, path) in [
            ("cert", &s.cert),
            ("key", &s.key),
            ("client_ca", &s.client_ca),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(err(key, &name, format!("{}: no such file", p.display())));
                }
            }
        }
        Ok(s)
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        key: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| {
        let msg = e.to_string();
        // serde_yaml says "unknown field `x`" or "key: invalid type..."; pull the key out when it can.
        let key = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field"))
            .map(str::to_string)
            .or_else(|| {
                msg.split(':')
                    .next()
                    .filter(|k| !k.contains(' '))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "yaml".into());
        ConfigError {
            source_name: name,
            key,
            message: msg,
        }
    })
}

fn validate_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match s.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(':')
                && port.parse::<u16>().is_ok_and(|p| p > 0) =>
        {
            Ok(())
        }
        _ => Err(format!("`{s}` is not HOST:PORT")),
    }
}

fn parse_range(s: &str) -> Result<PortRange, String> {
    let (low, high) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}`: expected LOW-HIGH, e.g. 50000-50100"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(format!("low ({low}) is above high ({high})"));
    }
    Ok(PortRange { low, high })
}

fn parse_requirement(s: &str) -> Result<Requirement, String> {
    match s {
        "required" => Ok(Requirement::Required),
        "optional" => Ok(Requirement::Optional),
        _ => Err(format!("`{s}`: expected required or optional")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut ServeArgs)) -> ServeArgs {
        let mut a = ServeArgs {
            listen: vec!["127.0.0.1:2121".into()],
            backend: Some("127.0.0.1:21".into()),
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
        let e =
            Settings::resolve(&args(|a| a.passive_ports = Some("5000-4000".into()))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: passive_ports: low (5000) is above high (4000)"
        );
        let e = Settings::resolve(&args(|a| a.backend = Some("nohost".into()))).unwrap_err();
        assert_eq!(e.key, "backend");
        let e = Settings::resolve(&args(|a| a.ccc = Some("maybe".into()))).unwrap_err();
        assert_eq!(e.key, "ccc");
        let e = Settings::resolve(&args(|a| a.listen = vec!["localhost".into()])).unwrap_err();
        assert_eq!(e.key, "listen");
    }

    #[test]
    fn file_keys_and_flag_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, "listen: ['127.0.0.1:990']\nbackend: legacy.example:21\ndata_tls: optional\npassive_ports: 50000-50010\n").unwrap();
        let a = ServeArgs {
            config: Some(path.clone()),
            data_tls: Some("required".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&a).unwrap();
        assert_eq!(s.data_tls, Requirement::Required);
        assert_eq!(
            s.passive_ports,
            Some(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(s.backend, "legacy.example:21");

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
