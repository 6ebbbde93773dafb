//! The container image of `deploy/container/` with a real engine (podman,
//! runc): `build.sh` turns the binary cargo built for these tests into an
//! image FROM scratch; the image holds only that binary, its libraries and
//! three files in /etc; a container of it runs as user 65532 with no
//! capabilities on a read-only root filesystem, moves files byte-exact in
//! both directions between curl or CPython ftplib and a pyftpdlib backend,
//! answers `/readyz`, and exits 0 on `podman stop` (SIGTERM to PID 1); ports
//! 21 and 990 bind only with NET_BIND_SERVICE or the unprivileged-port sysctl.
//!
//! Every test builds its own image and runs its own containers under unique
//! names, and removes them on drop. ftpsgate binds port 0 (host network) and
//! the test reads the bound address from the container's log.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::http::get as http_get;
use support::tools::{
    curl_download, curl_upload, py_client, run_with_timeout, sha256_file, tools_available,
    write_random_file, ClientOutput, CurlOptions, FtpBackend, PyClientOptions, PyFtpd,
};

/// The image's user and group.
const NONROOT: u32 = 65532;

/// How long a podman command (or the image build) may take on a busy machine.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the container may take to log a line we wait for.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Run options every container gets. `--ulimit`: podman 4.3 asks runc to
/// raise RLIMIT_NOFILE/NPROC (to 1048576/32768) unless told otherwise, which
/// fails where root lacks CAP_SYS_RESOURCE (`--ulimit host` does not stop it
/// in 4.3); limits below any host's hard limit always apply. The k8s-file
/// log driver keeps `podman logs` independent of journald.
const RUN_OPTIONS: &[&str] = &[
    "--runtime",
    "runc",
    "--log-driver",
    "k8s-file",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// What the Kubernetes manifests ask for, as podman options.
const HARDENED: &[&str] = &[
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

/// Runs podman with `args`; panics unless it succeeds. Returns stdout, trimmed.
fn podman(args: &[&str]) -> String {
    let out = podman_output(args);
    out.assert_success();
    out.stdout.trim().to_owned()
}

fn podman_output(args: &[&str]) -> ClientOutput {
    let mut cmd = Command::new("podman");
    cmd.args(args);
    run_with_timeout(cmd, PODMAN_TIMEOUT)
}

/// A name no other test run uses: `ftpsgate-test-<what>-<pid>-<nanos>`.
fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ftpsgate-test-{what}-{}-{nanos}", std::process::id())
}

/// An image built by `deploy/container/build.sh`; removed on drop.
struct Image {
    tag: String,
}

impl Image {
    fn build(what: &str) -> Image {
        let tag = format!("localhost/{}:test", unique(what));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container/build.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .args(["--binary", env!("CARGO_BIN_EXE_ftpsgate"), "--tag", &tag]);
        let started = Instant::now();
        let out = run_with_timeout(cmd, PODMAN_TIMEOUT);
        out.assert_success();
        let id = out.stdout.lines().last().unwrap_or("").to_owned();
        assert_eq!(id.len(), 64, "build.sh ends with the image ID:\n{out}");
        eprintln!("built {tag} in {:?}", started.elapsed());
        Image { tag }
    }

    fn inspect(&self, format: &str) -> String {
        podman(&["image", "inspect", "--format", format, &self.tag])
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman_output(&["rmi", "-f", &self.tag]);
    }
}

/// A running container and its log (stdout and stderr) on a channel;
/// removed on drop.
struct Container {
    name: String,
    logs: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Container {
    /// `podman run -d` of `image` with `config_dir` mounted read-only at
    /// /etc/ftpsgate and `options` (network, capabilities) on top.
    fn start(image: &Image, config_dir: &Path, options: &[&str]) -> Container {
        let name = unique("run");
        let mount = format!("{}:/etc/ftpsgate:ro", config_dir.display());
        let mut args = vec!["run", "-d", "--name", &name, "-v", &mount];
        args.extend_from_slice(RUN_OPTIONS);
        args.extend_from_slice(options);
        args.push(&image.tag);
        let started = podman_output(&args);
        if !started.success() {
            let _ = podman_output(&["rm", "-f", &name]);
            panic!("podman run failed:\n{started}");
        }
        let mut logs = Command::new("podman")
            .args(["logs", "-f", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podman logs -f");
        let (tx, lines) = channel();
        let stdout: Box<dyn Read + Send> = Box::new(logs.stdout.take().expect("piped"));
        let stderr: Box<dyn Read + Send> = Box::new(logs.stderr.take().expect("piped"));
        for stream in [stdout, stderr] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Container {
            name,
            logs,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line starting with `prefix`, waiting for it.
    fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + LOG_TIMEOUT;
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!(
            "{}: no log line starting {prefix:?} within {LOG_TIMEOUT:?}; state {}; log:\n{}",
            self.name,
            self.inspect("{{.State.Status}} exit={{.State.ExitCode}}"),
            self.seen.join("\n")
        );
    }

    /// The address at the end of the log line starting with `prefix`.
    fn wait_addr(&mut self, prefix: &str) -> SocketAddr {
        let line = self.wait_line(prefix);
        let addr = line.rsplit(' ').next().unwrap_or("");
        addr.parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"))
    }

    fn inspect(&self, format: &str) -> String {
        podman(&["container", "inspect", "--format", format, &self.name])
    }

    /// Everything the container wrote so far, stdout and stderr.
    fn log(&self) -> String {
        let out = podman_output(&["logs", &self.name]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Waits for the container to exit; its exit code.
    fn wait_exit(&self) -> String {
        podman(&["wait", &self.name])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "-f", "-t", "0", &self.name]);
        let _ = self.logs.kill();
        let _ = self.logs.wait();
    }
}

/// A config directory for the container (what /etc/ftpsgate holds):
/// `ftpsgate.yaml` with `yaml` and, in `tls/`, a certificate pair made by
/// `ftpsgate cert`. Readable by the container's user.
fn config_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["cert", "--hostname", "localhost", "--cert-out"])
        .arg(tls.join("cert.pem"))
        .arg("--key-out")
        .arg(tls.join("key.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.path().join("ftpsgate.yaml"), yaml).unwrap();
    // User 65532 must read the files. A production key would be chowned
    // to it (deploy/README.md); this throwaway one is simply made readable.
    for (path, mode) in [
        (dir.path().to_owned(), 0o755),
        (tls.clone(), 0o755),
        (tls.join("key.pem"), 0o644),
        (dir.path().join("ftpsgate.yaml"), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// The ID inside the container's user namespace of host ID `host`, from a
/// `/proc/PID/uid_map` (lines `inside outside count`). Rootful podman maps
/// 0..2^32 to itself; rootless podman maps to subordinate IDs.
fn inside_id(map: &str, host: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let (inside, outside, count) = (*f.first()?, *f.get(1)?, *f.get(2)?);
        let host = u64::from(host);
        (outside..outside + count)
            .contains(&host)
            .then(|| u32::try_from(host - outside + inside).ok())?
    })
}

/// The `Key:` line of `/proc/PID/status`, split into words.
fn status_field(status: &str, key: &str) -> Vec<String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}: in\n{status}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// The container's process runs as 65532:65532 (real, effective, saved and
/// filesystem IDs) with no capabilities, as the kernel sees it.
fn assert_runs_unprivileged(c: &Container) {
    let pid = c.inspect("{{.State.Pid}}");
    let proc_dir = PathBuf::from("/proc").join(&pid);
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    for (key, map) in [("Uid", "uid_map"), ("Gid", "gid_map")] {
        let map = std::fs::read_to_string(proc_dir.join(map)).unwrap();
        let ids: Vec<Option<u32>> = status_field(&status, key)
            .iter()
            .map(|id| inside_id(&map, id.parse().unwrap()))
            .collect();
        assert_eq!(ids, vec![Some(NONROOT); 4], "{key}: {status}");
    }
    for key in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(
            status_field(&status, key),
            ["0000000000000000"],
            "{key}: {status}"
        );
    }
}

#[test]
fn container_moves_files_both_ways_as_non_root_and_stops_on_sigterm() {
    if !tools_available(&["podman", "curl", "pyftpdlib"]) {
        return;
    }
    let backend = PyFtpd::start();
    let image = Image::build("transfer");
    // A host name, not an IP: name resolution (nsswitch.conf, /etc/hosts)
    // must work in an image without a libc package.
    let dir = config_dir(&format!(
        "listen: ['127.0.0.1:0']\n\
         backend: 'localhost:{}'\n\
         cert: /etc/ftpsgate/tls/cert.pem\n\
         key: /etc/ftpsgate/tls/key.pem\n\
         metrics: '127.0.0.1:0'\n",
        backend.addr.port()
    ));
    let mut options = vec!["--network", "host"];
    options.extend_from_slice(HARDENED);
    let mut c = Container::start(&image, dir.path(), &options);
    let addr = c.wait_addr("ftpsgate listening Explicit ");
    let metrics = c.wait_addr("ftpsgate metrics ");
    assert_runs_unprivileged(&c);
    assert_eq!(http_get(metrics, "/readyz"), (200, "ready\n".to_owned()));

    let work = tempfile::tempdir().unwrap();
    transfer_with_curl(addr, &backend, work.path());
    transfer_with_ftplib(addr, &backend, work.path());

    // SIGTERM reaches ftpsgate as PID 1: it stops cleanly, well before
    // podman would resort to SIGKILL.
    podman(&["stop", "-t", "20", &c.name]);
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.log());
    assert!(c.log().contains("INFO ftpsgate: stopped"), "{}", c.log());
}

/// curl `--ssl-reqd` uploads and downloads 3 MiB through the container.
fn transfer_with_curl(addr: SocketAddr, backend: &PyFtpd, work: &Path) {
    let local = work.join("curl-up.bin");
    let sum = write_random_file(&local, 3 << 20);
    curl_upload(addr, &local, "curl-up.bin", &CurlOptions::explicit()).assert_success();
    assert_eq!(sha256_file(backend.path("curl-up.bin")), sum);
    let fetched = work.join("curl-down.bin");
    curl_download(addr, "curl-up.bin", &fetched, &CurlOptions::explicit()).assert_success();
    assert_eq!(sha256_file(&fetched), sum);
}

/// CPython's `ftplib.FTP_TLS` (PROT P) stores and retrieves 2 MiB.
fn transfer_with_ftplib(addr: SocketAddr, backend: &PyFtpd, work: &Path) {
    let local = work.join("py-up.bin");
    let sum = write_random_file(&local, 2 << 20);
    let opts = PyClientOptions::explicit();
    let local_arg = local.to_str().unwrap();
    let put = py_client(addr, &opts, &["put", local_arg, "py-up.bin"]);
    put.assert_success();
    assert_eq!(put.field("code"), Some("226"), "{put}");
    assert_eq!(sha256_file(backend.path("py-up.bin")), sum);
    let fetched = work.join("py-down.bin");
    let get = py_client(
        addr,
        &opts,
        &["get", "py-up.bin", fetched.to_str().unwrap()],
    );
    get.assert_success();
    assert_eq!(get.field("code"), Some("226"), "{get}");
    assert_eq!(get.field("sha256"), Some(sum.as_str()), "{get}");
    assert_eq!(sha256_file(&fetched), sum);
}

#[test]
fn image_holds_only_the_binary_its_libraries_and_etc_files() {
    if !tools_available(&["podman"]) {
        return;
    }
    let image = Image::build("contents");
    assert_eq!(
        image.inspect("{{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.User}}"),
        "[/usr/local/bin/ftpsgate] [serve --config /etc/ftpsgate/ftpsgate.yaml] 65532:65532"
    );
    assert_eq!(
        image.inspect("{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}"),
        "21/tcp 990/tcp"
    );
    let name = unique("export");
    podman(&["create", "--name", &name, &image.tag]);
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -o pipefail; podman export {name} | tar -t"));
    let listing = run_with_timeout(cmd, PODMAN_TIMEOUT);
    let _ = podman_output(&["rm", "-f", &name]);
    listing.assert_success();
    let files: BTreeSet<String> = listing
        .stdout
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| format!("/{}", l.trim_start_matches("./")))
        .collect();
    let mut expected: BTreeSet<String> = linked_libraries(env!("CARGO_BIN_EXE_ftpsgate"));
    for f in [
        "/usr/local/bin/ftpsgate",
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
    ] {
        expected.insert(f.to_owned());
    }
    assert_eq!(
        files, expected,
        "no shell, no package manager, nothing else"
    );
}

/// The files `ldd` says `binary` loads (libraries and the dynamic loader).
fn linked_libraries(binary: &str) -> BTreeSet<String> {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, to)) => to.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

#[test]
fn ports_21_and_990_bind_only_with_net_bind_service_or_the_sysctl() {
    if !tools_available(&["podman"]) {
        return;
    }
    let image = Image::build("ports");
    // --network none: a network namespace of the container's own, so the
    // fixed ports cannot collide with anything on the host.
    let dir = config_dir(
        "listen: ['127.0.0.1:21']\n\
         implicit_listen: ['127.0.0.1:990']\n\
         backend: '127.0.0.1:2121'\n",
    );
    let base = ["--network", "none", "--cap-drop", "ALL"];
    let refused = Container::start(&image, dir.path(), &base);
    assert_eq!(refused.wait_exit(), "1");
    let log = refused.log();
    assert!(
        log.contains("error: cannot listen on 127.0.0.1:21: Permission denied (os error 13)"),
        "{log}"
    );
    for extra in [
        ["--cap-add", "NET_BIND_SERVICE"],
        ["--sysctl", "net.ipv4.ip_unprivileged_port_start=21"],
    ] {
        let options: Vec<&str> = base.iter().chain(&extra).copied().collect();
        let mut c = Container::start(&image, dir.path(), &options);
        assert_eq!(
            c.wait_line("ftpsgate listening Explicit "),
            "ftpsgate listening Explicit 127.0.0.1:21"
        );
        assert_eq!(
            c.wait_line("ftpsgate listening Implicit "),
            "ftpsgate listening Implicit 127.0.0.1:990"
        );
    }
}
