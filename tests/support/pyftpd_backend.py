#!/usr/bin/env python3
"""tests/support/pyftpd_backend.py — owns the pyftpdlib plaintext FTP backend
used by the interop tests (started by `PyFtpd`, tests/support/tools/pyftpd.rs).

A plain (no TLS) pyftpdlib FTPServer, one user with full read/write access
to one directory. With --listen-stdin it accepts on the listening socket it
was given as stdin (the test harness binds 127.0.0.1:0 itself, so the port
is known before this starts); otherwise it binds --host:--port (default
127.0.0.1, a port the OS picks) and prints the bound port on stdout. It serves until killed.

Every command line the server receives is appended, verbatim (PASS
included), one per line, to the command log given with --log (a file or a
FIFO), and flushed before the command is processed: once a client has seen
a reply, the command that caused it is in the log.

Options:
  --root DIR           FTP root (required)
  --log FILE           command log (required)
  --user/--password    credentials (default alice/secret)
  --listen-stdin       accept on the listening socket that is stdin (fd 0)
  --host/--port        otherwise, where to listen (default 127.0.0.1:0)
  --port N             otherwise: listening port on 127.0.0.1 (default 0:
                       the OS picks; the port is printed)
  --disable CMD        answer CMD with "500 not understood" and leave it out
                       of FEAT (repeatable; e.g. --disable EPSV makes
                       clients fall back to PASV)
  --masquerade ADDR    address to put in 227 replies, e.g. 0.0.0.0 or a
                       "foreign" address. Use a loopback address such as
                       127.0.0.2 for a foreign one: tests must never send
                       traffic outside 127.0.0.0/8.
"""

import argparse
import logging
import os
import socket
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--listen-stdin", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--disable", action="append", default=[])
    parser.add_argument("--masquerade", default=None)
    args = parser.parse_args()

    # Line-buffered so each command is on disk before it is processed.
    log = open(args.log, "a", buffering=1, encoding="utf-8", errors="replace")

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")

    class Handler(FTPHandler):
        def pre_process_command(self, line, cmd, arg):
            log.write(line + "\n")
            log.flush()
            return super().pre_process_command(line, cmd, arg)

    Handler.authorizer = authorizer
    Handler.banner = "ftpsgate-pyftpd ready."
    Handler.proto_cmds = {
        k: v for k, v in FTPHandler.proto_cmds.items()
        if k not in {c.upper() for c in args.disable}
    }
    if args.masquerade:
        Handler.masquerade_address = args.masquerade
    # The proxy connects data legs from 127.0.0.1 like the control leg, so
    # keep pyftpdlib's default refusal of foreign PORT addresses.

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.listen_stdin:
        # pyftpdlib asserts that a channel's fd is non-zero: move the socket
        # off fd 0, and keep fd 0 taken so no accepted connection lands there.
        listener = socket.socket(fileno=os.dup(0))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        server = FTPServer(listener, Handler)
    else:
        server = FTPServer((args.host, args.port), Handler)
        sys.stdout.write(f"{server.socket.getsockname()[1]}\n")
        sys.stdout.flush()
    server.max_cons = 256
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    main()
