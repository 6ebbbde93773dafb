//! Configuration: the YAML [`file::FileConfig`] plus command-line flags
//! resolve into one validated [`Settings`]. `serve`, `check` and a reload all
//! go through [`Settings::resolve`], so `check` cannot disagree with `serve`.
//! Values are typed where they are read ([`values`]); this module only
//! merges them (a flag beats the file) and checks what spans several keys.

pub mod args;
pub mod backends;
pub mod file;
mod merge;
pub mod values;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use backends::{BackendSpec, Backends, NamedBackend, Selection, Target};
pub use values::{
    AddressByNetwork, BackendAddr, BackendConnect, BackendData, BackendProxyProtocol, Bytes, Ccc,
    Host, LogFormat, Network, PortRange, ProxyProtocol, Requirement, Reuse, TransferLogFormat,
    UploadEof,
};

pub use args::ServeArgs;

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
/// Defaults are the secure ones and are documented on the field and in
/// `examples/ftpsgate.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Explicit-FTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// Implicit-FTPS listeners.
    pub implicit_listen: Vec<SocketAddr>,
    /// The plaintext FTP server(s), or each connection's original
    /// destination, and how a session picks one.
    pub backends: Backends,
    /// Default after-tls: the backend is reached only after the client's TLS handshake.
    pub backend_connect: BackendConnect,
    /// PEM certificate chain; `None` means an ephemeral self-signed certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Client-facing passive ports; `None` lets the OS choose.
    pub passive_ports: Option<PortRange>,
    /// Advertised in 227 replies; default the address the client connected
    /// to (the PROXY header's destination, else the control connection's local address).
    pub public_address: Option<IpAddr>,
    /// Split horizon: the first rule whose network holds the (real) client
    /// address picks the 227 address, before `public_address`. None by default.
    pub public_address_by_network: Vec<AddressByNetwork>,
    /// Ports advertised in 227/229 instead of the bound ones, 1:1 onto
    /// `passive_ports` (a balancer forwards one onto the other). None by default.
    pub public_passive_ports: Option<PortRange>,
    /// PROXY protocol for the listeners without their own setting; default off.
    pub proxy: ProxyTrust,
    /// Listeners with their own PROXY protocol setting (YAML listener mappings).
    pub listener_proxy: Vec<ListenerProxy>,
    /// How long a trusted balancer has to send its PROXY header, default 5 s.
    pub proxy_protocol_timeout: Duration,
    /// Default off: a PROXY header sent first on the backend control connection.
    pub backend_proxy_protocol: BackendProxyProtocol,
    /// Default required: USER/PASS/ACCT before AUTH get 530.
    pub control_tls: Requirement,
    /// Default required: transfers need PROT P, else 522.
    pub data_tls: Requirement,
    /// Default deny (534).
    pub ccc: Ccc,
    /// Default passive.
    pub backend_data: BackendData,
    /// Default off: resumption is offered, not required.
    pub require_session_reuse: Reuse,
    /// CA bundle for client certificates.
    pub client_ca: Option<PathBuf>,
    /// Default optional (only meaningful with `client_ca`).
    pub client_cert: Requirement,
    /// Default strict.
    pub upload_eof: UploadEof,
    /// Control TLS handshake (explicit and implicit), default 15 s.
    pub handshake_timeout: Duration,
    /// Control idle timeout, default 300 s; also the deadline for a reply write.
    pub idle_timeout: Duration,
    /// Time for the client to open a data connection, default 30 s (then 425).
    pub data_timeout: Duration,
    /// A transfer that moves no byte for this long is failed (426), default 300 s.
    pub stall_timeout: Duration,
    /// Concurrent session limit, default 10000.
    pub max_sessions: usize,
    /// Concurrent sessions from one client address, default 50 (0: no limit).
    pub max_sessions_per_ip: usize,
    /// Failed logins from one address within `ban_window` that get it banned,
    /// default 5 (0: no bans).
    pub ban_failures: u32,
    /// The window failed logins are counted in, default 600 s.
    pub ban_window: Duration,
    /// How long a banned address gets 421 at connect, default 600 s.
    pub ban_duration: Duration,
    /// Longest command line, CRLF included, default 4096.
    pub max_command_line: usize,
    /// Largest backend reply, default 4 MiB.
    pub max_reply: usize,
    /// Bytes per second one session's transfers may move; none by default.
    pub rate_session: Option<u64>,
    /// Bytes per second all transfers together may move; none by default.
    pub rate_total: Option<u64>,
    /// Largest upload; a larger one is aborted with 552. None by default.
    pub max_upload: Option<u64>,
    /// How ftpsgate's own log is written, default text.
    pub log_format: LogFormat,
    /// Where transfer records go (`-` is stdout); none by default.
    pub transfer_log: Option<PathBuf>,
    /// Default json.
    pub transfer_log_format: TransferLogFormat,
    /// Prometheus `/metrics`, `/healthz` and `/readyz`; off by default.
    pub metrics: Option<SocketAddr>,
    /// How long sessions get to finish after SIGTERM, default 30 s.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Defaults for everything but the listeners and the (one) backend.
    pub fn new(listen: Vec<SocketAddr>, backend: BackendAddr) -> Settings {
        Settings {
            listen,
            implicit_listen: Vec::new(),
            backends: Backends::single(backend),
            backend_connect: BackendConnect::AfterTls,
            cert: None,
            key: None,
            passive_ports: None,
            public_address: None,
            public_address_by_network: Vec::new(),
            public_passive_ports: None,
            proxy: ProxyTrust::default(),
            listener_proxy: Vec::new(),
            proxy_protocol_timeout: Duration::from_secs(5),
            backend_proxy_protocol: BackendProxyProtocol::Off,
            control_tls: Requirement::Required,
            data_tls: Requirement::Required,
            ccc: Ccc::Deny,
            backend_data: BackendData::Passive,
            require_session_reuse: Reuse::Off,
            client_ca: None,
            client_cert: Requirement::Optional,
            upload_eof: UploadEof::Strict,
            handshake_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(300),
            max_sessions: 10_000,
            max_sessions_per_ip: 50,
            ban_failures: 5,
            ban_window: Duration::from_secs(600),
            ban_duration: Duration::from_secs(600),
            max_command_line: 4096,
            max_reply: 4 << 20,
            rate_session: None,
            rate_total: None,
            max_upload: None,
            log_format: LogFormat::Text,
            transfer_log: None,
            transfer_log_format: TransferLogFormat::Json,
            metrics: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Reads `--config` (if any), applies the flags on top, and validates.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let (file, name) = match &args.config {
            Some(path) => (file::load(path)?, path.display().to_string()),
            None => (file::FileConfig::default(), "command line".to_string()),
        };
        merge::Merge {
            args,
            file,
            name: &name,
        }
        .settings()
    }

    /// The PROXY protocol settings of the listener configured as `address`
    /// (`implicit` or explicit): its own, else the defaults.
    pub fn proxy_trust(&self, implicit: bool, address: SocketAddr) -> &ProxyTrust {
        self.listener_proxy
            .iter()
            .find(|l| l.implicit == implicit && l.address == address)
            .map_or(&self.proxy, |l| &l.trust)
    }

    /// What differs from `other` that a reload cannot apply (it needs a
    /// restart): listeners, the passive range, the metrics address and the
    /// session limit are bound at start, and the logs are opened at start.
    pub fn needs_restart(&self, other: &Settings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.listen != other.listen {
            keys.push("listen");
        }
        if self.implicit_listen != other.implicit_listen {
            keys.push("implicit_listen");
        }
        if self.passive_ports != other.passive_ports {
            keys.push("passive_ports");
        }
        if self.public_passive_ports != other.public_passive_ports {
            keys.push("public_passive_ports");
        }
        if self.metrics != other.metrics {
            keys.push("metrics");
        }
        if self.max_sessions != other.max_sessions {
            keys.push("max_sessions");
        }
        if self.log_format != other.log_format {
            keys.push("log_format");
        }
        if self.transfer_log != other.transfer_log {
            keys.push("transfer_log");
        }
        if self.transfer_log_format != other.transfer_log_format {
            keys.push("transfer_log_format");
        }
        keys
    }
}

