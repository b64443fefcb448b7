# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared settings for the container scripts. Source it; do not run it.
#
# This machine has no Docker engine, so the scripts drive Debian's podman. Its default runtime
# (crun) and default ulimits do not work inside this sandbox, hence the flags below; on a normal
# workstation `docker build` / `docker run` need none of them (see docs/deployment.md).

# Runtime flags for `podman run` (and `podman build`'s RUN steps).
#  --runtime runc      crun fails here; runc (Debian package `runc`) works.
#  --ulimit ...        podman's defaults (1048576 open files) exceed what this host grants.
#  --network host      avoids podman creating bridges and firewall rules on the host.
PODMAN_RUN_FLAGS=(
  --runtime runc
  --ulimit nofile=20000:20000
  --ulimit nproc=4096:4096
  --network host
)

# Build flags.
#  --format docker     the OCI image format has no HEALTHCHECK; podman drops it without this.
#  --isolation chroot  RUN steps in a chroot: needs no OCI runtime and no network namespace.
PODMAN_BUILD_FLAGS=(
  --format docker
  --isolation chroot
  --network host
  --ulimit nofile=20000:20000
  --ulimit nproc=4096:4096
)

# Where the base image's Debian root file system is kept between runs (outside the repository so
# a fresh clone in CI reuses it too).
CONTAINER_CACHE_DIR="${MODELKIT_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelkit-ts/container}"

log() { printf '[container] %s\n' "$*" >&2; }
die() { printf '[container] error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages the scripts need when a command is missing.
ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  # podman's storage and networking helpers; harmless when already present.
  command -v newuidmap >/dev/null || missing+=(uidmap)
  command -v fuse-overlayfs >/dev/null || missing+=(fuse-overlayfs)
  command -v slirp4netns >/dev/null || missing+=(slirp4netns)
  if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    log "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
