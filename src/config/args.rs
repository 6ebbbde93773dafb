//! The flags of `serve` (and `check`): [`ServeArgs`], one per YAML key,
//! parsed by clap into the same typed values as the file
//! ([`crate::config::values`]). It lives beside the configuration rather
//! than in [`crate::cli`] because [`crate::config::Settings::resolve`]
//! merges it with the file; `cli` re-exports it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::backends::{BackendSpec, Network, Selection};
use super::values::{
    AddressByNetwork, BackendConnect, BackendData, BackendProxyProtocol, Bytes, Ccc, LogFormat,
    PortRange, ProxyProtocol, Requirement, Reuse, TransferLogFormat, UploadEof,
};

/// Flags of `serve`; each overrides the same key of the YAML file.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// YAML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Explicit-FTPS listener (client sends AUTH TLS); repeatable.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Implicit-FTPS listener (TLS from the first byte); repeatable.
    #[arg(long, value_name = "ADDR")]
    pub implicit_listen: Vec<SocketAddr>,
    /// The plaintext FTP server behind the proxy, or `original-destination`
    /// (transparent mode behind a kernel redirect). A pool of several is a
    /// `backends:` list in the file.
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: Option<BackendSpec>,
    /// How a session picks a backend of the pool.
    #[arg(long, value_enum)]
    pub backend_selection: Option<Selection>,
    /// Whether `USER name@backend` picks the backend (true or false).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub user_at_backend: Option<bool>,
    /// Seconds between health checks of each backend.
    #[arg(long, value_name = "SECS")]
    pub backend_health_interval: Option<u64>,
    /// With --backend original-destination: a network ftpsgate may connect to; repeatable.
    #[arg(long, value_name = "CIDR")]
    pub original_destination_allow: Vec<Network>,
    /// With --backend original-destination: the port to connect to instead of the original one.
    #[arg(long, value_name = "PORT")]
    pub original_destination_port: Option<u16>,
    /// PEM certificate chain; without --cert/--key an ephemeral self-signed one is made.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Client-facing passive data ports.
    #[arg(long, value_name = "LOW-HIGH")]
    pub passive_ports: Option<PortRange>,
    /// Address advertised in 227 replies (NAT); default: the control connection's local address.
    #[arg(long, value_name = "IP")]
    pub public_address: Option<IpAddr>,
    /// Split horizon: clients in NETWORK are told ADDRESS in 227 replies
    /// (first match wins, before --public-address); repeatable.
    #[arg(long, value_name = "NETWORK=ADDRESS")]
    pub public_address_by_network: Vec<AddressByNetwork>,
    /// Ports advertised in 227/229 instead of --passive-ports (same length, mapped 1:1).
    #[arg(long, value_name = "LOW-HIGH")]
    pub public_passive_ports: Option<PortRange>,
    /// PROXY protocol header expected on every listener: off, v1, v2 or any.
    #[arg(long, value_enum)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// A balancer network trusted to send PROXY headers (CIDR); repeatable.
    #[arg(long, value_name = "NETWORK")]
    pub proxy_protocol_from: Vec<Network>,
    /// Seconds a trusted balancer has to send its PROXY header.
    #[arg(long, value_name = "SECS")]
    pub proxy_protocol_timeout: Option<u64>,
    /// PROXY header sent first on the backend control connection: off, v1 or v2.
    #[arg(long, value_enum)]
    pub backend_proxy_protocol: Option<BackendProxyProtocol>,
    /// required: USER/PASS before AUTH TLS get 530.
    #[arg(long, value_enum)]
    pub control_tls: Option<Requirement>,
    /// required: transfers need PROT P (else 522).
    #[arg(long, value_enum)]
    pub data_tls: Option<Requirement>,
    /// Whether CCC (clear the control channel) is allowed.
    #[arg(long, value_enum)]
    pub ccc: Option<Ccc>,
    /// How ftpsgate opens data connections to the backend.
    #[arg(long, value_enum)]
    pub backend_data: Option<BackendData>,
    /// Data-connection TLS must resume the control connection's session:
    /// true, false (turns a YAML `true` off) or audit.
    #[arg(long, value_name = "true|false|audit", num_args = 0..=1, default_missing_value = "true")]
    pub require_session_reuse: Option<Reuse>,
    /// Verify client certificates against this CA bundle (PEM).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: whether a client certificate is required.
    #[arg(long, value_enum)]
    pub client_cert: Option<Requirement>,
    /// strict: an upload ending without TLS close_notify is aborted (426); lenient: accepted.
    #[arg(long, value_enum)]
    pub upload_eof: Option<UploadEof>,
    /// When the backend connection is opened: on-accept or after-tls.
    #[arg(long, value_enum)]
    pub backend_connect: Option<BackendConnect>,
    /// Seconds the control TLS handshake may take.
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,
    /// Seconds a control connection may stay idle before 421.
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Seconds the client has to open its data connection after a transfer starts.
    #[arg(long, value_name = "SECS")]
    pub data_timeout: Option<u64>,
    /// Seconds a transfer may move no byte before it is failed with 426.
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<u64>,
    /// Most concurrent client sessions.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Most concurrent sessions from one client address (0: no limit).
    #[arg(long, value_name = "N")]
    pub max_sessions_per_ip: Option<usize>,
    /// Failed logins within --ban-window that ban an address (0: never).
    #[arg(long, value_name = "N")]
    pub ban_failures: Option<u32>,
    /// Seconds failed logins are counted over.
    #[arg(long, value_name = "SECS")]
    pub ban_window: Option<u64>,
    /// Seconds a banned address is refused with 421.
    #[arg(long, value_name = "SECS")]
    pub ban_duration: Option<u64>,
    /// Longest client command line (bytes, CRLF included).
    #[arg(long, value_name = "SIZE")]
    pub max_command_line: Option<Bytes>,
    /// Largest backend reply accepted (bytes).
    #[arg(long, value_name = "SIZE")]
    pub max_reply: Option<Bytes>,
    /// Bandwidth cap per session, bytes per second (e.g. 10M).
    #[arg(long, value_name = "SIZE")]
    pub rate_session: Option<Bytes>,
    /// Bandwidth cap for all transfers together, bytes per second.
    #[arg(long, value_name = "SIZE")]
    pub rate_total: Option<Bytes>,
    /// Largest upload (e.g. 2G); a larger one is aborted with 552.
    #[arg(long, value_name = "SIZE")]
    pub max_upload: Option<Bytes>,
    /// ftpsgate's own log: text or json.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Transfer log file (`-`: stdout); reopened on SIGHUP and SIGUSR1.
    #[arg(long, value_name = "FILE")]
    pub transfer_log: Option<PathBuf>,
    /// Transfer log format: json or xferlog.
    #[arg(long, value_enum)]
    pub transfer_log_format: Option<TransferLogFormat>,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Seconds sessions get to finish after SIGTERM (a second signal ends at once).
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<u64>,
}
