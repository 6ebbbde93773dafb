//! The `ftpsgate` binary: parses the command line, installs the tracing
//! subscriber, runs `serve` (default), `check` or `cert`, and maps errors to
//! a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use ftpsgate::cli::{Cli, Command, ServeArgs};
use ftpsgate::{Server, Settings};
use tokio_util::sync::CancellationToken;
use tracing::info;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Check { config }) => check(config),
        Some(Command::Cert {
            hostname,
            cert_out,
            key_out,
        }) => ftpsgate::tls::write_self_signed(&hostname, &cert_out, &key_out).map(|fp| {
            println!("wrote {} and {}", cert_out.display(), key_out.display());
            println!("SHA-256 fingerprint: {fp}");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: std::path::PathBuf) -> anyhow::Result<()> {
    let args = ServeArgs {
        config: Some(config.clone()),
        ..Default::default()
    };
    let settings = Settings::resolve(&args)?;
    ftpsgate::tls::TlsContext::from_settings(&settings)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    println!("{}: ok", config.display());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let server = Server::bind(settings).await?;
        for (mode, addr) in server.local_addrs() {
            // A stable line on stdout: scripts and tests read the bound ports here.
            println!("ftpsgate listening {mode:?} {addr}");
        }
        if let Some(addr) = server.metrics_addr() {
            println!("ftpsgate metrics {addr}");
        }
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("signal received; stopping listeners and draining sessions");
            trigger.cancel();
        });
        server.run(shutdown).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
