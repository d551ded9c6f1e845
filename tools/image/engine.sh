#!/usr/bin/env bash
# Prints the container engine `make image` and `make test-image` use: docker when a Docker engine
# answers, podman otherwise. Installs podman (with runc, and uidmap, slirp4netns, fuse-overlayfs)
# from the Debian mirror when neither is there. Podman reads tools/image/containers.conf: callers
# export CONTAINERS_CONF="$(dirname "$0")/containers.conf" (build.sh and tests/image do).
set -euo pipefail
if [ -n "${HERALD_IMAGE_ENGINE:-}" ]; then
    echo "$HERALD_IMAGE_ENGINE"
    exit 0
fi
if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
    echo docker
    exit 0
fi
missing=()
for tool in podman runc newuidmap slirp4netns fuse-overlayfs; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || {
        echo "no Docker engine answers and podman is missing (${missing[*]}); install podman" >&2
        exit 1
    }
    echo "installing podman and what it needs (${missing[*]} missing)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends \
        podman runc uidmap slirp4netns fuse-overlayfs >&2
fi
echo podman
