//! Command-line interface (clap derive). Flag names mirror the YAML keys in
//! snake_case; `ftpsgate` with no subcommand means `serve`. Values are parsed
//! into the same typed values as the YAML file ([`crate::config::values`]),
//! so a bad flag is refused by clap with the flag's name. The same
//! definitions produce the shell completions and the man pages
//! ([`write_completions`], [`write_man`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::config::backends::{BackendSpec, Network, Selection};
use crate::config::values::{
    AddressByNetwork, BackendConnect, BackendData, BackendProxyProtocol, Bytes, Ccc, LogFormat,
    PortRange, ProxyProtocol, Requirement, Reuse, TransferLogFormat, UploadEof,
};
use crate::tls::cert::{CertName, DEFAULT_DAYS, MAX_DAYS};

/// ftpsgate: an FTPS edge in front of a plaintext FTP server.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Subcommand; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags for the implicit `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve(Box<ServeArgs>),
    /// Validate the configuration (the file and the same flags as serve,
    /// e.g. --cert/--key) and exit; errors name the file, line and key.
    Check(Box<ServeArgs>),
    /// Write a self-signed certificate and key (PEM, ECDSA P-256).
    ///
    /// The key is ECDSA P-256 (rcgen's default, which every TLS 1.3
    /// implementation must support). The host name is the subject CN and the first subject
    /// alternative name; localhost, 127.0.0.1 and ::1 are added as further
    /// names. The validity starts an hour ago (clock skew) and lasts --days.
    /// Existing files are kept unless --force is given; each file is written
    /// to a temporary file beside it and renamed into place, the key with
    /// mode 0600.
    Cert(CertArgs),
    /// Print a shell completion script to stdout.
    ///
    /// For example: ftpsgate completions bash >
    /// /usr/share/bash-completion/completions/ftpsgate
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print a man page (roff) to stdout.
    ///
    /// Without an argument, ftpsgate(1); with a subcommand's name, that
    /// subcommand's page, ftpsgate-NAME(1). For example:
    /// ftpsgate man > /usr/local/share/man/man1/ftpsgate.1
    Man {
        /// The subcommand whose page to print.
        #[arg(value_parser = MAN_PAGES)]
        subcommand: Option<String>,
    },
}

/// The subcommands that have a page of their own (checked by a test).
const MAN_PAGES: [&str; 5] = ["serve", "check", "cert", "completions", "man"];

/// Flags of `cert`.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// Host name (RFC 1123 DNS name) or IP address the certificate is for.
    #[arg(long, value_name = "NAME")]
    pub hostname: CertName,
    /// Where to write the certificate.
    #[arg(long, value_name = "FILE")]
    pub cert_out: PathBuf,
    /// Where to write the private key (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_out: PathBuf,
    /// Days the certificate is valid (1 to 3650).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DAYS)),
    )]
    pub days: u32,
    /// Replace --cert-out and --key-out if they exist.
    #[arg(long)]
    pub force: bool,
}

/// Writes the completion script for `shell` to `out`. Rendered in memory
/// first: clap_complete panics on a failed write, and a closed pipe
/// (`ftpsgate completions bash | head`) must be an error, not a panic.
pub fn write_completions(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ftpsgate", &mut script);
    out.write_all(&script)
}

/// Writes the man page of ftpsgate, or of one of its subcommands
/// (`ftpsgate-cert(1)`, as the main page's SUBCOMMANDS section names them),
/// to `out`.
pub fn write_man(subcommand: Option<&str>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let page = match subcommand {
        None => command,
        Some(name) => command.find_subcommand(name).cloned().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no subcommand {name:?}"),
            )
        })?,
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .source(concat!("ftpsgate ", env!("CARGO_PKG_VERSION")))
        .manual("ftpsgate manual")
        .render(&mut roff)?;
    out.write_all(title_first(&String::from_utf8_lossy(&roff)).as_bytes())
}

/// Moves the `.TH` line to the top. The roff crate opens every page with
/// the two lines defining its apostrophe string (`\*(Aq`), while
/// man-pages(7) asks for `.TH` as the first command of a page. Moving it
/// is safe as long as the title itself has no apostrophe, hence the check.
fn title_first(roff: &str) -> String {
    let mut lines: Vec<&str> = roff.lines().collect();
    let title = lines.iter().position(|l| l.starts_with(".TH "));
    if let Some(i) = title.filter(|&i| !lines[i].contains("\\*(Aq")) {
        let line = lines.remove(i);
        lines.insert(0, line);
    }
    let mut page = lines.join("\n");
    page.push('\n');
    page
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_a_man_page() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, MAN_PAGES);
        for name in MAN_PAGES {
            let mut page = Vec::new();
            write_man(Some(name), &mut page).unwrap();
            let page = String::from_utf8(page).unwrap();
            assert!(page.starts_with(".TH ftpsgate-"), "{name}: {page}");
        }
    }
}
