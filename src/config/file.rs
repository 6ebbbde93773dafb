//! The YAML configuration file: [`FileConfig`] (keys in snake_case mirroring
//! the flags, unknown keys refused) and [`load`], which turns serde_yaml's
//! errors into [`ConfigError`]s naming the file, the line and the key. The
//! only module that touches serde_yaml (archived upstream), so moving to a
//! maintained fork is a one-file change.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::backends::{BackendSpec, NamedBackend, Network, Selection};
use super::values::{
    AddressByNetwork, BackendConnect, BackendData, BackendProxyProtocol, Bytes, Ccc, LogFormat,
    PortRange, ProxyProtocol, Requirement, Reuse, TransferLogFormat, UploadEof,
};
use super::ConfigError;

/// The YAML file. Every field is optional; flags override it key by key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub(super) listen: Option<Vec<ListenAddr>>,
    pub(super) implicit_listen: Option<Vec<ListenAddr>>,
    pub(super) backend: Option<BackendSpec>,
    pub(super) backends: Option<Vec<NamedBackend>>,
    pub(super) backend_selection: Option<Selection>,
    pub(super) user_routes: Option<std::collections::BTreeMap<String, String>>,
    pub(super) user_at_backend: Option<bool>,
    pub(super) backend_health_interval: Option<u64>,
    pub(super) original_destination_allow: Option<Vec<Network>>,
    pub(super) original_destination_port: Option<u16>,
    pub(super) backend_connect: Option<BackendConnect>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) passive_ports: Option<PortRange>,
    pub(super) public_address: Option<IpAddr>,
    pub(super) public_address_by_network: Option<Vec<AddressByNetwork>>,
    pub(super) public_passive_ports: Option<PortRange>,
    pub(super) proxy_protocol: Option<ProxyProtocol>,
    pub(super) proxy_protocol_from: Option<Vec<Network>>,
    pub(super) proxy_protocol_timeout: Option<u64>,
    pub(super) backend_proxy_protocol: Option<BackendProxyProtocol>,
    pub(super) control_tls: Option<Requirement>,
    pub(super) data_tls: Option<Requirement>,
    pub(super) ccc: Option<Ccc>,
    pub(super) backend_data: Option<BackendData>,
    pub(super) require_session_reuse: Option<Reuse>,
    pub(super) client_ca: Option<PathBuf>,
    pub(super) client_cert: Option<Requirement>,
    pub(super) upload_eof: Option<UploadEof>,
    pub(super) handshake_timeout: Option<u64>,
    pub(super) idle_timeout: Option<u64>,
    pub(super) data_timeout: Option<u64>,
    pub(super) stall_timeout: Option<u64>,
    pub(super) max_sessions: Option<usize>,
    pub(super) max_sessions_per_ip: Option<usize>,
    pub(super) ban_failures: Option<u32>,
    pub(super) ban_window: Option<u64>,
    pub(super) ban_duration: Option<u64>,
    pub(super) max_command_line: Option<Bytes>,
    pub(super) max_reply: Option<Bytes>,
    pub(super) rate_session: Option<Bytes>,
    pub(super) rate_total: Option<Bytes>,
    pub(super) max_upload: Option<Bytes>,
    pub(super) log_format: Option<LogFormat>,
    pub(super) transfer_log: Option<PathBuf>,
    pub(super) transfer_log_format: Option<TransferLogFormat>,
    pub(super) metrics: Option<SocketAddr>,
    pub(super) shutdown_grace: Option<u64>,
    /// The file's text, so checks after parsing can name a key's line.
    #[serde(skip)]
    pub(super) text: String,
}

/// A listener: `IP:PORT` (IPv6 as `[::]:990`), or a mapping with its own
/// PROXY protocol setting:
/// `{address: 0.0.0.0:21, proxy_protocol: v2, proxy_protocol_from: [10.0.0.0/24]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub(super) struct ListenAddr {
    pub(super) address: SocketAddr,
    pub(super) proxy_protocol: Option<ProxyProtocol>,
    pub(super) proxy_protocol_from: Option<Vec<Network>>,
}

/// The mapping form of a listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenMapping {
    address: String,
    proxy_protocol: Option<ProxyProtocol>,
    proxy_protocol_from: Option<Vec<Network>>,
}

fn listen_address(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP:PORT address (IPv6 as [::1]:990)"))
}

