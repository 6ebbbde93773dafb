#!/usr/bin/env bash
# bench/tls_scan.sh — owns the TLS scan of ftpsgate's two listeners (issue 8, "Prove it"):
# starts a plaintext backend (pyftpdlib, via bench/soak.py --role backend) and a release
# ftpsgate with default TLS settings and a `ftpsgate cert`-generated certificate, runs
# testssl.sh against the explicit listener (--starttls ftp) and the implicit listener
# (TLS from the first byte), and writes both JSON files and logs to an output directory,
# then prints every finding above INFO. Everything it starts is stopped on exit.
#
#   bash bench/tls_scan.sh [OUTDIR]      # default: a new /tmp/ftpsgate-tls-scan.XXXXXX
#
# Needs: testssl.sh (Debian: apt-get install testssl.sh), python3 with pyftpdlib, and a
# release build (FTPSGATE=path, else $CARGO_TARGET_DIR or target/ + /release/ftpsgate).
# The certificate is self-signed, so testssl's trust/chain findings (untrusted issuer,
# no OCSP/CRL, no CAA/CT) are about the test certificate, not about ftpsgate's TLS stack.
# A scan takes a few minutes per listener. bench/README.md ("TLS scan") has the results.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
FTPSGATE=${FTPSGATE:-${CARGO_TARGET_DIR:-$REPO/target}/release/ftpsgate}
TESTSSL=$(command -v testssl || command -v testssl.sh || true)
OUT=${1:-$(mktemp -d /tmp/ftpsgate-tls-scan.XXXXXX)}
mkdir -p "$OUT"

[ -x "$FTPSGATE" ] || { echo "tls_scan: no ftpsgate at $FTPSGATE (cargo build --release, or FTPSGATE=...)" >&2; exit 1; }
[ -n "$TESTSSL" ] || { echo "tls_scan: testssl.sh not found (apt-get install testssl.sh)" >&2; exit 1; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# wait_line FILE REGEX PID: poll FILE until a line matches (the process must stay alive);
# print the first match. Readiness comes from the servers' own "listening" lines.
wait_line() {
  local file=$1 re=$2 pid=$3 i
  for ((i = 0; i < 600; i++)); do
    if grep -Em1 "$re" "$file" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "tls_scan: process $pid exited; see $file" >&2; return 1; }
    sleep 0.05
  done
  echo "tls_scan: no line matching '$re' in $file after 30 s" >&2
  return 1
}

# 1. backend: pyftpdlib, an OS-chosen port.
mkdir -p "$OUT/root"
python3 "$HERE/soak.py" --role backend --root "$OUT/root" >"$OUT/backend.out" 2>"$OUT/backend.log" &
PIDS+=($!)
BPORT=$(wait_line "$OUT/backend.out" '^backend listening [0-9]+$' "${PIDS[-1]}" | awk '{print $3}')

# 2. a certificate the way an operator would make one, and ftpsgate with default TLS settings.
"$FTPSGATE" cert --hostname localhost --cert-out "$OUT/cert.pem" --key-out "$OUT/key.pem" >"$OUT/cert.out"
"$FTPSGATE" serve --listen 127.0.0.1:0 --implicit-listen 127.0.0.1:0 --backend "127.0.0.1:$BPORT" \
  --cert "$OUT/cert.pem" --key "$OUT/key.pem" >"$OUT/ftpsgate.out" 2>"$OUT/ftpsgate.log" &
PIDS+=($!)
EXPLICIT=$(wait_line "$OUT/ftpsgate.out" '^ftpsgate listening Explicit ' "${PIDS[-1]}" | awk '{print $4}')
IMPLICIT=$(wait_line "$OUT/ftpsgate.out" '^ftpsgate listening Implicit ' "${PIDS[-1]}" | awk '{print $4}')
echo "tls_scan: ftpsgate $("$FTPSGATE" --version 2>/dev/null || true) explicit $EXPLICIT, implicit $IMPLICIT, backend 127.0.0.1:$BPORT; output in $OUT"

# 3. testssl.sh, default checks, on each listener. --ip one: the address given, no DNS.
#    testssl's exit status counts findings, so it is not an error; a missing JSON file is.
scan() { # NAME TARGET [testssl options]
  local name=$1 target=$2
  shift 2
  rm -f "$OUT/$name.json" "$OUT/$name.log" # testssl 3.0 refuses to overwrite them
  "$TESTSSL" --warnings batch --color 0 --ip one "$@" --jsonfile-pretty "$OUT/$name.json" \
    --logfile "$OUT/$name.log" "$target" >"$OUT/$name.out" 2>&1 || true
  [ -s "$OUT/$name.json" ] || { echo "tls_scan: testssl wrote no $OUT/$name.json; see $OUT/$name.out" >&2; exit 1; }
  echo "tls_scan: $name done ($OUT/$name.log)"
}
scan explicit "$EXPLICIT" --starttls ftp
scan implicit "$IMPLICIT"

# 4. summary: protocols and ciphers offered, and every finding above INFO.
python3 - "$OUT/explicit.json" "$OUT/implicit.json" <<'EOF'
import json, sys
RANK = {"OK": 0, "INFO": 1, "LOW": 2, "MEDIUM": 3, "HIGH": 4, "CRITICAL": 5, "WARN": 6, "FATAL": 7}
for path in sys.argv[1:]:
    with open(path) as f:
        doc = json.load(f)
    results = []
    for scan in doc.get("scanResult", []):
        for section, items in scan.items():
            if isinstance(items, list):
                results += [i for i in items if isinstance(i, dict) and "id" in i]
    print(f"\n== {path}: {len(results)} results")
    by_id = {r["id"]: r for r in results}
    for key in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "FS", "FS_ciphers",
                "cipher_order", "TLS_session_ticket", "sessionresumption_ticket", "sessionresumption_ID"):
        if key in by_id:
            print(f"  {key:28} {by_id[key]['severity']:8} {by_id[key]['finding']}")
    for r in results:
        if r["id"].startswith("cipher-tls") or r["id"].startswith("cipherorder_"):
            print(f"  {r['id']:28} {r['severity']:8} {r['finding']}")
    print("  -- findings above INFO:")
    for r in results:
        if RANK.get(r["severity"], 0) >= 2:
            print(f"  {r['id']:28} {r['severity']:8} {r['finding']}")
EOF
