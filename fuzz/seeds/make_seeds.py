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
         "ENC", "LPRT", "LPSV", "SPSV", "ESTA", "ESTP", "CWD", "XMKD", "SITE", "TYPE"]
ARGS = ["TLS", "tls", "TLS-C", "SSL", "TLS-P", "GSSAPI", "0", "1", "2", "16384", "-1", "x", "P",
        "p", "C", "S", "E", "ALL", "all", "F", "alice", " P ", "example.test", "UTF8 ON", "I", "A N",
        "L 8"]
CODES = [110, 125, 150, 200, 202, 211, 221, 226, 227, 229, 230, 331, 332, 421, 425, 500, 502,
         530, 550]


def save(target, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def stream(payload, rle=False, extra=0):
    """A Stream input; with rle, padded (with LF) to a length that is a multiple of 16,
    so that it runs in long mode (fuzz/common/mod.rs). `extra` is the target's own
    choice in the top three flag bits (line: the line cap)."""
    data = bytes([(0x11 if rle else 0) | extra << 5, 0]) + payload
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
# Other line caps (fuzz/common/line.rs CAPS): 0, 1, 2, 512, MAX_LINE + 1, HARD_CAP, HARD_CAP + 1.
for extra in range(1, 8):
    save("line", stream(b"\n\r\na\nab\r\nNOOP\r\n\xff\xf4x\n", extra=extra))
save("line", stream(rle_run(511, ord("A")) + rle_lit(b"\n") + rle_run(510, ord("B")) + rle_lit(b"\r\n"), rle=True, extra=4))
save("line", stream(rle_run(4096, ord("A")) + rle_lit(b"\n") + rle_run(4095, ord("B")) + rle_lit(b"\r\n"), rle=True, extra=5))
save("line", stream(rle_run(65535, ord("A")) + rle_lit(b"\n") + rle_run(65535, ord("B")) + rle_lit(b"A\n"), rle=True, extra=6))

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
    for choice in [0, 1, 2 | 8, 4 | 8 | 16, 6 | 8, 3 << 5 | 1, 5 << 5 | 8]:
        save("reply", bytes([choice]) + stream(p))
save("reply", bytes([0]) + stream(rle_lit(b"211-x\r\n1") + rle_run(8190, ord("9")) + rle_lit(b"\r\n211 End\r\n"), rle=True))
save("reply", bytes([0]) + stream(rle_run(9000, ord("2")), rle=True))
# The reply byte cap (with_max_bytes) of each CAPS choice, at and past a multi-line reply.
for cap in range(1, 8):
    save("reply", bytes([cap << 5]) + stream(rle_lit(b"211-a\r\n") + rle_run(1000, ord("x")) + rle_lit(b"\r\n") + rle_run(3000, ord("y")) + rle_lit(b"\r\n211 End\r\n"), rle=True))
# Addresses in every form hide_backend looks for (fuzz/common/reply.rs `hide`).
hidden = (b"220-legacy.example 10.0.0.5 10.0.0.5:21 (10,0,0,5) [2001:db8::5]:2121 2001:db8::5\r\n"
          b" seen from 10.0.0.1:40000 10.0.0.1 [2001:db8::2]:40000 ftp 10.0.0.5:2121\r\n"
          b" 10.0.0.51 x10.0.0.5 10.0.0.5.x ::ffff:10.0.0.5 legacy.example.org ftp-backup\r\n"
          b"220 10.0.0.5\r\n211 legacy.example\r\n214 2001:db8::5\r\n221 ftp\r\n421 10.0.0.5\r\n"
          b"257 \"/10.0.0.5\"\r\n")
for choice in range(0, 32, 2):
    save("reply", bytes([choice]) + stream(hidden))

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
L = "listen: ['127.0.0.1:2121']\n"
POOL = "backends:\n  - {name: east, address: '192.0.2.10:21'}\n  - name: west\n    address: 'legacy-west.example:21'\n"
for text in [
    L + POOL,
    L + POOL + "backend_selection: round-robin\nuser_routes: {alice: east, bob: west}\nuser_at_backend: true\n",
    L + POOL + "user_routes:\n  alice: north\n",
    L + POOL + "backend_selection: least-connections\nbackend_health_interval: 0\n",
    L + "backends:\n  - {name: a, address: 'h:21'}\n  - {name: a, address: 'h:22'}\n",
    L + "backends:\n  - {name: 'a b', address: 'h:21'}\n",
    L + "backends: []\n",
    L + "backend: '192.0.2.10:21'\n" + POOL,
    L + POOL + "user_at_backend: true\nbackend_connect: on-accept\n",
    L + "backend: original-destination\noriginal_destination_allow: ['10.20.0.0/16', '2001:db8::/32']\noriginal_destination_port: 21\n",
    L + "backend: original-destination\n",
    L + "backend: original-destination\noriginal_destination_allow: [10.0.0.0/8]\nuser_routes: {alice: x}\n",
    L + "backend: original-destination\noriginal_destination_allow: [10.0.0.0/33]\n",
    "listen:\n  - '0.0.0.0:21'\n  - {address: '10.0.0.10:2121', proxy_protocol: v2, proxy_protocol_from: ['10.0.0.0/24']}\n"
    "implicit_listen:\n  - {address: '[::]:990', proxy_protocol: any}\nproxy_protocol_from: ['10.0.0.2/32', '2001:db8::/64']\n"
    "proxy_protocol: v1\nproxy_protocol_timeout: 3\nbackend: 'h:21'\n",
    "listen:\n  - {address: '10.0.0.10:2121', proxy_protocol: v2}\nbackend: 'h:21'\n",
    "listen:\n  - {address: localhost, proxy_protocol: v2}\nbackend: 'h:21'\n",
    "listen:\n  - {address: '10.0.0.10:2121', proxy: v2}\nbackend: 'h:21'\n",
    "implicit_listen:\n  - {address: '10.0.0.10:990', proxy_protocol_from: []}\nbackend: 'h:21'\nproxy_protocol: v2\n",
    L + "backend: 'h:21'\nproxy_protocol: any\n",
    L + "backend: 'h:21'\npassive_ports: '50000-50100'\npublic_passive_ports: '60000-60100'\n",
    L + "backend: 'h:21'\npassive_ports: '50000-50100'\npublic_passive_ports: '60000-60000'\n",
    L + "backend: 'h:21'\npublic_passive_ports: '60000-60100'\n",
    L + "backend: 'h:21'\npublic_address: 203.0.113.7\npublic_address_by_network:\n"
    "  - {network: 10.0.0.0/8, address: 10.1.2.3}\n  - {network: '2001:db8::/32', address: '2001:db8::21'}\n  - 192.168.0.0/16=192.168.1.1\n",
    L + "backend: 'h:21'\npublic_address_by_network: [{network: 10.0.0.0/8}]\n",
    L + "backend: 'h:21'\nbackend_proxy_protocol: v2\n",
    L + "backend: 'h:21'\nbackend_proxy_protocol: v3\n",
    L + "backend: 'h:21'\ncontrol_tls: audit\ndata_tls: audit\nccc: audit\nrequire_session_reuse: audit\n",
    L + "backend: 'h:21'\ncert: /etc/ftpsgate/cert.pem\n",
    L + "backend: 'h:21'\nclient_cert: required\n",
    L + "backend: 'h:21'\nmax_command_line: 511\nmax_reply: 64k\nrate_session: 1m\nrate_total: 1023\nmax_upload: 1g\n",
    L + "backend: 'h:21'\nmax_sessions_per_ip: 0\nban_failures: 0\nban_window: 0\nban_duration: 60\nshutdown_grace: 1\n",
    L + "backend: 'h:21'\nlog_format: json\ntransfer_log: '-'\ntransfer_log_format: text\nmetrics: '127.0.0.1:9464'\n",
    L + "backend: 'h:21'\nbackend_connect: on-accept\nhandshake_timeout: 0\n",
]:
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
for flags in [0, 0x15, 0x2A, 0x40, 0x15 | 0xC0, 0x2A | 0x40]:
    for peer in [0, 2, 4]:
        head = bytes([flags, peer])
        save("session", head + secure + login + epsv + retr + quit_)
        save("session", head + cmd("USER", "alice") + cmd("RETR", "x") + cmd("PASV") + cmd("FEAT") + reply(211, b"x") + tls + login)
        save("session", head + secure + cmd("PORT", ("target", 0, 2000, False)) + b"\x01" + cmd("STOR", ("raw", b"f")) + b"\x01" + reply(125) + b"\x00")
        save("session", head + secure + cmd("CCC") + cmd("AUTH", "TLS") + cmd("PROT", "C") + cmd("EPRT", ("target", 1, 1023, True)) + cmd("REIN"))
        save("session", head + cmd("EPSV", "ALL") + cmd("PASV") + cmd("EPSV", "2") + cmd("PBSZ", "x") + b"\x00" + b"\x01\x00\x04\x00\x00" + cmd("LIST"))
        save("session", head + cmd("USER", "alice") + cmd("RETR", "x") + tls + cmd("TYPE", "I") + reply(200) + cmd("TYPE", "A N") + reply(500)
             + login + cmd("AUTH", "TLS") + secure + cmd("CCC") + cmd("PROT", "C") + cmd("STOR", "x"))

# --- proxy_header
V2 = b"\r\n\r\n\x00\r\nQUIT\n"
for h in [b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\r\n", b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 21\r\n",
          b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.0.1 1 2\r\n", b"PROXY UNKNOWN\r\n",
          b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
          b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\n", b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\r\nX",
          b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n", b"PROXY TCP4 300.0.2.7 10.0.0.1 51000 21\r\n"]:
    save("proxy_header", h)
def v2(cmd, fam, addrs, tlvs=b""):
    body = addrs + tlvs
    return V2 + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body
ip4 = bytes([192, 0, 2, 7, 10, 0, 0, 1]) + struct.pack(">HH", 51000, 21)
ip6 = bytes(range(32)) + struct.pack(">HH", 51000, 21)
mapped = b"\x00" * 10 + b"\xff\xff" + bytes([192, 0, 2, 7]) + b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]) + struct.pack(">HH", 1, 2)
unix = b"/tmp/a".ljust(108, b"\x00") + b"/tmp/b".ljust(108, b"\x00")
for h in [v2(1, 0x11, ip4), v2(1, 0x21, ip6), v2(1, 0x21, mapped), v2(0, 0x00, b""), v2(1, 0x00, b""),
          v2(1, 0x12, ip4), v2(1, 0x22, ip6), v2(1, 0x31, unix), v2(1, 0x11, ip4, b"\x04\x00\x03abc\x05\x00\x01x"),
          v2(1, 0x11, ip4[:8]), v2(1, 0x11, ip4)[:-1], v2(1, 0x11, ip4) + b"x", v2(2, 0x11, ip4)]:
    save("proxy_header", h)


# --- record: byte 0 = framing (bit 1: TLS 1.2, bit 0: ChaCha20) | 0x80 sealed mode;
# sealed: u16 flip offset/bit, then messages (pick byte: 0 KeyUpdate/app data, 1 app data, 2 alert; length byte; payload).
for kind in range(4):
    save("record", bytes([kind]) + bytes([23, 3, 3, 0, 40]) + bytes(40))
    save("record", bytes([kind]) + bytes([23, 3, 3, 0xff, 0xff]))
    save("record", bytes([kind]) + bytes([20, 3, 3, 0, 1, 1]))
    save("record", bytes([kind | 0x80]) + struct.pack(">H", 3) + b"\x01\x05hello" + b"\x02\x02\x01\x00")
    save("record", bytes([kind | 0x80]) + struct.pack(">H", 0xe004) + b"\x01\x00" + b"\x00\x00" + b"\x01\xff" + bytes(range(255)) + b"\x00\x03abc")
    save("record", bytes([kind | 0x80]) + struct.pack(">H", 0x2001) + b"\x02\x02\x01\x5a" + b"\x01\x10" + b"x" * 16)
