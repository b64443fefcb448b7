#!/usr/bin/env bash
# Builds the modelkit-ts image with podman on a machine that cannot pull from a registry:
#
#   scripts/container/build-image.sh [tag [podman build options...]]
#
# The tag defaults to localhost/modelkit-ts:dev; further options go to `podman build`.
# The base is MODELKIT_NODE_IMAGE when set (e.g. node:24-bookworm-slim where a registry is
# reachable), else the local stand-in that scripts/container/base-image.sh makes and caches.
# Where Docker is available, `docker build -t modelkit-ts .` is all you need.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=scripts/container/lib.sh
source "$here/lib.sh"

tag="${1:-localhost/modelkit-ts:dev}"
shift || true
ensure_tools
base="${MODELKIT_NODE_IMAGE:-$("$here/base-image.sh")}"

build_args=(--build-arg "NODE_IMAGE=$base" --tag "$tag")
# Behind a proxy that re-signs TLS, npm inside the build needs the CA this machine trusts. It is
# handed over as a build secret, so it is not stored in any image layer.
if [[ -n "${NODE_EXTRA_CA_CERTS:-}" && -f "$NODE_EXTRA_CA_CERTS" ]]; then
  build_args+=(--secret "id=npm_ca,src=$NODE_EXTRA_CA_CERTS")
fi

log "building $tag from $base"
podman build "${PODMAN_BUILD_FLAGS[@]}" "${build_args[@]}" "$@" "$repo"
