//! Real FTP servers and real FTPS clients for the interop tests
//! (`tests/support/tools.rs`).
//!
//! This module owns:
//! * [`tool_available`]: the "is curl / lftp / python3+pyftpdlib / vsftpd /
//!   proftpd installed" check, which skips loudly locally and fails in CI;
//! * three real plaintext FTP backends, each on a free loopback port with its
//!   own temporary root, user, and command log, killed on drop:
//!   [`PyFtpd`] (pyftpdlib, via `pyftpd_backend.py`), [`Vsftpd`], [`Proftpd`]
//!   (binaries unpacked by `.ci/install-deps.sh` under `$FTPSGATE_TOOLS`);
//! * three real clients run as subprocesses with a hard timeout:
//!   curl ([`curl_download`], [`curl_upload`], [`curl_list`]), lftp
//!   ([`lftp_run`]) and CPython ftplib ([`py_client`], via `ftps_client.py`);
//! * [`sha256_file`] and [`write_random_file`].
//!
//! Include it from an integration test with
//! `#[path = "support/tools.rs"] mod tools;`. It uses only std, `tempfile`
//! and `sha2`.
//!
//! Credentials: pyftpdlib and proftpd log in `alice` / `secret`. vsftpd only
//! logs in real system users (through PAM), so it uses the system user
//! `ftpsgate-test` / `secret` and the PAM service `ftpsgate-vsftpd`, both
//! created by `.ci/install-deps.sh`. Use the backend's `user` and `pass`
//! fields rather than literals.
//!
//! Files: the FTP root is world-writable and vsftpd/proftpd run the session
//! as an unprivileged user, so a file the test creates itself should be
//! written with [`FtpBackend::write_file`] (mode 0666) if the backend must
//! be able to overwrite or append to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Default hard limit for one client subprocess; it is killed after this.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a backend may take to show its 220 greeting.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting a daemon that cannot bind port 0 on a fresh port.
const START_ATTEMPTS: usize = 5;

/// The login of pyftpdlib and proftpd.
pub const USER: &str = "alice";
/// The password of every backend.
pub const PASS: &str = "secret";
/// The system user vsftpd logs in (created by `.ci/install-deps.sh`).
pub const VSFTPD_USER: &str = "ftpsgate-test";
/// The PAM service file vsftpd authenticates with (created by install-deps).
pub const VSFTPD_PAM_SERVICE: &str = "ftpsgate-vsftpd";

/// SHA-512 crypt of [`PASS`] (`openssl passwd -6 -salt ftpsgatetest secret`),
/// for proftpd's `AuthUserFile`.
const PASS_CRYPT: &str = "$6$ftpsgatetest$2S.yF60TZuMjgNjDz/LNho2HCNcUCMEp0hkIIQDVQXrcDiQEISjkHRw1RNiIg2kPAi69MxkDfaVfisg/8KhQI.";

// ---------------------------------------------------------------------------
// Locations and tool checks
// ---------------------------------------------------------------------------

/// `tests/support` of this crate (where the Python helpers live).
pub fn support_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("support")
}

/// Where `.ci/install-deps.sh` unpacked vsftpd and proftpd: `$FTPSGATE_TOOLS`,
/// default `/opt/ftpsgate-tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("FTPSGATE_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/opt/ftpsgate-tools"),
    }
}

/// The Python interpreter: `$FTPSGATE_PYTHON`, default `python3` on `PATH`.
pub fn python() -> String {
    std::env::var("FTPSGATE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// True when running in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Whether the real tool `name` can be used: `curl`, `lftp`, `python3`
/// (which must have pyftpdlib; `pyftpdlib` is accepted as a synonym),
/// `vsftpd` or `proftpd` (which also need the setup of
/// `.ci/install-deps.sh`).
///
/// A missing tool panics under CI (so CI fails) and otherwise prints
/// `SKIPPED: no {name}` to stderr and returns false:
///
/// ```ignore
/// if !tool_available("lftp") { return; }
/// ```
pub fn tool_available(name: &str) -> bool {
    let problem = match name {
        "curl" => check_runs(Command::new("curl").arg("--version")),
        "lftp" => check_runs(Command::new("lftp").arg("--version")),
        "python3" | "pyftpdlib" => check_runs(
            Command::new(python())
                .arg("-c")
                .arg("import ftplib, ssl, pyftpdlib"),
        ),
        "vsftpd" => check_vsftpd(),
        "proftpd" => check_runs(daemon_command("proftpd").arg("-v")),
        other => panic!("tool_available: unknown tool {other:?}"),
    };
    match problem {
        None => true,
        Some(why) if in_ci() => panic!(
            "{name} is required in CI but is not usable ({why}); \
             .ci/install-deps.sh should have installed it"
        ),
        Some(why) => {
            // Straight to the process's stderr, not `eprintln!`: libtest
            // captures the print macros, and a skip must never be quiet.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED: no {name} ({why}; run .ci/install-deps.sh as root)"
            );
            false
        }
    }
}

/// [`tool_available`] for each of `names` (all checked, so every missing
/// one is reported); true if all are available.
pub fn tools_available(names: &[&str]) -> bool {
    let mut all = true;
    for name in names {
        all &= tool_available(name);
    }
    all
}

/// Runs `cmd` quietly; `None` if it exited 0, else why not.
fn check_runs(cmd: &mut Command) -> Option<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`{program}` exited with {s}")),
        Err(e) => Some(format!("cannot run `{program}`: {e}")),
    }
}

