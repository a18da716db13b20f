# shellcheck shell=bash
# `tools/arm64/run.sh matrix`: which ai-edge-litert versions load, allocate and invoke the
# committed int8 models under qemu-user, per qemu version, emulated CPU model and Python.
# Sourced by run.sh (uses its helpers); a research tool, not part of the CI job.
#
# Each cell is tools/arm64/litert_probe.py in a venv holding only that LiteRT version (and
# the numpy pip picks for it), run in its own process so a segfault is a result, not the
# end of the run. Its outputs are compared with the same version's on x86_64.
#
#   ARM64_MATRIX_VERSIONS  ai-edge-litert versions (default below)
#   ARM64_MATRIX_CPUS      qemu -cpu models (default below; "max" is qemu-user's default)
#   ARM64_MATRIX_QEMUS     "host" = Debian bookworm's qemu-user-static 7.2 through binfmt;
#                          a Debian suite name = that suite's statically linked qemu-user,
#                          fetched with apt-get download and run explicitly

MATRIX_VERSIONS=${ARM64_MATRIX_VERSIONS:-1.0.1 1.4.0 2.0.3 2.1.0 2.1.6 2.2.0 2.3.0}
MATRIX_CPUS=${ARM64_MATRIX_CPUS:-max max,sve=off cortex-a72 cortex-a76 neoverse-n1}
MATRIX_QEMUS=${ARM64_MATRIX_QEMUS:-host trixie sid}

