#!/usr/bin/env bash
# Prints the Python base image the Dockerfile builds on. Where a registry answers: python:3.11-slim,
# pinned by digest (the Dockerfile's default). Where none does: a local one, made once and reused:
# `debootstrap --variant=minbase bookworm` from the Debian mirror apt already uses, imported as
# localhost/herald-debian:bookworm, then python3, venv, pip and CA certificates on top
# (localhost/herald-python:3.11-bookworm). HERALD_PYTHON_IMAGE overrides the choice.
# Usage: base.sh ENGINE
set -euo pipefail
engine="$1"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pinned="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile")"
debian="localhost/herald-debian:bookworm"
python="localhost/herald-python:3.11-bookworm"

if [ -n "${HERALD_PYTHON_IMAGE:-}" ]; then
    echo "$HERALD_PYTHON_IMAGE"
    exit 0
fi
have() { "$engine" image inspect "$1" >/dev/null 2>&1; }
if have "$pinned" || timeout 120 "$engine" pull -q "$pinned" >/dev/null 2>&1; then
    echo "$pinned"
    exit 0
fi
if have "$python"; then
    echo "$python"
    exit 0
fi
echo "no registry answers: making the Python base image locally ($python)" >&2

# The mirrors apt uses on this host (one-line or deb822 sources), else Debian's own.
sources="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
uris="$(printf '%s\n' "$sources" | sed -n -E 's/^deb +(\[[^]]*\] +)?([^ ]+).*/\2/p; s/^URIs: *([^ ]+).*/\1/p')"
mirror="$(printf '%s\n' "$uris" | grep -E '/debian/?$' | head -n1 || true)"
security="$(printf '%s\n' "$uris" | grep -E '/debian-security/?$' | head -n1 || true)"
mirror="${HERALD_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
security="${security:-${mirror%/debian}/debian-security}"

if ! have "$debian"; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >&2
    fi
    work="$(mktemp -d /var/tmp/herald-rootfs.XXXXXX)"
    trap 'rm -rf "$work"' EXIT
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }
    cat >"$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
    rm -rf "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$debian" >/dev/null
fi
"$engine" build --network=host --quiet --build-arg "DEBIAN_IMAGE=$debian" -t "$python" \
    -f "$here/base.Containerfile" "$here" >/dev/null
echo "$python"
