# shellcheck shell=bash
# Debian root filesystems from Debian's own packages, and commands run inside them.
# Sourced by tools/arm64/run.sh (arm64 under qemu-user) and tools/ha/run.sh (a trixie
# amd64 root filesystem for a current Home Assistant), so both build and enter them alike.
# The caller defines log() and die().

# build_rootfs ARCH SUITE DIR PACKAGES MIRROR: mmdebstrap a minbase root filesystem once,
# then reuse it. A half-built one is never used (built aside, then renamed); the stamp
# records the suite and package list, so a changed list rebuilds it.
build_rootfs() {
  local arch=$1 suite=$2 dir=$3 packages=$4 mirror=$5 stamp want
  stamp="$dir/.appliance-rootfs"
  want="$suite $packages"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  log "building the $arch $suite root filesystem in $dir (a few minutes, once)"
  rm -rf "$dir.new" "$dir"
  mkdir -p "$(dirname "$dir")"
  mmdebstrap --quiet --arch="$arch" --variant=minbase --include="$packages" \
    "$suite" "$dir.new" "$mirror"
  echo "$want" >"$dir.new/.appliance-rootfs"
  mv "$dir.new" "$dir"
}

# mount_rootfs_basics ROOT: /proc, /dev, /sys (read-only) and a private /tmp, the host's
# DNS and trust store (a TLS-intercepting proxy the host trusts is trusted inside too).
# Only ever inside a private mount namespace (unshare --mount): nothing reaches the host.
mount_rootfs_basics() {
  local r=$1
  mount -t proc proc "$r/proc"
  mount --rbind /dev "$r/dev"
  mount --rbind /sys "$r/sys"
  mount -o remount,bind,ro "$r/sys" 2>/dev/null || true
  mkdir -p "$r/tmp"
  mount -t tmpfs -o size=2g tmpfs "$r/tmp"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
}

# exec_in_rootfs ROOT CMD...: replace this process with CMD chrooted in ROOT, in an
# emptied environment (the host's PIP_* settings must not leak in) except the proxy,
# PIP_INDEX_URL and QEMU_CPU variables when set; pip trusts the host's CA bundle.
exec_in_rootfs() {
  local r=$1 pass=() v ca=/etc/ssl/certs/ca-certificates.crt
  shift
  for v in QEMU_CPU PIP_INDEX_URL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!v:-}" ]; then pass+=("$v=${!v}"); fi
  done
  exec env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=$ca SSL_CERT_FILE=$ca REQUESTS_CA_BUNDLE=$ca "${pass[@]}" chroot "$r" "$@"
}
