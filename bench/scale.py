"""bench/scale.py — owns the benchmark shapes about session set-up and scale
(issue 11), attached to bench/run.py's Bench:

- `logins`: logins per second through each proxy (bench/login_client.py:
  AUTH TLS, USER/PASS, PBSZ/PROT, one LIST, QUIT), once with full handshakes
  and once with the control session resumed from the previous login (and the
  data session from the control one), with the proxy's CPU per login.
- `many`: --many-sessions concurrent downloads (curl, --many-kib each, source
  addresses spread over 127.0.0.0/8 so per-address limits never bind), with
  aggregate MB/s, peak proxy memory and failures.

The idle shape (bench/run.py) covers many idle sessions.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _login_run(bench, px, resume):
    a = bench.a
    cmd = [sys.executable, os.path.join(HERE, "login_client.py"), "--port", str(px.port),
           "--seconds", str(a.login_seconds), "--procs", str(a.login_procs), "--spread"]
    if resume:
        cmd.append("--resume")

    def go():
        return subprocess.run(cmd, capture_output=True, text=True, timeout=a.login_seconds + 120)

    r, cpu = bench.measured(px, go)
    fields = r.stdout.split()
    if r.returncode != 0 or not fields or fields[0] != "DONE":
        return None, f"client rc={r.returncode} {r.stderr.strip()[-300:]}"
    logins, errors, wall, reused = int(fields[1]), int(fields[2]), float(fields[3]), int(fields[4])
    if errors:
        return None, f"{errors} failed logins: {r.stderr.strip()[-300:]}"
    return (logins / wall, cpu * 1000 / max(logins, 1), reused / max(logins, 1)), None


def shape_logins(bench, px):
    out = []
    for label, resume in (("full", False), ("resumed", True)):
        got, err = _login_run(bench, px, resume)
        if err:
            return bench.fail("logins", px, f"{label}: {err}")
        rate, cpu_ms, resumed_share = got
        bench.rec("logins", f"logins/s {label}", px.name, rate)
        bench.rec("logins", f"proxy CPU-ms/login {label}", px.name, cpu_ms)
        if resume:
            bench.rec("logins", "share resumed (control and data)", px.name, resumed_share)
        out.append(f"{label} {rate:.0f}/s {cpu_ms:.2f} CPU-ms")
    return ", ".join(out)


def shape_many(bench, px):
    """--many-sessions concurrent verified downloads (Bench.parallel_downloads)."""
    n = bench.a.many_sessions

    def source(i):
        # 40 sessions per address, under the default limit of 50.
        return ["--interface", f"127.0.{2 + i // 40}.{1 + i % 40}"]

    got = bench.parallel_downloads(px, "many", "pub/many.bin", bench.many_file, n, extra=source)
    if not isinstance(got, tuple):
        return got
    rate, mem_mib, _ = got
    return f"{n} transfers, {rate:.0f} MB/s aggregate, peak mem {mem_mib:.1f} MiB"
