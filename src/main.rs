//! The `ftpsgate` binary: parses the command line, installs the log, runs
//! `serve` (default), `check`, `cert`, `completions` or `man`, handles the
//! signals of a long-lived service (SIGTERM/SIGINT stop, twice stops at
//! once; SIGHUP reloads and reopens the transfer log; SIGUSR1 only reopens
//! it), tells systemd where it stands, and maps errors to a non-zero exit
//! code.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ftpsgate::cli::{CertArgs, Cli, Command, ServeArgs};
use ftpsgate::events::{EventSink, Events, TracingSink};
use ftpsgate::reload::Reloader;
use ftpsgate::transfer_log::TransferLog;
use ftpsgate::{systemd, Server, Settings};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Cert(args)) => cert(args),
        Some(Command::Completions { shell }) => {
            ftpsgate::cli::write_completions(shell, &mut std::io::stdout().lock())
                .map_err(Into::into)
        }
        Some(Command::Man { subcommand }) => {
            ftpsgate::cli::write_man(subcommand.as_deref(), &mut std::io::stdout().lock())
                .map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cert(args: CertArgs) -> anyhow::Result<()> {
    let files = ftpsgate::tls::cert::CertFiles {
        cert: &args.cert_out,
        key: &args.key_out,
        force: args.force,
    };
    let written = ftpsgate::tls::write_self_signed(&args.hostname, args.days, files)?;
    let until = written.not_after;
    println!(
        "wrote {} and {}",
        args.cert_out.display(),
        args.key_out.display()
    );
    println!("SHA-256 fingerprint: {}", written.fingerprint);
    println!(
        "valid for {} days, until {}-{:02}-{:02} {:02}:{:02} UTC",
        args.days,
        until.year(),
        u8::from(until.month()),
        until.day(),
        until.hour(),
        until.minute()
    );
    Ok(())
}

/// Resolves the configuration exactly as `serve` would (file and flags) and
/// loads the certificate and key, then says where it came from.
fn check(args: &ServeArgs) -> anyhow::Result<()> {
    let name = args
        .config
        .as_ref()
        .map_or("command line".to_string(), |c| c.display().to_string());
    let settings = Settings::resolve(args)?;
    ftpsgate::tls::TlsContext::from_settings(&settings)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    println!("{name}: ok");
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args)?;
    ftpsgate::logging::init(settings.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        use anyhow::Context;
        let transfer_log = match &settings.transfer_log {
            Some(path) => Some(
                TransferLog::open(path, settings.transfer_log_format).context("transfer_log")?,
            ),
            None => None,
        };
        let mut sinks: Vec<Arc<dyn EventSink>> = vec![Arc::new(TracingSink)];
        sinks.extend(
            transfer_log
                .clone()
                .map(|t| Arc::new(t) as Arc<dyn EventSink>),
        );
        let server = Server::bind_with(settings, Events::new(sinks)).await?;
        // Handlers go in before anything announces readiness: a SIGHUP sent
        // the moment the port is printed must reload, not kill the process.
        let streams = SignalStreams::install().context("installing signal handlers")?;
        for (mode, addr) in server.local_addrs() {
            // A stable line on stdout: scripts and tests read the bound ports here.
            println!("ftpsgate listening {mode:?} {addr}");
        }
        if let Some(addr) = server.metrics_addr() {
            println!("ftpsgate metrics {addr}");
        }
        let (graceful, now) = (CancellationToken::new(), CancellationToken::new());
        let control = Signals {
            args,
            reloader: server.reloader(),
            transfer_log,
            graceful: graceful.clone(),
            now: now.clone(),
        };
        tokio::spawn(control.run(streams));
        systemd::notify("READY=1");
        server.run_until(graceful, now).await;
        info!("stopped");
        Ok(())
    })
}

/// What the signal handler acts on.
struct Signals {
    args: ServeArgs,
    reloader: Reloader,
    transfer_log: Option<TransferLog>,
    graceful: CancellationToken,
    now: CancellationToken,
}

/// The signals a service answers, registered with the kernel on `install`.
struct SignalStreams {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl SignalStreams {
    fn install() -> std::io::Result<SignalStreams> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(SignalStreams {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

impl Signals {
    async fn run(self, streams: SignalStreams) {
        let SignalStreams {
            mut term,
            mut int,
            mut hup,
            mut usr1,
        } = streams;
        loop {
            tokio::select! {
                _ = term.recv() => self.stop(),
                _ = int.recv() => self.stop(),
                _ = hup.recv() => self.reload(),
                _ = usr1.recv() => self.reopen(),
            }
        }
    }

    fn stop(&self) {
        if self.graceful.is_cancelled() {
            info!("second stop signal: cutting running transfers now");
            self.now.cancel();
            return;
        }
        info!("stop signal: listeners closed, sessions draining (a second signal stops at once)");
        systemd::notify("STOPPING=1");
        self.graceful.cancel();
    }

    fn reopen(&self) {
        if let Some(t) = &self.transfer_log {
            t.reopen();
            info!("transfer log reopened");
        }
    }

    /// Re-reads the configuration (file and flags, as at start) and applies
    /// it to new sessions; a bad file is refused and the old one keeps serving.
    fn reload(&self) {
        systemd::notify_reloading();
        self.reopen();
        match Settings::resolve(&self.args) {
            Err(e) => error!(error = %e, "reload refused; the running configuration stays"),
            Ok(settings) => match self.reloader.apply(settings) {
                Ok(applied) => {
                    info!(
                        generation = applied.generation,
                        sha256 = %applied.fingerprint,
                        "configuration reloaded; new sessions use it"
                    );
                    if !applied.needs_restart.is_empty() {
                        warn!(keys = ?applied.needs_restart, "changed keys take effect only after a restart");
                    }
                }
                Err(e) => error!(error = %e, "reload refused; the running configuration stays"),
            },
        }
        systemd::notify("READY=1");
    }
}
