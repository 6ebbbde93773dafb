#!/usr/bin/env bash
# bench/setup.sh — owns installing what the ftpsgate-vs-ProFTPD-mod_proxy benchmark
# (bench/run.py) needs on a Debian 12 machine: ProFTPD core + mod_tls (proftpd-mod-crypto)
# + mod_proxy, a vsftpd binary for the plaintext backend (extracted side by side,
# because Debian's vsftpd and proftpd packages conflict), curl, lftp, openssl.
# Idempotent: re-running it only installs what is missing. Must run as root.
set -euo pipefail

CACHE=${FTPSBENCH_CACHE:-/var/cache/ftpsgate-bench}
APT=(apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends)

need_pkgs=()
for p in proftpd-core proftpd-mod-crypto proftpd-mod-proxy libwrap0 curl lftp openssl python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]}"
  # proftpd-core's postinst tries to start the service; policy-rc.d / no systemd makes that a no-op.
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" "${need_pkgs[@]}" || {
    apt-get update && DEBIAN_FRONTEND=noninteractive "${APT[@]}" "${need_pkgs[@]}"; }
fi

# Do not leave a system-wide proftpd running on port 21 (the benchmark runs its own).
if [ -f /run/proftpd.pid ] && kill -0 "$(cat /run/proftpd.pid)" 2>/dev/null; then
  echo "setup: note: a system proftpd (pid $(cat /run/proftpd.pid)) is running; the benchmark does not need it"
fi

# vsftpd: use an installed /usr/sbin/vsftpd if present, else extract the .deb into $CACHE.
if [ -x /usr/sbin/vsftpd ]; then
  echo "setup: using /usr/sbin/vsftpd"
elif [ -x "$CACHE/vsftpd/usr/sbin/vsftpd" ]; then
  echo "setup: using $CACHE/vsftpd/usr/sbin/vsftpd"
else
  mkdir -p "$CACHE/deb"
  (cd "$CACHE/deb" && chmod 777 . && apt-get download vsftpd)
  dpkg -x "$CACHE"/deb/vsftpd_*.deb "$CACHE/vsftpd"
  echo "setup: extracted vsftpd to $CACHE/vsftpd/usr/sbin/vsftpd"
fi

# vsftpd's anonymous user (uploads land in a directory owned by it).
if ! getent passwd ftp >/dev/null; then
  useradd --system --no-create-home --home-dir /srv/ftp --shell /usr/sbin/nologin ftp
fi

for f in mod_tls.so mod_proxy.so; do
  [ -f /usr/lib/proftpd/$f ] || { echo "setup: /usr/lib/proftpd/$f missing" >&2; exit 1; }
done
echo "setup: ok ($(proftpd -v 2>&1 | head -1); $(curl --version | head -1 | cut -d' ' -f1-2); $(lftp --version | head -1))"
