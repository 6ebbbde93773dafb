#!/usr/bin/env python3
# bench/run.py — owns the ftpsgate vs ProFTPD mod_proxy side-by-side benchmark driver:
# starts a plaintext vsftpd backend, ftpsgate and ProFTPD+mod_tls+mod_proxy (both FTPS
# front ends on the same cert), runs the workload shapes interleaved over several rounds,
# verifies every transfer byte-exact, measures throughput / proxy CPU (from /proc) /
# memory, and prints a table of medians [min-max] with ftpsgate/mod_proxy ratios.
# Python 3 stdlib only; the clients are curl, lftp, bench/idle_client.py and
# bench/login_client.py; the logins and many shapes live in bench/scale.py.
# See bench/README.md for what each shape means and the caveats.
import argparse
import datetime
import ftplib
import hashlib
import json
import mmap
import os
import platform
import pwd
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import scale  # bench/scale.py: the logins and many shapes

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20
GiB = 1 << 30
PROXIES = ("ftpsgate", "modproxy")
ALL_SHAPES = ("download", "upload", "small", "latency", "logins", "concurrent", "many", "idle")
NOFILE = 65536

# --------------------------------------------------------------------------- utilities


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_range_free(lo, hi):
    """True if no listener currently occupies any port in [lo, hi] (best effort)."""
    for p in range(lo, hi + 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_passive_ranges(n, width):
    """n disjoint passive-port ranges below the ephemeral range (32768+)."""
    out, base = [], 20000 + (os.getpid() % 8) * 1000
    while len(out) < n and base + width < 32000:
        if port_range_free(base, base + width - 1):
            out.append((base, base + width - 1))
        base += width
    if len(out) < n:
        raise SystemExit("could not find free passive port ranges")
    return out


def wait_port(port, proc, timeout=15.0, what="server"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout}s")


def raise_nofile():
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        pass


def children_map():
    """ppid -> [pid] for every process (one /proc scan)."""
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(b")") + 2:].split()[1])
        m.setdefault(ppid, []).append(int(d))
    return m


def descendants(pid):
    m, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        for c in m.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def proc_times(pid):
    """(utime+stime, cutime+cstime) in seconds, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    x = s[s.rindex(b")") + 2:].split()
    # fields after ')' start at field 3 (state); utime is field 14 -> index 11
    return ((int(x[11]) + int(x[12])) / CLK_TCK, (int(x[13]) + int(x[14])) / CLK_TCK)


def tree_cpu(pid):
    """CPU seconds consumed by pid and every descendant, dead (reaped: cutime/cstime) or
    alive. Exact when no process in the tree exits during the scan; callers measure only
    when the tree is quiescent (see Proxy.quiesce)."""
    total = 0.0
    for p in [pid] + descendants(pid):
        t = proc_times(p)
        if t:
            total += t[0] + t[1]
    return total


def smaps_rollup(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    d[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return d


def mem_kib(pid, tree):
    """(rss_kib, pss_kib) of pid, or summed over pid + descendants if tree."""
    rss = pss = 0
    for p in [pid] + (descendants(pid) if tree else []):
        d = smaps_rollup(p)
        rss += d.get("Rss", 0)
        pss += d.get("Pss", 0)
    return rss, pss


class MemSampler(threading.Thread):
    def __init__(self, pid, tree, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.tree, self.interval = pid, tree, interval
        self.peak_rss = self.peak_pss = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            rss, pss = mem_kib(self.pid, self.tree)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        rss, pss = mem_kib(self.pid, self.tree)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)


# --------------------------------------------------------------------------- processes

PROCS = []  # every Popen we started, for cleanup


def spawn(argv, logpath, **kw):
    lf = open(logpath, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                         start_new_session=True, preexec_fn=raise_nofile, **kw)
    lf.close()
    PROCS.append(p)
    return p


def kill_tree(p):
    if p.poll() is None or descendants(p.pid):
        pids = descendants(p.pid) + [p.pid]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except OSError:
                pass
            for q in pids:
                try:
                    os.kill(q, sig)
                except OSError:
                    pass
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                time.sleep(0.2)
                for q in pids:  # stragglers outside the process group
                    try:
                        os.kill(q, signal.SIGKILL)
                    except OSError:
                        pass
            break
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass


def cleanup():
    while PROCS:
        kill_tree(PROCS.pop())


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- servers

VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=YES
local_enable=NO
no_anon_password=NO
anon_root={root}
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_umask=022
pasv_enable=YES
pasv_min_port={plo}
pasv_max_port={phi}
pasv_address=127.0.0.1
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
use_sendfile=YES
idle_session_timeout=1800
data_connection_timeout=600
accept_timeout=120
connect_timeout=120
xferlog_enable=NO
dual_log_enable=NO
vsftpd_log_file={logdir}/vsftpd-xfer.log
secure_chroot_dir={empty}
ftp_username={ftpuser}
hide_ids=YES
dirmessage_enable=NO
ssl_enable=NO
"""

