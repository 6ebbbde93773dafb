//! Subprocesses and sockets shared by every tool: [`run_with_timeout`] and
//! its [`ClientOutput`], killing a process group, [`Launch`] (a re-usable
//! command line for a daemon), and [`ReservedPort`] (a port the OS picked
//! that nobody else can take).

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::tools_dir;

/// What a client subprocess did.
#[derive(Debug)]
pub struct ClientOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status (a signal status if it was killed).
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// True if it was killed for running past its timeout.
    pub timed_out: bool,
    /// Wall-clock run time.
    pub elapsed: Duration,
}

impl ClientOutput {
    /// Exited 0 within its timeout.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics with the full output unless [`Self::success`].
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "client failed:\n{self}");
        self
    }

    /// Panics with the full output if the client succeeded (or hung).
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success() && !self.timed_out,
            "client should have failed (and not hung):\n{self}"
        );
        self
    }

    /// The last `key=value` value for `key` on stdout (ftps_client.py output).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields(key).pop()
    }

    /// Every `key=value` value for `key` on stdout, in order.
    pub fn fields(&self, key: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }
}

impl std::fmt::Display for ClientOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "$ {}\nstatus: {}{} after {:?}",
            self.command,
            self.status,
            if self.timed_out {
                " (TIMED OUT, killed)"
            } else {
                ""
            },
            self.elapsed
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs `cmd` with stdin closed, capturing stdout and stderr, and kills its
/// process group if it runs longer than `timeout`.
///
/// A thread waits for the exit and signals it over a channel, so the caller
/// blocks on that signal with `timeout` rather than polling.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> ClientOutput {
    let command = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
    let out_thread = read_all(child.stdout.take().expect("piped stdout"));
    let err_thread = read_all(child.stderr.take().expect("piped stderr"));
    let pid = child.id();
    let (exited_tx, exited) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = exited_tx.send(());
        status
    });
    let timed_out = exited.recv_timeout(timeout).is_err();
    if timed_out {
        // The child is still running (or exited a moment ago and its group
        // is empty, in which case this kill finds nobody).
        kill_process_group(pid);
    }
    let status = waiter
        .join()
        .expect("waiter thread")
        .unwrap_or_else(|e| panic!("wait {command}: {e}"));
    // A grandchild could keep the pipes open; the group kill above covers
    // the timeout case, and clients here do not daemonise.
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    ClientOutput {
        command,
        status,
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// Reads `r` to its end on a thread, lossily as UTF-8.
fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Sends SIGKILL to the process group `pgid` (a child spawned with
/// `process_group(0)` leads the group named by its pid).
pub fn kill_process_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills `child` and everything in its process group (it was spawned with
/// `process_group(0)`), then reaps it.
pub fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        kill_process_group(child.id());
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A daemon's command line, kept so it can be spawned again for every
/// connection (inetd mode), unlike a [`Command`].
#[derive(Clone, Debug)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Launch {
    /// Runs `program` (looked up on `PATH` if it has no slash).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `$FTPSGATE_TOOLS/bin/{name}` with `$FTPSGATE_TOOLS/lib` on
    /// `LD_LIBRARY_PATH` (where `.ci/install-deps.sh` unpacked the daemons).
    pub fn tool(name: &str) -> Self {
        let tools = tools_dir();
        let mut lib_path = tools.join("lib").into_os_string();
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
            lib_path.push(":");
            lib_path.push(old);
        }
        let mut launch = Self::new(tools.join("bin").join(name));
        launch.env.push(("LD_LIBRARY_PATH".into(), lib_path));
        launch
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends two arguments, typically an option and its value.
    pub fn args2(self, a: impl Into<OsString>, b: impl Into<OsString>) -> Self {
        self.arg(a).arg(b)
    }

    /// A fresh [`Command`] for this line; its stdio is still to be set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }
}

/// A TCP port on 127.0.0.1 that the OS picked and that stays reserved while
/// this lives, for tests that must configure a fixed port (a one-port
/// passive range).
///
/// The socket is bound with `SO_REUSEADDR` but never listens. On Linux that
/// keeps the port out of ephemeral allocation (`bind` to port 0, outgoing
/// connects), which is where another test or process would get it from,
/// and refuses binds without `SO_REUSEADDR`; a listener that sets
/// `SO_REUSEADDR` itself (ftpsgate's passive listeners, std's
/// `TcpListener`) can still bind and listen on it, again and again. Unlike
/// binding port 0 and dropping the socket, this leaves no window in which
/// the port can be taken.
pub struct ReservedPort {
    socket: Socket,
    port: u16,
}

impl ReservedPort {
    /// Reserves a port on 127.0.0.1. Panics if the OS has none.
    pub fn new() -> Self {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        socket.bind(&addr.into()).expect("bind 127.0.0.1:0");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("bound address");
        Self { socket, port }
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}
