#!/usr/bin/env bash
# Makes (once) and prints the name of a local stand-in for the official `node:24-bookworm-slim`
# image, for machines that cannot pull from a registry.
#
# It is Debian bookworm (debootstrap --variant=minbase) plus Node.js 24 LTS (the version pinned
# in scripts/node/versions.sh, from the npm registry's node-linux-* package, see
# scripts/node/ensure-node.sh; MODELKIT_IMAGE_NODE_VERSION picks another) and this machine's
# `npm`, laid out like the official image: node and npm in /usr/local/bin, npm's package in
# /usr/local/lib/node_modules/npm, and an unprivileged `node` user (uid/gid 1000, home
# /home/node). Pass it to the Dockerfile with `--build-arg NODE_IMAGE=<printed name>`.
#
# The image stays in podman's storage and is reused while its tag (which names the node and npm
# versions and the recipe revision) exists; the debootstrap tree is cached in
# $CONTAINER_CACHE_DIR so that even a removed image is rebuilt in seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/container/lib.sh
source "$here/lib.sh"

# shellcheck source=scripts/node/versions.sh
source "$here/../node/versions.sh"

# Bump when the recipe below changes, so cached images are not reused.
RECIPE=3
SUITE=bookworm

node_bin="$("$here/../node/ensure-node.sh" "${MODELKIT_IMAGE_NODE_VERSION:-$NODE_24}")/node"
node_version="$("$node_bin" --version)"
# The machine's npm package directory: npm-cli.js is <npm_dir>/bin/npm-cli.js.
npm_cli="$(readlink -f "$(command -v npm)")"
npm_dir="$(dirname "$(dirname "$npm_cli")")"
[[ -f "$npm_dir/bin/npm-cli.js" ]] || die "npm's package not found (looked in $npm_dir)"
npm_version="$("$node_bin" "$npm_dir/bin/npm-cli.js" --version)" ||
  die "npm in $npm_dir does not run on node $node_version"

image="localhost/modelkit-node-base:${node_version#v}-npm${npm_version}-${SUITE}-r${RECIPE}"

ensure_tools
if podman image exists "$image"; then
  log "base image $image is cached"
  echo "$image"
  exit 0
fi

# 1. Debian root file system, cached pristine.
rootfs_cache="$CONTAINER_CACHE_DIR/$SUITE-minbase"
if [[ ! -f "$rootfs_cache/.complete" ]]; then
  log "debootstrap --variant=minbase $SUITE (about a minute, once per machine)"
  rm -rf "$rootfs_cache" "$rootfs_cache.tmp"
  mkdir -p "$CONTAINER_CACHE_DIR"
  debootstrap --variant=minbase "$SUITE" "$rootfs_cache.tmp" >"$CONTAINER_CACHE_DIR/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $CONTAINER_CACHE_DIR/debootstrap.log"
  mv "$rootfs_cache.tmp" "$rootfs_cache"
  touch "$rootfs_cache/.complete"
fi

# 2. A working copy with node, npm and the node user added.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "adding node $node_version and npm $npm_version"
cp -a "$rootfs_cache" "$work/rootfs"
root="$work/rootfs"
rm -f "$root/.complete"
install -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# The official images create this user; the Dockerfile's `USER node` relies on it.
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# Trim what a runtime image does not need (apt indexes, docs, man pages).
rm -rf "${root:?}"/var/cache/apt/*.bin "${root:?}"/var/lib/apt/lists/* "${root:?}"/usr/share/doc/* \
  "${root:?}"/usr/share/man/* "${root:?}"/usr/share/info/* "${root:?}"/var/log/*.log "${root:?}"/tmp/*
env -u NODE_EXTRA_CA_CERTS chroot "$root" node --version >/dev/null || die "node does not run in the new root file system"
env -u NODE_EXTRA_CA_CERTS chroot "$root" npm --version >/dev/null || die "npm does not run in the new root file system"

# 3. Import as an image.
log "importing $image"
tar -C "$root" --numeric-owner -c . |
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${node_version#v}" \
    --change 'CMD ["node"]' \
    --quiet - "$image" >/dev/null
echo "$image"