PROFTPD_CONF = """\
# generated by bench/run.py: ProFTPD + mod_tls (FTPS front) + mod_proxy (reverse, plaintext back)
ModulePath /usr/lib/proftpd
LoadModule mod_tls.c
LoadModule mod_proxy.c
ServerName "ftpsbench-modproxy"
ServerType standalone
DefaultServer on
DefaultAddress 127.0.0.1
SocketBindTight on
Port {port}
TCPBackLog 255
User nobody
Group nogroup
UseIPv6 off
UseReverseDNS off
DelayEngine off
MaxInstances 30000
MaxLoginAttempts 10
TimeoutIdle 1800
TimeoutNoTransfer 1800
TimeoutLogin 600
TimeoutStalled 600
PassivePorts {plo} {phi}
PidFile {dir}/proftpd.pid
ScoreboardFile {dir}/proftpd.scoreboard
SystemLog {dir}/proftpd-system.log
WtmpLog off
TransferLog none
RequireValidShell off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
<IfModule mod_tls.c>
  TLSEngine on
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired on
  TLSECCertificateFile {cert}
  TLSECCertificateKeyFile {key}
  TLSVerifyClient off
  TLSRenegotiate none
  TLSOptions NoSessionReuseRequired
</IfModule>
<IfModule mod_proxy.c>
  ProxyEngine on
  ProxyLog {dir}/proxy.log
  ProxyTables {dir}/proxy-tables
  ProxyRole reverse
  ProxyReverseConnectPolicy Random
  ProxyReverseServers ftp://127.0.0.1:{bport}
  ProxyTLSEngine off
  ProxyDataTransferPolicy PASV
</IfModule>
"""


def find_vsftpd(arg):
    cands = [arg] if arg else []
    cands += ["/usr/sbin/vsftpd", "/var/cache/ftpsgate-bench/vsftpd/usr/sbin/vsftpd"]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit("vsftpd not found: run bench/setup.sh (or pass --vsftpd PATH)")


class Proxy:
    """One FTPS front end under test."""

    def __init__(self, name, proc, port, tree):
        self.name, self.proc, self.port, self.tree = name, proc, port, tree

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def sessions(self):
        return len(descendants(self.pid)) if self.tree else 0

    def quiesce(self, backend_pid, timeout=20.0):
        """Wait until no session processes remain (ProFTPD: children reaped by the master,
        so their CPU is in the master's cutime/cstime) and the backend is idle too."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            busy = (self.tree and descendants(self.pid)) or descendants(backend_pid)
            if not busy:
                time.sleep(0.1)
                return True
            time.sleep(0.05)
        log(f"warning: {self.name} not quiescent after {timeout}s "
            f"({len(descendants(self.pid))} proxy / {len(descendants(backend_pid))} backend procs)")
        return False

    def cpu(self):
        return tree_cpu(self.pid)

    def mem(self):
        return mem_kib(self.pid, self.tree)


# --------------------------------------------------------------------------- clients

CURL = ["curl", "-sS", "--ssl-reqd", "-k", "--connect-timeout", "20", "--max-time", "900"]
CURL_W = ("%{stderr}@@W appconnect=%{time_appconnect} pretransfer=%{time_pretransfer} "
          "starttransfer=%{time_starttransfer} total=%{time_total} "
          "size_dl=%{size_download} size_ul=%{size_upload} code=%{response_code}\n")


def parse_w(err):
    for line in err.splitlines():
        if line.startswith("@@W "):
            return {k: float(v) for k, v in (kv.split("=") for kv in line[4:].split())}
    return {}


_MAPS = {}
_MAPS_LOCK = threading.Lock()


def source_map(path):
    """Read-only mmap of a source file, created once and pre-faulted (MAP_POPULATE) so the
    comparison costs no page faults inside the timed transfer."""
    with _MAPS_LOCK:
        mm = _MAPS.get(path)
        if mm is None:
            with open(path, "rb") as f:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                mm = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
            _MAPS[path] = mm
        return mm


class StreamVerifier:
    """Consumes a download stream and verifies it byte-exactly, either by comparing it
    against the mmap'd source file (mode 'cmp', ~memcmp speed) or by SHA-256 (mode 'sha256')."""

    def __init__(self, src, mode, expect_sha):
        self.mode, self.expect_sha = mode, expect_sha
        self.size = os.path.getsize(src)
        self.mm = source_map(src) if mode == "cmp" else None
        self.h = hashlib.sha256() if mode == "sha256" else None
        self.off = 0
        self.mismatch = False

    def feed(self, mv):
        n = len(mv)
        if self.mm is not None:
            if self.off + n > self.size or self.mm[self.off:self.off + n] != mv:
                self.mismatch = True
        else:
            self.h.update(mv)
        self.off += n

    def ok(self):
        if self.mm is not None:
            return not self.mismatch and self.off == self.size
        return self.off == self.size and self.h.hexdigest() == self.expect_sha


def _pump(proc, ver, bufsize=1 << 20):
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    f = proc.stdout
    while True:
        n = f.readinto(buf)
        if not n:
            break
        ver.feed(mv[:n])


def set_pipe_size(fd, size=1 << 20):
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError, ImportError):
        pass


