#!/usr/bin/env bash
# deploy/container/build.sh — builds the ftpsgate container image FROM scratch
# out of a binary you already built. It stages a build context in a temp dir:
#
#   Containerfile                      (this directory's)
#   rootfs/usr/local/bin/ftpsgate      the binary (DWARF stripped, see --no-strip)
#   rootfs/<path>                      every shared library `ldd` lists, at
#                                      the same path, plus the dynamic loader
#   rootfs/etc/passwd, etc/group       user and group 65532 (ftpsgate)
#   rootfs/etc/nsswitch.conf           "hosts: files dns": without it glibc
#                                      consults /etc/hosts only when DNS is down
#
# then runs `$CONTAINER_ENGINE build` on it. No registry is contacted.
#
# Usage: deploy/container/build.sh [--binary PATH] [--tag IMAGE] [--no-strip]
#   --binary PATH  the ftpsgate executable (default: target/release/ftpsgate)
#   --tag IMAGE    image name (default: localhost/ftpsgate:latest)
#   --no-strip     keep the DWARF debug info (the default strips it with
#                  `strip --strip-debug`; the symbol table stays, so a
#                  backtrace still names functions)
# Environment: CONTAINER_ENGINE (default podman; docker takes the same
# arguments, but only podman is tested).
# The image ID is the last line on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
binary="target/release/ftpsgate"
tag="localhost/ftpsgate:latest"
strip_debug=1
engine="${CONTAINER_ENGINE:-podman}"

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --tag) tag="${2:?--tag needs an image name}"; shift 2 ;;
        --no-strip) strip_debug=0; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done

[ -x "$binary" ] || die "$binary is not an executable (cargo build --release first, or pass --binary)"

context="$(mktemp -d "${TMPDIR:-/tmp}/ftpsgate-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc"
cp "$here/Containerfile" "$context/Containerfile"

# --- the binary ------------------------------------------------------------
install -m 0755 "$binary" "$rootfs/usr/local/bin/ftpsgate"
if [ "$strip_debug" = 1 ]; then
    if command -v strip >/dev/null; then
        strip --strip-debug "$rootfs/usr/local/bin/ftpsgate"
    else
        log "no strip (binutils) on PATH: keeping debug info"
    fi
fi

# --- its shared libraries and the loader, at the paths ldd resolved --------
# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
# "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)" (the
# kernel's, nothing to copy). A static binary has no libraries at all.
if ldd_out="$(ldd "$binary" 2>&1)"; then
    if grep -q 'not found' <<<"$ldd_out"; then
        die "unresolved libraries: $(grep 'not found' <<<"$ldd_out")"
    fi
    libs="$(awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$ldd_out")"
    for lib in $libs; do
        mkdir -p "$rootfs$(dirname "$lib")"
        # -L: the loader path (/lib64/ld-linux-x86-64.so.2) is a symlink on Debian.
        cp -L "$lib" "$rootfs$lib"
        log "library $lib"
    done
else
    case "$ldd_out" in
        *"not a dynamic executable"*|*"statically linked"*) log "static binary: no libraries" ;;
        *) die "ldd $binary failed: $ldd_out" ;;
    esac
fi

# --- user, group, name service ---------------------------------------------
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/:/nonexistent
ftpsgate:x:65532:65532:ftpsgate:/nonexistent:/nonexistent
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
ftpsgate:x:65532:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"

# --- build -----------------------------------------------------------------
log "$engine build -t $tag ($(du -sh "$rootfs" | cut -f1) staged)"
"$engine" build --quiet -f "$context/Containerfile" -t "$tag" "$context" >&2
id="$("$engine" image inspect --format '{{.Id}}' "$tag")"
log "built $tag: $("$engine" image inspect --format '{{.Size}}' "$tag") bytes"
echo "$id"
