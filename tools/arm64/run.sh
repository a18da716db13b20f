#!/usr/bin/env bash
# The appliance on aarch64 under qemu-user: an arm64 Debian root filesystem per Python
# (bookworm = 3.11, trixie = 3.13), the README's device install from PyPI's aarch64 wheels,
# the int8 models on real photos compared with x86_64, and a subset of the test suite.
#
#   tools/arm64/run.sh [check]         the CI job (default): every suite in ARM64_SUITES,
#                                      one after the other (ARM64_PARALLEL=1: side by side)
#   tools/arm64/run.sh matrix          which ai-edge-litert versions run, per qemu and -cpu
#   tools/arm64/run.sh shell SUITE     an interactive shell in that root filesystem
#
# Needs root (re-runs itself with sudo), Debian's qemu-user-static and mmdebstrap (installed
# with apt when missing), binfmt_misc (mounted and registered here when missing) and network
# to the Debian mirror and PyPI. Scratch space is outside the repository, in ARM64_CACHE
# (default /var/cache/appliance-arm64): the root filesystems are built once and reused; pip
# downloads go through the host's pip cache. Results go to build/arm64/.
#
# Timings under emulation say nothing about a Pi's speed; none are reported as such.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM64_CACHE:-/var/cache/appliance-arm64}
SUITES=${ARM64_SUITES:-bookworm trixie}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
SHARED=${ARM64_SHARED:-$REPO/../shared/data}
OUT=$REPO/build/arm64
# The packages a Pi user has after the README's `apt-get install git make python3`, plus
# what `make` installs on first use (python3-venv, mosquitto).
ROOTFS_PACKAGES=python3,python3-venv,make,git,mosquitto,ca-certificates
# Tests run under emulation: the pipeline on real photos, gallery, config/CLI, the
# detector's and aligner's arithmetic, and the daemon as a process against Mosquitto.
TESTS=${ARM64_TESTS:-tests/test_pipeline_real.py tests/test_gallery_store.py \
tests/test_imageio_config_cli.py tests/test_detect_unit.py tests/test_align_quality.py \
tests/test_daemon.py}
# Not under emulation: the Hamilton clip, the outage/SIGKILL, TLS and credentials daemon
# tests (minutes each at emulated speed), nor three that need the daemon to keep real-time
# pace, which failed when the 2-core machine was loaded (and passed when it was not):
# demo_grants (saw the known person, not the stranger, within 60 s at ~1.6 emulated fps),
# sigterm (one watchdog ping where it wants two) and enrol_by_capture (no frontal frame
# in time). The daemon's MQTT command path stays in: signed/forged/replayed commands and
# status over MQTT 5.
TESTS_K=${ARM64_TESTS_K:-not hamilton and not outage and not tls and not credentials \
and not demo_grants and not sigterm and not enrol_by_capture}
# The emulated CPU per suite: a Pi 4's Cortex-A72 (NEON, no dotprod) with bookworm, a
# Pi 5's Cortex-A76 (NEON + dotprod) with trixie, so XNNPACK's kernels for both run.
# Not qemu-user's default "max": with qemu 7.2 its SVE makes ai-edge-litert 2.1.6 compute
# wrong outputs (no faces found at all), see `run.sh matrix` and tools/arm64/README.md.
CPUS=${ARM64_CPUS:-bookworm:cortex-a72 trixie:cortex-a76}

