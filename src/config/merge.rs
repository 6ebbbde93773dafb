//! One resolution of the configuration: each key's flag value wins over the
//! file's, and every error is reported against where its value came from
//! (the file or the command line). Checks that span several keys live here.

use std::net::SocketAddr;
use std::time::Duration;

use super::args::ServeArgs;
use super::backends::{BackendSpec, Backends, NamedBackend, Target};
use super::file::{FileConfig, ListenAddr};
use super::{BackendConnect, ConfigError, ListenerProxy, ProxyTrust, Settings};

pub(super) struct Merge<'a> {
    pub(super) args: &'a ServeArgs,
    pub(super) file: FileConfig,
    pub(super) name: &'a str,
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

/// Sets `$s.$key` from the flag or the file when either is given.
macro_rules! take {
    ($m:expr, $s:expr, $($key:ident),+ $(,)?) => {
        $(
            if let Some((v, _)) = pick!($m, $key) {
                $s.$key = v;
            }
        )+
    };
}

impl Merge<'_> {
    /// An error about `key`, set in `source`; when that is the file, the
    /// key's line is named too.
    fn err(&self, key: &str, source: &str, message: impl Into<String>) -> ConfigError {
        let from_file = source == self.name && self.args.config.is_some();
        ConfigError {
            source_name: source.to_string(),
            key: key.to_string(),
            message: message.into(),
            line: from_file
                .then(|| super::file::line_of(&self.file.text, key))
                .flatten(),
        }
    }

    pub(super) fn settings(&self) -> Result<Settings, ConfigError> {
        let (listen, implicit_listen) = self.listeners()?;
        let first = "127.0.0.1:21".parse().expect("a valid address");
        let mut s = Settings::new(listen, first);
        s.backends = self.backends()?;
        s.implicit_listen = implicit_listen;
        self.tls(&mut s)?;
        self.policy(&mut s);
        if s.backends.routes_by_user() && s.backend_connect == BackendConnect::OnAccept {
            return Err(self.err(
                "backend_connect",
                self.name,
                "on-accept cannot route by user (the backend is known only after USER); use after-tls",
            ));
        }
        self.timeouts(&mut s)?;
        self.limits(&mut s)?;
        self.operations(&mut s);
        self.balancers(&mut s)?;
        self.passive(&mut s)?;
        Ok(s)
    }

    /// `backend` (a flag or the file) or `backends` (the file), then how a
    /// session picks one.
    fn backends(&self) -> Result<Backends, ConfigError> {
        let target = match (pick!(self, backend), &self.file.backends) {
            (Some((_, src)), Some(_)) if src == self.name => {
                return Err(self.err("backends", src, "set either backend or backends, not both"))
            }
            (Some((BackendSpec::Address(a), _)), _) => Target::Pool(vec![NamedBackend {
                name: a.to_string(),
                address: a,
            }]),
            (Some((BackendSpec::OriginalDestination, _)), _) => Target::OriginalDestination {
                allow: match self.args.original_destination_allow.is_empty() {
                    true => self
                        .file
                        .original_destination_allow
                        .clone()
                        .unwrap_or_default(),
                    false => self.args.original_destination_allow.clone(),
                },
                port: pick!(self, original_destination_port).map(|(v, _)| v),
            },
            (None, Some(list)) if !list.is_empty() => Target::Pool(list.clone()),
            (None, _) => {
                return Err(self.err(
                    "backend",
                    self.name,
                    "missing: the plaintext FTP server as HOST:PORT (or a backends: list)",
                ))
            }
        };
        let mut b = Backends::single("127.0.0.1:21".parse().expect("a valid address"));
        b.target = target;
        take!(self, b, user_at_backend);
        if let Some((v, _)) = pick!(self, backend_selection) {
            b.selection = v;
        }
        b.user_routes = self.file.user_routes.clone().unwrap_or_default();
        if let Some((v, src)) = pick!(self, backend_health_interval) {
            if v == 0 {
                return Err(self.err("backend_health_interval", src, "must be at least 1 second"));
            }
            b.health_interval = Duration::from_secs(v);
        }
        b.validate()
            .map_err(|(key, m)| self.err(key, self.name, m))?;
        Ok(b)
    }

    fn listeners(&self) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), ConfigError> {
        let list = |flag: &Vec<SocketAddr>, file: &Option<Vec<ListenAddr>>| {
            if flag.is_empty() {
                file.iter().flatten().map(|a| a.address).collect()
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
        take!(
            self,
            s,
            control_tls,
            data_tls,
            ccc,
            backend_data,
            backend_connect,
            upload_eof,
            require_session_reuse,
        );
        s.passive_ports = pick!(self, passive_ports).map(|(v, _)| v);
        s.public_address = pick!(self, public_address).map(|(v, _)| v);
    }

    fn timeouts(&self, s: &mut Settings) -> Result<(), ConfigError> {
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
            "handshake_timeout",
            pick!(self, handshake_timeout),
            &mut s.handshake_timeout,
        )?;
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
        seconds("ban_window", pick!(self, ban_window), &mut s.ban_window)?;
        seconds(
            "ban_duration",
            pick!(self, ban_duration),
            &mut s.ban_duration,
        )?;
        seconds(
            "shutdown_grace",
            pick!(self, shutdown_grace),
            &mut s.shutdown_grace,
        )?;
        Ok(())
    }

    fn limits(&self, s: &mut Settings) -> Result<(), ConfigError> {
        if let Some((v, src)) = pick!(self, max_sessions) {
            if v == 0 {
                return Err(self.err("max_sessions", src, "must be at least 1"));
            }
            s.max_sessions = v;
        }
        take!(self, s, max_sessions_per_ip, ban_failures);
        let at_least = |key: &str, v: Option<(super::Bytes, &str)>, min: u64| match v {
            Some((b, src)) if b.0 < min => {
                Err(self.err(key, src, format!("must be at least {min}")))
            }
            other => Ok(other.map(|(b, _)| b.0)),
        };
        if let Some(v) = at_least("max_command_line", pick!(self, max_command_line), 512)? {
            s.max_command_line = usize::try_from(v).unwrap_or(usize::MAX).min(64 * 1024);
        }
        if let Some(v) = at_least("max_reply", pick!(self, max_reply), 64 * 1024)? {
            s.max_reply = usize::try_from(v).unwrap_or(usize::MAX);
        }
        s.rate_session = at_least("rate_session", pick!(self, rate_session), 1024)?;
        s.rate_total = at_least("rate_total", pick!(self, rate_total), 1024)?;
        s.max_upload = at_least("max_upload", pick!(self, max_upload), 1)?;
        Ok(())
    }

    fn operations(&self, s: &mut Settings) {
        take!(self, s, log_format, transfer_log_format);
        s.transfer_log = pick!(self, transfer_log).map(|(v, _)| v);
        s.metrics = pick!(self, metrics).map(|(v, _)| v);
    }

    /// PROXY protocol: the defaults (`proxy_protocol`, `proxy_protocol_from`)
    /// and each listener mapping's own; every listener that expects a header
    /// must name the balancers it trusts.
    fn balancers(&self, s: &mut Settings) -> Result<(), ConfigError> {
        let accept = pick!(self, proxy_protocol);
        let from = match self.args.proxy_protocol_from.is_empty() {
            false => Some((self.args.proxy_protocol_from.clone(), "command line")),
            true => self
                .file
                .proxy_protocol_from
                .clone()
                .map(|v| (v, self.name)),
        };
        let src = accept.map_or(self.name, |(_, src)| src);
        s.proxy = ProxyTrust {
            accept: accept.map(|(v, _)| v).unwrap_or_default(),
            from: from.map(|(v, _)| v).unwrap_or_default(),
        };
        if s.proxy.is_on() && s.proxy.from.is_empty() {
            return Err(self.err("proxy_protocol_from", src, NO_BALANCERS));
        }
        if let Some((v, src)) = pick!(self, proxy_protocol_timeout) {
            if v == 0 {
                return Err(self.err("proxy_protocol_timeout", src, "must be at least 1 second"));
            }
            s.proxy_protocol_timeout = Duration::from_secs(v);
        }
        take!(self, s, backend_proxy_protocol);
        self.listener_balancers(s)
    }

    /// Listener mappings with their own PROXY settings (only when the
    /// listeners come from the file, not from flags).
    fn listener_balancers(&self, s: &mut Settings) -> Result<(), ConfigError> {
        let lists = [
            (false, self.args.listen.is_empty(), &self.file.listen),
            (
                true,
                self.args.implicit_listen.is_empty(),
                &self.file.implicit_listen,
            ),
        ];
        for (implicit, from_file, entries) in lists {
            let entries = entries.iter().flatten().filter(|_| from_file);
            for e in
                entries.filter(|e| e.proxy_protocol.is_some() || e.proxy_protocol_from.is_some())
            {
                let trust = ProxyTrust {
                    accept: e.proxy_protocol.unwrap_or(s.proxy.accept),
                    from: e
                        .proxy_protocol_from
                        .clone()
                        .unwrap_or_else(|| s.proxy.from.clone()),
                };
                let key = if implicit {
                    "implicit_listen"
                } else {
                    "listen"
                };
                if trust.is_on() && trust.from.is_empty() {
                    let msg = format!("{}: {NO_BALANCERS}", e.address);
                    return Err(self.err(key, self.name, msg));
                }
                s.listener_proxy.push(ListenerProxy {
                    implicit,
                    address: e.address,
                    trust,
                });
            }
        }
        Ok(())
    }

    /// What passive replies advertise: split-horizon addresses and public ports.
    fn passive(&self, s: &mut Settings) -> Result<(), ConfigError> {
        s.public_address_by_network = match self.args.public_address_by_network.is_empty() {
            false => self.args.public_address_by_network.clone(),
            true => self
                .file
                .public_address_by_network
                .clone()
                .unwrap_or_default(),
        };
        let Some((public, src)) = pick!(self, public_passive_ports) else {
            return Ok(());
        };
        let key = "public_passive_ports";
        let Some(bound) = s.passive_ports else {
            return Err(self.err(key, src, "needs passive_ports (the ports it maps onto)"));
        };
        if public.len() != bound.len() {
            let msg = format!(
                "{public} holds {} ports but passive_ports ({bound}) holds {}; they map 1:1",
                public.len(),
                bound.len()
            );
            return Err(self.err(key, src, msg));
        }
        s.public_passive_ports = Some(public);
        Ok(())
    }
}

const NO_BALANCERS: &str =
    "proxy_protocol needs proxy_protocol_from: the networks of the balancers it trusts";
