#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/ (docs/fuzzing.md).

The encodings mirror fuzz/common/*.rs; the fuzzers grow the corpus from here.
Run from fuzz/: python3 seeds/make_seeds.py
"""
import hashlib
import os
import struct

VERBS = ["AUTH", "PBSZ", "PROT", "CCC", "USER", "PASS", "ACCT", "RETR", "STOR", "STOU", "APPE",
         "LIST", "NLST", "MLSD", "PASV", "EPSV", "PORT", "EPRT", "REIN", "FEAT", "QUIT", "NOOP",
         "HOST", "OPTS", "SYST", "HELP", "MODE", "STRU", "ABOR", "STAT", "ADAT", "MIC", "CONF",
         "ENC", "LPRT", "LPSV", "SPSV", "ESTA", "ESTP", "CWD", "XMKD", "SITE"]
ARGS = ["TLS", "tls", "TLS-C", "SSL", "TLS-P", "GSSAPI", "0", "1", "2", "16384", "-1", "x", "P",
        "p", "C", "S", "E", "ALL", "all", "F", "alice", " P ", "example.test", "UTF8 ON"]
CODES = [110, 125, 150, 200, 202, 211, 221, 226, 227, 229, 230, 331, 332, 421, 425, 500, 502,
         530, 550]


def save(target, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def stream(payload, rle=False):
    """A Stream input; with rle, padded (with LF) to a length that is a multiple of 16,
    so that it runs in long mode (fuzz/common/mod.rs)."""
    data = bytes([0x11 if rle else 0, 0]) + payload
    while rle and len(data) % 16:
        data += b"\n"
    return data


def rle_run(count, byte):
    return b"\xfe\xfd" + struct.pack(">H", count) + bytes([byte])


def rle_lit(data):
    assert b"\xfe" not in data
    return data


# --- line
for p in [b"NOOP\r\nUSER a\n", b"MKD a\rb\r\n", b"\xff\xf4\xff\xf2ABOR\r\nRETR a\xff\xffb\r\n\xff\xfb\x01NOOP\r\n",
          b"\xff\xfa\x18abc\xff\xf0PWD\n", b"\r\n\n\r\r\n"]:
    save("line", stream(p))
    save("line", bytes([0, 3, 0, 1, 2]) + p)
save("line", stream(rle_run(5000, ord("A")) + rle_lit(b"\r\nNOOP\r\n"), rle=True))
save("line", stream(rle_run(4093, ord("A")) + rle_lit(b"\r\n"), rle=True))
save("line", stream(rle_run(65535, ord("A")) + rle_run(100, ord("B")) + rle_lit(b"\nX\n"), rle=True))
save("line", stream(rle_lit(b"\xff\xfa") + rle_run(65535, ord("s")) + rle_lit(b"\xff\xf0\n"), rle=True))

# --- command
for line in [b"AUTH TLS", b"auth tls", b"RETR  two  spaces ", b"MKD a\rb", b"MKD a\x00b", b"", b" NOOP",
             b"NO0P", b"ABCDEFGHIJ x", b"RETR a\xffb", b"PASS hunter2", b"ACCT x", b"USER alice",
             b"stor x", b"MLSD", b"LPSV", b"ccc", b"xmkd dir", b"NOOP ", b"PORT 127,0,0,1,4,0"]:
    save("command", line)

# --- reply
for p in [b"220 hi\r\n211-Features:\r\n MDTM\r\n211 End\r\n",
          b"220-a\r\n220-b\r\n220 c\r\n",
          b"213-status\r\n227 Entering Passive Mode (6,6,6,6,1,2)\r\n226 \r\n213-x\r\n213 end\r\n",
          b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n MDTM\r\n UTF8\r\n EPSV\r\n SIZE\r\n211 End\r\n",
          b"227 Entering Passive Mode (10,0,0,5,4,1).\r\n229 Entering Extended Passive Mode (|||6446|)\r\n",
          b"125 Data connection already open\r\n125 FILE: x\r\n226 done\r\n",
          b"211-status of 10.0.0.5:21\r\n Connected to legacy.example (10,0,0,5)\r\n211\r\n",
          b"hello\r\n", b"150 Opening"]:
    for choice in [0, 1, 6]:
        save("reply", bytes([choice]) + stream(p))
save("reply", bytes([0]) + stream(rle_lit(b"211-x\r\n1") + rle_run(8190, ord("9")) + rle_lit(b"\r\n211 End\r\n"), rle=True))
save("reply", bytes([0]) + stream(rle_run(9000, ord("2")), rle=True))

# --- addr
for text in ["Entering Passive Mode (192,168,1,2,4,210).", "Entering Passive Mode 192,168,1,2,4,210",
             "=192,168,1,2,4,210", "(256,1,1,1,1,1)", "127,0,0,1,4,0", "|1|127.0.0.1|2000|",
             "!2!::1!2000!", "|3|x|1|", "Entering Extended Passive Mode (|||6446|)", "ok (!!!6446!)",
             "(|1|x|6446|)", "(1,2,3,4,0,0)", "|2|::ffff:1.2.3.4|65535|"]:
    save("addr", text.encode())

# --- config
for root in ["../examples", "../deploy", "../tests/fixtures/config"]:
    for name in sorted(os.listdir(root)):
        if name.endswith(".yaml"):
            with open(os.path.join(root, name), "rb") as f:
                save("config", f.read())
for text in ["", "listen: [\n", "ccc: maybe\n", "idle_timeout: soon\n", "{listen: ['[::]:990'], backend: 'h:21'}\n",
             "a: &x [*x]\n", "? [1]\n: 2\n", "passive_ports: 5000-4000\n", "max_sessions: -1\n"]:
    save("config", text.encode())


# --- session
def cmd(verb, arg=None, lower=False):
    choice = 16 | (1 if lower else 0)
    out = bytes([2, choice, VERBS.index(verb)])
    if arg is None:
        return out + bytes([0])
    if arg in ARGS:
        return out + bytes([1, ARGS.index(arg)])
    kind, *rest = arg
    if kind == "target":
        ipsel, port, eprt = rest
        return out + bytes([2, ipsel]) + struct.pack(">H", port) + bytes([1 if eprt else 0])
    return out + bytes([3, len(rest[0])]) + rest[0]


def reply(code, text=b""):
    return bytes([0, CODES.index(code), len(text)]) + text


tls = cmd("AUTH", "TLS") + b"\x01"
secure = tls + cmd("PBSZ", "0") + cmd("PROT", "P")
login = cmd("USER", "alice") + reply(331) + cmd("PASS", ("raw", b"secret")) + reply(230)
epsv = cmd("EPSV") + b"\x01" + struct.pack(">HH", 6446, 50000)
retr = cmd("RETR", ("raw", b"file")) + b"\x00" + reply(150) + b"\x01" + cmd("ABOR")
quit_ = cmd("QUIT")
for flags in [0, 3, 4, 8, 31]:
    for peer in [0, 2, 4]:
        head = bytes([flags, peer])
        save("session", head + secure + login + epsv + retr + quit_)
        save("session", head + cmd("USER", "alice") + cmd("RETR", "x") + cmd("PASV") + cmd("FEAT") + reply(211, b"x") + tls + login)
        save("session", head + secure + cmd("PORT", ("target", 0, 2000, False)) + b"\x01" + cmd("STOR", ("raw", b"f")) + b"\x01" + reply(125) + b"\x00")
        save("session", head + secure + cmd("CCC") + cmd("AUTH", "TLS") + cmd("PROT", "C") + cmd("EPRT", ("target", 1, 1023, True)) + cmd("REIN"))
        save("session", head + cmd("EPSV", "ALL") + cmd("PASV") + cmd("EPSV", "2") + cmd("PBSZ", "x") + b"\x00" + b"\x01\x00\x04\x00\x00" + cmd("LIST"))

