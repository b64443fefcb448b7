#!/usr/bin/env bash
# Prints the bin directory of a pinned Node.js version, fetching it first when missing:
#
#   scripts/node/ensure-node.sh 24.22.3    # -> ~/.cache/modelkit-ts/node/24.22.3-x64/bin
#                                           #    (/var/cache/modelkit-ts/node/... as root)
#
# The binary comes from the npm registry's `node-linux-<arch>` package of that exact version
# (the official build, repackaged; `npm pack` checks the tarball against the registry's
# integrity) and is kept in $MODELKIT_NODE_CACHE, outside the repository, so later runs and fresh
# clones reuse it. By default that is ~/.cache/modelkit-ts/node, or /var/cache/modelkit-ts/node
# for root: root's home is closed to other users, and the tests that drop privileges (a
# read-only assets cache seen by an unprivileged reader) must run the same node. It holds `node`
# only: npm is the machine's, run by that node.
set -euo pipefail

log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] error: %s\n' "$*" >&2; exit 1; }

(($# == 1)) || die "usage: $0 <version>"
version="$1"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "the version must be exact, like 24.22.3; got '$version'"
[[ "$(uname -s)" == Linux ]] || die "the node-linux-* packages hold Linux binaries only"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die "no node-linux-* package for $(uname -m)" ;;
esac
package="node-linux-$arch"

if [[ "$(id -u)" == 0 ]]; then
  default_cache=/var/cache/modelkit-ts/node
else
  default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/modelkit-ts/node"
fi
cache="${MODELKIT_NODE_CACHE:-$default_cache}"
dir="$cache/$version-$arch"
if [[ ! -x "$dir/bin/node" ]]; then
  log "fetching $package@$version from the npm registry (once per machine)"
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  tarball="$(cd "$tmp" && npm pack --silent "$package@$version")"
  tar -xzf "$tmp/$tarball" -C "$tmp"
  [[ "$("$tmp/package/bin/node" --version)" == "v$version" ]] ||
    die "$package@$version does not hold a working node v$version"
  rm -rf "$dir"
  mv "$tmp/package" "$dir" # a rename: a concurrent run sees all of it or nothing
fi
echo "$dir/bin"
