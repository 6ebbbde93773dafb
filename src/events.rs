//! The session event vocabulary and the one sink it flows through (STYLE.md
//! 2.14). The control loop emits one [`SessionEvent`] per fact, at exactly
//! one place each; subscribers ([`EventSink`]s: today the tracing log, later
//! transfer logs, metrics and audit counters) never reach into the driver,
//! so a log line and a counter can never disagree.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::data::DataError;
use crate::error::Side;
use crate::ftp::command::Verb;
use crate::session::{Mode, Prot, Refusal};

/// Who an event is about: fixed at accept, `user` filled in after USER.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id, unique per process run.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The listener it came in on.
    pub mode: Mode,
    /// The user name sent with USER, once known (never the password).
    pub user: Option<String>,
    /// The backend's name, once connected.
    pub backend: Option<String>,
}

/// One fact about a session.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// The session task started.
    Opened,
    /// The control connection's TLS handshake completed.
    TlsEstablished(TlsDetails),
    /// The listener turned the connection away before a session started
    /// (421 at connect): `max_sessions`, `max_sessions_per_ip` or a ban; or
    /// closed it on a listener behind a balancer: `proxy_untrusted` (not from
    /// `proxy_protocol_from`), `proxy_invalid`, `proxy_timeout` (no valid
    /// PROXY header in time) or `proxy_pending` (too many headers awaited).
    /// `client` is then the connection's own peer.
    Rejected {
        /// `max_sessions`, `max_sessions_per_ip`, `banned` or a `proxy_` reason.
        reason: &'static str,
    },
    /// This session's failed login got its address banned until `until`.
    Banned {
        /// When the ban ends.
        until: SystemTime,
    },
    /// The backend could not be reached (the client got 421).
    BackendUnreachable {
        /// The backend's name (the address for a single backend).
        backend: String,
        /// Why.
        error: String,
    },
    /// The backend answered the connect.
    BackendConnected {
        /// The backend's name (the address for a single backend).
        name: String,
        /// The backend's address.
        backend: SocketAddr,
        /// How long connecting took.
        elapsed: Duration,
    },
    /// The backend accepted the login (the user is in [`SessionInfo`]).
    LoginSucceeded,
    /// The backend refused the login with this code.
    LoginFailed {
        /// The backend's reply code.
        code: u16,
    },
    /// The edge policy refused a request.
    PolicyRefused(Refusal),
    /// Audit mode let a request through that enforcing would have refused.
    PolicyAudited(Refusal),
    /// A transfer attempt ended, however it ended.
    TransferFinished(TransferRecord),
    /// The session ended.
    Closed {
        /// Why, when it did not end with QUIT or the client's close.
        error: Option<Ended>,
        /// How long it lasted.
        duration: Duration,
    },
}

/// Why a session ended early.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Who caused it.
    pub side: Side,
    /// An everyday ending (idle timeout, shutdown, a client that went away),
    /// not worth a warning.
    pub routine: bool,
    /// What happened.
    pub message: String,
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDetails {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The IANA cipher suite name.
    pub suite: &'static str,
    /// The handshake resumed a session.
    pub resumed: bool,
    /// The client certificate's subject, when one was presented.
    pub client_cert: Option<String>,
}

/// Which way a transfer's bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Backend → client (RETR, LIST, NLST, MLSD).
    Download,
    /// Client → backend (STOR, STOU, APPE).
    Upload,
}

/// Who opened the client's data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    /// PASV/EPSV: the client connected to the proxy.
    Passive,
    /// PORT/EPRT: the proxy connected to the client.
    Active,
}

/// How a transfer attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferResult {
    /// Every byte moved and the backend confirmed it.
    Complete,
    /// Refused by the edge policy before anything reached the backend.
    Refused(Refusal),
    /// The backend refused or failed it (its final reply is the code).
    Declined,
    /// The data path failed.
    Failed(DataError),
    /// The client sent ABOR.
    Aborted,
}

/// One transfer attempt, as a transfer log or a metric needs it.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    /// When the transfer command arrived.
    pub started: SystemTime,
    /// RETR, STOR, LIST...
    pub verb: Verb,
    /// The argument exactly as the client sent it (lossy UTF-8).
    pub path: String,
    /// Download or upload.
    pub direction: Direction,
    /// Payload bytes moved.
    pub bytes: u64,
    /// From the transfer command to its final reply.
    pub duration: Duration,
    /// The final reply code the client got.
    pub code: u16,
    /// The client data connection's TLS, when PROT P.
    pub data_tls: Option<TlsDetails>,
    /// The PROT level in force.
    pub prot: Prot,
    /// TYPE I (binary) was in force rather than ASCII.
    pub binary: bool,
    /// Passive or active on the client side.
    pub data_mode: Option<DataMode>,
    /// How it ended.
    pub result: TransferResult,
}

