#!/usr/bin/env bash
# .ci/install-deps.sh — owns the installation of the real FTP clients and
# servers used by the interop tests (tests/support/tools/).
#
# Run as root on a Debian 12 machine that reaches only the package
# registries. Idempotent: a second run re-checks everything and changes
# nothing that is already in place.
#
# Installs:
#   * curl, lftp, rclone, openssl, iproute2, iptables, haproxy (Debian
#     packages; haproxy is only run by tests/haproxy.rs in the foreground,
#     its service is stopped; iproute2/iptables build tests/transparent.rs's
#     network namespaces)
#   * podman and runc (Debian packages), for tests/container.rs: it builds
#     the image of deploy/container/ FROM scratch (no registry needed) and
#     runs it with `--runtime runc` (crun refused the project's VM, which
#     has hybrid cgroups). binutils for the `strip` that
#     deploy/container/build.sh uses.
#   * pyftpdlib (PyPI, for the `python3` on PATH)
#   * kubernetes-validate (PyPI, same `python3`): the Kubernetes API's JSON
#     schemas, bundled, so tests/shipped_configs.rs can validate
#     deploy/kubernetes/ strictly without a cluster
#   * vsftpd and proftpd binaries, side by side under $FTPSGATE_TOOLS
#     (default /opt/ftpsgate-tools). Debian's FTP daemon packages conflict
#     with each other, so they are not installed: their .debs are fetched
#     with `apt-get download` and unpacked with `dpkg -x`. The shared
#     libraries they link against are ordinary, non-conflicting Debian
#     library packages and are installed with apt-get.
#   * a system user `ftpsgate-test` (password `secret`, no shell, home `/`)
#     and a PAM service file /etc/pam.d/ftpsgate-vsftpd: vsftpd only logs
#     in real system users through PAM. proftpd needs neither (it uses a
#     generated AuthUserFile).
#
# Layout of $FTPSGATE_TOOLS:
#   debs/     the downloaded .deb files
#   root/     the unpacked packages (root/usr/sbin/vsftpd, ...)
#   bin/      vsftpd and proftpd (symlinks into root/)
#   lib/      extra shared libraries (empty unless needed; tests put it on
#             LD_LIBRARY_PATH)
set -euo pipefail