log() { printf '[arm64 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
  exec sudo --preserve-env=ARM64_CACHE,ARM64_SUITES,ARM64_MIRROR,ARM64_SHARED,ARM64_TESTS,ARM64_TESTS_K,ARM64_CPUS,ARM64_PARALLEL,ARM64_MATRIX_VERSIONS,ARM64_MATRIX_CPUS,ARM64_MATRIX_QEMUS,PIP_CACHE_DIR \
    "$0" "$@"
fi

# The host's pip cache (the invoking user's, not root's, when run through sudo).
host_pip_cache() {
  if [ -n "${PIP_CACHE_DIR:-}" ]; then echo "$PIP_CACHE_DIR"; return; fi
  local home=$HOME
  if [ -n "${SUDO_USER:-}" ]; then home=$(getent passwd "$SUDO_USER" | cut -d: -f6); fi
  echo "$home/.cache/pip"
}

ensure_host_tools() {
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v unshare >/dev/null || missing+=(util-linux)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Arm64 ELF files run through qemu-aarch64-static by the kernel, so that a chroot works
# and every process Python starts there (mosquitto, the daemon, pip) is emulated too.
# F (fix binary): the kernel opens the interpreter now, so it need not exist in the chroot.
BINFMT=/proc/sys/fs/binfmt_misc
ensure_binfmt() {
  if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" ||
      die "binfmt_misc cannot be mounted here (a container without CAP_SYS_ADMIN?)"
  fi
  if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    log "registering qemu-aarch64-static with binfmt_misc"
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FP' \
      >"$BINFMT/register"
  fi
  [ "$(head -1 "$BINFMT/qemu-aarch64")" = enabled ] || echo 1 >"$BINFMT/qemu-aarch64"
}

rootfs() { echo "$CACHE/rootfs-$1"; }

# shellcheck source=tools/arm64/rootfs.sh disable=SC1091
source "$REPO/tools/arm64/rootfs.sh"

ensure_rootfs() {
  build_rootfs arm64 "$1" "$(rootfs "$1")" "$ROOTFS_PACKAGES" "$MIRROR"
}

# Run a command inside a root filesystem, in a private mount namespace: /proc, /dev, /sys,
# the pip cache, the photos (read-only) and build/arm64 are mounted for this command only
# and vanish with it, so nothing is left mounted on the host whatever happens.
# ARM64_TIMEOUT (seconds) bounds it. The environment is emptied (the host's PIP_* settings must not leak in).
in_rootfs() {
  local suite=$1
  shift
  ARM64_IN_NS=1 timeout "${ARM64_TIMEOUT:-0}" unshare --mount --propagation private -- "$0" __enter "$(rootfs "$suite")" "$@"
}

enter() {
  local r=$1
  shift
  # Only ever inside in_rootfs's private namespace: these mounts must not reach the host.
  [ "${ARM64_IN_NS:-}" = 1 ] || die "__enter is internal: use in_rootfs"
  mount_rootfs_basics "$r"
  mkdir -p "$r/root/.cache/pip" "$r/work/shared/data" "$r/work/out"
  mkdir -p "$(host_pip_cache)" "$OUT"
  mount --bind "$(host_pip_cache)" "$r/root/.cache/pip"
  if [ -d "$SHARED" ]; then
    mount --bind "$SHARED" "$r/work/shared/data"
    mount -o remount,bind,ro "$r/work/shared/data"
  fi
  mount --bind "$OUT" "$r/work/out"
  exec_in_rootfs "$r" "$@"
}

# The repository as it is on disk (tracked and untracked, not ignored), with no .venv:
# the install is done afresh in the rootfs on every run, as a Pi user would.
copy_repo() {
  local dest=$1
  rm -rf "$dest"
  mkdir -p "$dest"
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -xf - -C "$dest"
}

x86_reference() {
  if [ ! -x "$REPO/.venv/bin/python" ] || [ ! -f "$REPO/.venv/.installed" ]; then
    log "building the x86_64 .venv (make .venv/.installed)"
    make -C "$REPO" .venv/.installed
  fi
  log "x86_64: embeddings of the photo set"
  "$REPO/.venv/bin/python" "$REPO/tools/arm64/embed_dump.py" --data "$SHARED" \
    --out "$OUT/x86_64.json"
}

cpu_for() {
  local pair
  for pair in $CPUS; do
    if [ "${pair%%:*}" = "$1" ]; then echo "${pair#*:}"; return; fi
  done
  echo cortex-a72
}

check_suite() {
  local suite=$1 r t0 cpu
  t0=$SECONDS
  cpu=$(cpu_for "$suite")
  export QEMU_CPU=$cpu
  ensure_rootfs "$suite"
  r=$(rootfs "$suite")
  copy_repo "$r/work/appliance"
  log "$suite: $(in_rootfs "$suite" /usr/bin/python3 -c \
    'import platform, sys; print(platform.machine(), "Python", sys.version.split()[0])'), qemu -cpu $cpu"
  log "$suite: the README's install and the test subset under qemu-user"
  rm -f "$OUT/aarch64-$suite.json"
  local rc=0
  in_rootfs "$suite" /bin/bash /work/appliance/tools/arm64/inside.sh "$suite" "$TESTS" "$TESTS_K" ||
    rc=$?
  unset QEMU_CPU
  if [ -f "$OUT/aarch64-$suite.json" ]; then
    "$REPO/.venv/bin/python" "$REPO/tools/arm64/embed_compare.py" "$OUT/x86_64.json" \
      "$OUT/aarch64-$suite.json" --json "$OUT/agreement-$suite.json" || rc=1
  fi
  log "$suite: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s" \
    "(wall clock under emulation; says nothing about a Pi's speed)"
  return "$rc"
}

cmd_check() {
  local t0=$SECONDS suite
  ensure_host_tools
  ensure_binfmt
  [ -d "$SHARED" ] || die "the photos are not at $SHARED (ARM64_SHARED)"
  mkdir -p "$OUT"
  x86_reference
  local failed=() suites pids=() i
  read -r -a suites <<<"$SUITES"
  for suite in "${suites[@]}"; do ensure_rootfs "$suite"; done
  if [ "${ARM64_PARALLEL:-0}" = 1 ] && [ ${#suites[@]} -gt 1 ]; then
    # One emulated suite per core: each is mostly one busy thread. Not yet timed or
    # proven on CI, hence off by default.
    for suite in "${suites[@]}"; do
      check_suite "$suite" >"$OUT/log-$suite.txt" 2>&1 &
      pids+=($!)
    done
    for i in "${!suites[@]}"; do
      wait "${pids[$i]}" || failed+=("${suites[$i]}")
      log "---- ${suites[$i]} ----"
      cat "$OUT/log-${suites[$i]}.txt" >&2
    done
  else
    for suite in "${suites[@]}"; do
      check_suite "$suite" || failed+=("$suite")
    done
  fi
  if [ ${#failed[@]} -gt 0 ]; then
    die "failed under emulation: ${failed[*]} ($((SECONDS - t0)) s)"
  fi
  log "all suites passed ($SUITES) in $((SECONDS - t0)) s"
}

cmd_shell() {
  ensure_host_tools
  ensure_binfmt
  ensure_rootfs "${1:?which suite? bookworm or trixie}"
  in_rootfs "$1" /bin/bash -l
}

case "${1:-check}" in
  check) cmd_check ;;
  matrix)
    shift
    # shellcheck source=tools/arm64/matrix.sh disable=SC1091
    source "$REPO/tools/arm64/matrix.sh"
    cmd_matrix "$@"
    ;;
  shell) shift; cmd_shell "$@" ;;
  __enter) shift; enter "$@" ;;
  *) die "usage: $0 [check|matrix|shell SUITE]" ;;
esac
