//! A daemon's command log that a test can wait on without polling.
//!
//! The daemon is told to log to a FIFO in its temp dir instead of a file. A
//! thread reads the FIFO line by line into memory and wakes every waiter on
//! each line, so [`CommandLog::wait_until`] blocks on a condition variable
//! until the line it needs arrives (or a deadline passes).
//!
//! Reads are also exact: [`CommandLog::text`] first writes a numbered
//! barrier line into the FIFO and waits until the reader thread has passed
//! it. A FIFO keeps write order, so whatever the daemon had logged when
//! `text` was called is in the returned text. pyftpdlib and vsftpd log a
//! command before answering it, so once a client has seen a reply its
//! command is there; ProFTPD logs after replying, which is what
//! [`CommandLog::wait_for`] is for.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Starts a barrier line; no daemon writes a 0x01 byte in its log.
const BARRIER: &str = "\u{1}ftpsgate-barrier ";

/// How long [`CommandLog::text`] waits for its barrier; the reader thread
/// only has to drain a pipe, so this is only reached if it died.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// The log of one daemon (all its processes), fed through a FIFO.
pub struct CommandLog {
    fifo: PathBuf,
    shared: Arc<Shared>,
    /// Open for reading and writing: the FIFO always has a writer, so the
    /// reader never sees end-of-file between daemon sessions (inetd mode
    /// opens and closes the log per connection); barriers are written here.
    keeper: File,
    barriers: AtomicU64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    text: String,
    barriers_passed: u64,
    closed: bool,
}

impl CommandLog {
    /// Makes the FIFO `path` and starts its reader thread.
    pub fn create(path: &Path) -> io::Result<Self> {
        let status = Command::new("mkfifo")
            .arg("-m")
            .arg("0600")
            .arg(path)
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "mkfifo {}: {status}",
                path.display()
            )));
        }
        // Linux opens a FIFO read-write without blocking; with that writer
        // in place the read-only open below does not block either.
        let keeper = OpenOptions::new().read(true).write(true).open(path)?;
        let reader = File::open(path)?;
        let shared = Arc::new(Shared::default());
        let feed = shared.clone();
        thread::spawn(move || feed.read_from(reader));
        Ok(Self {
            fifo: path.to_owned(),
            shared,
            keeper,
            barriers: AtomicU64::new(0),
        })
    }

    /// Where the daemon must write its log.
    pub fn path(&self) -> &Path {
        &self.fifo
    }

    /// Everything the daemon has logged so far, raw.
    pub fn text(&self) -> String {
        let n = self.barriers.fetch_add(1, Ordering::Relaxed) + 1;
        // One short write to a pipe is atomic, so it cannot split a line
        // a daemon process writes at the same moment.
        if (&self.keeper)
            .write_all(format!("{BARRIER}{n}\n").as_bytes())
            .is_ok()
        {
            self.wait_until(|s| s.barriers_passed >= n, BARRIER_TIMEOUT);
        }
        self.lock().text.clone()
    }

    /// Blocks until `done(log text)` holds (true), the log closes or
    /// `timeout` passes (false). Woken by the reader thread on every line.
    pub fn wait_for(&self, done: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        self.wait_until(|s| done(&s.text), timeout)
    }

    fn wait_until(&self, done: impl Fn(&State) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if done(&state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.closed || left.is_zero() {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reader thread: until every writer is gone (the daemon is dead
    /// and the [`CommandLog`] dropped), appends each line and wakes waiters.
    fn read_from(&self, reader: File) {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).unwrap_or(0);
            let mut state = self.lock();
            if n == 0 {
                state.closed = true;
                self.changed.notify_all();
                return;
            }
            let text = String::from_utf8_lossy(&line);
            match text.strip_prefix(BARRIER) {
                Some(n) => state.barriers_passed = n.trim_end().parse().unwrap_or(u64::MAX),
                None => state.text.push_str(&text),
            }
            self.changed.notify_all();
        }
    }
}
