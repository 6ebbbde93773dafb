#!/usr/bin/env python3
"""tests/support/pyftpd_backend.py — owns the pyftpdlib plaintext FTP backend
used by the interop tests (started by `PyFtpd` in tests/support/tools.rs).

A plain (no TLS) pyftpdlib FTPServer on 127.0.0.1, one user with full
read/write access to one directory. It prints the bound port on stdout as
its first line, then serves until killed.

Every command line the server receives is appended, verbatim (PASS
included), one per line, to the command log given with --log, and flushed
before the command is processed: once a client has seen a reply, the
command that caused it is in the log.

Options:
  --root DIR           FTP root (required)
  --log FILE           command log (required)
  --user/--password    credentials (default alice/secret)
  --port N             listening port (default 0: the OS picks)
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
    server = FTPServer(("127.0.0.1", args.port), Handler)
    server.max_cons = 256
    port = server.socket.getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    main()
