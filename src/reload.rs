//! Live operation (issue 9): applying a new configuration to new sessions
//! without touching running ones (SIGHUP), and picking up certificate and
//! key files an ACME client renewed on disk, without a signal. A new state
//! is built and validated completely before it replaces the old one, so a
//! bad file or an unreadable key leaves the old state serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::live::{Live, LiveState};
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
        let tls = current.tls.renew(&settings)?;
        let mut needs_restart = current.settings.needs_restart(&settings);
        // What needs a restart keeps its running value, so the state matches reality.
        let mut next = settings;
        keep_fixed(&mut next, &current.settings);
        needs_restart.sort_unstable();
        let generation = current.generation + 1;
        let fingerprint = tls.fingerprint.clone();
        self.live.replace(Live::new(next, tls, generation));
        Ok(Applied {
            generation,
            needs_restart,
            fingerprint,
        })
    }

    /// Checks the certificate and key files every [`CERT_POLL`] and reloads
    /// them when either changed (same settings). A half-written pair (the
    /// new certificate with the old key) is retried at the next check.
    pub async fn watch_certificates(self, shutdown: CancellationToken) {
        let mut seen = stamps(&self.live.snapshot().settings);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CERT_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            let settings = self.live.snapshot().settings.clone();
            let now = stamps(&settings);
            if now == seen {
                continue;
            }
            match self.apply(settings) {
                Ok(applied) => {
                    info!(sha256 = %applied.fingerprint, generation = applied.generation, "certificate files changed on disk; reloaded");
                    seen = now;
                }
                Err(e) => {
                    warn!(error = %e, "certificate files changed but cannot be loaded yet; keeping the old certificate")
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
    next.metrics = current.metrics;
    next.max_sessions = current.max_sessions;
    next.log_format = current.log_format;
    next.transfer_log.clone_from(&current.transfer_log);
    next.transfer_log_format = current.transfer_log_format;
}

/// Modification time and length of the certificate, key and client CA files.
fn stamps(s: &Settings) -> Vec<Option<(SystemTime, u64)>> {
    let files: [&Option<PathBuf>; 3] = [&s.cert, &s.key, &s.client_ca];
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p.as_ref()?).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}
