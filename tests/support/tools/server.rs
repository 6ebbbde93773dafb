//! The one launcher shape every real FTP server goes through ([`FtpServer`])
//! and what a test can ask of any of them ([`FtpBackend`]).
//!
//! The harness binds the control socket on 127.0.0.1:0 itself, before the
//! daemon runs, so the port is known and cannot be taken by anyone else (no
//! bind-and-drop, no retries). The daemon then gets its connections one of
//! two ways ([`Serving`]):
//! * pyftpdlib receives the listening socket as its stdin and accepts on it;
//! * vsftpd (`listen=NO`) and ProFTPD (`ServerType inetd`) run in inetd
//!   mode: a harness thread accepts, and spawns one daemon process per
//!   connection with the connection as its stdin and stdout.
//!
//! Readiness is the 220 greeting: [`FtpServer`]'s constructor connects, and
//! blocks reading the greeting (with a deadline). It sends no command, so
//! it adds nothing to the command log. It also proves that the generated
//! config works before any test traffic goes out.
//!
//! Each server owns a temp dir with the FTP root, the config, the daemon's
//! stderr and its [`CommandLog`]; drop kills every daemon process group.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::marker::PhantomData;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::command_log::CommandLog;
use super::process::{kill_group, Launch};
use super::PASS;

/// How long a backend may take to show its 220 greeting.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`FtpBackend::wait_for_command`] waits.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How a daemon gets its control connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// It accepts on the listening socket, handed over as its stdin.
    Listener,
    /// One process per connection, the connection as stdin and stdout.
    Inetd,
}

/// What differs between the FTP daemons; [`FtpServer`] does the rest.
pub trait Daemon {
    /// What `start_with` takes.
    type Options;
    /// Short name: `pyftpdlib`, `vsftpd` or `proftpd`.
    const NAME: &'static str;
    /// How it gets connections.
    const SERVING: Serving;
    /// The login it accepts (with [`PASS`]).
    const USER: &'static str;

    /// Writes any config into `files.dir` and returns the command line that
    /// serves (in [`Serving::Inetd`] mode: serves one connection).
    fn configure(files: &Files, opts: &Self::Options) -> io::Result<Launch>;

    /// The received commands in the raw log, one `VERB args` each.
    fn commands(log: &str) -> Vec<String>;
}

/// The paths a [`Daemon`] configures itself with.
pub struct Files {
    /// The temp dir (0755): config, stderr, anything else.
    pub dir: PathBuf,
    /// The FTP root (0777).
    pub root: PathBuf,
    /// Where the daemon must write its command log (a FIFO).
    pub log: PathBuf,
    /// The daemon's stderr, shown when it fails to start; a daemon that
    /// reports fatal errors in a log of its own should log here too.
    pub stderr: PathBuf,
}

/// A running real FTP server; see the module docs. [`super::PyFtpd`],
/// [`super::Vsftpd`] and [`super::Proftpd`] name it per daemon.
pub struct FtpServer<D: Daemon> {
    /// Control address (127.0.0.1 unless started on another, a port the OS chose).
    pub addr: SocketAddr,
    /// The directory the FTP user sees as `/`.
    pub root: PathBuf,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    // Drop order is field order: the daemons die before their log closes
    // and before the temp dir is removed.
    processes: Processes,
    log: CommandLog,
    files: Files,
    dir: TempDir,
    daemon: PhantomData<D>,
}

impl<D: Daemon> FtpServer<D> {
    /// Starts the daemon with `opts` and returns once it has greeted.
    pub fn try_start(opts: &D::Options) -> io::Result<Self> {
        Self::try_start_on(Ipv4Addr::LOCALHOST, opts)
    }