fn check_vsftpd() -> Option<String> {
    let bin = tools_dir().join("bin").join("vsftpd");
    if !bin.exists() {
        return Some(format!("{} does not exist", bin.display()));
    }
    let pam = Path::new("/etc/pam.d").join(VSFTPD_PAM_SERVICE);
    if !pam.exists() {
        return Some(format!("{} does not exist", pam.display()));
    }
    if let Some(why) = check_runs(Command::new("getent").args(["passwd", VSFTPD_USER])) {
        return Some(format!("no system user {VSFTPD_USER}: {why}"));
    }
    // `vsftpd -v` writes its version to fd 0 and exits 0.
    check_runs(daemon_command("vsftpd").arg("-v"))
}

/// A `Command` for `$FTPSGATE_TOOLS/bin/{name}` with `$FTPSGATE_TOOLS/lib`
/// on `LD_LIBRARY_PATH`.
fn daemon_command(name: &str) -> Command {
    let tools = tools_dir();
    let mut cmd = Command::new(tools.join("bin").join(name));
    let mut lib_path = tools.join("lib").into_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        if !old.is_empty() {
            lib_path.push(":");
            lib_path.push(old);
        }
    }
    cmd.env("LD_LIBRARY_PATH", lib_path);
    cmd
}

// ---------------------------------------------------------------------------
// Files and hashes
// ---------------------------------------------------------------------------

/// Lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `len` bytes of deterministic pseudo-random content to `path`
/// (the same `len` always gives the same bytes; different lengths give
/// unrelated streams) and returns its SHA-256 in lowercase hex.
pub fn write_random_file(path: impl AsRef<Path>, len: u64) -> String {
    let path = path.as_ref();
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut rng = SplitMix64(0x5eed_f7b5_9a7e_0000 ^ len);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).expect("chunk fits usize");
        rng.fill(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    file.sync_all().ok();
    hex(&hasher.finalize())
}

/// Deterministic pseudo-random bytes (same `seed` and `len`, same bytes).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    SplitMix64(seed).fill(&mut out);
    out
}

/// SplitMix64: tiny, fast, good enough for test payloads.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 right now (bind :0, read, drop). Another
/// process may take it before it is used: callers retry.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// A string unique within this machine and time, to tag a daemon's banner.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills `child` and everything in its process group (it was spawned with
/// `process_group(0)`, so the group id is its pid), then reaps it.
fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
    }
    let _ = child.wait();
}

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
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read_all = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_thread = read_all(Box::new(stdout));
    let err_thread = read_all(Box::new(stderr));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                kill_group(&mut child);
                break child.wait().expect("wait for killed child");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait {command}: {e}"),
        }
    };
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

