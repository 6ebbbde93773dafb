#!/usr/bin/env python3
"""bench/soak.py — owns ftpsgate's soak test (issue 8, "Prove it"): many FTPS sessions
cycling login and small transfers for a bounded time while the proxy's RSS and open file
descriptors are sampled, then a verdict on whether both stayed flat; plus the idle check
(N concurrent idle TLS control sessions, proxy memory per session).

What it starts (all on loopback, every port chosen by the OS, everything killed on exit):

    soak clients (asyncio, --client-procs processes, sources spread over 127.1.0.0/16)
        ══FTPS══▶ release ftpsgate (explicit listener, default settings + metrics)
        ──FTP──▶ pyftpdlib (started by this script, one process, tmpfs root)

What the load is ("5,000 sessions cycling login and small transfers"): --sessions workers
(default 5000), each of which keeps one control session open and cycles it forever:

    connect, 220, AUTH TLS, TLS handshake, USER, PASS, PBSZ 0, PROT P, TYPE I   ("login")
    [optional --hold seconds idle]
    PASV + STOR of --size fresh random bytes, EPSV + RETR of the same file, compare
    bytes, QUIT, close ("transfer"), and straight back to "login".

A gate bounds how many workers are active at once (--parallel); the rest wait with their
control session open and idle. Logins have priority at the gate, so a worker that has
just quit reconnects at once: about --sessions control sessions are open at every moment
and each of them logs in, transfers and quits over and over. The rate (sessions/s) is
whatever the machine manages; it is reported, not set. When the time is up, a logged-in
session finishes the transfer it has started, or QUITs without one, and the clients exit.

Sampled every --interval seconds: the proxy's VmRSS and open fds (/proc/PID), its CPU,
sessions open (from its /metrics), sessions cycled and errors (from the clients).
Verdict "flat": 0 errors; max RSS of the last third of the load <= (1 + --rss-tolerance)
x max RSS of the first third; the same for open fds; and after the clients have quit,
open fds back to the pre-load baseline.

Roles: this file is the driver; with --role client it is one load-generating process, with
--role backend the pyftpdlib server. The idle check uses bench/idle_client.py.
See bench/README.md ("Soak") for how to run it and the recorded figures.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import queue
import random
import re
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 200_000  # RLIMIT_NOFILE for this script, the proxy, the backend and the clients
USER, PASSWORD = "soak", "soak-password"


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def raise_nofile(n=NOFILE):
    """Raise RLIMIT_NOFILE (soft and hard) to n; as root the hard limit may grow too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in ((n, max(n, hard)), (min(n, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            return
        except (ValueError, OSError):
            continue


def source_ip(i, per_ip):
    """Source address of worker i: per_ip workers share one address in 127.1.0.0/16, so
    the proxy's per-address limit (default 50) is never reached and no address runs out
    of ephemeral ports."""
    k = i // per_ip
    return f"127.1.{k // 250}.{k % 250 + 1}"


# =========================================================================== backend role


def backend_main(a):
    """pyftpdlib in one process: user soak with full rights on --root, no connection
    limits, logging only warnings. Prints 'backend listening PORT' once bound."""
    import logging
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    raise_nofile()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    auth = DummyAuthorizer()
    auth.add_user(USER, PASSWORD, a.root, perm="elradfmwMT")
    handler = FTPHandler
    handler.authorizer = auth
    handler.banner = "soak backend (pyftpdlib)"
    server = FTPServer(("127.0.0.1", 0), handler, backlog=4096)
    server.max_cons = 0  # unlimited (default 512)
    server.max_cons_per_ip = 0
    print(f"backend listening {server.socket.getsockname()[1]}", flush=True)
    server.serve_forever(handle_exit=True)


# =========================================================================== client role


class FtpError(Exception):
    """An unexpected reply or a protocol failure in one session step."""


class Control:
    """One FTPS control connection (asyncio streams), with reply parsing."""

    def __init__(self, reader, writer, timeout):
        self.r, self.w, self.timeout = reader, writer, timeout

    async def reply(self):
        """One (possibly multi-line) reply: (code, text)."""
        line = await asyncio.wait_for(self.r.readline(), self.timeout)
        if not line:
            raise FtpError("control connection closed")
        text = line.decode("latin-1")
        code = text[:3]
        if text[3:4] == "-":
            while True:
                more = await asyncio.wait_for(self.r.readline(), self.timeout)
                if not more:
                    raise FtpError("control closed in a multi-line reply")
                more = more.decode("latin-1")
                text += more
                if more[:3] == code and more[3:4] == " ":
                    break
        return code, text.strip()

    async def cmd(self, line, expect):
        """Send one command; the reply code must start with one of `expect`."""
        self.w.write(line.encode() + b"\r\n")
        await self.w.drain()
        return await self.expect(expect, line.split()[0])

    async def expect(self, expect, what):
        code, text = await self.reply()
        if not code.startswith(tuple(expect)):
            raise FtpError(f"{what}: {text[:120]!r}")
        return text

    def abort(self):
        try:
            self.w.transport.abort()
        except Exception:  # noqa: BLE001 - already gone
            pass


class PriorityGate:
    """A counting semaphore with two FIFO queues: priority 0 (logins) is served before
    priority 1 (transfers)."""

    def __init__(self, n):
        self.free = n
        self.queues = (deque(), deque())

    async def acquire(self, prio):
        if self.free > 0 and not (self.queues[0] or self.queues[1]):
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.queues[prio].append(fut)
        await fut  # release() hands its slot straight to us

    def release(self):
        for q in self.queues:
            while q:
                fut = q.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self.free += 1


class Stats:
    def __init__(self):
        self.cycles = 0          # sessions that completed login, STOR, RETR (verified), QUIT
        self.logins = 0
        self.open = 0            # control connections open now
        self.bytes = 0
        self.quit_at_stop = 0    # logged-in sessions that QUIT without a transfer at STOP
        self.errors = {}         # "stage: kind" -> count
        self.samples = {}        # "stage: kind" -> first message

    def error(self, stage, e):
        kind = f"{stage}: {type(e).__name__}"
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.samples.setdefault(kind, str(e)[:200])

    def line(self, tag):
        return json.dumps({"tag": tag, "t": time.time(), "cycles": self.cycles,
                           "logins": self.logins, "open": self.open, "bytes": self.bytes,
                           "quit_at_stop": self.quit_at_stop,
                           "errors": self.errors, "samples": self.samples})


def parse_pasv(text):
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
    if not m:
        raise FtpError(f"PASV: {text!r}")
    n = [int(x) for x in m.groups()]
    return f"{n[0]}.{n[1]}.{n[2]}.{n[3]}", n[4] * 256 + n[5]


def parse_epsv(text):
    m = re.search(r"\(\|\|\|(\d+)\|\)", text)
    if not m:
        raise FtpError(f"EPSV: {text!r}")
    return int(m.group(1))


async def client_main(a):
    """One load-generating process: workers a.first, a.first+a.step, ... < a.sessions."""
    raise_nofile()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE          # ephemeral self-signed proxy certificate
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    gate = PriorityGate(a.parallel)
    stats = Stats()
    stop = asyncio.Event()
    T = a.timeout

    async def data_conn(host, port, src):
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ctx, server_hostname="localhost", local_addr=(src, 0),
            ssl_handshake_timeout=T), T)

    async def login(src):
        """Connect and log in; returns the Control (counted as open)."""
        r, w = await asyncio.wait_for(
            asyncio.open_connection(a.host, a.port, local_addr=(src, 0)), T)
        c = Control(r, w, T)
        stats.open += 1
        try:
            await c.expect("2", "greeting")
            await c.cmd("AUTH TLS", "234")
            await asyncio.wait_for(w.start_tls(ctx, server_hostname="localhost"), T)
            await c.cmd(f"USER {USER}", "3")
            await c.cmd(f"PASS {PASSWORD}", "2")
            await c.cmd("PBSZ 0", "2")
            await c.cmd("PROT P", "2")
            await c.cmd("TYPE I", "2")
        except BaseException:
            c.abort()
            stats.open -= 1
            raise
        stats.logins += 1
        return c

    async def transfer(c, src, name):
        """STOR fresh bytes (PASV), RETR them back (EPSV), compare, QUIT."""
        payload = os.urandom(a.size)
        host, port = parse_pasv(await c.cmd("PASV", "227"))
        _, dw = await data_conn(host, port, src)
        try:
            await c.cmd(f"STOR {name}", "1")
            dw.write(payload)
            await dw.drain()
            dw.close()                      # close_notify, then FIN
            await asyncio.wait_for(dw.wait_closed(), T)
        except BaseException:
            dw.transport.abort()
            raise
        await c.expect("2", "STOR final")
        port = parse_epsv(await c.cmd("EPSV", "229"))
        dr, dw = await data_conn(a.host, port, src)
        try:
            await c.cmd(f"RETR {name}", "1")
            got = await asyncio.wait_for(dr.read(), T)   # until close_notify / EOF
            dw.close()
            await asyncio.wait_for(dw.wait_closed(), T)
        except BaseException:
            dw.transport.abort()
            raise
        await c.expect("2", "RETR final")
        if got != payload:
            raise FtpError(f"RETR returned {len(got)} bytes that differ from the "
                           f"{len(payload)} stored")
        await c.cmd("QUIT", "2")
        stats.bytes += 2 * len(payload)

    async def worker(i):
        src = source_ip(i, a.per_ip)
        name = f"w{i}.bin"
        while not stop.is_set():
            c = None
            await gate.acquire(0)
            try:
                c = await login(src)
            except Exception as e:  # noqa: BLE001 - counted
                stats.error("login", e)
            finally:
                gate.release()
            if c is None:
                await asyncio.sleep(1.0)  # back off after a failed login
                continue
            if a.hold > 0:
                try:
                    await asyncio.wait_for(stop.wait(), random.uniform(0.5, 1.5) * a.hold)
                except asyncio.TimeoutError:
                    pass
            await gate.acquire(1)
            ok = False
            try:
                if stop.is_set():
                    # The run is over: end this session cleanly without a transfer.
                    await c.cmd("QUIT", "2")
                    stats.quit_at_stop += 1
                else:
                    await transfer(c, src, name)
                    stats.cycles += 1
                ok = True
            except Exception as e:  # noqa: BLE001 - counted
                stats.error("transfer", e)
            finally:
                gate.release()
            # After 221 the proxy closes the session; answer its close_notify with ours.
            if ok:
                try:
                    c.w.close()
                    await asyncio.wait_for(c.w.wait_closed(), T)
                except Exception:  # noqa: BLE001 - the session is over either way
                    c.abort()
            else:
                c.abort()
            stats.open -= 1

    async def reporter():
        while not stop.is_set():
            print(stats.line("stats"), flush=True)
            try:
                await asyncio.wait_for(stop.wait(), a.report)
            except asyncio.TimeoutError:
                pass

    async def stop_on_stdin():
        # The driver writes STOP (or closes stdin) to end the run.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        stop.set()

    workers = [asyncio.create_task(worker(i)) for i in range(a.first, a.sessions, a.step)]
    rep = asyncio.create_task(reporter())
    asyncio.create_task(stop_on_stdin())
    await asyncio.gather(*workers)
    await rep
    print(stats.line("done"), flush=True)


# =========================================================================== driver


PROCS = []


def spawn(argv, **kw):
    kw.setdefault("start_new_session", True)
    p = subprocess.Popen(argv, preexec_fn=raise_nofile, **kw)
    PROCS.append(p)
    return p


def cleanup():
    for p in reversed(PROCS):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    PROCS.clear()


class LineReader(threading.Thread):
    """Reads a child's stdout lines into a queue (so the driver can wait with a timeout)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.q = stream, queue.Queue()
        self.start()

    def run(self):
        for line in self.stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, pattern, timeout, proc, what):
        """The first line matching pattern (a regex); polls the queue, never sleeps."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"{what}: no line matching {pattern!r} within {timeout}s")
            try:
                line = self.q.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                raise SystemExit(f"{what} exited (rc {proc.wait()}) before {pattern!r}")
            m = re.search(pattern, line)
            if m:
                return m


def proc_sample(pid):
    """(rss_kib, hwm_kib, threads, fds, cpu_s) of pid from /proc."""
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            st[k] = v.split()
    with open(f"/proc/{pid}/stat", "rb") as f:
        s = f.read()
    x = s[s.rindex(b")") + 2:].split()
    cpu = (int(x[11]) + int(x[12])) / CLK_TCK
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(st["VmRSS"][0]), int(st["VmHWM"][0]), int(st["Threads"][0]), fds, cpu


def proc_nofile(pid):
    """The soft RLIMIT_NOFILE of pid."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise SystemExit(f"no open-files limit in /proc/{pid}/limits")


def scrape(addr):
    """ftpsgate /metrics as {name{labels}: value} (Prometheus text)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def msum(m, prefix, **labels):
    """Sum of metric series whose name starts with prefix and carry the given labels."""
    tot = 0.0
    for k, v in m.items():
        if k.split("{")[0] == prefix and all(f'{lk}="{lv}"' in k for lk, lv in labels.items()):
            tot += v
    return tot


class Proxy:
    """A release ftpsgate in front of the backend, default settings unless overridden."""

    def __init__(self, a, work, bport, tag):
        self.a = a
        cfg = os.path.join(work, f"ftpsgate-{tag}.yaml")
        with open(cfg, "w") as f:
            f.write("# written by bench/soak.py: defaults except the addresses\n"
                    "listen: ['127.0.0.1:0']\n"
                    f"backend: '127.0.0.1:{bport}'\n"
                    "metrics: '127.0.0.1:0'\n")
            for kv in a.ftpsgate_set:
                k, _, v = kv.partition("=")
                f.write(f"{k}: {v}\n")
        check = subprocess.run([a.ftpsgate, "check", "--config", cfg],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"ftpsgate check: {check.stdout}{check.stderr}")
        self.logpath = os.path.join(work, f"ftpsgate-{tag}.log")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        with open(self.logpath, "w") as lf:
            self.proc = spawn([a.ftpsgate, "serve", "--config", cfg], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=lf, text=True, env=env)
        out = LineReader(self.proc.stdout)
        m = out.wait_for(r"^ftpsgate listening Explicit (\S+):(\d+)$", 30, self.proc, "ftpsgate")
        self.host, self.port = m.group(1), int(m.group(2))
        m = out.wait_for(r"^ftpsgate metrics (\S+)$", 30, self.proc, "ftpsgate")
        self.metrics = m.group(1)
        self.pid = self.proc.pid
        log(f"ftpsgate pid {self.pid} ({tag}) on {self.host}:{self.port}, metrics "
            f"{self.metrics}, config {cfg}")

    def sample(self):
        return proc_sample(self.pid)

    def metrics_now(self):
        return scrape(self.metrics)

    def alive(self):
        return self.proc.poll() is None

    def log_summary(self):
        """Counts of WARN/ERROR lines in the proxy's log, and the first few of each."""
        kinds = {"WARN": [], "ERROR": []}
        with open(self.logpath, errors="replace") as f:
            for line in f:
                for k in kinds:
                    if f" {k} " in line:
                        kinds[k].append(line.strip())
        return kinds

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_until(pred, timeout, step=0.5):
    """Poll pred() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) for c, w in zip(cols, widths))


class Soak:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="ftpsgate-soak-", dir="/dev/shm")
        self.result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                                  f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') >> 30} GiB, "
                                  f"Linux {platform.release()}",
                       "argv": sys.argv, "config": vars(a).copy()}
        self.failures = []

    def start_backend(self):
        root = os.path.join(self.work, "root")
        os.makedirs(root)
        self.backend_log = os.path.join(self.work, "backend.log")
        with open(self.backend_log, "w") as lf:
            p = spawn([sys.executable, os.path.abspath(__file__), "--role", "backend",
                       "--root", root], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      stderr=lf, text=True)
        m = LineReader(p.stdout).wait_for(r"^backend listening (\d+)$", 30, p, "backend")
        self.backend, self.bport = p, int(m.group(1))
        log(f"backend pyftpdlib pid {p.pid} on 127.0.0.1:{self.bport}")

    # ------------------------------------------------------------------ cycling soak
    def run_soak(self):
        a = self.a
        px = Proxy(a, self.work, self.bport, "soak")
        base = px.sample()
        self.result["soak_baseline"] = {"rss_kib": base[0], "fds": base[3], "threads": base[2]}
        log(f"baseline: RSS {base[0]} KiB, {base[3]} fds, {base[2]} threads")

        clients, readers = [], []
        for j in range(a.client_procs):
            p = spawn([sys.executable, os.path.abspath(__file__), "--role", "client",
                       "--host", px.host, "--port", str(px.port), "--sessions", str(a.sessions),
                       "--first", str(j), "--step", str(a.client_procs),
                       "--parallel", str(max(1, a.parallel // a.client_procs)),
                       "--per-ip", str(a.per_ip), "--size", str(a.size),
                       "--hold", str(a.hold), "--timeout", str(a.timeout),
                       "--report", str(min(a.interval, 5.0))],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=open(os.path.join(self.work, f"client{j}.log"), "w"), text=True)
            clients.append(p)
            readers.append(LineReader(p.stdout))
        latest = [None] * a.client_procs

        def drain_stats():
            for j, rd in enumerate(readers):
                while True:
                    try:
                        line = rd.q.get_nowait()
                    except queue.Empty:
                        break
                    if line and line.startswith("{"):
                        latest[j] = json.loads(line)

        def totals():
            t = {"cycles": 0, "logins": 0, "open": 0, "bytes": 0, "quit_at_stop": 0,
                 "errors": {}, "samples": {}}
            for s in latest:
                if not s:
                    continue
                for k in ("cycles", "logins", "open", "bytes", "quit_at_stop"):
                    t[k] += s[k]
                for k, v in s["errors"].items():
                    t["errors"][k] = t["errors"].get(k, 0) + v
                t["samples"].update(s["samples"])
            return t

        rows = []
        hdr = ["t_s", "rss_MiB", "fds", "thr", "cpu_%", "open(proxy)", "open(cli)",
               "cycled", "cyc/s", "errors"]
        widths = [6, 8, 6, 4, 6, 11, 9, 8, 6, 6]
        log(fmt_row(hdr, widths))
        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        prev_t, prev_cpu, prev_cyc = t0, base[4], 0
        next_t = t0
        while True:
            next_t += a.interval
            # Sleep to the next sampling instant: this is the measurement cadence, not a
            # readiness wait.
            time.sleep(max(0.0, min(next_t, end) - time.monotonic()))
            now = time.monotonic()
            drain_stats()
            if not px.alive():
                self.failures.append(f"ftpsgate exited with {px.proc.returncode} during the soak")
                break
            rss, hwm, thr, fds, cpu = px.sample()
            try:
                m = px.metrics_now()
            except OSError as e:
                m = {}
                self.failures.append(f"metrics scrape failed: {e}")
            popen = int(msum(m, "ftpsgate_sessions_open"))
            tot = totals()
            errs = sum(tot["errors"].values())
            row = {"t": round(now - t0, 1), "rss_kib": rss, "hwm_kib": hwm, "fds": fds,
                   "threads": thr, "cpu_pct": 100 * (cpu - prev_cpu) / max(now - prev_t, 1e-9),
                   "open_proxy": popen, "open_client": tot["open"], "cycles": tot["cycles"],
                   "rate": (tot["cycles"] - prev_cyc) / max(now - prev_t, 1e-9), "errors": errs,
                   "tls_bindings": msum(m, "ftpsgate_tls_bindings"),
                   "passive_in_use": msum(m, "ftpsgate_passive_ports_in_use")}
            rows.append(row)
            log(fmt_row([f"{row['t']:.0f}", f"{rss / 1024:.1f}", fds, thr, f"{row['cpu_pct']:.0f}",
                         popen, tot["open"], tot["cycles"], f"{row['rate']:.1f}", errs], widths))
            prev_t, prev_cpu, prev_cyc = now, cpu, tot["cycles"]
            if now >= end:
                break

        # Stop: every logged-in session transfers and QUITs, then the clients exit.
        log("stopping clients (each open session finishes its transfer and QUITs)")
        for p in clients:
            try:
                p.stdin.write("STOP\n")
                p.stdin.flush()
                p.stdin.close()
            except OSError:
                pass
        for p in clients:
            try:
                p.wait(timeout=max(120, 2 * a.timeout))
            except subprocess.TimeoutExpired:
                self.failures.append(f"client {p.pid} did not finish after STOP; killed")
                p.kill()
                p.wait()
        for rd in readers:
            rd.join(timeout=5)
        drain_stats()
        tot = totals()
        drain_s = time.monotonic() - t0 - rows[-1]["t"] if rows else 0.0
        log(f"clients done {drain_s:.1f}s after the last sample: {tot['quit_at_stop']} sessions "
            f"quit at STOP without a transfer, {tot['cycles'] - (rows[-1]['cycles'] if rows else 0)} "
            "more cycles than the last sample counted")

        # After the load: the proxy should drop back to its baseline fds once every session
        # has ended. Poll its sessions_open gauge and fd count.
        def settled():
            try:
                s = px.sample()
                done = s[3] <= base[3] and msum(px.metrics_now(), "ftpsgate_sessions_open") == 0
            except OSError:
                return None
            return s if done else None
        fin = wait_until(settled, 60)
        after = px.sample()
        m = px.metrics_now()
        self.result["soak_metrics"] = {
            "sessions_total": msum(m, "ftpsgate_sessions_total"),
            "sessions_closed_clean": msum(m, "ftpsgate_sessions_closed_total", ending="clean"),
            "sessions_closed_routine": msum(m, "ftpsgate_sessions_closed_total", ending="routine"),
            "sessions_closed_error": msum(m, "ftpsgate_sessions_closed_total", ending="error"),
            "logins_success": msum(m, "ftpsgate_logins_total", result="success"),
            "logins_failure": msum(m, "ftpsgate_logins_total", result="failure"),
            "transfers_complete": msum(m, "ftpsgate_transfers_total", result="complete"),
            "transfers_not_complete": msum(m, "ftpsgate_transfers_total")
            - msum(m, "ftpsgate_transfers_total", result="complete"),
            "rejected": msum(m, "ftpsgate_connections_rejected_total"),
            "policy_refusals": msum(m, "ftpsgate_policy_refusals_total"),
            "bans": msum(m, "ftpsgate_bans_total"),
            "tls_bindings_after": msum(m, "ftpsgate_tls_bindings"),
            "passive_ports_in_use_after": msum(m, "ftpsgate_passive_ports_in_use"),
            "handshakes_control_full": msum(m, "ftpsgate_tls_handshakes_total", channel="control", handshake="full"),
            "handshakes_data_full": msum(m, "ftpsgate_tls_handshakes_total", channel="data", handshake="full"),
            "handshakes_data_resumed": msum(m, "ftpsgate_tls_handshakes_total", channel="data", handshake="resumed"),
        }
        logs = px.log_summary()
        px.stop()

        self.result["soak_rows"] = rows
        self.result["soak_client"] = tot
        self.result["soak_after"] = {"rss_kib": after[0], "hwm_kib": after[1], "threads": after[2],
                                     "fds": after[3], "settled": bool(fin), "drain_s": drain_s}
        self.result["soak_log"] = {k: (len(v), v[:5]) for k, v in logs.items()}
        self.verdict(rows, base, after, tot, bool(fin))

    def verdict(self, rows, base, after, tot, settled):
        a = self.a
        n = len(rows)
        if n == 0:
            raise SystemExit("no samples were taken")
        third = max(1, n // 3)
        first, last = rows[:third], rows[n - third:]
        rss1, rss3 = max(r["rss_kib"] for r in first), max(r["rss_kib"] for r in last)
        fd1, fd3 = max(r["fds"] for r in first), max(r["fds"] for r in last)
        # RSS trend over the last two thirds (least squares), KiB per minute: context only.
        tail = rows[third:]
        slope = 0.0
        if len(tail) >= 2:
            xs = [r["t"] for r in tail]
            ys = [r["rss_kib"] for r in tail]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            den = sum((x - mx) ** 2 for x in xs)
            slope = 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0
        errors = sum(tot["errors"].values())
        checks = {
            "errors == 0": errors == 0,
            f"RSS last third max <= {1 + a.rss_tolerance:.2f} x first third max":
                rss3 <= (1 + a.rss_tolerance) * rss1,
            f"fds last third max <= {1 + a.rss_tolerance:.2f} x first third max":
                fd3 <= (1 + a.rss_tolerance) * fd1,
            "fds back to baseline after the clients quit": settled and after[3] <= base[3],
        }
        v = {"rss_first_third_max_kib": rss1, "rss_last_third_max_kib": rss3,
             "rss_growth_pct": 100 * (rss3 - rss1) / rss1,
             "rss_slope_last_two_thirds_kib_per_min": slope,
             "fds_first_third_max": fd1, "fds_last_third_max": fd3,
             "fds_baseline": base[3], "fds_after": after[3],
             "cycles": tot["cycles"], "logins": tot["logins"], "errors": errors,
             "quit_at_stop": tot["quit_at_stop"],
             # rate over the load window (the drain after STOP is not counted)
             "sessions_per_s": rows[-1]["cycles"] / rows[-1]["t"] if rows else 0,
             "checks": checks, "flat": all(checks.values())}
        self.result["soak_verdict"] = v
        if not v["flat"]:
            self.failures.append("soak: " + ", ".join(k for k, ok in checks.items() if not ok))

    # ------------------------------------------------------------------ idle check
    def run_idle(self):
        """N concurrent idle TLS control sessions (after AUTH TLS + handshake; with the
        default backend_connect: after-tls each also holds a backend connection) against a
        fresh proxy: proxy RSS growth per session, fds, and a NOOP on every session."""
        a = self.a
        px = Proxy(a, self.work, self.bport, "idle")
        base = px.sample()
        # Each idle session costs the proxy two descriptors (client + backend). If its
        # RLIMIT_NOFILE cannot hold the requested count (a container without
        # CAP_SYS_RESOURCE keeps the hard limit where it is), run the most that fit and
        # say so, unless --idle-over-limit asks to see what happens past the limit.
        nofile = proc_nofile(px.pid)
        fit = (nofile - base[3] - 16) // 2
        n = a.idle
        if n > fit and not a.idle_over_limit:
            note = (f"requested {n} idle sessions, ran {fit}: the proxy's RLIMIT_NOFILE is "
                    f"{nofile} (this process could not raise it) and each session holds 2 fds")
            log("idle: " + note)
            self.result["idle_note"] = note
            n = fit
        log(f"idle: baseline RSS {base[0]} KiB, {base[3]} fds; opening {n} sessions")
        p = spawn([sys.executable, os.path.join(HERE, "idle_client.py"), "--host", px.host,
                   "--port", str(px.port), "-n", str(n), "--parallel", str(a.parallel),
                   "--per-source", str(a.per_ip)],
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=open(os.path.join(self.work, "idle_client.log"), "w"), text=True)
        rd = LineReader(p.stdout)
        m = rd.wait_for(r"^READY (\d+) (\d+) ([\d.]+)$", 1800, p, "idle_client")
        ok, errs, secs = int(m.group(1)), int(m.group(2)), float(m.group(3))
        # Every session that completed its handshake gets a backend connection: wait for
        # the proxy to hold 2 fds per session (client + backend) before measuring.
        want = base[3] + 2 * ok
        full = wait_until(lambda: px.sample()[3] >= want, 120)
        held = px.sample()
        mem = px.metrics_now()
        p.stdin.write("CHECK\n")
        p.stdin.flush()
        m = rd.wait_for(r"^CHECKED (\d+) (\d+)$", 600, p, "idle_client")
        alive, dead = int(m.group(1)), int(m.group(2))
        after_check = px.sample()
        p.stdin.write("QUIT\n")
        p.stdin.flush()
        rd.wait_for(r"^DONE$", 120, p, "idle_client")
        p.wait(timeout=60)
        settled = wait_until(lambda: px.sample()[3] <= base[3], 60)
        end = px.sample()
        logs = px.log_summary()
        px.stop()
        per = (held[0] - base[0]) / max(ok, 1)
        r = {"requested": a.idle, "ran": n, "proxy_nofile": nofile, "opened": ok, "open_errors": errs, "setup_s": secs,
             "fds_reached": bool(full), "alive_after_noop": alive, "dead": dead,
             "baseline_rss_kib": base[0], "held_rss_kib": held[0],
             "after_noop_rss_kib": after_check[0],
             "kib_per_session": per, "kib_per_session_after_noop": (after_check[0] - base[0]) / max(ok, 1),
             "baseline_fds": base[3], "held_fds": held[3], "end_fds": end[3],
             "fds_back_to_baseline": bool(settled),
             "sessions_open_metric": msum(mem, "ftpsgate_sessions_open"),
             "log": {k: (len(v), v[:5]) for k, v in logs.items()},
             "ok": ok == n and alive == n and errs == 0 and dead == 0 and per <= 64 and bool(settled)}
        self.result["idle"] = r
        log(f"idle: {ok}/{n} opened ({errs} errors) in {secs:.1f}s, {alive} alive after NOOP "
            f"({dead} dead); RSS {base[0]} -> {held[0]} KiB = {per:.1f} KiB/session "
            f"(after NOOP {r['kib_per_session_after_noop']:.1f}); fds {base[3]} -> {held[3]} -> {end[3]}")
        if not r["ok"]:
            self.failures.append("idle: " + json.dumps({k: r[k] for k in (
                "opened", "open_errors", "dead", "kib_per_session", "fds_back_to_baseline")}))

    # ------------------------------------------------------------------ report
    def report(self):
        res = self.result
        out = []
        if "soak_verdict" in res:
            v = res["soak_verdict"]
            out.append(f"Soak: {self.a.sessions} sessions cycling for {self.a.minutes:g} min "
                       f"({self.a.size} B STOR + RETR per session, --parallel {self.a.parallel}, "
                       f"{self.a.client_procs} client process(es))")
            out.append("")
            out.append("| t (s) | RSS MiB | fds | sessions open (proxy) | sessions cycled | sessions/s | errors |")
            out.append("|---:|---:|---:|---:|---:|---:|---:|")
            b = res["soak_baseline"]
            out.append(f"| before | {b['rss_kib'] / 1024:.1f} | {b['fds']} | 0 | 0 | | 0 |")
            rows = res["soak_rows"]
            step = max(1, len(rows) // self.a.table_rows)
            pick = rows[::step]
            if rows and pick[-1] is not rows[-1]:
                pick.append(rows[-1])
            for r in pick:
                out.append(f"| {r['t']:.0f} | {r['rss_kib'] / 1024:.1f} | {r['fds']} | "
                           f"{r['open_proxy']} | {r['cycles']} | {r['rate']:.1f} | {r['errors']} |")
            af = res["soak_after"]
            out.append(f"| after quit | {af['rss_kib'] / 1024:.1f} | {af['fds']} | 0 | "
                       f"{v['cycles']} | | {v['errors']} |")
            out.append("")
            out.append(f"sessions cycled {v['cycles']} (logins {v['logins']}; {v['quit_at_stop']} "
                       f"logged-in sessions quit at STOP without a transfer), "
                       f"{v['sessions_per_s']:.1f} sessions/s during the load, errors {v['errors']}")
            for k, n in sorted(res["soak_client"]["errors"].items()):
                out.append(f"  error {n} x {k}: {res['soak_client']['samples'].get(k, '')}")
            out.append(f"RSS first third max {v['rss_first_third_max_kib'] / 1024:.1f} MiB, last third max "
                       f"{v['rss_last_third_max_kib'] / 1024:.1f} MiB ({v['rss_growth_pct']:+.1f} %), "
                       f"trend over the last two thirds {v['rss_slope_last_two_thirds_kib_per_min']:+.0f} KiB/min; "
                       f"peak (VmHWM) {af['hwm_kib'] / 1024:.1f} MiB")
            out.append(f"fds first third max {v['fds_first_third_max']}, last third max "
                       f"{v['fds_last_third_max']}, baseline {v['fds_baseline']}, after quit {v['fds_after']}")
            out.append("proxy counters: " + ", ".join(f"{k} {int(x)}" for k, x in res["soak_metrics"].items()))
            lg = res["soak_log"]
            out.append(f"proxy log: {lg['WARN'][0]} WARN, {lg['ERROR'][0]} ERROR lines"
                       + "".join(f"\n  {x}" for x in lg["WARN"][1][:3] + lg["ERROR"][1][:3]))
            out.append("verdict: " + ("FLAT" if v["flat"] else "NOT FLAT") + " ("
                       + "; ".join(f"{k}: {'ok' if ok else 'FAIL'}" for k, ok in v["checks"].items()) + ")")
        if "idle" in res:
            r = res["idle"]
            out.append("")
            if "idle_note" in res:
                out.append(f"Idle: note: {res['idle_note']}")
            out.append(f"Idle: {r['opened']}/{r['ran']} TLS sessions held ({r['open_errors']} errors, "
                       f"set-up {r['setup_s']:.1f} s), {r['alive_after_noop']} answered NOOP ({r['dead']} dead); "
                       f"proxy RSS {r['baseline_rss_kib'] / 1024:.1f} -> {r['held_rss_kib'] / 1024:.1f} MiB = "
                       f"{r['kib_per_session']:.1f} KiB/session (after NOOP {r['kib_per_session_after_noop']:.1f}); "
                       f"fds {r['baseline_fds']} -> {r['held_fds']} -> {r['end_fds']}; "
                       f"target <= 64 KiB/session: {'met' if r['kib_per_session'] <= 64 else 'MISSED'}")
        if self.failures:
            out.append("")
            out += [f"FAILURE: {f}" for f in self.failures]
        text = "\n".join(out)
        print(text, flush=True)
        if self.a.out:
            with open(self.a.out + ".json", "w") as f:
                json.dump(res | {"failures": self.failures}, f, indent=1, default=str)
            with open(self.a.out + ".md", "w") as f:
                f.write(text + "\n")
            log(f"wrote {self.a.out}.json and {self.a.out}.md")


def driver_main(a):
    if not os.access(a.ftpsgate, os.X_OK):
        raise SystemExit(f"ftpsgate binary not found at {a.ftpsgate} (cargo build --release, or --ftpsgate)")
    raise_nofile()
    def on_term(_sig, _frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_term)
    s = Soak(a)
    rc = 0
    try:
        s.start_backend()
        # A phase that cannot finish (a child died, a line never came) is a failure of
        # that phase; the other phase's figures are still reported.
        for wanted, phase in ((a.minutes > 0 and a.sessions > 0, s.run_soak),
                              (a.idle > 0, s.run_idle)):
            if wanted:
                try:
                    phase()
                except SystemExit as e:
                    log(f"{phase.__name__}: {e}")
                    s.failures.append(f"{phase.__name__}: {e}")
        if s.backend.poll() is not None:
            s.failures.append(f"backend exited with {s.backend.returncode}")
        s.report()
        rc = 2 if s.failures else 0
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        cleanup()
        if a.keep:
            log(f"kept {s.work}")
        else:
            subprocess.run(["rm", "-rf", s.work])
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("driver", "client", "backend"), default="driver",
                    help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 minute, 500 sessions, 1000 idle sessions")
    ap.add_argument("--minutes", type=float, help="soak duration (default 10; 0 skips the soak)")
    ap.add_argument("--sessions", type=int, help="concurrent cycling sessions (default 5000)")
    ap.add_argument("--idle", type=int, help="idle TLS sessions for the idle check "
                                             "(default 10000; 0 skips it)")
    ap.add_argument("--idle-over-limit", action="store_true",
                    help="open --idle sessions even when the proxy's fd limit cannot hold them")
    ap.add_argument("--size", type=int, default=4096, help="bytes per STOR/RETR (4096)")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="seconds (x0.5-1.5 random) a session idles between login and "
                         "transfer (0: none; the gate queue already keeps sessions open)")
    ap.add_argument("--parallel", type=int, default=64,
                    help="sessions in an active phase at once, over all client processes (64)")
    ap.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    ap.add_argument("--per-ip", type=int, default=25,
                    help="sessions per client source address in 127.1.0.0/16 (25; the proxy's "
                         "default per-address limit is 50)")
    ap.add_argument("--interval", type=float, help="seconds between samples (10; quick: 5)")
    ap.add_argument("--rss-tolerance", type=float, default=0.10,
                    help="allowed growth of the last third's max over the first third's (0.10)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-step client timeout (120 s)")
    ap.add_argument("--ftpsgate", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "ftpsgate"),
        help="ftpsgate binary (default $CARGO_TARGET_DIR or target/, release/ftpsgate)")
    ap.add_argument("--ftpsgate-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra YAML key for the proxy's config (repeatable)")
    ap.add_argument("--table-rows", type=int, default=20, help="rows in the printed table (20)")
    ap.add_argument("--out", help="also write OUT.json (every sample) and OUT.md (the report)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) in /dev/shm")
    # client/backend roles
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--step", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--report", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.role == "backend":
        return backend_main(a)
    if a.role == "client":
        if a.sessions is None:
            a.sessions = 5000
        return asyncio.run(client_main(a))

    q = a.quick
    a.minutes = a.minutes if a.minutes is not None else (1 if q else 10)
    a.sessions = a.sessions if a.sessions is not None else (500 if q else 5000)
    a.idle = a.idle if a.idle is not None else (1000 if q else 10000)
    a.interval = a.interval if a.interval is not None else (5 if q else 10)
    return driver_main(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
