#!/usr/bin/env python3
# bench/idle_client.py — owns the "idle" shape's load generator for bench/run.py:
# opens N FTPS control sessions (TCP connect, 220 greeting, AUTH TLS, TLS handshake),
# holds them open, and on request checks every session is still alive (NOOP over TLS).
# Python 3 stdlib only (asyncio). Driven over stdin/stdout by run.py:
#   stdout: "READY <ok> <errors> <seconds>"   once every session was attempted
#   stdin:  "CHECK"                           -> "CHECKED <alive> <dead>"
#   stdin:  "QUIT" (or EOF)                   -> closes everything, prints "DONE"
# Error details go to stderr (first few only).
# --per-source K spreads the sessions over source addresses in 127.1.0.0/16, K per address
# (0, the default, connects from the kernel's choice, 127.0.0.1): ftpsgate limits sessions
# per client address (max_sessions_per_ip, default 50), and one address has ~28k ephemeral ports.
import argparse
import asyncio
import resource
import ssl
import sys
import time


async def read_reply(reader, timeout):
    """Read one (possibly multi-line) FTP reply; return (code, text)."""
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line:
        raise ConnectionError("EOF while waiting for reply")
    text = line.decode("latin-1", "replace")
    code = text[:3]
    if len(text) > 3 and text[3] == "-":
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                raise ConnectionError("EOF in multi-line reply")
            t = line.decode("latin-1", "replace")
            text += t
            if t[:3] == code and (len(t) < 4 or t[3] == " "):
                break
    return code, text.strip()


class Session:
    __slots__ = ("reader", "writer")

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer


class StageError(Exception):
    """An error tagged with the session step it happened in."""


def source_ip(i, per_source):
    """Source address of session i when spreading (same scheme as bench/soak.py)."""
    k = i // per_source
    return f"127.1.{k // 250}.{k % 250 + 1}"


async def open_session(host, port, ctx, timeout, local_addr=None):
    stage = "connect"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=local_addr), timeout)
    except Exception as e:  # noqa: BLE001
        raise StageError(f"{stage}: {type(e).__name__} {e}") from e
    try:
        stage = "greeting"
        code, text = await read_reply(reader, timeout)
        if code != "220":
            raise ConnectionError(f"{text!r}")
        stage = "AUTH TLS"
        writer.write(b"AUTH TLS\r\n")
        await writer.drain()
        code, text = await read_reply(reader, timeout)
        if code != "234":
            raise ConnectionError(f"{text!r}")
        stage = "TLS handshake"
        await asyncio.wait_for(writer.start_tls(ctx, server_hostname="localhost"), timeout)
        return Session(reader, writer)
    except BaseException as e:
        writer.transport.abort()
        if isinstance(e, Exception):
            raise StageError(f"{stage}: {type(e).__name__} {e}") from e
        raise


async def noop(s, timeout):
    s.writer.write(b"NOOP\r\n")
    await s.writer.drain()
    code, text = await read_reply(s.reader, timeout)
    # Any well-formed reply proves the session is alive (before login some servers
    # answer NOOP with 530; ProFTPD+mod_proxy does).
    if not (len(code) == 3 and code.isdigit()):
        raise ConnectionError(f"NOOP: {text!r}")


def report_errors(errors, label):
    if errors:
        kinds = {}
        for e in errors:
            k = f"{type(e).__name__}: {e}"[:160]
            kinds[k] = kinds.get(k, 0) + 1
        for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
            print(f"idle_client {label}: {n} x {k}", file=sys.stderr, flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--sessions", type=int, default=5000)
    ap.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--per-source", type=int, default=0,
                    help="sessions per source address in 127.1.0.0/16 (0: do not bind)")
    a = ap.parse_args()

    want = a.sessions * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):  # raising the hard limit needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    sem = asyncio.Semaphore(a.parallel)
    sessions, errors = [], []

    async def one(i):
        local = (source_ip(i, a.per_source), 0) if a.per_source > 0 else None
        async with sem:
            try:
                sessions.append(await open_session(a.host, a.port, ctx, a.timeout, local))
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(e)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(a.sessions)))
    print(f"READY {len(sessions)} {len(errors)} {time.monotonic() - t0:.3f}", flush=True)
    report_errors(errors, "open")

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = line.strip()
        if cmd == "CHECK":
            dead = []

            async def chk(s):
                async with sem:
                    try:
                        await noop(s, a.timeout)
                    except Exception as e:  # noqa: BLE001
                        dead.append(e)

            await asyncio.gather(*(chk(s) for s in sessions))
            print(f"CHECKED {len(sessions) - len(dead)} {len(dead)}", flush=True)
            report_errors(dead, "check")
        else:  # QUIT or EOF
            break

    for s in sessions:
        try:
            s.writer.transport.abort()
        except Exception:  # noqa: BLE001
            pass
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