/// What a listener expects from the balancer in front of it (PROXY protocol).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyTrust {
    /// The header versions accepted; `Off`: clients connect directly.
    pub accept: ProxyProtocol,
    /// The balancers: only these networks may connect, and only their headers are believed.
    pub from: Vec<Network>,
}

impl ProxyTrust {
    /// A PROXY header is required.
    pub fn is_on(&self) -> bool {
        self.accept != ProxyProtocol::Off
    }

    /// `ip` is one of the balancers.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|n| n.contains(ip))
    }
}

/// A listener with its own PROXY protocol setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerProxy {
    /// On `implicit_listen` rather than `listen`.
    pub implicit: bool,
    /// The listener's configured address.
    pub address: SocketAddr,
    /// Its setting.
    pub trust: ProxyTrust,
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
        assert_eq!(s.require_session_reuse, Reuse::Off);
        assert_eq!(s.backend_connect, BackendConnect::AfterTls);
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
            require_session_reuse: Some(Reuse::Off),
            ..Default::default()
        };
        let s = Settings::resolve(&a).unwrap();
        assert_eq!(s.data_tls, Requirement::Required);
        assert_eq!(
            s.require_session_reuse,
            Reuse::Off,
            "a flag turns a YAML boolean off"
        );
        assert_eq!(
            s.passive_ports,
            Some(PortRange {
                low: 50000,
                high: 50010
            })
        );
        assert_eq!(
            s.backends.members()[0].address.to_string(),
            "legacy.example:21"
        );

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

    /// Resolves the file text `yaml` (flags from `tweak`).
    fn from_file(yaml: &str, tweak: impl FnOnce(&mut ServeArgs)) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut a = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        tweak(&mut a);
        Settings::resolve(&a)
    }

    #[test]
    fn a_pool_with_routes_and_its_errors_with_lines() {
        let pool = "listen: ['127.0.0.1:21']\nbackends:\n  - {name: east, address: '10.0.0.1:21'}\n  - {name: west, address: 'w.example:21'}\nbackend_selection: round-robin\nuser_routes: {alice: east}\nuser_at_backend: true\n";
        let s = from_file(pool, |_| {}).unwrap();
        assert_eq!(s.backends.members().len(), 2);
        assert_eq!(s.backends.selection, Selection::RoundRobin);
        assert!(s.backends.routes_by_user());
        let s = from_file(pool, |a| a.user_at_backend = Some(false)).unwrap();
        assert!(
            !s.backends.user_at_backend,
            "a flag turns a YAML boolean off"
        );

        let e = from_file(&pool.replace("alice: east", "alice: north"), |_| {}).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("user_routes", Some(6)));
        assert!(e.message.contains("no backend named `north`"), "{e}");
        let e = from_file(&format!("{pool}backend: 'h:21'\n"), |_| {}).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("backends", Some(2)));
        let e =
            from_file(pool, |a| a.backend_connect = Some(BackendConnect::OnAccept)).unwrap_err();
        assert_eq!(e.key, "backend_connect");
        // A flag's backend replaces the file's pool.
        let s = from_file(pool, |a| a.backend = Some("10.9.9.9:21".parse().unwrap())).unwrap_err();
        assert_eq!(
            s.key, "user_routes",
            "the map names backends the flag removed"
        );

        let transparent = "listen: ['127.0.0.1:21']\nbackend: original-destination\n";
        let e = from_file(transparent, |_| {}).unwrap_err();
        assert_eq!(e.key, "original_destination_allow");
        let s = from_file(
            &format!("{transparent}original_destination_allow: ['10.0.0.0/8']\n"),
            |_| {},
        )
        .unwrap();
        assert!(matches!(
            s.backends.target,
            Target::OriginalDestination { .. }
        ));
    }

    #[test]
    fn balancer_and_passive_advertising_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.yaml");
        let resolve = |yaml: &str| {
            std::fs::write(&path, yaml).unwrap();
            Settings::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve(concat!(
            "backend: h:21\n",
            "listen: ['127.0.0.1:21', {address: '127.0.0.1:2121', proxy_protocol: v2, proxy_protocol_from: [10.0.0.0/24]}]\n",
            "implicit_listen: ['127.0.0.1:990']\n",
            "passive_ports: 50000-50099\npublic_passive_ports: 60000-60099\n",
            "public_address_by_network: [{network: 10.0.0.0/8, address: 10.1.2.3}]\n",
            "backend_proxy_protocol: v1\n",
        ))
        .unwrap();
        let plain = s.proxy_trust(false, "127.0.0.1:21".parse().unwrap());
        assert!(!plain.is_on());
        let lb = s.proxy_trust(false, "127.0.0.1:2121".parse().unwrap());
        assert_eq!(lb.accept, ProxyProtocol::V2);
        assert!(lb.trusts("10.0.0.7".parse().unwrap()));
        assert!(!lb.trusts("10.0.1.7".parse().unwrap()));
        assert!(!s
            .proxy_trust(true, "127.0.0.1:990".parse().unwrap())
            .is_on());
        assert_eq!(s.public_passive_ports.map(|p| p.low), Some(60000));
        assert_eq!(s.public_address_by_network.len(), 1);
        assert_eq!(s.backend_proxy_protocol, BackendProxyProtocol::V1);

        let e =
            resolve("backend: h:21\nlisten: ['127.0.0.1:21']\nproxy_protocol: any\n").unwrap_err();
        assert_eq!(e.key, "proxy_protocol_from");
        let e = resolve("backend: h:21\nlisten: [{address: '127.0.0.1:21', proxy_protocol: v1}]\n")
            .unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("proxy_protocol_from"), "{e}");
        let e =
            resolve("backend: h:21\nlisten: ['127.0.0.1:21']\npublic_passive_ports: 60000-60009\n")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: public_passive_ports: needs passive_ports (the ports it maps onto)",
                path.display()
            )
        );
        let e = resolve("backend: h:21\nlisten: ['127.0.0.1:21']\npassive_ports: 50000-50009\npublic_passive_ports: 60000-60010\n")
            .unwrap_err();
        assert_eq!(e.key, "public_passive_ports");
        assert!(
            e.message
                .contains("60000-60010 holds 11 ports but passive_ports (50000-50009) holds 10"),
            "{e}"
        );
    }
}
