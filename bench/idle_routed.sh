#!/bin/bash
# bench/idle_routed.sh — owns the 10,000-idle-sessions check of issue 11 on machines whose
# RLIMIT_NOFILE hard limit (20,000 here, not raisable without CAP_SYS_RESOURCE) cannot hold
# 10,000 sessions *with* their backend connections: with routing by user (user_at_backend)
# a session waits for USER before it connects to a backend, so each idle TLS session costs
# the proxy one descriptor. Opens N (default 10000) TLS control sessions with
# bench/idle_client.py, holds them 10 s, checks each answers NOOP, and prints the proxy's
# RSS and open fds before, while holding, and after. Needs pyftpdlib and a release build.
set -euo pipefail
N=${1:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${FTPSGATE:-$HERE/../target/release/ftpsgate}
W=$(mktemp -d /tmp/idle-routed.XXXXXX); mkdir -p $W/root
PX=; BK=
trap 'kill $PX $BK 2>/dev/null; rm -rf $W' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BPORT=$(free_port); PPORT=$(free_port)
python3 -m pyftpdlib -p $BPORT -d $W/root >/dev/null 2>&1 & BK=$!
cat > $W/ftpsgate.yaml <<Y
listen: ["127.0.0.1:$PPORT"]
backends:
  - name: only
    address: "127.0.0.1:$BPORT"
user_at_backend: true
max_sessions: $((N + 100))
Y
$BIN serve --config $W/ftpsgate.yaml > $W/p.log 2>&1 & PX=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$PPORT) 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/{print $2}' /proc/$PX/status; }
fds() { ls /proc/$PX/fd | wc -l; }
echo "before: RSS $(rss) KiB, fds $(fds)"
coproc IC { python3 $HERE/idle_client.py --port $PPORT -n $N --per-source 25 --parallel 64; }
read -r line <&"${IC[0]}"; echo "client: $line"
sleep 10
echo "holding: RSS $(rss) KiB, fds $(fds)"
echo CHECK >&"${IC[1]}"; read -r line <&"${IC[0]}"; echo "client: $line"
echo QUIT >&"${IC[1]}"; read -r line <&"${IC[0]}" || true
sleep 2; echo "after: RSS $(rss) KiB, fds $(fds)"
