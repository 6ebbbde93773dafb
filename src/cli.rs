//! Command-line interface (clap derive). Flag names mirror the YAML keys in
//! snake_case; `ftpsgate` with no subcommand means `serve`. Values are parsed
//! into the same typed values as the YAML file ([`crate::config::values`]),
//! so a bad flag is refused by clap with the flag's name. The same
//! definitions produce the shell completions and the man pages
//! ([`write_completions`], [`write_man`]).

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

pub use crate::config::args::ServeArgs;
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
