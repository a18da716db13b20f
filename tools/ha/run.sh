#!/usr/bin/env bash
# The appliance's Home Assistant discovery against a *current* Home Assistant: the newest
# release that installs on Python 3.13 (HA_VERSION), run headless in a Debian trixie amd64
# root filesystem built from Debian's packages (trixie's python3 is 3.13), by the same
# tools/ha_check.py scenario that `make ha-check` runs against 2024.3 on the host.
#
#   tools/ha/run.sh [check]     build what is missing, then tools/ha_check.py (make ha-check-current)
#   tools/ha/run.sh setup       only build the root filesystem and Home Assistant's venv
#   tools/ha/run.sh hass ARGS   Home Assistant's `hass ARGS` inside the root filesystem
#                               (what ha_check.py starts; its -c directory is bind-mounted)
#   tools/ha/run.sh shell       a shell in the root filesystem
#
# Needs root (re-runs itself with sudo), Debian's mmdebstrap (installed with apt when
# missing) and network to the Debian mirror and PyPI. Scratch space is outside the
# repository, in HA_CACHE (default /var/cache/appliance-ha): the root filesystem and the
# Home Assistant venv in it are built once and reused; pip downloads go through the host's
# pip cache. The daemon and Mosquitto run on the host; Home Assistant reaches the broker
# on the loopback, as the chroot shares the host's network.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${HA_CACHE:-/var/cache/appliance-ha}
SUITE=trixie
MIRROR=${HA_MIRROR:-http://deb.debian.org/debian}
ROOT=$CACHE/rootfs-$SUITE-amd64
# gcc and the headers: Home Assistant 2026.2 pins lru-dict 1.3.0, which has no cp313 wheel.
ROOTFS_PACKAGES=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates
# The newest Home Assistant whose Requires-Python admits trixie's Python 3.13.5 (later
# releases need a newer Python), and the requirements of the integrations ha_check.py's
# configuration loads (its own, the MQTT config entry and Home Assistant's default set,
# with their dependencies: read from that release's manifests). They are resolved against
# the release's own homeassistant/package_constraints.txt (no backtracking through
# bluetooth releases, the versions Home Assistant itself would install), so that it runs
# with --skip-pip, offline and without falling into recovery mode.
HA_VERSION=${HA_VERSION:-2026.2.3}
HA_PKGS="homeassistant==$HA_VERSION paho-mqtt SQLAlchemy fnv-hash-fast psutil-home-assistant \
home-assistant-frontend Pillow cronsim securetar ifaddr"

log() { printf '[ha %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
  exec sudo --preserve-env=HA_CACHE,HA_MIRROR,HA_VERSION,PIP_CACHE_DIR "$0" "$@"
fi

# shellcheck source=tools/arm64/rootfs.sh disable=SC1091
source "$REPO/tools/arm64/rootfs.sh"

host_pip_cache() {
  if [ -n "${PIP_CACHE_DIR:-}" ]; then echo "$PIP_CACHE_DIR"; return; fi
  local home=$HOME
  if [ -n "${SUDO_USER:-}" ]; then home=$(getent passwd "$SUDO_USER" | cut -d: -f6); fi
  echo "$home/.cache/pip"
}

ensure_host_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v unshare >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# in_rootfs [-b DIR] CMD...: CMD in the root filesystem, in a private mount namespace, with
# the pip cache and DIR (at the same path) bind-mounted for this command only. Every step
# execs the next, so the caller's process *is* CMD: a SIGTERM sent to it reaches hass.
in_rootfs() {
  local bind=-
  if [ "${1:-}" = -b ]; then bind=$2; shift 2; fi
  HA_IN_NS=1 exec unshare --mount --propagation private -- "$0" __enter "$bind" "$@"
}

enter() {
  local bind=$1
  shift
  # Only ever inside in_rootfs's private namespace: these mounts must not reach the host.
  [ "${HA_IN_NS:-}" = 1 ] || die "__enter is internal: use in_rootfs"
  mount_rootfs_basics "$ROOT"
  mkdir -p "$(host_pip_cache)" "$ROOT/root/.cache/pip"
  mount --bind "$(host_pip_cache)" "$ROOT/root/.cache/pip"
  if [ "$bind" != - ]; then
    mkdir -p "$ROOT$bind"
    mount --bind "$bind" "$ROOT$bind"
  fi
  exec_in_rootfs "$ROOT" "$@"
}

# Home Assistant in its own venv in the root filesystem, rebuilt when the pins change.
ensure_hass() {
  local stamp=$ROOT/opt/havenv/.installed
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$HA_PKGS" ]; then
    return
  fi
  log "installing $HA_PKGS in $ROOT/opt/havenv (a few minutes, once)"
  rm -rf "$ROOT/opt/havenv"
  # shellcheck disable=SC2016  # expanded inside the root filesystem
  (in_rootfs /bin/sh -c 'set -e; python3 -m venv /opt/havenv; pip=/opt/havenv/bin/pip
    $pip install --quiet --disable-pip-version-check --no-deps homeassistant=='"$HA_VERSION"'
    c=$(/opt/havenv/bin/python -c "import homeassistant, os; print(os.path.dirname(homeassistant.__file__))")
    $pip install --quiet --disable-pip-version-check -c "$c/package_constraints.txt" '"$HA_PKGS") ||
    die "pip could not install Home Assistant $HA_VERSION"
  echo "$HA_PKGS" >"$stamp"
}

cmd_setup() {
  ensure_host_tools
  build_rootfs amd64 "$SUITE" "$ROOT" "$ROOTFS_PACKAGES" "$MIRROR"
  ensure_hass
}

cmd_check() {
  local t0=$SECONDS rc=0
  cmd_setup
  log "$(in_rootfs_out /opt/havenv/bin/python -c 'import sys; from homeassistant.const import __version__ as v; print("Home Assistant", v, "on Python", sys.version.split()[0])')"
  [ -x "$REPO/.venv/bin/python" ] || make -C "$REPO" .venv/.installed assets
  "$REPO/.venv/bin/python" "$REPO/tools/ha_check.py" --hass "$0 hass" "$@" || rc=$?
  log "$([ "$rc" = 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
  return "$rc"
}

# A command's output from inside (in_rootfs execs, so it runs in a subshell here).
in_rootfs_out() { (in_rootfs "$@"); }

# hass ARGS: the directory after -c is bind-mounted at the same path, so ha_check.py reads
# the registries and the recorder database that Home Assistant writes there.
cmd_hass() {
  local dir="" prev=""
  for a in "$@"; do
    if [ "$prev" = -c ]; then dir=$a; fi
    prev=$a
  done
  [ -n "$dir" ] || die "hass needs -c DIR"
  [ -x "$ROOT/opt/havenv/bin/hass" ] || die "no Home Assistant in $ROOT: run $0 check first"
  dir=$(cd "$dir" && pwd)
  in_rootfs -b "$dir" /opt/havenv/bin/hass "$@"
}

case "${1:-check}" in
  check) shift || true; cmd_check "$@" ;;
  setup) cmd_setup ;;
  hass) shift; cmd_hass "$@" ;;
  shell)
    ensure_host_tools
    build_rootfs amd64 "$SUITE" "$ROOT" "$ROOTFS_PACKAGES" "$MIRROR"
    in_rootfs /bin/bash -l
    ;;
  __enter) shift; enter "$@" ;;
  *) die "usage: $0 [check|setup|hass ARGS|shell]" ;;
esac
