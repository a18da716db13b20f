#!/usr/bin/env bash
# Check systemd/appliance.service with `systemd-analyze verify`, without a running systemd.
#
# Works in CI and containers: no systemd as PID 1, no /opt/appliance, no `appliance` user.
#   - The unit is copied to a temporary directory with ExecStart='s binary replaced by
#     /bin/true (arguments kept), because verify fails on a missing executable; that is
#     an install-time fact, not a mistake in the unit.
#   - verify only *warns* about unknown keys, bad values and unknown sections and still
#     exits 0, so its output is captured and any line about our unit fails the check.
#   - --man=no: Documentation= points at a file, not a man page.
#   - --recursive-errors=no: judge our unit, not the host's units it pulls in.
#   - SYSTEMD_LOG_LEVEL is pinned so a debug level set by CI cannot add noise.
# Then `systemd-analyze security --offline` prints the exposure score (0.0 best, 10.0
# worst) and fails if the sandboxing has regressed above MAX_EXPOSURE; --threshold= takes
# it in tenths (an integer), so 3.0 is passed as 30. The unit scores 1.4 with systemd 252.
#
# Usage: tools/check_unit.sh [UNIT]   (default: systemd/appliance.service)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
unit=${1:-$here/systemd/appliance.service}
name=$(basename "$unit")
MAX_EXPOSURE=${MAX_EXPOSURE:-30}  # tenths: 30 = 3.0

command -v systemd-analyze >/dev/null || { echo "check_unit: systemd-analyze not found" >&2; exit 2; }
[ -f "$unit" ] || { echo "check_unit: $unit not found" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -E 's#^(ExecStart=[-@:+!]*)/[^ ]+#\1/bin/true#' "$unit" >"$tmp/$name"
grep -q '^ExecStart=/bin/true' "$tmp/$name" || { echo "check_unit: no ExecStart= in $unit" >&2; exit 1; }

export SYSTEMD_LOG_LEVEL=notice SYSTEMD_LOG_COLOR=0 SYSTEMD_LOG_LOCATION=0 SYSTEMD_PAGER=

status=0
out=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/$name" 2>&1) || status=$?
# Line numbers match the original: only ExecStart='s value was rewritten.
out=${out//$tmp\/$name/$unit}
ours=$(grep -F -e "$unit" -e "$name" <<<"$out" || true)
others=$(grep -v -F -e "$unit" -e "$name" <<<"$out" || true)
if [ -n "$others" ]; then
    echo "check_unit: note (about other units, not failing):" >&2
    printf '%s\n' "$others" | sed 's/^/  /' >&2
fi
if [ -n "$ours" ] || [ "$status" -ne 0 ]; then
    [ -n "$ours" ] && printf '%s\n' "$ours" | sed 's/^/  /' >&2
    echo "check_unit: FAIL: systemd-analyze verify found problems in $unit (exit $status)" >&2
    exit 1
fi
echo "check_unit: verify OK ($(systemd-analyze --version | head -n1))"

sec=$(systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$tmp/$name" 2>&1) \
    || { echo "$sec" >&2; echo "check_unit: FAIL: exposure above $MAX_EXPOSURE tenths" >&2; exit 1; }
grep 'Overall exposure level' <<<"$sec" | sed "s/^→ /check_unit: /"