    /// Starts the daemon on `ip` (another loopback address plays another
    /// host) with `opts`; returns once it has greeted.
    pub fn try_start_on(ip: Ipv4Addr, opts: &D::Options) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ftpsgate-{}-", D::NAME))
            .tempdir()?;
        // An unprivileged session user must reach the root through it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let files = Files {
            dir: dir.path().to_owned(),
            root: dir.path().join("root"),
            log: dir.path().join("commands.fifo"),
            stderr: dir.path().join("stderr.log"),
        };
        fs::create_dir(&files.root)?;
        fs::set_permissions(&files.root, fs::Permissions::from_mode(0o777))?;
        let log = CommandLog::create(&files.log)?;
        let launch = D::configure(&files, opts)?;
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let stderr = files.stderr.clone();
        let processes = match D::SERVING {
            Serving::Listener => {
                let stdin = Stdio::from(OwnedFd::from(listener));
                Processes::Listener(spawn(&launch, stdin, Stdio::null(), &stderr)?)
            }
            Serving::Inetd => Processes::Inetd(Inetd::start(listener, launch, stderr)?),
        };
        let server = Self {
            addr,
            root: files.root.clone(),
            user: D::USER.into(),
            pass: PASS.into(),
            processes,
            log,
            files,
            dir,
            daemon: PhantomData,
        };
        server.read_greeting()?;
        Ok(server)
    }

    /// Starts the daemon with `opts`; panics if it cannot.
    pub fn start_with_options(opts: &D::Options) -> Self {
        Self::try_start(opts).unwrap_or_else(|e| panic!("starting {} backend: {e}", D::NAME))
    }

    /// Connects and reads the greeting: the readiness signal. Blocks until
    /// the reply is complete, the daemon hangs up, or [`READY_TIMEOUT`].
    fn read_greeting(&self) -> io::Result<String> {
        let failed = |why: String| {
            let stderr = fs::read_to_string(&self.files.stderr).unwrap_or_default();
            io::Error::other(format!(
                "{} on {} did not greet: {why}\n--- stderr ---\n{stderr}",
                D::NAME,
                self.addr
            ))
        };
        let stream = TcpStream::connect(self.addr).map_err(|e| failed(e.to_string()))?;
        stream.set_read_timeout(Some(READY_TIMEOUT))?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return Err(failed(format!("connection closed after {greeting:?}"))),
                Ok(_) => greeting.push_str(&line),
                Err(e) => return Err(failed(format!("{e} after {greeting:?}"))),
            }
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                break;
            }
        }
        if !greeting.starts_with("220") {
            return Err(failed(format!("answered {greeting:?}")));
        }
        Ok(greeting)
    }
}

impl<D: Daemon> FtpBackend for FtpServer<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn user(&self) -> &str {
        &self.user
    }
    fn pass(&self) -> &str {
        &self.pass
    }
    fn commands_seen(&self) -> String {
        self.log.text()
    }
    fn commands(&self) -> Vec<String> {
        D::commands(&self.commands_seen())
    }
    fn wait_for_command(&self, prefix: &str) -> bool {
        let matches = |log: &str| D::commands(log).iter().any(|c| is_command(c, prefix));
        // The barrier in `commands_seen` first: a command logged before
        // this call is found even if the reader thread is behind.
        matches(&self.commands_seen()) || self.log.wait_for(matches, COMMAND_TIMEOUT)
    }
}

/// Spawns `launch` in its own process group with stderr appended to
/// `stderr`.
fn spawn(launch: &Launch, stdin: Stdio, stdout: Stdio, stderr: &Path) -> io::Result<Child> {
    let err = OpenOptions::new().create(true).append(true).open(stderr)?;
    launch
        .command()
        .stdin(stdin)
        .stdout(stdout)
        .stderr(err)
        .process_group(0)
        .spawn()
}

/// The daemon processes of one server.
enum Processes {
    /// The one process that accepts on its own.
    Listener(Child),
    /// The accepting thread and its per-connection processes.
    Inetd(Inetd),
}

impl Drop for Processes {
    fn drop(&mut self) {
        match self {
            Processes::Listener(child) => kill_group(child),
            Processes::Inetd(inetd) => inetd.stop(),
        }
    }
}