impl TryFrom<serde_yaml::Value> for ListenAddr {
    type Error = String;
    fn try_from(v: serde_yaml::Value) -> Result<ListenAddr, String> {
        if let serde_yaml::Value::String(s) = &v {
            return Ok(ListenAddr {
                address: listen_address(s)?,
                proxy_protocol: None,
                proxy_protocol_from: None,
            });
        }
        let m: ListenMapping = serde_yaml::from_value(v).map_err(|e| {
            format!(
                "a listener is IP:PORT or {{address, proxy_protocol, proxy_protocol_from}}: {e}"
            )
        })?;
        Ok(ListenAddr {
            address: listen_address(&m.address)?,
            proxy_protocol: m.proxy_protocol,
            proxy_protocol_from: m.proxy_protocol_from,
        })
    }
}

/// Reads and parses `path`; an empty file is an empty configuration.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        key: "file".into(),
        message: format!("cannot read: {e}"),
        line: None,
    })?;
    parse(&name, &text)
}

/// Parses the text of a configuration file named `name`.
///
/// serde_yaml loses the position of errors raised while converting a value
/// (`passive_ports: 5000-4000`), so each top-level key is converted on its
/// own: an error then names its key, and the key's line is found in the text.
pub fn parse(name: &str, text: &str) -> Result<FileConfig, ConfigError> {
    let error = |key: &str, message: String, line: Option<usize>| ConfigError {
        source_name: name.to_string(),
        key: key.to_string(),
        message: humanize(&message),
        line,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| error("yaml", strip_location(&e), e.location().map(|l| l.line())))?;
    let mapping = match value {
        serde_yaml::Value::Null => return Ok(FileConfig::default()),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err(error("yaml", "expected `key: value` lines".into(), Some(1))),
    };
    for (key, value) in &mapping {
        let Some(key) = key.as_str() else {
            return Err(error("yaml", format!("{key:?} is not a key name"), None));
        };
        let mut single = serde_yaml::Mapping::new();
        single.insert(key.into(), value.clone());
        if let Err(e) = serde_yaml::from_value::<FileConfig>(single.into()) {
            let message = match e.to_string() {
                m if m.starts_with("unknown field") => unknown_key(&m),
                m => m,
            };
            return Err(error(key, message, line_of(text, key)));
        }
    }
    let mut config: FileConfig =
        serde_yaml::from_value(mapping.into()).map_err(|e| error("yaml", e.to_string(), None))?;
    config.text = text.to_string();
    Ok(config)
}

/// `unknown field `x`, expected one of ...` in an operator's words.
fn unknown_key(message: &str) -> String {
    match message.split_once(", expected one of ") {
        Some((_, known)) => format!("unknown key; known keys: {}", known.replace('`', "")),
        None => "unknown key".to_string(),
    }
}

/// The 1-based line where top-level `key` is set.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start_matches(['"', '\'']);
            l.strip_prefix(key)
                .map(|rest| rest.trim_start_matches(['"', '\'']).trim_start())
                .is_some_and(|rest| rest.starts_with(':'))
                && !l.starts_with(' ')
        })
        .map(|i| i + 1)
}

fn strip_location(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(l) => msg
            .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
            .map_or(msg.clone(), str::to_string),
        None => msg,
    }
}

/// Replaces Rust type names in serde's "expected ..." wording with words an
/// operator uses.
fn humanize(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, words) in [
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected a sequence", "expected a list"),
        ("expected a string", "expected text"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(yaml: &str) -> ConfigError {
        parse("f.yaml", yaml).unwrap_err()
    }

    #[test]
    fn semantic_errors_name_key_and_line_once() {
        let e = error_of("listen: ['127.0.0.1:21']\npassive_ports: 5000-4000\n");
        assert_eq!(e.key, "passive_ports");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.message, "low (5000) is above high (4000)");
        let e = error_of("listen: [localhost]\n");
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("not an IP:PORT"), "{}", e.message);
    }

    #[test]
    fn unknown_keys_and_bad_values() {
        let e = error_of("listen: ['127.0.0.1:21']\ndata_tsl: required\n");
        assert_eq!(e.key, "data_tsl");
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.starts_with("unknown key; known keys: listen,"),
            "{}",
            e.message
        );
        let e = error_of("listen: [\n");
        assert_eq!(e.key, "yaml");
        assert!(e.line.is_some());
        let e = error_of("ccc: maybe\n");
        assert_eq!(e.key, "ccc");
        assert!(
            e.message.contains("`allow`, `deny`, `audit`"),
            "{}",
            e.message
        );
        let e = error_of("listen: [{address: '127.0.0.1:21', proxy: v2}]\n");
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("unknown field `proxy`"), "{}", e.message);
        let e = error_of("proxy_protocol_from: [10.0.0.0/40]\n");
        assert_eq!(e.key, "proxy_protocol_from");
        assert!(e.message.contains("is not a network"), "{}", e.message);
        let e = error_of("idle_timeout: soon\n");
        assert_eq!(e.key, "idle_timeout");
        assert!(!e.message.contains("u64"), "{}", e.message);
    }
}