/// Polls `addr` until a connection yields a 220 greeting containing
/// `banner`, the daemon exits, or [`READY_TIMEOUT`] passes. The probe
/// connection closes without sending a command, so it adds nothing to the
/// backend's command log.
fn wait_for_greeting(addr: SocketAddr, child: &mut Child, banner: &str) -> io::Result<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "daemon exited early with {status}"
            )));
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut reader = BufReader::new(stream);
            let mut greeting = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    break;
                }
                greeting.push_str(&line);
                if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                    break;
                }
            }
            if greeting.starts_with("220") && greeting.contains(banner) {
                return Ok(greeting);
            }
            return Err(io::Error::other(format!(
                "{addr} answered {greeting:?}, not our daemon (banner {banner:?})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no greeting on {addr} within {READY_TIMEOUT:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

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
    /// The raw command log, in the daemon's own format.
    fn commands_seen(&self) -> String;
    /// The commands received, one `VERB args` string each, oldest first
    /// (vsftpd shows `PASS <password>`, proftpd `PASS (hidden)`).
    fn commands(&self) -> Vec<String>;

    /// Just the verbs of [`Self::commands`], upper-cased.
    fn verbs(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| c.split(' ').next().unwrap_or("").to_ascii_uppercase())
            .collect()
    }

    /// Whether any received command starts with `prefix` (case-insensitive),
    /// e.g. `saw("USER")`, `saw("REST 1000")`.
    fn saw(&self, prefix: &str) -> bool {
        let prefix = prefix.to_ascii_uppercase();
        self.commands()
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with(&prefix))
    }

    /// Polls the command log (up to 10 s) until a command starts with
    /// `prefix`; for daemons that log a command only after replying.
    fn wait_for_command(&self, prefix: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.saw(prefix) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
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

/// Creates `tmp/root` (0777, inside a 0755 temp dir so an unprivileged FTP
/// session user can reach it).
fn make_dirs(prefix: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod tmp");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("create root");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).expect("chmod root");
    (dir, root)
}

fn read_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn log_file(dir: &Path, name: &str) -> (File, File) {
    let f = File::create(dir.join(name)).expect("create daemon output file");
    let g = f.try_clone().expect("clone file handle");
    (f, g)
}

/// Options for [`PyFtpd::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PyFtpdOptions {
    /// Commands the server answers with `500 not understood` (and omits
    /// from FEAT), e.g. `["EPSV"]` so the proxy must fall back to PASV.
    pub disabled_commands: Vec<String>,
    /// Address to advertise in 227 replies instead of the real one: e.g.
    /// `0.0.0.0`, or a foreign address. Use a loopback address such as
    /// `127.0.0.2` as the foreign one: tests must never send traffic
    /// outside 127.0.0.0/8, even by mistake.
    pub masquerade_address: Option<String>,
}

impl PyFtpdOptions {
    /// EPSV (and EPRT) disabled: `500` for both.
    pub fn no_epsv() -> Self {
        Self {
            disabled_commands: vec!["EPSV".into(), "EPRT".into()],
            ..Self::default()
        }
    }

    /// PASV replies advertise `addr` (e.g. `"0.0.0.0"`, `"127.0.0.2"`).
    pub fn masquerade(addr: &str) -> Self {
        Self {
            masquerade_address: Some(addr.to_owned()),
            ..Self::default()
        }
    }
}

/// pyftpdlib plaintext backend (`tests/support/pyftpd_backend.py`): user
/// `alice`/`secret`, port chosen by the OS, every received line logged.
pub struct PyFtpd {
    /// Control address.
    pub addr: SocketAddr,
    /// FTP root.
    pub root: PathBuf,
    /// Login name (`alice`).
    pub user: String,
    /// Password (`secret`).
    pub pass: String,
    log: PathBuf,
    child: Child,
    dir: TempDir,
}

impl PyFtpd {
    /// Starts with default options. Panics if it cannot start.
    pub fn start() -> Self {
        Self::start_with(PyFtpdOptions::default())
    }

    /// Starts with `opts`. Panics if it cannot start.
    pub fn start_with(opts: PyFtpdOptions) -> Self {
        Self::try_start(opts).unwrap_or_else(|e| panic!("starting pyftpdlib backend: {e}"))
    }

    /// Starts with `opts`.
    pub fn try_start(opts: PyFtpdOptions) -> io::Result<Self> {
        let (dir, root) = make_dirs("ftpsgate-pyftpd-");
        let log = dir.path().join("commands.log");
        File::create(&log)?;
        let stderr = File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(python());
        cmd.arg(support_dir().join("pyftpd_backend.py"))
            .arg("--root")
            .arg(&root)
            .arg("--log")
            .arg(&log)
            .args(["--user", USER, "--password", PASS]);
        for c in &opts.disabled_commands {
            cmd.args(["--disable", c]);
        }
        if let Some(m) = &opts.masquerade_address {
            cmd.args(["--masquerade", m]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()?;
        // The first stdout line is the port; read it on a thread so a hung
        // interpreter cannot hang the test.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let port = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) => line.trim().parse::<u16>().ok(),
            _ => None,
        };
        let Some(port) = port else {
            kill_group(&mut child);
            let err = read_log(&dir.path().join("stderr.log"));
            return Err(io::Error::other(format!(
                "pyftpd_backend.py printed no port; stderr:\n{err}"
            )));
        };
        let addr = loopback(port);
        if let Err(e) = wait_for_greeting(addr, &mut child, "ftpsgate-pyftpd") {
            kill_group(&mut child);
            let err = read_log(&dir.path().join("stderr.log"));
            return Err(io::Error::other(format!("{e}; stderr:\n{err}")));
        }
        Ok(Self {
            addr,
            root,
            user: USER.into(),
            pass: PASS.into(),
            log,
            child,
            dir,
        })
    }
}

impl FtpBackend for PyFtpd {
    fn name(&self) -> &'static str {
        "pyftpdlib"
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
        read_log(&self.log)
    }
    fn commands(&self) -> Vec<String> {
        self.commands_seen().lines().map(str::to_owned).collect()
    }
}

impl Drop for PyFtpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Starts a daemon that needs its port in its config: picks a free port,
/// writes the config with `make_conf(port, banner)`, runs `make_cmd`, and
/// waits for a greeting with our banner; retries on another port if that
/// fails (port taken in the meantime).
fn start_on_free_port(
    dir: &Path,
    what: &str,
    make_conf: &dyn Fn(u16, &str) -> io::Result<()>,
    make_cmd: &dyn Fn() -> Command,
) -> io::Result<(SocketAddr, Child)> {
    let mut errors = Vec::new();
    for attempt in 0..START_ATTEMPTS {
        let port = free_port();
        let banner = format!("ftpsgate-{what} {}", nonce());
        make_conf(port, &banner)?;
        let (out, err) = log_file(dir, &format!("{what}.out.{attempt}"));
        let mut child = make_cmd()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()?;
        let addr = loopback(port);
        match wait_for_greeting(addr, &mut child, &banner) {
            Ok(_) => return Ok((addr, child)),
            Err(e) => {
                kill_group(&mut child);
                let output = read_log(&dir.join(format!("{what}.out.{attempt}")));
                errors.push(format!("port {port}: {e}; output: {output}"));
            }
        }
    }
    Err(io::Error::other(format!(
        "{what} did not start in {START_ATTEMPTS} attempts:\n{}",
        errors.join("\n")
    )))
}

/// vsftpd 3 plaintext backend in the foreground, on a free port.
///
/// Logs in the system user `ftpsgate-test` / `secret` through the PAM
/// service `ftpsgate-vsftpd` (both made by `.ci/install-deps.sh`);
/// `local_root` is the temp root. Default data-connection peer checks
/// (`pasv_promiscuous=NO`, `port_promiscuous=NO`) are kept. The sandbox
/// features that fail in containers (`seccomp_sandbox`, `isolate`,
/// `isolate_network`) are off.
pub struct Vsftpd {
    /// Control address.
    pub addr: SocketAddr,
    /// FTP root (`local_root`).
    pub root: PathBuf,
    /// Login name (`ftpsgate-test`).
    pub user: String,
    /// Password (`secret`).
    pub pass: String,
    log: PathBuf,
    child: Child,
    dir: TempDir,
}

impl Vsftpd {
    /// Starts vsftpd. Panics if it cannot start.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts vsftpd with `extra_conf` (`key=value` lines) appended to the
    /// generated config; later lines win. The greeting must stay plaintext
    /// (readiness reads it), so `implicit_ssl=YES` cannot be used; explicit
    /// `ssl_enable=YES` can. Panics if it cannot start.
    pub fn start_with(extra_conf: &str) -> Self {
        Self::try_start(extra_conf).unwrap_or_else(|e| panic!("starting vsftpd backend: {e}"))
    }

    /// Starts vsftpd with `extra_conf` appended to the generated config.
    pub fn try_start(extra_conf: &str) -> io::Result<Self> {
        let (dir, root) = make_dirs("ftpsgate-vsftpd-");
        let empty = dir.path().join("empty");
        fs::create_dir(&empty)?;
        let log = dir.path().join("vsftpd.log");
        File::create(&log)?;
        let conf = dir.path().join("vsftpd.conf");
        let make_conf = |port: u16, banner: &str| {
            fs::write(
                &conf,
                format!(
                    "# Generated by tests/support/tools.rs (Vsftpd::start)\n\
                     listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\n\
                     listen_port={port}\nbackground=NO\n\
                     ftpd_banner={banner}\n\
                     anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\n\
                     local_umask=022\nlocal_root={root}\nchroot_local_user=NO\n\
                     pam_service_name={pam}\nuserlist_enable=NO\ntcp_wrappers=NO\n\
                     seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                     secure_chroot_dir={empty}\n\
                     ssl_enable=NO\n\
                     pasv_enable=YES\nport_enable=YES\nconnect_from_port_20=NO\n\
                     max_clients=0\nmax_per_ip=0\n\
                     log_ftp_protocol=YES\nxferlog_enable=YES\nxferlog_std_format=NO\n\
                     syslog_enable=NO\ndual_log_enable=NO\nvsftpd_log_file={log}\n\
                     {extra_conf}\n",
                    root = root.display(),
                    pam = VSFTPD_PAM_SERVICE,
                    empty = empty.display(),
                    log = log.display(),
                ),
            )
        };
        let make_cmd = || {
            let mut c = daemon_command("vsftpd");
            c.arg(&conf);
            c
        };
        let (addr, child) = start_on_free_port(dir.path(), "vsftpd", &make_conf, &make_cmd)?;
        Ok(Self {
            addr,
            root,
            user: VSFTPD_USER.into(),
            pass: PASS.into(),
            log,
            child,
            dir,
        })
    }
}

impl FtpBackend for Vsftpd {
    fn name(&self) -> &'static str {
        "vsftpd"
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
        read_log(&self.log)
    }
    /// From lines like
    /// `... [pid 7] [user] FTP command: Client "127.0.0.1", "STOR x"`.
    fn commands(&self) -> Vec<String> {
        self.commands_seen()
            .lines()
            .filter(|l| l.contains("FTP command: Client \""))
            .filter_map(|l| {
                let (_, rest) = l.split_once("\", \"")?;
                Some(rest.strip_suffix('"').unwrap_or(rest).to_owned())
            })
            .collect()
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// ProFTPD 1.3 plaintext backend (`proftpd -n -c conf`), on a free port.
///
/// User `alice`/`secret` from a generated `AuthUserFile` (uid/gid 65534,
/// home = the root, `DefaultRoot ~`); no PAM, no shell check; commands
/// logged with `ExtendedLog ... ALL` as `VERB args` lines (written after
/// the reply, so use [`FtpBackend::wait_for_command`] when it matters).
pub struct Proftpd {
    /// Control address.
    pub addr: SocketAddr,
    /// FTP root (`DefaultRoot ~`).
    pub root: PathBuf,
    /// Login name (`alice`).
    pub user: String,
    /// Password (`secret`).
    pub pass: String,
    log: PathBuf,
    child: Child,
    dir: TempDir,
}

impl Proftpd {
    /// Starts proftpd. Panics if it cannot start.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts proftpd with `extra_conf` (directive lines) appended to the
    /// generated config. Panics if it cannot start.
    pub fn start_with(extra_conf: &str) -> Self {
        Self::try_start(extra_conf).unwrap_or_else(|e| panic!("starting proftpd backend: {e}"))
    }

    /// Starts proftpd with `extra_conf` appended to the generated config.
    pub fn try_start(extra_conf: &str) -> io::Result<Self> {
        let (dir, root) = make_dirs("ftpsgate-proftpd-");
        let d = dir.path();
        let passwd = d.join("passwd");
        let group = d.join("group");
        // proftpd refuses world-readable AuthUserFiles.
        fs::write(
            &passwd,
            format!(
                "{USER}:{PASS_CRYPT}:65534:65534::{}:/bin/false\n",
                root.display()
            ),
        )?;
        fs::write(&group, "nogroup:x:65534:\n")?;
        fs::set_permissions(&passwd, fs::Permissions::from_mode(0o600))?;
        fs::set_permissions(&group, fs::Permissions::from_mode(0o600))?;
        let log = d.join("commands.log");
        File::create(&log)?;
        let conf = d.join("proftpd.conf");
        let make_conf = |port: u16, banner: &str| {
            fs::write(
                &conf,
                format!(
                    "# Generated by tests/support/tools.rs (Proftpd::start)\n\
                     ServerType standalone\nDefaultServer on\n\
                     ServerName \"ftpsgate-proftpd\"\nServerIdent on \"{banner}\"\n\
                     DefaultAddress 127.0.0.1\nSocketBindTight on\nPort {port}\n\
                     UseIPv6 off\nUser nobody\nGroup nogroup\nUmask 022\n\
                     MaxInstances 100\nUseReverseDNS off\nWtmpLog off\n\
                     DelayEngine off\n\
                     <IfModule mod_ctrls.c>\n  ControlsEngine off\n</IfModule>\n\
                     AuthOrder mod_auth_file.c\nAuthUserFile {passwd}\n\
                     AuthGroupFile {group}\nRequireValidShell off\nAuthPAM off\n\
                     DefaultRoot ~\nAllowOverwrite on\nAllowStoreRestart on\n\
                     AllowRetrieveRestart on\n\
                     TimeoutIdle 600\nTimeoutNoTransfer 600\n\
                     ScoreboardFile {d}/proftpd.scoreboard\nPidFile {d}/proftpd.pid\n\
                     SystemLog {d}/system.log\nTransferLog NONE\n\
                     LogFormat ftpsgate \"%m %J\"\n\
                     ExtendedLog {log} ALL ftpsgate\n\
                     {extra_conf}\n",
                    passwd = passwd.display(),
                    group = group.display(),
                    d = d.display(),
                    log = log.display(),
                ),
            )
        };
        let make_cmd = || {
            let mut c = daemon_command("proftpd");
            c.arg("-n").arg("-c").arg(&conf);
            c
        };
        let (addr, child) = start_on_free_port(d, "proftpd", &make_conf, &make_cmd)?;
        Ok(Self {
            addr,
            root,
            user: USER.into(),
            pass: PASS.into(),
            log,
            child,
            dir,
        })
    }
}

impl FtpBackend for Proftpd {
    fn name(&self) -> &'static str {
        "proftpd"
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
        read_log(&self.log)
    }
    fn commands(&self) -> Vec<String> {
        self.commands_seen()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// How a client secures the control connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// No TLS at all (only for talking to backends directly).
    None,
    /// Explicit FTPS: plaintext connect, then `AUTH`; TLS required.
    #[default]
    Explicit,
    /// Implicit FTPS: TLS from the first byte.
    Implicit,
}

/// `host:port` for URLs.
fn url_authority(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Options for the curl helpers. `CurlOptions::default()` is explicit FTPS,
/// EPSV, passive, any TLS version, `alice`/`secret`.
#[derive(Clone, Debug)]
pub struct CurlOptions {
    /// Explicit (`ftp://` + `--ssl-reqd`), implicit (`ftps://`) or none.
    pub tls: Tls,
    /// `--disable-epsv`: use PASV.
    pub disable_epsv: bool,
    /// `--ftp-port ADDR`: active mode (EPRT, or PORT with `disable_eprt`).
    pub active: Option<String>,
    /// `--disable-eprt`: PORT instead of EPRT in active mode.
    pub disable_eprt: bool,
    /// `--tls-max 1.2`.
    pub tls_max_1_2: bool,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Extra arguments, passed before the URL.
    pub extra: Vec<String>,
    /// Kill curl after this long.
    pub timeout: Duration,
}

impl Default for CurlOptions {
    fn default() -> Self {
        Self {
            tls: Tls::Explicit,
            disable_epsv: false,
            active: None,
            disable_eprt: false,
            tls_max_1_2: false,
            user: USER.into(),
            pass: PASS.into(),
            extra: Vec::new(),
            timeout: CLIENT_TIMEOUT,
        }
    }
}

impl CurlOptions {
    /// Explicit FTPS (`ftp://` + `--ssl-reqd`).
    pub fn explicit() -> Self {
        Self::default()
    }
    /// Implicit FTPS (`ftps://`).
    pub fn implicit() -> Self {
        Self {
            tls: Tls::Implicit,
            ..Self::default()
        }
    }
    /// Plain FTP, no TLS.
    pub fn plain() -> Self {
        Self {
            tls: Tls::None,
            ..Self::default()
        }
    }
    /// Log in as `user`/`pass`.
    pub fn login(mut self, user: &str, pass: &str) -> Self {
        self.user = user.into();
        self.pass = pass.into();
        self
    }
    /// PASV instead of EPSV.
    pub fn pasv(mut self) -> Self {
        self.disable_epsv = true;
        self
    }
    /// Active mode from 127.0.0.1 (EPRT unless [`Self::no_eprt`]).
    pub fn active(mut self) -> Self {
        self.active = Some("127.0.0.1".into());
        self
    }
    /// PORT instead of EPRT.
    pub fn no_eprt(mut self) -> Self {
        self.disable_eprt = true;
        self
    }
    /// TLS 1.2 at most.
    pub fn tls12(mut self) -> Self {
        self.tls_max_1_2 = true;
        self
    }
    /// One extra curl argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.into());
        self
    }

    fn command(&self, addr: SocketAddr, remote: &str) -> Command {
        let mut cmd = Command::new("curl");
        // -v: the handshake and every FTP command/reply on stderr, so tests
        // can assert on them (e.g. "SSL re-using session ID").
        cmd.args(["-sS", "-v", "--connect-timeout", "20"]);
        cmd.arg("--max-time")
            .arg(self.timeout.as_secs().max(1).to_string());
        cmd.arg("--user")
            .arg(format!("{}:{}", self.user, self.pass));
        let scheme = match self.tls {
            Tls::None => "ftp",
            Tls::Explicit => {
                cmd.args(["--ssl-reqd", "-k"]);
                "ftp"
            }
            Tls::Implicit => {
                cmd.arg("-k");
                "ftps"
            }
        };
        if self.disable_epsv {
            cmd.arg("--disable-epsv");
        }
        if let Some(a) = &self.active {
            cmd.arg("--ftp-port").arg(a);
        }
        if self.disable_eprt {
            cmd.arg("--disable-eprt");
        }
        if self.tls_max_1_2 {
            cmd.args(["--tls-max", "1.2"]);
        }
        cmd.args(&self.extra);
        cmd.arg(format!(
            "{scheme}://{}/{}",
            url_authority(addr),
            remote.trim_start_matches('/')
        ));
        cmd
    }
}

/// curl downloads FTP path `remote` (relative to the login directory) to
/// the local file `local`.
pub fn curl_download(
    addr: SocketAddr,
    remote: &str,
    local: &Path,
    opts: &CurlOptions,
) -> ClientOutput {
    let mut cmd = opts.command(addr, remote);
    cmd.arg("-o").arg(local);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
}

/// curl uploads the local file `local` to FTP path `remote`.
pub fn curl_upload(
    addr: SocketAddr,
    local: &Path,
    remote: &str,
    opts: &CurlOptions,
) -> ClientOutput {
    let mut cmd = opts.command(addr, remote);
    cmd.arg("-T").arg(local);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
}

/// curl lists FTP directory `dir` (`""` for the login directory); the
/// listing (LIST format) is on stdout.
pub fn curl_list(addr: SocketAddr, dir: &str, opts: &CurlOptions) -> ClientOutput {
    let mut dir = dir.trim_matches('/').to_owned();
    if !dir.is_empty() {
        dir.push('/');
    }
    run_with_timeout(
        opts.command(addr, &dir),
        opts.timeout + Duration::from_secs(5),
    )
}

/// Options for [`lftp_run`]. `LftpOptions::default()` is explicit FTPS with
/// protected data, passive mode, EPSV preferred, `alice`/`secret`.
#[derive(Clone, Debug)]
pub struct LftpOptions {
    /// Explicit (`ftp://` + `ftp:ssl-force`), implicit (`ftps://`) or none.
    pub tls: Tls,
    /// `ftp:passive-mode on` (false: active mode, PORT/EPRT).
    pub passive: bool,
    /// `ftp:prefer-epsv yes|no`.
    pub prefer_epsv: bool,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Extra `set` lines' contents, e.g. `"ssl:priority NORMAL:-VERS-TLS1.3"`.
    pub settings: Vec<String>,
    /// Kill lftp after this long.
    pub timeout: Duration,
}

impl Default for LftpOptions {
    fn default() -> Self {
        Self {
            tls: Tls::Explicit,
            passive: true,
            prefer_epsv: true,
            user: USER.into(),
            pass: PASS.into(),
            settings: Vec::new(),
            timeout: CLIENT_TIMEOUT,
        }
    }
}

impl LftpOptions {
    /// Explicit FTPS.
    pub fn explicit() -> Self {
        Self::default()
    }
    /// Implicit FTPS (`ftps://`).
    pub fn implicit() -> Self {
        Self {
            tls: Tls::Implicit,
            ..Self::default()
        }
    }
    /// Plain FTP, no TLS.
    pub fn plain() -> Self {
        Self {
            tls: Tls::None,
            ..Self::default()
        }
    }
    /// Log in as `user`/`pass`.
    pub fn login(mut self, user: &str, pass: &str) -> Self {
        self.user = user.into();
        self.pass = pass.into();
        self
    }
    /// Active mode.
    pub fn active(mut self) -> Self {
        self.passive = false;
        self
    }
    /// PASV/PORT rather than EPSV/EPRT.
    pub fn no_epsv(mut self) -> Self {
        self.prefer_epsv = false;
        self
    }
    /// One extra `set` line, e.g. `"ssl:priority NORMAL:-VERS-TLS1.3"`.
    pub fn set(mut self, setting: &str) -> Self {
        self.settings.push(setting.into());
        self
    }
}

/// Runs lftp with `commands` (lftp syntax, one per element) after the
/// settings and `open`, in the local directory `cwd`. `cmd:fail-exit` is on,
/// so the first failing command makes lftp exit non-zero; retries are off.
///
/// Examples: `"get file.bin"`, `"get file.bin -o out.bin"`,
/// `"put local.bin -o remote.bin"`, `"cls -1"`, `"ls"`,
/// `"mirror -R --parallel=4 srcdir dstdir"`, `"mirror dstdir back"`.
pub fn lftp_run(
    addr: SocketAddr,
    opts: &LftpOptions,
    commands: &[&str],
    cwd: &Path,
) -> ClientOutput {
    let on_off = |b: bool| if b { "on" } else { "off" };
    let mut script = String::from("# Generated by tests/support/tools.rs (lftp_run)\n");
    let mut set = |s: &str| {
        script.push_str("set ");
        script.push_str(s);
        script.push('\n');
    };
    set("cmd:fail-exit yes");
    set("cmd:interactive no");
    set("net:max-retries 1");
    set("net:reconnect-interval-base 1");
    set("net:timeout 30");
    set("xfer:clobber on");
    set("ssl:verify-certificate no");
    set(&format!("ftp:passive-mode {}", on_off(opts.passive)));
    set(&format!("ftp:prefer-epsv {}", on_off(opts.prefer_epsv)));
    let scheme = match opts.tls {
        Tls::None => {
            set("ftp:ssl-allow no");
            "ftp"
        }
        Tls::Explicit | Tls::Implicit => {
            set("ftp:ssl-allow yes");
            set("ftp:ssl-force true");
            set("ftp:ssl-protect-data true");
            set("ftp:ssl-protect-list true");
            if opts.tls == Tls::Explicit {
                "ftp"
            } else {
                "ftps"
            }
        }
    };
    for s in &opts.settings {
        set(s);
    }
    script.push_str(&format!(
        "open -u \"{}\",\"{}\" {scheme}://{}\n",
        opts.user,
        opts.pass,
        url_authority(addr)
    ));
    for c in commands {
        script.push_str(c);
        script.push('\n');
    }
    script.push_str("bye\n");

    let script_file = tempfile::Builder::new()
        .prefix("ftpsgate-lftp-")
        .suffix(".lftp")
        .tempfile()
        .expect("create lftp script");
    fs::write(script_file.path(), &script).expect("write lftp script");
    let home = tempfile::Builder::new()
        .prefix("ftpsgate-lftp-home-")
        .tempdir()
        .expect("create lftp HOME");
    let mut cmd = Command::new("lftp");
    cmd.arg("-f")
        .arg(script_file.path())
        .current_dir(cwd)
        // A private HOME: no user rc files, no shared history/bookmarks.
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME");
    let mut out = run_with_timeout(cmd, opts.timeout);
    out.command = format!("{}\n--- script ---\n{script}", out.command);
    out
}

/// Options for [`py_client`] (`tests/support/ftps_client.py`).
/// `PyClientOptions::default()` is explicit FTPS, PROT P, PASV, no session
/// reuse, `alice`/`secret`.
#[derive(Clone, Debug)]
pub struct PyClientOptions {
    /// Explicit (`FTP_TLS`), implicit (`--implicit`) or none (`--plain`).
    pub tls: Tls,
    /// `--reuse-session`: data connections resume the control session.
    pub reuse_session: bool,
    /// `--active`: PORT mode.
    pub active: bool,
    /// `--eprt`: with `active`, EPRT instead of PORT.
    pub eprt: bool,
    /// `--epsv`: EPSV instead of PASV.
    pub epsv: bool,
    /// `--no-prot-p`: skip PBSZ/PROT (implicit mode still protects data).
    pub no_prot_p: bool,
    /// `--tls-max 1.2|1.3`.
    pub tls_max: Option<String>,
    /// Login name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Kill the client after this long.
    pub timeout: Duration,
}

impl Default for PyClientOptions {
    fn default() -> Self {
        Self {
            tls: Tls::Explicit,
            reuse_session: false,
            active: false,
            eprt: false,
            epsv: false,
            no_prot_p: false,
            tls_max: None,
            user: USER.into(),
            pass: PASS.into(),
            timeout: CLIENT_TIMEOUT,
        }
    }
}

impl PyClientOptions {
    /// Explicit FTPS (`ftplib.FTP_TLS`).
    pub fn explicit() -> Self {
        Self::default()
    }
    /// Implicit FTPS.
    pub fn implicit() -> Self {
        Self {
            tls: Tls::Implicit,
            ..Self::default()
        }
    }
    /// Plain `ftplib.FTP`.
    pub fn plain() -> Self {
        Self {
            tls: Tls::None,
            ..Self::default()
        }
    }
    /// Log in as `user`/`pass`.
    pub fn login(mut self, user: &str, pass: &str) -> Self {
        self.user = user.into();
        self.pass = pass.into();
        self
    }
    /// Data connections reuse the control connection's TLS session.
    pub fn reuse_session(mut self) -> Self {
        self.reuse_session = true;
        self
    }
    /// Active (PORT) mode.
    pub fn active(mut self) -> Self {
        self.active = true;
        self
    }
    /// Active mode with EPRT.
    pub fn eprt(mut self) -> Self {
        self.active = true;
        self.eprt = true;
        self
    }
    /// EPSV instead of PASV.
    pub fn epsv(mut self) -> Self {
        self.epsv = true;
        self
    }
    /// No PBSZ/PROT P.
    pub fn no_prot_p(mut self) -> Self {
        self.no_prot_p = true;
        self
    }
    /// Cap the TLS version (`"1.2"` or `"1.3"`).
    pub fn tls_max(mut self, version: &str) -> Self {
        self.tls_max = Some(version.into());
        self
    }
}

/// Runs `ftps_client.py` against `addr` with `args` = a subcommand and its
/// arguments, e.g. `["get", "remote.bin", "/tmp/x/local.bin"]`,
/// `["put", local, "remote.bin"]`, `["list", "--cmd", "MLSD"]`,
/// `["raw", "PBSZ 0", "PROT S"]`. Read results with
/// [`ClientOutput::field`]: `code`, `reply`, `sha256`, `bytes`, `entry`,
/// `data_session_reused`, `tls_version`, `error`, `ok`.
pub fn py_client(addr: SocketAddr, opts: &PyClientOptions, args: &[&str]) -> ClientOutput {
    let mut cmd = Command::new(python());
    cmd.arg(support_dir().join("ftps_client.py"))
        .arg("--host")
        .arg(addr.ip().to_string())
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--user")
        .arg(&opts.user)
        .arg("--password")
        .arg(&opts.pass)
        .arg("--timeout")
        .arg(opts.timeout.as_secs().max(1).to_string());
    match opts.tls {
        Tls::None => {
            cmd.arg("--plain");
        }
        Tls::Implicit => {
            cmd.arg("--implicit");
        }
        Tls::Explicit => {}
    }
    let flags = [
        (opts.reuse_session, "--reuse-session"),
        (opts.active, "--active"),
        (opts.eprt, "--eprt"),
        (opts.epsv, "--epsv"),
        (opts.no_prot_p, "--no-prot-p"),
    ];
    for (on, flag) in flags {
        if on {
            cmd.arg(flag);
        }
    }
    if let Some(v) = &opts.tls_max {
        cmd.arg("--tls-max").arg(v);
    }
    cmd.args(args);
    run_with_timeout(cmd, opts.timeout + Duration::from_secs(5))
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
