#!/usr/bin/env python3
"""bench/login_client.py — owns the session set-up load of the benchmark's
`logins` shape (bench/run.py, bench/scale.py).

Each of --procs worker processes logs in over and over until --seconds have
passed, the way a script that fetches one listing does:

    connect, 220, AUTH TLS, 234, TLS handshake, USER/PASS, PBSZ 0, PROT P,
    EPSV, data connection + TLS handshake, LIST (read to EOF), 226, QUIT, 221

With --resume the control handshake resumes the previous login's TLS
session (a ticket from the last control connection) and the data handshake
resumes the control connection's session; without it every handshake is a
full one. Raw sockets and the ssl module, no ftplib, so the client costs as
little as Python allows. Worker i connects from 127.0.<1+i//200>.<1+i%200>
(--spread) so per-address limits never bind.

Prints one line: `DONE <logins> <errors> <seconds> <resumed>` (logins
whose control and data handshakes both resumed) and, on errors, the first
few reasons on stderr.
"""

import argparse
import multiprocessing as mp
import socket
import ssl
import sys
import time


def reply(f):
    """Reads one (possibly multi-line) FTP reply; returns (code, last line)."""
    line = f.readline()
    if len(line) < 4:
        raise IOError(f"short reply {line!r}")
    code = line[:3]
    if line[3:4] == b"-":
        while True:
            more = f.readline()
            if not more:
                raise IOError("EOF in multi-line reply")
            if more[:3] == code and more[3:4] == b" ":
                line = more
                break
    return int(code), line


def cmd(sock, f, text, want):
    sock.sendall(text.encode() + b"\r\n")
    code, line = reply(f)
    if code // 100 != want // 100:
        raise IOError(f"{text.split()[0]}: {line!r}")
    return line


def login(port, ctx, source, session):
    """One login as described above; returns the control session to resume."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    try:
        f = raw.makefile("rb")
        reply(f)
        cmd(raw, f, "AUTH TLS", 234)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        f = s.makefile("rb")
        cmd(s, f, "USER anonymous", 331)
        cmd(s, f, "PASS bench@example.com", 230)
        cmd(s, f, "PBSZ 0", 200)
        cmd(s, f, "PROT P", 200)
        line = cmd(s, f, "EPSV", 229)
        port2 = int(line.split(b"|||")[1].split(b"|")[0])
        d = socket.create_connection(("127.0.0.1", port2), timeout=30, source_address=(source, 0))
        s.sendall(b"LIST pub/small\r\n")
        code, line = reply(f)
        if code not in (125, 150):
            raise IOError(f"LIST: {line!r}")
        ds = ctx.wrap_socket(d, server_hostname="localhost",
                             session=s.session if session is not None else None)
        while ds.recv(65536):
            pass
        data_reused = bool(ds.session_reused)  # None once closed
        ds.close()
        code, line = reply(f)
        if code != 226:
            raise IOError(f"LIST end: {line!r}")
        cmd(s, f, "QUIT", 221)
        kept = s.session
        reused = bool(s.session_reused) and data_reused
        s.close()
        return kept, reused
    finally:
        raw.close()


def worker(args, i, out):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    source = f"127.0.{1 + i // 200}.{1 + i % 200}" if args.spread else "127.0.0.1"
    end = time.monotonic() + args.seconds
    done = errors = reused = 0
    reasons = []
    session = None
    while time.monotonic() < end:
        try:
            got, both = login(args.port, ctx, source, session if args.resume else None)
            if args.resume:
                session = got
            done += 1
            reused += both
        except Exception as e:  # noqa: BLE001 - every failure is counted, none hangs main()
            errors += 1
            session = None
            if len(reasons) < 3:
                reasons.append(f"{type(e).__name__}: {e}")
    out.put((done, errors, reasons, reused))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--spread", action="store_true", help="one source address per worker")
    args = ap.parse_args()
    out = mp.Queue()
    t0 = time.monotonic()
    procs = [mp.Process(target=worker, args=(args, i, out)) for i in range(args.procs)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.monotonic() - t0
    logins = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    reused = sum(r[3] for r in results)
    for r in results:
        for why in r[2]:
            print(why, file=sys.stderr)
    print(f"DONE {logins} {errors} {wall:.3f} {reused}", flush=True)


if __name__ == "__main__":
    main()