# A newer qemu-aarch64 (static) from another Debian suite, without installing it: its own
# apt lists under $CACHE, apt-get download, dpkg-deb -x. Prints the binary's path.
fetch_qemu() {
  local suite=$1 a="$CACHE/apt-$1" opts ver bin
  mkdir -p "$a/lists/partial" "$a/archives/partial" "$CACHE/qemu"
  : >"$a/status"
  echo "deb $MIRROR $suite main" >"$a/sources.list"
  opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a" -o "Dir::Cache::Archives=$a/archives"
    -o "Dir::State::Status=$a/status" -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
  if [ ! -f "$a/lists/.updated" ] || [ -n "$(find "$a/lists/.updated" -mtime +1)" ]; then
    apt-get "${opts[@]}" -qq update >&2
    touch "$a/lists/.updated"
  fi
  ver=$(apt-cache "${opts[@]}" show --no-all-versions qemu-user | sed -n 's/^Version: //p')
  bin="$CACHE/qemu/qemu-aarch64-${ver//[:+~]/_}"
  if [ ! -x "$bin" ]; then
    (cd "$a" && rm -f ./*.deb && apt-get "${opts[@]}" -qq download "qemu-user=$ver" >&2)
    rm -rf "$a/x"
    dpkg-deb -x "$a"/qemu-user_*.deb "$a/x"
    cp "$a/x/usr/bin/qemu-aarch64" "$bin"
    rm -rf "$a/x" "$a"/qemu-user_*.deb
  fi
  file -L "$bin" | grep -q 'static' || die "$bin is not statically linked"
  echo "$bin"
}

# A venv per (rootfs, LiteRT version), kept between runs; on x86_64 too, for reference.
ensure_litert_venv_arm() {
  local suite=$1 ver=$2 r
  r=$(rootfs "$suite")
  [ -f "$r/opt/litert/$ver/.ok" ] && return 0
  [ -f "$r/opt/litert/$ver/.nowheel" ] && return 1
  rm -rf "$r/opt/litert/$ver"
  mkdir -p "$r/opt/litert"
  in_rootfs "$suite" /usr/bin/python3 -m venv "/opt/litert/$ver"
  if in_rootfs "$suite" "/opt/litert/$ver/bin/pip" install --quiet --disable-pip-version-check \
    "ai-edge-litert==$ver" >"$r/opt/litert/$ver/pip.log" 2>&1; then
    touch "$r/opt/litert/$ver/.ok"
  else
    grep -q 'No matching distribution' "$r/opt/litert/$ver/pip.log" &&
      touch "$r/opt/litert/$ver/.nowheel"
    return 1
  fi
}

ensure_litert_venv_x86() {
  local ver=$1 v="$CACHE/x86-litert/$1"
  [ -f "$v/.ok" ] && return 0
  rm -rf "$v"
  python3 -m venv "$v"
  "$v/bin/pip" install --quiet --disable-pip-version-check "ai-edge-litert==$ver" >&2
  touch "$v/.ok"
}

# Same output tensors, same values as x86_64 (to 1e-4, relative to the output's scale)?
compare_probe() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
worst = 0.0
for m, outs in a["models"].items():
    for name, o in outs.items():
        p = b["models"][m][name]
        scale = max(o["abs_sum"] / max(1, len(o["head"])), 1e-6)
        worst = max(worst, abs(o["sum"] - p["sum"]) / max(o["abs_sum"], 1e-6),
                    *(abs(x - y) / scale for x, y in zip(o["head"], p["head"])))
print("same as x86_64" if worst < 1e-4 else f"DIFFERS from x86_64 (rel {worst:.2e})")
EOF
}

cmd_matrix() {
  local suites=${*:-$SUITES} suite ver q cpu bin r res tsv qname rc detail py numpy verdict
  ensure_host_tools
  ensure_binfmt
  mkdir -p "$OUT/matrix"
  tsv="$OUT/matrix.tsv"  # appended to: one line per cell, newest last
  [ -s "$tsv" ] || printf 'python\tai-edge-litert\tnumpy\tqemu\tcpu\tresult\tdetail\n' >"$tsv"
  declare -A qbin=([host]="")
  for q in $MATRIX_QEMUS; do
    [ "$q" = host ] || qbin[$q]=$(fetch_qemu "$q")
  done
  for suite in $suites; do
    ensure_rootfs "$suite"
    r=$(rootfs "$suite")
    # The probe and the models only, apart from /work/appliance (which `check` replaces).
    mkdir -p "$r/opt/qemu" "$r/opt/litert/probe"
    cp "$REPO/tools/arm64/litert_probe.py" "$REPO"/models/*.tflite "$r/opt/litert/probe/"
    py=$(in_rootfs "$suite" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
    for ver in $MATRIX_VERSIONS; do
      if ! ensure_litert_venv_arm "$suite" "$ver"; then
        detail=$(grep -m1 -E '^ERROR' "$r/opt/litert/$ver/pip.log" || echo "pip failed")
        printf '%s\t%s\t-\t-\t-\tno install\t%s\n' "$py" "$ver" "$detail" | tee -a "$tsv"
        continue
      fi
      numpy=$(find "$r/opt/litert/$ver/lib" -maxdepth 3 -name 'numpy-*.dist-info' |
        sed 's/.*numpy-\(.*\)\.dist-info/\1/')
      ensure_litert_venv_x86 "$ver"
      [ -f "$OUT/matrix/x86_64-$ver.json" ] ||
        "$CACHE/x86-litert/$ver/bin/python" "$REPO/tools/arm64/litert_probe.py" \
          "$REPO"/models/*.tflite >"$OUT/matrix/x86_64-$ver.json" 2>/dev/null
      for q in $MATRIX_QEMUS; do
        qname=$q
        for cpu in $MATRIX_CPUS; do
          res="$OUT/matrix/$suite-$ver-$q-${cpu//,/_}"
          rc=0
          if [ "$q" = host ]; then
            qname="$(qemu-aarch64-static --version | head -1 | awk '{print $3}')"
            QEMU_CPU=$cpu ARM64_TIMEOUT=600 in_rootfs "$suite" \
              "/opt/litert/$ver/bin/python" /opt/litert/probe/litert_probe.py \
              /opt/litert/probe/blazeface_full_range_int8.tflite \
              /opt/litert/probe/facenet_int8.tflite \
              /opt/litert/probe/mobilefacenet_int8.tflite >"$res.out" 2>"$res.err" || rc=$?
          else
            bin=${qbin[$q]}
            qname="$("$bin" --version | head -1 | awk '{print $3}')"
            cp -u "$bin" "$r/opt/qemu/"
            ARM64_TIMEOUT=600 in_rootfs "$suite" "/opt/qemu/${bin##*/}" -cpu "$cpu" \
              "/opt/litert/$ver/bin/python" /opt/litert/probe/litert_probe.py \
              /opt/litert/probe/blazeface_full_range_int8.tflite \
              /opt/litert/probe/facenet_int8.tflite \
              /opt/litert/probe/mobilefacenet_int8.tflite >"$res.out" 2>"$res.err" || rc=$?
          fi
          if [ "$rc" = 0 ]; then
            detail=$(compare_probe "$OUT/matrix/x86_64-$ver.json" "$res.out")
            case $detail in same*) verdict=works ;; *) verdict="WRONG OUTPUT" ;; esac
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$py" "$ver" "$numpy" "$qname" "$cpu" \
              "$verdict" "$detail" | tee -a "$tsv"
          else
            detail="exit $rc"
            ((rc <= 128)) || detail+=" (signal $((rc - 128)))"
            detail+="; last stage: $(grep '^stage:' "$res.err" | tail -1 | cut -c8-)"
            detail+="; $(grep -m1 '^qemu:\|Error\|error' "$res.err" || true)"
            printf '%s\t%s\t%s\t%s\t%s\tFAILS\t%s\n' "$py" "$ver" "$numpy" "$qname" "$cpu" \
              "$detail" | tee -a "$tsv"
          fi
        done
      done
    done
  done
  log "matrix written to $tsv"
}
