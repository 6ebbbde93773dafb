//! Live operation (issue 9): applying a new configuration to new sessions
//! without touching running ones (SIGHUP), and picking up certificate and
//! key files an ACME client renewed on disk, without a signal. A new state
//! is built and validated completely before it replaces the old one, so a
//! bad file or an unreadable key leaves the old state serving.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::live::{FileStamps, Live, LiveState};
use crate::tls::TlsError;

/// How often certificate and key files are checked for changes.
pub const CERT_POLL: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The generation now in force.
    pub generation: u64,
    /// Keys that changed but take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
    /// The certificate's fingerprint now.
    pub fingerprint: String,
}

/// Applies new settings to the live state.
#[derive(Clone)]
pub struct Reloader {
    live: Arc<LiveState>,
}

impl Reloader {
    /// A reloader for `live`.
    pub fn new(live: Arc<LiveState>) -> Reloader {
        Reloader { live }
    }

    /// Builds the state for `settings` (certificate included) and puts it in
    /// force for new sessions; on error nothing changes.
    pub fn apply(&self, settings: Settings) -> Result<Applied, TlsError> {
        let current = self.live.snapshot();
        let cert_files = FileStamps::of(&settings);
        let tls = current.tls.renew(&settings)?;
        let mut needs_restart = current.settings.needs_restart(&settings);
        // What needs a restart keeps its running value, so the state matches reality.
        let mut next = settings;
        keep_fixed(&mut next, &current.settings);
        needs_restart.sort_unstable();
        let generation = current.generation + 1;
        let fingerprint = tls.fingerprint.clone();
        self.live
            .replace(Live::new(next, tls, generation, cert_files, Some(&current)));
        Ok(Applied {
            generation,
            needs_restart,
            fingerprint,
        })
    }

    /// Checks the certificate and key files every [`CERT_POLL`] and reloads
    /// them when either changed (same settings). A half-written pair (the
    /// new certificate with the old key) is refused with one warning and
    /// retried when the files change again (or on SIGHUP).
    pub async fn watch_certificates(self, shutdown: CancellationToken) {
        // The stamps in force were taken before the files were read, so a
        // renewal at any moment after that (even before this task first
        // runs) differs from them and is picked up.
        let mut failed: Option<FileStamps> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CERT_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            let current = self.live.snapshot();
            let now = FileStamps::of(&current.settings);
            if now == current.cert_files || failed.as_ref() == Some(&now) {
                continue;
            }
            match self.apply(current.settings.clone()) {
                Ok(applied) => {
                    failed = None;
                    info!(sha256 = %applied.fingerprint, generation = applied.generation, "certificate files changed on disk; reloaded");
                }
                Err(e) => {
                    // Said once per state of the files, retried when they change again.
                    warn!(error = %e, "certificate files changed but cannot be loaded yet; keeping the old certificate");
                    failed = Some(now);
                }
            }
        }
    }
}

/// Keeps the running values of the keys a reload cannot change.
fn keep_fixed(next: &mut Settings, current: &Settings) {
    next.listen.clone_from(&current.listen);
    next.implicit_listen.clone_from(&current.implicit_listen);
    next.passive_ports = current.passive_ports;
    next.public_passive_ports = current.public_passive_ports;
    next.metrics = current.metrics;
    next.max_sessions = current.max_sessions;
    next.log_format = current.log_format;
    next.transfer_log.clone_from(&current.transfer_log);
    next.transfer_log_format = current.transfer_log_format;
}