def curl_download(url, src, mode, sha, extra=()):
    """Download url to a pipe, verify against src; return (ok, wall_s, curl_w, err)."""
    ver = StreamVerifier(src, mode, sha)
    t0 = time.perf_counter()
    p = subprocess.Popen(CURL + list(extra) + ["-w", CURL_W, "-o", "-", url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0)
    set_pipe_size(p.stdout.fileno())
    errbuf = []
    et = threading.Thread(target=lambda: errbuf.append(p.stderr.read()), daemon=True)
    et.start()
    _pump(p, ver)
    rc = p.wait()
    wall = time.perf_counter() - t0
    et.join()
    err = errbuf[0].decode("utf-8", "replace") if errbuf else ""
    ok = rc == 0 and ver.ok()
    return ok, wall, parse_w(err), ("" if ok else f"rc={rc} {err.strip()[-300:]}")


def ftplib_first_byte(port, path, sha, timeout=30):
    """One FTPS session with Python's ftplib (no curl poll-timer artifacts): returns
    (ready_s, first_byte_s) measured from before the TCP connect; 'ready' = logged in,
    PROT P and TYPE I done (just before PASV+RETR), 'first byte' = first data byte read."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.perf_counter()
    ftp = ftplib.FTP_TLS(context=ctx, timeout=timeout)
    try:
        ftp.connect("127.0.0.1", port)
        ftp.auth()
        ftp.login("anonymous", "bench@example.com")
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        ready = time.perf_counter() - t0
        conn = ftp.transfercmd(f"RETR {path}")
        h, first = hashlib.sha256(), None
        with conn:
            while True:
                b = conn.recv(65536)
                if first is None:
                    first = time.perf_counter() - t0
                if not b:
                    break
                h.update(b)
            if isinstance(conn, ssl.SSLSocket):
                try:
                    conn.unwrap()
                except (OSError, ssl.SSLError):
                    pass
        ftp.voidresp()
        if h.hexdigest() != sha:
            raise ValueError("SHA-256 mismatch")
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            pass
        return ready, first
    finally:
        ftp.close()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------- bench


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="ftpsgate-bench-", dir="/dev/shm")
        os.chmod(self.work, 0o755)
        self.results = {}  # shape -> metric -> proxy -> [values]
        self.notes = []
        self.proxies = {}
        self.backend = None

    # ---- setup
    def make_data(self):
        a = self.a
        root = os.path.join(self.work, "root")
        self.root, self.pub, self.up = root, os.path.join(root, "pub"), os.path.join(root, "up")
        os.makedirs(os.path.join(self.pub, "small"))
        os.makedirs(self.up)
        ftpuser = pwd.getpwnam(a.ftp_user)
        os.chown(self.up, ftpuser.pw_uid, ftpuser.pw_gid)
        for d in (root, self.pub, os.path.join(self.pub, "small")):
            os.chmod(d, 0o755)
        self.sha = {}

        def mk(path, size):
            h = hashlib.sha256()
            with open(path, "wb") as f:
                left = size
                while left:
                    b = os.urandom(min(left, 16 * MiB))
                    f.write(b)
                    h.update(b)
                    left -= len(b)
            self.sha[path] = h.hexdigest()

        t0 = time.monotonic()
        self.big = os.path.join(self.pub, "big.bin")
        self.med = os.path.join(self.pub, "med.bin")
        self.tiny = os.path.join(self.pub, "tiny.bin")
        self.many_file = os.path.join(self.pub, "many.bin")
        mk(self.many_file, a.many_kib * 1024)
        mk(self.big, a.big_mib * MiB)
        mk(self.med, a.conc_mib * MiB)
        mk(self.tiny, 4096)
        for i in range(a.small_files):
            mk(os.path.join(self.pub, "small", f"f{i:04d}.bin"), a.small_kib * 1024)
        log(f"test data in {self.work} ({time.monotonic() - t0:.1f}s)")

    def make_cert(self):
        self.cert = os.path.join(self.work, "cert.pem")
        self.key = os.path.join(self.work, "key.pem")
        if self.a.cert:
            shutil.copy(self.a.cert, self.cert)
            shutil.copy(self.a.key, self.key)
            return
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "7", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o644)

    def start(self):
        a = self.a
        (blo, bhi), (mlo, mhi), (glo, ghi) = pick_passive_ranges(3, a.passive_width)
        # backend
        bport = free_port()
        empty = os.path.join(self.work, "vsftpd-empty")
        os.makedirs(empty)
        os.chmod(empty, 0o755)
        vconf = os.path.join(self.work, "vsftpd.conf")
        with open(vconf, "w") as f:
            f.write(VSFTPD_CONF.format(port=bport, root=self.root, plo=blo, phi=bhi,
                                       logdir=self.work, empty=empty, ftpuser=a.ftp_user))
        bp = spawn([find_vsftpd(a.vsftpd), vconf], os.path.join(self.work, "vsftpd.log"))
        wait_port(bport, bp, what="vsftpd")
        self.backend = bp
        self.bport = bport
        log(f"backend vsftpd pid {bp.pid} on 127.0.0.1:{bport} (pasv {blo}-{bhi})")

        if "modproxy" in a.proxies:
            d = os.path.join(self.work, "modproxy")
            os.makedirs(os.path.join(d, "proxy-tables"))
            os.chmod(os.path.join(d, "proxy-tables"), 0o777)
            port = free_port()
            conf = os.path.join(d, "proftpd.conf")
            with open(conf, "w") as f:
                f.write(PROFTPD_CONF.format(port=port, plo=mlo, phi=mhi, dir=d, cert=self.cert,
                                            key=self.key, bport=bport))
            chk = subprocess.run(["proftpd", "-t", "-c", conf], capture_output=True, text=True)
            if chk.returncode != 0:
                raise SystemExit(f"proftpd config check failed:\n{chk.stdout}{chk.stderr}")
            p = spawn(["proftpd", "-n", "-q", "-c", conf], os.path.join(d, "proftpd.out"), cwd=d)
            wait_port(port, p, what="proftpd")
            self.proxies["modproxy"] = Proxy("modproxy", p, port, tree=True)
            log(f"mod_proxy (proftpd) pid {p.pid} on 127.0.0.1:{port} (pasv {mlo}-{mhi})")

        if "ftpsgate" in a.proxies:
            exe = a.ftpsgate
            if not os.access(exe, os.X_OK):
                raise SystemExit(f"ftpsgate binary not found at {exe} (build it, pass --ftpsgate, "
                                 "or use --proxies modproxy)")
            port = free_port()
            argv = [exe, "serve", "--listen", f"127.0.0.1:{port}", "--backend",
                    f"127.0.0.1:{bport}", "--cert", self.cert, "--key", self.key,
                    "--passive-ports", f"{glo}-{ghi}"] + a.ftpsgate_arg
            env = dict(os.environ)
            env.setdefault("RUST_LOG", a.ftpsgate_log)
            p = spawn(argv, os.path.join(self.work, "ftpsgate.log"), env=env)
            wait_port(port, p, what="ftpsgate")
            self.proxies["ftpsgate"] = Proxy("ftpsgate", p, port, tree=False)
            log(f"ftpsgate pid {p.pid} on 127.0.0.1:{port} (pasv {glo}-{ghi}): {' '.join(argv)}")

    def check_alive(self):
        if self.backend.poll() is not None:
            raise SystemExit(f"backend vsftpd died (rc {self.backend.returncode})")
        for p in self.proxies.values():
            if not p.alive():
                raise SystemExit(f"{p.name} died (rc {p.proc.returncode}); see logs in {self.work}")

    # ---- recording
    def rec(self, shape, metric, proxy, value):
        self.results.setdefault(shape, {}).setdefault(metric, {}).setdefault(proxy, []).append(value)

    def url(self, px, path):
        return f"ftp://127.0.0.1:{px.port}/{path}"

    def measured(self, px, fn):
        """Run fn() between two quiescent CPU snapshots of the proxy; return (fn(), cpu_s)."""
        px.quiesce(self.backend.pid)
        c0 = px.cpu()
        r = fn()
        px.quiesce(self.backend.pid)
        return r, px.cpu() - c0

    # ---- shapes
    def shape_download(self, px):
        size = os.path.getsize(self.big)
        (ok, wall, w, err), cpu = self.measured(
            px, lambda: curl_download(self.url(px, "pub/big.bin"), self.big, self.a.verify,
                                      self.sha[self.big]))
        if not ok:
            return self.fail("download", px, err)
        self.rec("download", "MB/s", px.name, size / 1e6 / wall)
        self.rec("download", "proxy CPU-s/GiB", px.name, cpu / (size / GiB))
        return f"{size / 1e6 / wall:.0f} MB/s, {cpu / (size / GiB):.2f} CPU-s/GiB"

    def shape_upload(self, px):
        size = os.path.getsize(self.big)
        name = f"up-{px.name}-{time.monotonic_ns()}.bin"
        dest = os.path.join(self.up, name)

        def go():
            t0 = time.perf_counter()
            r = subprocess.run(CURL + ["-w", CURL_W, "-T", self.big,
                                       self.url(px, f"up/{name}")],
                               capture_output=True, text=True)
            return r, time.perf_counter() - t0

        (r, wall), cpu = self.measured(px, go)
        try:
            if r.returncode != 0:
                return self.fail("upload", px, f"rc={r.returncode} {r.stderr.strip()[-300:]}")
            if not os.path.exists(dest) or os.path.getsize(dest) != size:
                got = os.path.getsize(dest) if os.path.exists(dest) else None
                return self.fail("upload", px, f"landed size {got} != {size}")
            if file_sha256(dest) != self.sha[self.big]:
                return self.fail("upload", px, "landed file SHA-256 mismatch")
        finally:
            if os.path.exists(dest):
                os.unlink(dest)
        self.rec("upload", "MB/s", px.name, size / 1e6 / wall)
        self.rec("upload", "proxy CPU-s/GiB", px.name, cpu / (size / GiB))
        return f"{size / 1e6 / wall:.0f} MB/s, {cpu / (size / GiB):.2f} CPU-s/GiB"

    def shape_small(self, px):
        out = os.path.join(self.work, f"small-out-{px.name}")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        script = ("set ssl:verify-certificate no; set ftp:ssl-force yes; "
                  "set ftp:ssl-protect-data yes; set ftp:ssl-protect-list yes; "
                  "set ftp:passive-mode yes; set net:max-retries 1; set net:timeout 30; "
                  "set net:reconnect-interval-base 1; set cmd:fail-exit yes; "
                  f"open -u anonymous,bench@example.com ftp://127.0.0.1:{px.port}; "
                  f"mget -O {out} pub/small/*; quit")

        def go():
            t0 = time.perf_counter()
            r = subprocess.run(["lftp", "-c", script], capture_output=True, text=True,
                               timeout=600, stdin=subprocess.DEVNULL)
            return r, time.perf_counter() - t0

        (r, wall), cpu = self.measured(px, go)
        n = self.a.small_files
        try:
            if r.returncode != 0:
                return self.fail("small", px, f"lftp rc={r.returncode} {(r.stdout + r.stderr).strip()[-300:]}")
            src_dir = os.path.join(self.pub, "small")
            names = sorted(os.listdir(src_dir))
            got = sorted(os.listdir(out))
            if got != names:
                return self.fail("small", px, f"got {len(got)} files, want {len(names)}")
            for nm in names:
                if file_sha256(os.path.join(out, nm)) != self.sha[os.path.join(src_dir, nm)]:
                    return self.fail("small", px, f"{nm}: SHA-256 mismatch")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        self.rec("small", "files/s", px.name, n / wall)
        self.rec("small", "proxy CPU-ms/file", px.name, cpu * 1000 / n)
        return f"{n / wall:.1f} files/s ({wall:.2f}s for {n})"

    def shape_latency(self, px):
        keys = ("pretransfer s", "starttransfer s", "appconnect s",
                "ftplib ready s", "ftplib first byte s")
        samples = {k: [] for k in keys}
        gap = self.a.latency_gap
        for _ in range(self.a.latency_reps):
            px.quiesce(self.backend.pid)
            time.sleep(gap)
            ok, wall, w, err = curl_download(self.url(px, "pub/tiny.bin"), self.tiny, "sha256",
                                             self.sha[self.tiny])
            if not ok:
                return self.fail("latency", px, err)
            samples["pretransfer s"].append(w["pretransfer"])
            samples["starttransfer s"].append(w["starttransfer"])
            samples["appconnect s"].append(w["appconnect"])
            px.quiesce(self.backend.pid)
            time.sleep(gap)
            try:
                ready, first = ftplib_first_byte(px.port, "pub/tiny.bin", self.sha[self.tiny])
            except Exception as e:  # noqa: BLE001 - reported as a failure
                return self.fail("latency", px, f"ftplib: {type(e).__name__}: {e}")
            samples["ftplib ready s"].append(ready)
            samples["ftplib first byte s"].append(first)
        for k, v in samples.items():
            self.rec("latency", k, px.name, statistics.median(v))
        med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        return ("median curl pretransfer {:.1f} ms / starttransfer {:.1f} ms; ftplib ready "
                "{:.1f} ms / first byte {:.1f} ms".format(
                    med["pretransfer s"], med["starttransfer s"], med["ftplib ready s"],
                    med["ftplib first byte s"]))

    def parallel_downloads(self, px, shape, remote, local, n, extra=lambda i: []):
        """n curl downloads of `remote` at once (each verified against `local`,
        curl arguments `extra(i)`): records aggregate MB/s, peak proxy memory and
        CPU-s/GiB under `shape`; returns (MB/s, MiB, CPU-s/GiB), or a failure."""
        a = self.a
        size = os.path.getsize(local)
        results = [None] * n
        sampler = MemSampler(px.pid, px.tree)

        def one(i):
            results[i] = curl_download(self.url(px, remote), local, a.verify, self.sha[local],
                                       extra=extra(i))

        def go():
            sampler.start()
            ths = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
            t0 = time.perf_counter()
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            wall = time.perf_counter() - t0
            sampler.stop()
            return wall

        wall, cpu = self.measured(px, go)
        bad = [r for r in results if not r or not r[0]]
        if bad:
            return self.fail(shape, px, f"{len(bad)}/{n} transfers failed: {bad[0][3] if bad[0] else '?'}")
        total = size * n
        mem_mib = (sampler.peak_pss if px.tree else sampler.peak_rss) / 1024
        self.rec(shape, "aggregate MB/s", px.name, total / 1e6 / wall)
        self.rec(shape, "peak proxy mem MiB", px.name, mem_mib)
        self.rec(shape, "proxy CPU-s/GiB", px.name, cpu / (total / GiB))
        return total / 1e6 / wall, mem_mib, cpu / (total / GiB)

    def shape_concurrent(self, px):
        got = self.parallel_downloads(px, "concurrent", "pub/med.bin", self.med, self.a.concurrency)
        if not isinstance(got, tuple):
            return got
        rate, mem_mib, cpu_gib = got
        return (f"{rate:.0f} MB/s aggregate, peak {'PSS(tree)' if px.tree else 'RSS'} "
                f"{mem_mib:.1f} MiB, {cpu_gib:.2f} CPU-s/GiB")

    def shape_idle(self, px):
        a = self.a
        n = a.idle_sessions if px.name == "ftpsgate" else a.idle_sessions_modproxy
        if n <= 0:
            return None
        px.quiesce(self.backend.pid)
        base_rss, base_pss = px.mem()
        cmd = [sys.executable, os.path.join(HERE, "idle_client.py"), "--port", str(px.port),
               "-n", str(n), "--parallel", str(a.idle_parallel),
               # 25 sessions per source address: ftpsgate admits 50 per address by default.
               "--per-source", "25"]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        PROCS.append(p)
        errlines = []
        et = threading.Thread(target=lambda: errlines.extend(p.stderr), daemon=True)
        et.start()
        try:
            line = p.stdout.readline().split()
            if not line or line[0] != "READY":
                return self.fail("idle", px, f"client: {line} {''.join(errlines)[-300:]}")
            ok, errs, secs = int(line[1]), int(line[2]), float(line[3])
            time.sleep(a.idle_hold)
            held_rss, held_pss = px.mem()
            p.stdin.write("CHECK\n")
            p.stdin.flush()
            line = p.stdout.readline().split()
            alive, dead = (int(line[1]), int(line[2])) if line and line[0] == "CHECKED" else (0, ok)
            p.stdin.write("QUIT\n")
            p.stdin.flush()
            p.stdout.readline()
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
            if p in PROCS:
                PROCS.remove(p)
        et.join(timeout=1)
        if errlines:
            log(f"idle client ({px.name}): " + " | ".join(x.strip() for x in errlines[:5]))
        grow = (held_pss - base_pss) if px.tree else (held_rss - base_rss)
        per = grow / max(ok, 1)
        self.rec("idle", "sessions requested", px.name, n)
        self.rec("idle", "sessions held (NOOP ok)", px.name, alive)
        self.rec("idle", "errors", px.name, errs + dead)
        self.rec("idle", "setup s", px.name, secs)
        self.rec("idle", "KiB/session", px.name, per)
        self.rec("idle", "total mem MiB", px.name, (held_pss if px.tree else held_rss) / 1024)
        return (f"{alive}/{n} held, {errs} open errors, {dead} dead at check, "
                f"{per:.1f} KiB/session ({'PSS tree' if px.tree else 'RSS'}), setup {secs:.1f}s")

    def shape_logins(self, px):
        return scale.shape_logins(self, px)

    def shape_many(self, px):
        return scale.shape_many(self, px)

    def fail(self, shape, px, err):
        msg = f"{shape}/{px.name}: FAILED: {err}"
        log(msg)
        self.notes.append(msg)
        self.rec(shape, "failures", px.name, 1)
        return None

    # ---- driver
    def run(self):
        a = self.a
        # many and idle run last, and only in the last --idle-rounds rounds: 500
        # transfers or 5000 sessions leave ftpsgate's allocator (and ProFTPD's
        # scoreboard) at a high-water mark that would otherwise show up as the
        # "concurrent" shape's peak memory in later rounds.
        last = ("many", "idle")
        shapes = [s for s in a.shapes if s not in last] + [s for s in last if s in a.shapes]
        for r in range(1, a.rounds + 1):
            for shape in shapes:
                order = list(a.proxies) if r % 2 else list(reversed(a.proxies))
                if shape in last and r <= a.rounds - a.idle_rounds:
                    continue
                for name in order:
                    px = self.proxies[name]
                    self.check_alive()
                    t0 = time.monotonic()
                    try:
                        summary = getattr(self, f"shape_{shape}")(px)
                    except subprocess.TimeoutExpired as e:
                        summary = self.fail(shape, px, f"timeout: {e}")
                    if summary:
                        log(f"round {r}/{a.rounds} {shape:<10} {name:<8} {summary} "
                            f"[{time.monotonic() - t0:.1f}s]")
            self.check_alive()


# --------------------------------------------------------------------------- report

TARGETS = {  # (shape, metric): (op, ratio) of ftpsgate/mod_proxy medians
    ("download", "MB/s"): (">=", 1.5),
    ("download", "proxy CPU-s/GiB"): ("<=", 0.45),
    ("upload", "MB/s"): (">=", 1.5),
    ("upload", "proxy CPU-s/GiB"): ("<=", 0.3),
    ("small", "files/s"): (">=", 2.0),
    ("latency", "pretransfer s"): ("<=", 0.1),
    ("latency", "ftplib ready s"): ("<=", 0.1),
    ("small", "proxy CPU-ms/file"): ("<=", 0.4),
    ("logins", "logins/s full"): (">=", 2.0),
    ("logins", "logins/s resumed"): (">=", 2.0),
    ("concurrent", "aggregate MB/s"): (">=", 1.5),
    ("concurrent", "peak proxy mem MiB"): ("<=", 0.25),
}


NO_RATIO = {("logins", "share resumed (control and data)"), ("idle", "sessions requested"), ("idle", "sessions held (NOOP ok)"),
            ("idle", "errors"), ("idle", "setup s"), ("idle", "total mem MiB")}


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.4f}"


def summarize(results):
    rows = []
    for shape in ALL_SHAPES:
        for metric, per in results.get(shape, {}).items():
            row = {"shape": shape, "metric": metric}
            for px in PROXIES:
                v = per.get(px)
                row[px] = ({"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v),
                            "samples": v} if v else None)
            g, m = row["ftpsgate"], row["modproxy"]
            row["ratio"] = ((g["median"] / m["median"]) if g and m and m["median"]
                            and (shape, metric) not in NO_RATIO else None)
            t = TARGETS.get((shape, metric))
            row["target"] = f"{t[0]}{t[1]}x" if t else ""
            row["pass"] = None
            if t and row["ratio"] is not None:
                row["pass"] = row["ratio"] >= t[1] if t[0] == ">=" else row["ratio"] <= t[1]
            if shape == "idle" and g and metric == "errors":
                row["target"], row["pass"] = "ftpsgate =0", max(g["samples"]) == 0
            if shape == "idle" and g and metric == "sessions held (NOOP ok)":
                want = per.get("ftpsgate") and results["idle"].get("sessions requested", {}).get("ftpsgate")
                row["target"] = "ftpsgate =all"
                row["pass"] = bool(want) and all(h == w for h, w in zip(g["samples"], want))
            rows.append(row)
    return rows


def cell(c):
    if not c:
        return "-"
    if c["n"] == 1:
        return fmt(c["median"])
    return f"{fmt(c['median'])} [{fmt(c['min'])}-{fmt(c['max'])}]"


def table_text(rows):
    hdr = ["shape", "metric", "ftpsgate med [min-max]", "mod_proxy med [min-max]", "ratio g/m",
           "target", "ok"]
    body = [[r["shape"], r["metric"], cell(r["ftpsgate"]), cell(r["modproxy"]),
             fmt(r["ratio"]) if r["ratio"] is not None else "-", r["target"],
             {True: "PASS", False: "FAIL", None: ""}[r["pass"]]] for r in rows]
    w = [max(len(x[i]) for x in [hdr] + body) for i in range(len(hdr))]
    line = lambda x: "  ".join(s.ljust(w[i]) for i, s in enumerate(x)).rstrip()  # noqa: E731
    return "\n".join([line(hdr), line(["-" * k for k in w])] + [line(x) for x in body])


def table_md(rows):
    out = ["| shape | metric | ftpsgate median [min-max] | mod_proxy median [min-max] | ratio g/m | target | ok |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            r["shape"], r["metric"], cell(r["ftpsgate"]), cell(r["modproxy"]),
            fmt(r["ratio"]) if r["ratio"] is not None else "-", r["target"],
            {True: "PASS", False: "FAIL", None: ""}[r["pass"]]))
    return "\n".join(out)


def versions(a):
    v = {}
    for k, cmd in {"proftpd": ["proftpd", "-v"], "curl": ["curl", "--version"],
                   "lftp": ["lftp", "--version"], "openssl": ["openssl", "version"]}.items():
        try:
            v[k] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            v[k] = None
    try:
        v["proftpd-mod-proxy"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "proftpd-mod-proxy"],
            capture_output=True, text=True).stdout
    except OSError:
        pass
    if "ftpsgate" in a.proxies:
        try:
            st = os.stat(a.ftpsgate)
            v["ftpsgate"] = {"path": a.ftpsgate, "mtime": datetime.datetime.fromtimestamp(
                st.st_mtime).isoformat(timespec="seconds"), "size": st.st_size}
        except OSError:
            pass
    v["kernel"] = platform.release()
    v["cpus"] = os.cpu_count()
    return v


# --------------------------------------------------------------------------- main


def parse_args():
    ap = argparse.ArgumentParser(description="ftpsgate vs ProFTPD mod_proxy FTPS benchmark")
    ap.add_argument("--ftpsgate", default=os.path.join(REPO, "target", "release", "ftpsgate"),
                    help="ftpsgate binary (default: target/release/ftpsgate)")
    ap.add_argument("--ftpsgate-arg", action="append", default=[],
                    help="extra argument for 'ftpsgate serve' (repeatable)")
    ap.add_argument("--ftpsgate-log", default="warn", help="RUST_LOG for ftpsgate if unset (warn)")
    ap.add_argument("--proxies", default="ftpsgate,modproxy",
                    help="which proxies to run: ftpsgate,modproxy (default both)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--shapes", default=",".join(ALL_SHAPES),
                    help=f"comma list from {','.join(ALL_SHAPES)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 round: a smoke run")
    ap.add_argument("--out", help="also write results: X.json, X.md, or X (writes X.json and X.md)")
    ap.add_argument("--verify", choices=("cmp", "sha256"), default="sha256",
                    help="download verification: streaming SHA-256 (default) or byte compare against the "
                         "mmap'd source (cmp; cheaper per byte but more wake-ups, measured slower here)")
    ap.add_argument("--big-mib", type=int, help="download/upload file size (1024; quick 64)")
    ap.add_argument("--small-files", type=int, default=200)
    ap.add_argument("--small-kib", type=int, default=4)
    ap.add_argument("--latency-reps", type=int, help="one-file sessions per round (15; quick 5)")
    ap.add_argument("--latency-gap", type=float, default=1.0,
                    help="idle seconds before each latency session (1.0): ProFTPD's master "
                         "stalls new connections ~0.4 s right after reaping a session")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--conc-mib", type=int, help="MiB per concurrent session (20; quick 2)")
    ap.add_argument("--idle-sessions", type=int, help="ftpsgate idle sessions (5000; quick 200)")
    ap.add_argument("--idle-sessions-modproxy", type=int,
                    help="mod_proxy idle sessions, 0 to skip (300; quick 50): one process each")
    ap.add_argument("--idle-parallel", type=int, default=64, help="idle handshakes in flight")
    ap.add_argument("--idle-hold", type=float, default=10.0, help="seconds to hold idle sessions")
    ap.add_argument("--idle-rounds", type=int, default=1,
                    help="how many of the last rounds include idle (1: only the last round)")
    ap.add_argument("--passive-width", type=int, default=1000, help="passive ports per server")
    ap.add_argument("--cert", help="PEM cert for both proxies (default: fresh EC P-256)")
    ap.add_argument("--key", help="PEM key for --cert")
    ap.add_argument("--vsftpd", help="vsftpd binary (default: /usr/sbin/vsftpd or setup.sh's)")
    ap.add_argument("--ftp-user", default="ftp", help="vsftpd anonymous user (ftp)")
    ap.add_argument("--login-seconds", type=float, help="seconds per logins run (20; quick 5)")
    ap.add_argument("--login-procs", type=int, default=8, help="login client processes")
    ap.add_argument("--many-sessions", type=int, help="concurrent transfers of `many` (500; quick 100)")
    ap.add_argument("--many-kib", type=int, default=1024, help="KiB per `many` transfer")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.big_mib = a.big_mib or (64 if q else 1024)
    a.latency_reps = a.latency_reps or (5 if q else 15)
    a.conc_mib = a.conc_mib or (2 if q else 20)
    a.login_seconds = a.login_seconds or (5 if q else 20)
    a.many_sessions = a.many_sessions or (100 if q else 500)
    a.idle_sessions = a.idle_sessions if a.idle_sessions is not None else (200 if q else 5000)
    a.idle_sessions_modproxy = (a.idle_sessions_modproxy if a.idle_sessions_modproxy is not None
                                else (50 if q else 300))
    a.shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    for s in a.shapes:
        if s not in ALL_SHAPES:
            ap.error(f"unknown shape {s!r}")
    a.proxies = [p.strip() for p in a.proxies.split(",") if p.strip()]
    for p in a.proxies:
        if p not in PROXIES:
            ap.error(f"unknown proxy {p!r}")
    if bool(a.cert) != bool(a.key):
        ap.error("--cert and --key go together")
    a.ftpsgate = os.path.abspath(a.ftpsgate)
    return a


def main():
    a = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (ProFTPD and vsftpd drop privileges per session)")
    for tool in ("curl", "lftp", "openssl", "proftpd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run bench/setup.sh")
    raise_nofile()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    b = Bench(a)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.monotonic()
    rc = 0
    try:
        b.make_cert()
        b.make_data()
        b.start()
        log(f"shapes {a.shapes}, {a.rounds} round(s), proxies {a.proxies}"
            f"{' (quick)' if a.quick else ''}")
        b.run()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        b.notes.append(f"interrupted: {e}")
        rc = 130
    except SystemExit as e:
        log(f"error: {e}")
        b.notes.append(f"error: {e}")
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
        if a.keep or rc:
            log(f"work dir kept: {b.work}")
            # drop the big data files, keep configs and logs
            shutil.rmtree(os.path.join(b.work, "root"), ignore_errors=True)
        else:
            shutil.rmtree(b.work, ignore_errors=True)

    rows = summarize(b.results)
    conf = {k: v for k, v in vars(a).items()}
    head = (f"ftpsgate vs ProFTPD mod_proxy — {started}, {a.rounds} round(s), "
            f"{time.monotonic() - t0:.0f}s, big={a.big_mib} MiB, small={a.small_files}x{a.small_kib} KiB, "
            f"concurrent={a.concurrency}x{a.conc_mib} MiB, idle={a.idle_sessions}"
            f"(mod_proxy {a.idle_sessions_modproxy}), verify={a.verify}")
    memo = ("mem: ftpsgate = RSS of its process; mod_proxy = PSS summed over the proftpd "
            "master + session processes. CPU = utime+stime of the proxy (ProFTPD: master incl. "
            "reaped children, cutime+cstime) over the measured interval. MB = 10^6 bytes.")
    print()
    print(head)
    print(table_text(rows))
    print(memo)
    for n in b.notes:
        print("note:", n)
    if a.out:
        base, ext = os.path.splitext(a.out)
        doc = {"started": started, "config": conf, "versions": versions(a), "rows": rows,
               "raw": b.results, "notes": b.notes}
        outs = [a.out] if ext in (".json", ".md") else [a.out + ".json", a.out + ".md"]
        for o in outs:
            d = os.path.dirname(os.path.abspath(o))
            os.makedirs(d, exist_ok=True)
            with open(o, "w") as f:
                if o.endswith(".json"):
                    json.dump(doc, f, indent=2, default=str)
                else:
                    f.write(f"# {head}\n\n{table_md(rows)}\n\n{memo}\n")
                    for n in b.notes:
                        f.write(f"\n- note: {n}")
                    f.write("\n")
            log(f"wrote {o}")
    failed = any(r["metric"] == "failures" for r in rows)
    return rc or (2 if failed else 0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