TOOLS="${FTPSGATE_TOOLS:-/opt/ftpsgate-tools}"
APT_OPTS=(-o DPkg::Lock::Timeout=300 -y -q --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive

PYFTPDLIB_VERSION="2.2.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
VSFTPD_USER="ftpsgate-test"
VSFTPD_PASS="secret"
PAM_SERVICE="ftpsgate-vsftpd"

log() { printf '[install-deps] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

# --- Debian packages ---------------------------------------------------------
log "apt-get update"
apt-get -o DPkg::Lock::Timeout=300 -q update >/dev/null

# Libraries vsftpd (libwrap0, libcap2, libpam0g, libssl3) and proftpd-core
# (libhiredis, libmemcached, libpcre2-posix, libacl1, ...) link against.
LIBS=(libc6 libcap2 libpam0g libpam-modules libpam-runtime libssl3 libwrap0
      libacl1 libcrypt1 libhiredis0.14 libidn2-0 libmemcached11
      libmemcachedutil2 libncursesw6 libpcre2-8-0 libpcre2-posix3 libtinfo6
      zlib1g)
log "apt-get install clients and daemon libraries"
# iproute2 and iptables: tests/transparent.rs builds network namespaces with
# a nat REDIRECT rule (the transparent appliance mode).
apt-get "${APT_OPTS[@]}" install curl lftp rclone openssl haproxy ca-certificates passwd \
    iproute2 iptables \
    "${LIBS[@]}" >/dev/null
# The tests run their own haproxy in the foreground; the packaged service is not wanted.
invoke-rc.d haproxy stop >/dev/null 2>&1 || true
# Without recommends podman's runtime dependency (crun | runc) is met by runc.
log "apt-get install podman, runc, binutils"
apt-get "${APT_OPTS[@]}" install podman runc binutils >/dev/null

# --- Python ------------------------------------------------------------------
if python3 -c "import pyftpdlib, sys; sys.exit(pyftpdlib.__ver__ != '${PYFTPDLIB_VERSION}')" \
    2>/dev/null; then
    log "pyftpdlib ${PYFTPDLIB_VERSION} already installed"
else
    log "pip install pyftpdlib==${PYFTPDLIB_VERSION}"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        "pyftpdlib==${PYFTPDLIB_VERSION}"
fi
if [ "$(python3 -m kubernetes_validate --version 2>/dev/null)" = "${KUBERNETES_VALIDATE_VERSION}" ]; then
    log "kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} already installed"
else
    log "pip install kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi

# --- vsftpd and proftpd, unpacked side by side ----------------------------------
mkdir -p "$TOOLS/debs" "$TOOLS/root" "$TOOLS/bin" "$TOOLS/lib"
for pkg in vsftpd proftpd-core; do
    want="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
    if [ -z "$want" ] || [ "$want" = "(none)" ]; then
        log "no candidate version for $pkg"
        exit 1
    fi
    stamp="$TOOLS/debs/$pkg.version"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "$pkg $want already unpacked"
        continue
    fi
    log "apt-get download $pkg ($want)"
    rm -f "$TOOLS/debs/${pkg}"_*.deb
    (cd "$TOOLS/debs" && apt-get -o APT::Sandbox::User=root -q download "$pkg=$want" >/dev/null)
    deb="$(ls "$TOOLS/debs/${pkg}"_*.deb | head -n1)"
    dpkg -x "$deb" "$TOOLS/root"
    echo "$want" >"$stamp"
done
ln -sfn ../root/usr/sbin/vsftpd "$TOOLS/bin/vsftpd"
ln -sfn ../root/usr/sbin/proftpd "$TOOLS/bin/proftpd"

# Every library the binaries need must resolve.
for bin in vsftpd proftpd; do
    missing="$(LD_LIBRARY_PATH="$TOOLS/lib" ldd "$TOOLS/bin/$bin" | grep 'not found' || true)"
    if [ -n "$missing" ]; then
        log "$bin has unresolved libraries:"
        echo "$missing" >&2
        exit 1
    fi
done

# --- The vsftpd login user and its PAM service ---------------------------------
if ! getent passwd "$VSFTPD_USER" >/dev/null; then
    log "useradd $VSFTPD_USER"
    useradd --system --no-create-home --home-dir / \
        --shell /usr/sbin/nologin "$VSFTPD_USER"
fi
# vsftpd chdirs to the home directory before `local_root`, so it must exist.
if [ "$(getent passwd "$VSFTPD_USER" | cut -d: -f6)" != "/" ]; then
    usermod --home / "$VSFTPD_USER"
fi
echo "${VSFTPD_USER}:${VSFTPD_PASS}" | chpasswd
cat >"/etc/pam.d/${PAM_SERVICE}" <<'EOF'
# Written by ftpsgate .ci/install-deps.sh: PAM service for the vsftpd test
# backend (plain Unix password check, no shell or ftpusers restrictions).
auth     required pam_unix.so
account  required pam_unix.so
session  required pam_permit.so
EOF

# --- Report ------------------------------------------------------------------
export LD_LIBRARY_PATH="$TOOLS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "installed:"
printf '  curl:      %s\n' "$(curl --version | head -n1)"
printf '  lftp:      %s\n' "$(lftp --version | head -n1)"
printf '  rclone:    %s\n' "$(rclone version | head -n1)"
printf '  haproxy:   %s\n' "$(/usr/sbin/haproxy -v | head -n1)"
printf '  podman:    %s, %s\n' "$(podman --version)" "$(runc --version | head -n1)"
printf '  python3:   %s (%s)\n' "$(python3 --version 2>&1)" "$(command -v python3)"
printf '  pyftpdlib: %s\n' "$(python3 -c 'import pyftpdlib; print(pyftpdlib.__ver__)')"
printf '  kubernetes-validate: %s\n' "$(python3 -m kubernetes_validate --version)"
# `vsftpd -v` prints its version on stdin's descriptor (fd 0), then exits 0.
vsftpd_version="$("$TOOLS/bin/vsftpd" -v 0>&1 2>&1 | head -n1)"
proftpd_version="$("$TOOLS/bin/proftpd" -v 2>&1 | head -n1)"
case "$vsftpd_version" in *version*) ;; *) log "vsftpd does not run: $vsftpd_version"; exit 1 ;; esac
case "$proftpd_version" in *ProFTPD*) ;; *) log "proftpd does not run: $proftpd_version"; exit 1 ;; esac
printf '  vsftpd:    %s (%s)\n' "$vsftpd_version" "$TOOLS/bin/vsftpd"
printf '  proftpd:   %s (%s)\n' "$proftpd_version" "$TOOLS/bin/proftpd"
printf '  user:      %s (PAM service %s)\n' "$(getent passwd "$VSFTPD_USER")" "$PAM_SERVICE"
