#!/usr/bin/env bash
# `make image`: builds herald:local (HERALD_IMAGE overrides the name) from the Dockerfile with podman,
# or docker where a Docker engine answers, on the base tools/image/base.sh chooses, and prints its size.
# The host's CA bundle goes into the build as the secret ca_bundle, so pip inside trusts what the host
# trusts. HERALD_IMAGE_MAX_MB (default 200) fails the build when the image is larger.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="${HERALD_IMAGE:-herald:local}"
max_mb="${HERALD_IMAGE_MAX_MB:-200}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

engine="$("$here/engine.sh")"
base="$("$here/base.sh" "$engine")"
args=(build --network=host --build-arg "PYTHON_IMAGE=$base" -t "$image" -f "$root/Dockerfile")
ca="${HERALD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[ -s "$ca" ] && args+=(--secret "id=ca_bundle,src=$ca")
[ "$engine" = docker ] && export DOCKER_BUILDKIT=1

started=$(date +%s)
echo "building $image with $engine on $base" >&2
"$engine" "${args[@]}" "$root" >&2
bytes="$("$engine" image inspect --format '{{.Size}}' "$image")"
mb=$(( (bytes + 500000) / 1000000 ))
echo "$image: ${mb} MB ($bytes bytes), built in $(( $(date +%s) - started )) s on $base"
if [ "$mb" -gt "$max_mb" ]; then
    echo "$image is ${mb} MB, over the ${max_mb} MB budget" >&2
    exit 1
fi
