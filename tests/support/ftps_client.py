#!/usr/bin/env python3
"""tests/support/ftps_client.py — owns the CPython ftplib FTPS client used by
the interop tests (run by `py_client` in tests/support/tools/ftplib.rs).

Usage:
  ftps_client.py [options] list [--cmd LIST|NLST|MLSD] [PATH]
  ftps_client.py [options] get REMOTE LOCAL [--rest N] [--repeat N]
  ftps_client.py [options] put LOCAL REMOTE [--append] [--repeat N]
  ftps_client.py [options] raw CMD [CMD ...]

Options (before the subcommand):
  --host H --port P --user U --password P   where and who (default alice/secret)
  --plain           plain ftplib.FTP, no TLS at all (self-tests of backends)
  --implicit        implicit FTPS: TLS from the first byte (FTP_TLS subclass
                    that wraps the socket in connect()); data is protected
                    even with --no-prot-p
  --reuse-session   wrap data connections with session=self.sock.session
                    (the well-known ntransfercmd override, bpo-19500)
  --active          PORT mode instead of passive
  --eprt            with --active: send EPRT instead of PORT
  --epsv            passive mode with EPSV instead of PASV
  --no-prot-p       skip PBSZ 0 / PROT P (explicit mode: data in clear)
  --tls-max V       cap the TLS version: 1.2 or 1.3
  --timeout S       socket timeout in seconds (default 60)
  --source IP       connect from this local address (control and data)

The certificate is never verified (the proxy's is self-signed).

Output: one `key=value` line per fact, in order, for example
  welcome=220
  tls_version=TLSv1.3
  data_session_reused=True     (one per TLS data connection)
  reply=226 Transfer complete.
  code=226
  sha256=<hex>                 (get: of the bytes received; put: of the file sent)
  bytes=<n>
  entry=<line>                 (list: one per line received)
  ok=1
On failure it prints `error=<type>: <message>` (and `code=<nnn>` when the
failure is an FTP reply) and exits with status 1.
"""

import argparse
import ftplib
import hashlib
import socket
import ssl
import sys


def out(key, value):
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    sys.stdout.write(f"{key}={text}\n")
    sys.stdout.flush()


def make_context(tls_max):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif tls_max == "1.3":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class Switches:
    """EPSV/EPRT switches shared by the plain and the TLS client."""

    force_epsv = False
    force_eprt = False

    def makepasv(self):
        if not self.force_epsv:
            return super().makepasv()
        return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())

    def sendport(self, host, port):
        if self.force_eprt:
            return self.sendeprt(host, port)
        return super().sendport(host, port)


class PlainClient(Switches, ftplib.FTP):
    """Plain FTP (no TLS), for self-tests of the backends."""


class Client(Switches, ftplib.FTP_TLS):
    """FTP_TLS with the switches the tests need."""

    implicit = False
    reuse_session = False

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if not self.implicit:
            return super().connect(host, port, timeout, source_address)
        # Implicit FTPS: TLS starts before the greeting.
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        sys.audit("ftplib.connect", self, self.host, self.port)
        sock = socket.create_connection(
            (self.host, self.port), self.timeout, source_address=self.source_address
        )
        self.af = sock.family
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = self.sock.session if self.reuse_session else None
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=session
            )
            out("data_session_reused", conn.session_reused)
        return conn, size


def reply_code(text):
    return text[:3] if text[:3].isdigit() else ""


def report_reply(text):
    out("reply", text)
    out("code", reply_code(text))


def main():
    p = argparse.ArgumentParser(description="ftplib FTPS test client")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="secret")
    p.add_argument("--plain", action="store_true")
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--reuse-session", action="store_true")
    p.add_argument("--active", action="store_true")
    p.add_argument("--eprt", action="store_true")
    p.add_argument("--epsv", action="store_true")
    p.add_argument("--no-prot-p", action="store_true")
    p.add_argument("--tls-max", choices=["1.2", "1.3"])
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--source")
    sub = p.add_subparsers(dest="op", required=True)
    s = sub.add_parser("list")
    s.add_argument("--cmd", default="LIST", choices=["LIST", "NLST", "MLSD"])
    s.add_argument("path", nargs="?")
    s.add_argument("--repeat", type=int, default=1)
    s = sub.add_parser("get")
    s.add_argument("remote")
    s.add_argument("local")
    s.add_argument("--rest", type=int)
    s.add_argument("--repeat", type=int, default=1)
    s = sub.add_parser("put")
    s.add_argument("local")
    s.add_argument("remote")
    s.add_argument("--append", action="store_true")
    s.add_argument("--repeat", type=int, default=1)
    s = sub.add_parser("raw")
    s.add_argument("commands", nargs="+")
    a = p.parse_args()

    if a.plain:
        ftp = PlainClient(timeout=a.timeout)
        ftp.force_epsv = a.epsv
        ftp.force_eprt = a.eprt
    else:
        ftp = Client(context=make_context(a.tls_max), timeout=a.timeout)
        ftp.implicit = a.implicit
        ftp.reuse_session = a.reuse_session
        ftp.force_epsv = a.epsv
        ftp.force_eprt = a.eprt

    try:
        source = (a.source, 0) if a.source else None
        welcome = ftp.connect(a.host, a.port, source_address=source)
        out("welcome", reply_code(welcome))
        ftp.login(a.user, a.password)
        if not a.plain:
            out("tls_version", ftp.sock.version())
            if a.no_prot_p:
                # Implicit FTPS protects data without PROT P.
                ftp._prot_p = a.implicit
            else:
                ftp.prot_p()
        ftp.set_pasv(not a.active)

        if a.op == "list":
            for _ in range(a.repeat):
                lines = []
                cmd = a.cmd + (" " + a.path if a.path else "")
                report_reply(ftp.retrlines(cmd, lines.append))
                for line in lines:
                    out("entry", line)
        elif a.op == "get":
            for _ in range(a.repeat):
                digest = hashlib.sha256()
                count = 0
                with open(a.local, "wb") as f:

                    def sink(chunk):
                        nonlocal count
                        digest.update(chunk)
                        count += len(chunk)
                        f.write(chunk)

                    report_reply(ftp.retrbinary("RETR " + a.remote, sink, rest=a.rest))
                out("sha256", digest.hexdigest())
                out("bytes", count)
        elif a.op == "put":
            verb = "APPE " if a.append else "STOR "
            for _ in range(a.repeat):
                with open(a.local, "rb") as f:
                    data = f.read()
                with open(a.local, "rb") as f:
                    report_reply(ftp.storbinary(verb + a.remote, f))
                out("sha256", hashlib.sha256(data).hexdigest())
                out("bytes", len(data))
        elif a.op == "raw":
            for cmd in a.commands:
                try:
                    resp = ftp.sendcmd(cmd)
                except ftplib.Error as e:
                    resp = str(e)
                report_reply(resp)
        try:
            ftp.quit()
        except (ftplib.Error, OSError):
            pass
        out("ok", 1)
        return 0
    except ftplib.Error as e:
        out("error", f"{type(e).__name__}: {e}")
        out("code", reply_code(str(e)))
    except Exception as e:  # noqa: BLE001 — the test reads the message
        out("error", f"{type(e).__name__}: {e}")
    try:
        ftp.close()
    except Exception:  # noqa: BLE001
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
