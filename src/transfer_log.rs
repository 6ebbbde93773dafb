//! The transfer log (issue 9, "Records and logs"): one record per transfer
//! attempt (finished, refused or cut), as JSON lines or as the classic
//! `xferlog` line wu-ftpd, ProFTPD and vsftpd write, to a file or stdout.
//!
//! An [`EventSink`]: the session hands the record to a bounded queue and
//! never waits on the disk; one writer thread owns the file and reopens it
//! on request (SIGHUP and SIGUSR1, for logrotate). A full queue drops the
//! record and counts it; the drop count is logged when the writer catches up.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tracing::warn;

use crate::config::TransferLogFormat;
use crate::events::{
    civil_from_days, humantime_utc, DataMode, Direction, EventSink, SessionEvent, SessionInfo,
    TransferRecord, TransferResult,
};
use crate::ftp::command::Verb;
use crate::session::Prot;

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

enum Message {
    Line(String),
    Reopen,
}

/// The transfer-log sink; cheap to clone into `Events`.
#[derive(Clone)]
pub struct TransferLog {
    format: TransferLogFormat,
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl TransferLog {
    /// Opens `path` (`-` is stdout) for appending and starts the writer.
    /// Fails, naming the file, when it cannot be opened.
    pub fn open(path: &Path, format: TransferLogFormat) -> io::Result<TransferLog> {
        let out = Output::open(path)?;
        let (queue, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("transfer-log".into())
            .spawn(move || write_loop(out, rx, counter))?;
        Ok(TransferLog {
            format,
            queue,
            dropped,
        })
    }

    /// Reopens the file (logrotate moved it away).
    pub fn reopen(&self) {
        let _ = self.queue.try_send(Message::Reopen);
    }

    fn push(&self, line: String) {
        match self.queue.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl EventSink for TransferLog {
    fn event(&self, session: &SessionInfo, event: &SessionEvent) {
        let SessionEvent::TransferFinished(r) = event else {
            return;
        };
        let line = match self.format {
            TransferLogFormat::Json => Some(json_line(session, r)),
            TransferLogFormat::Xferlog => xferlog_line(session, r),
        };
        if let Some(line) = line {
            self.push(line);
        }
    }
}

/// Where lines go: a file (reopenable) or stdout.
enum Output {
    File(PathBuf, BufWriter<File>),
    Stdout,
}

impl Output {
    fn open(path: &Path) -> io::Result<Output> {
        if path == Path::new("-") {
            return Ok(Output::Stdout);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Output::File(path.to_path_buf(), BufWriter::new(file)))
    }

    fn write(&mut self, line: &str) -> io::Result<()> {
        match self {
            Output::File(_, w) => writeln!(w, "{line}"),
            Output::Stdout => writeln!(io::stdout().lock(), "{line}"),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(_, w) => w.flush(),
            Output::Stdout => io::stdout().lock().flush(),
        }
    }

    fn reopen(&mut self) {
        if let Output::File(path, w) = self {
            let _ = w.flush();
            match Output::open(path) {
                Ok(fresh) => *self = fresh,
                Err(e) => warn!(error = %e, "cannot reopen the transfer log; keeping the old file"),
            }
        }
    }
}

fn write_loop(mut out: Output, rx: Receiver<Message>, dropped: Arc<AtomicU64>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Message::Line(line) => {
                if let Err(e) = out.write(&line) {
                    warn!(error = %e, "transfer log write failed");
                }
            }
            Message::Reopen => out.reopen(),
        }
        // Flush whenever the queue is empty: records reach the disk promptly
        // without a syscall per record under load.
        if let Ok(next) = rx.try_recv() {
            match next {
                Message::Line(line) => {
                    let _ = out.write(&line);
                }
                Message::Reopen => out.reopen(),
            }
            continue;
        }
        let _ = out.flush();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            warn!(records = lost, "transfer log queue full; records dropped");
        }
    }
    let _ = out.flush();
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

fn result(r: &TransferResult) -> (&'static str, Option<String>) {
    match r {
        TransferResult::Complete => ("complete", None),
        TransferResult::Refused(why) => ("refused", Some(why.reason().to_string())),
        TransferResult::Declined => ("declined", None),
        TransferResult::Failed(e) => ("failed", Some(e.to_string())),
        TransferResult::Aborted => ("aborted", None),
    }
}

/// One JSON object per transfer.
pub fn json_line(s: &SessionInfo, r: &TransferRecord) -> String {
    let (outcome, reason) = result(&r.result);
    let tls = r.data_tls.as_ref();
    json!({
        "time": humantime_utc(r.started),
        "session": s.id,
        "client": s.client.ip().to_string(),
        "user": s.user,
        "backend": s.backend,
        "verb": r.verb.as_str(),
        "path": r.path,
        "direction": direction(r.direction),
        "bytes": r.bytes,
        "duration_ms": r.duration.as_millis() as u64,
        "code": r.code,
        "result": outcome,
        "reason": reason,
        "type": if r.binary { "binary" } else { "ascii" },
        "prot": match r.prot { Prot::Private => "P", Prot::Clear => "C" },
        "mode": r.data_mode.map(|m| match m { DataMode::Passive => "passive", DataMode::Active => "active" }),
        "tls_version": tls.map(|t| t.version),
        "tls_suite": tls.map(|t| t.suite),
        "tls_resumed": tls.map(|t| t.resumed),
    })
    .to_string()
}

/// The wu-ftpd `xferlog` line (the format ProFTPD and vsftpd write):
/// `time transfer-time host size name type action direction access user
/// service auth-method auth-user status`. Times are UTC. Only file
/// transfers are logged (as those servers do, not listings), and blanks in
/// the name become `_` so every field stays one word.
pub fn xferlog_line(s: &SessionInfo, r: &TransferRecord) -> Option<String> {
    if !matches!(r.verb, Verb::Retr | Verb::Stor | Verb::Appe | Verb::Stou) {
        return None;
    }
    let user = s.user.as_deref().unwrap_or("-");
    let anonymous = matches!(user, "anonymous" | "ftp");
    let name: String = r
        .path
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    Some(format!(
        "{} {} {} {} {} {} _ {} {} {} ftp 0 * {}",
        ctime(r.started),
        r.duration.as_secs_f64().round().max(1.0) as u64,
        s.client.ip(),
        r.bytes,
        if name.is_empty() { "-" } else { &name },
        if r.binary { 'b' } else { 'a' },
        match r.direction {
            Direction::Download => 'o',
            Direction::Upload => 'i',
        },
        if anonymous { 'a' } else { 'r' },
        user.replace(char::is_whitespace, "_"),
        if r.result == TransferResult::Complete {
            'c'
        } else {
            'i'
        },
    ))
}

/// `Mon Nov 30 21:49:27 2026`, the C `ctime` layout xferlog uses (UTC).
fn ctime(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{} {} {d:2} {:02}:{:02}:{:02} {y}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TlsDetails;
    use crate::session::Mode;
    use std::time::Duration;

    fn record() -> (SessionInfo, TransferRecord) {
        let info = SessionInfo {
            id: 7,
            client: "192.0.2.7:40000".parse().unwrap(),
            mode: Mode::Explicit,
            user: Some("alice".into()),
            backend: Some("east".into()),
        };
        let r = TransferRecord {
            started: UNIX_EPOCH + Duration::from_secs(1_796_075_367),
            verb: Verb::Retr,
            path: "reports/q3 final.csv".into(),
            direction: Direction::Download,
            bytes: 1_048_576,
            duration: Duration::from_millis(2400),
            code: 226,
            data_tls: Some(TlsDetails {
                version: "TLSv1.3",
                suite: "TLS13_AES_128_GCM_SHA256",
                resumed: true,
                client_cert: None,
            }),
            prot: Prot::Private,
            binary: true,
            data_mode: Some(DataMode::Passive),
            result: TransferResult::Complete,
        };
        (info, r)
    }

    #[test]
    fn xferlog_has_the_fourteen_fields() {
        let (info, r) = record();
        let line = xferlog_line(&info, &r).unwrap();
        assert_eq!(
            line,
            "Mon Nov 30 21:49:27 2026 2 192.0.2.7 1048576 reports/q3_final.csv b _ o r alice ftp 0 * c"
        );
        assert_eq!(line.split_whitespace().count(), 18, "ctime is 5 words");
        let mut listing = r.clone();
        listing.verb = Verb::List;
        assert!(xferlog_line(&info, &listing).is_none());
    }

    #[test]
    fn json_carries_every_field() {
        let (info, r) = record();
        let v: serde_json::Value = serde_json::from_str(&json_line(&info, &r)).unwrap();
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["path"], "reports/q3 final.csv");
        assert_eq!(v["direction"], "download");
        assert_eq!(v["bytes"], 1_048_576);
        assert_eq!(v["duration_ms"], 2400);
        assert_eq!(v["code"], 226);
        assert_eq!(v["result"], "complete");
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert_eq!(v["tls_resumed"], true);
        assert_eq!(v["prot"], "P");
        assert_eq!(v["mode"], "passive");
        assert_eq!(v["time"], "2026-11-30T21:49:27Z");
    }
}