/// A subscriber to session events.
pub trait EventSink: Send + Sync {
    /// Called once per event, on the session's task; must not block.
    fn event(&self, session: &SessionInfo, event: &SessionEvent);
}

/// The sinks every session reports to.
#[derive(Clone)]
pub struct Events {
    sinks: Arc<[Arc<dyn EventSink>]>,
}

impl Events {
    /// Events delivered to `sinks`, in order.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Events {
        Events {
            sinks: sinks.into(),
        }
    }

    /// The default: the tracing log only.
    pub fn tracing() -> Events {
        Events::new(vec![Arc::new(TracingSink)])
    }

    /// `sink` followed by these sinks: a counting sink added this way has
    /// counted an event by the time any later sink (a log, a test's
    /// recorder) sees it.
    pub fn with_first(&self, sink: Arc<dyn EventSink>) -> Events {
        let mut sinks = vec![sink];
        sinks.extend(self.sinks.iter().cloned());
        Events::new(sinks)
    }

    /// Delivers one event to every sink.
    pub fn emit(&self, session: &SessionInfo, event: SessionEvent) {
        for sink in self.sinks.iter() {
            sink.event(session, &event);
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Events({} sinks)", self.sinks.len())
    }
}

/// Writes each event as one tracing line (STYLE.md 2.9 levels); the session
/// span around the caller adds id, client and user.
#[derive(Debug, Clone, Copy)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn event(&self, session: &SessionInfo, event: &SessionEvent) {
        match event {
            SessionEvent::Opened => info!(mode = ?session.mode, "accepted"),
            SessionEvent::TlsEstablished(t) => info!(
                version = t.version,
                suite = t.suite,
                resumed = t.resumed,
                client_cert = t.client_cert.as_deref().unwrap_or("none"),
                "control TLS established"
            ),
            SessionEvent::Rejected { reason } if reason.starts_with("proxy_") => {
                warn!(reason, "refused at connect (closed: PROXY protocol)")
            }
            SessionEvent::Rejected { reason } => info!(reason, "refused at connect (421)"),
            SessionEvent::Banned { until } => warn!(
                until = %humantime_utc(*until),
                "address banned after repeated login failures"
            ),
            SessionEvent::BackendUnreachable { backend, error } => {
                warn!(%backend, %error, "backend unreachable")
            }
            SessionEvent::BackendConnected {
                name,
                backend,
                elapsed,
            } => {
                info!(backend = %name, addr = %backend, ms = elapsed.as_millis() as u64, "backend connected")
            }
            SessionEvent::LoginSucceeded => info!(
                user = session.user.as_deref().unwrap_or(""),
                "login succeeded"
            ),
            SessionEvent::LoginFailed { code } => {
                warn!(
                    user = session.user.as_deref().unwrap_or(""),
                    code, "login failed"
                )
            }
            SessionEvent::PolicyRefused(r) => {
                info!(
                    reason = r.reason(),
                    code = r.reply().code,
                    "refused by policy"
                )
            }
            SessionEvent::PolicyAudited(r) => warn!(
                user = session.user.as_deref().unwrap_or(""),
                reason = r.reason(),
                code = r.reply().code,
                "would refuse (audit mode)"
            ),
            SessionEvent::TransferFinished(r) => transfer_line(r),
            SessionEvent::Closed { error, duration } => closed_line(error, *duration),
        }
    }
}

/// `2026-11-30T21:49:27Z`, for log lines.
pub fn humantime_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn transfer_line(r: &TransferRecord) {
    let ms = r.duration.as_millis() as u64;
    match &r.result {
        TransferResult::Complete => {
            info!(verb = %r.verb, path = %r.path, bytes = r.bytes, ms, code = r.code, "transfer finished")
        }
        TransferResult::Aborted => {
            info!(verb = %r.verb, path = %r.path, bytes = r.bytes, ms, code = r.code, "transfer aborted by client")
        }
        TransferResult::Refused(why) => {
            info!(verb = %r.verb, path = %r.path, code = r.code, reason = why.reason(), "transfer refused")
        }
        TransferResult::Declined => {
            info!(verb = %r.verb, path = %r.path, bytes = r.bytes, ms, code = r.code, "transfer declined by the backend")
        }
        TransferResult::Failed(e) => {
            warn!(verb = %r.verb, path = %r.path, bytes = r.bytes, ms, code = r.code, error = %e, "transfer failed")
        }
    }
}

fn closed_line(error: &Option<Ended>, duration: Duration) {
    let secs = duration.as_secs();
    match error {
        None => debug!(secs, "session closed"),
        Some(e) if e.routine => info!(secs, side = ?e.side, error = %e.message, "session ended"),
        Some(e) => warn!(secs, side = ?e.side, error = %e.message, "session ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(humantime_utc(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_075_367);
        assert_eq!(humantime_utc(t), "2026-11-30T21:49:27Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