/// inetd for one daemon: accepts on the harness's listener and runs the
/// daemon once per connection, the connection as its stdin and stdout.
struct Inetd {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Child>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Inetd {
    fn start(listener: TcpListener, launch: Launch, stderr: PathBuf) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        let (stop, list) = (stopping.clone(), children.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                // On failure the connection just closes; the client (or the
                // greeting check) reports it.
                let Ok(child) = serve_one(&launch, conn, &stderr) else {
                    continue;
                };
                let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
                list.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                list.push(child);
            }
        });
        Ok(Self {
            addr,
            stopping,
            children,
            thread: Some(thread),
        })
    }

    /// Stops accepting, then kills every daemon process.
    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; the thread sees the flag and returns.
        if TcpStream::connect(self.addr).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        let mut list = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for child in list.iter_mut() {
            kill_group(child);
        }
    }
}

/// Runs the daemon for one connection, the connection as stdin and stdout.
fn serve_one(launch: &Launch, conn: TcpStream, stderr: &Path) -> io::Result<Child> {
    let stdin = Stdio::from(OwnedFd::from(conn.try_clone()?));
    spawn(launch, stdin, Stdio::from(OwnedFd::from(conn)), stderr)
}

/// What every real backend offers; lets a test run against any of them.
pub trait FtpBackend {
    /// Short name: `pyftpdlib`, `vsftpd` or `proftpd`.
    fn name(&self) -> &'static str;
    /// The plaintext control address (127.0.0.1:port).
    fn addr(&self) -> SocketAddr;
    /// The directory the FTP user sees as `/`.
    fn root(&self) -> &Path;
    /// Login name.
    fn user(&self) -> &str;
    /// Password.
    fn pass(&self) -> &str;
    /// The raw command log, in the daemon's own format: everything the
    /// daemon had logged when this was called.
    fn commands_seen(&self) -> String;
    /// The commands received, one `VERB args` string each, oldest first
    /// (vsftpd shows `PASS <password>`, proftpd `PASS (hidden)`).
    fn commands(&self) -> Vec<String>;
    /// Blocks (up to 10 s) until a command starting with `prefix`
    /// (case-insensitive) is logged; for commands the backend receives
    /// after the client's last reply (an ABOR the proxy sends on its own)
    /// or daemons that log a command after replying (ProFTPD). False on
    /// timeout.
    fn wait_for_command(&self, prefix: &str) -> bool;

    /// Just the verbs of [`Self::commands`], upper-cased.
    fn verbs(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| c.split(' ').next().unwrap_or("").to_ascii_uppercase())
            .collect()
    }

    /// Whether any received command starts with `prefix` (case-insensitive,
    /// after any Telnet IP/Synch bytes), e.g. `saw("USER")`, `saw("ABOR")`.
    fn saw(&self, prefix: &str) -> bool {
        self.commands().iter().any(|c| is_command(c, prefix))
    }

    /// The host path of FTP path `rel` (relative to the root).
    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel.trim_start_matches('/'))
    }

    /// Writes `data` to `rel` under the root, mode 0666 so the FTP user can
    /// also overwrite or append to it. Returns the host path.
    fn write_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
            fs::set_permissions(parent, fs::Permissions::from_mode(0o777)).ok();
        }
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        path
    }
}

/// Whether `command` starts with `prefix`, ignoring case and any Telnet
/// bytes before the verb: an urgent ABOR arrives as `IAC IP IAC DM ABOR`
/// (RFC 959 §4.1.3), which pyftpdlib logs as it came.
fn is_command(command: &str, prefix: &str) -> bool {
    let verb_on = command.trim_start_matches(|c: char| !c.is_ascii_graphic());
    verb_on
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Counts how often each verb appears in `commands` (upper-cased).
pub fn verb_counts(commands: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for c in commands {
        let verb = c.split(' ').next().unwrap_or("").to_ascii_uppercase();
        *counts.entry(verb).or_insert(0) += 1;
    }
    counts
}
