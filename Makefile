# Two commands matter: `make run` and `make test`. Each builds what it needs from
# nothing on Debian / Raspberry Pi OS with python3, make and apt.
PYTHON ?= python3
VENV := .venv
QVENV := .venv-quant
SHARED := ../shared/data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CALIB := --calibration $(SHARED)/lfw/images \
	--calibration-list models/calibration/lfw_folds1-5.txt \
	--agreement-list models/calibration/lfw_folds6-10.txt

.PHONY: run test lint models quantize-check eval check-wheels check-unit ha-check ha-check-current arm64-check soak assets install clean

# $(call ensure_apt,CHECK,PACKAGES): install PACKAGES with apt unless the shell test CHECK
# passes (no commas in CHECK: they would split the call's arguments).
define ensure_apt
	@{ $(1); } >/dev/null 2>&1 || { \
	  echo "installing $(2) with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(2); } || { \
	  echo "$(2) missing and could not be installed: sudo apt-get install $(2)"; \
	  exit 1; }
endef

# The daemon talks MQTT; tests and `make run` start their own Mosquitto on a free port.
ensure_mosquitto = $(call ensure_apt,command -v mosquitto || [ -x /usr/sbin/mosquitto ],mosquitto)
# Tests only: ffmpeg serves the network-camera stream (tests/test_camera.py), and
# gst-launch-1.0 with videotestsrc stands in for a Jetson's camera
# (tests/test_camera_gstreamer.py), and Debian's chromium with chromium-driver drives the
# web pages (tests/test_web_browser.py).
define ensure_test_tools
	$(call ensure_apt,command -v ffmpeg,ffmpeg)
	$(call ensure_apt,gst-inspect-1.0 videotestsrc && gst-inspect-1.0 videoscale,gstreamer1.0-tools gstreamer1.0-plugins-base)
	$(call ensure_apt,[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ],chromium chromium-driver)
endef

# python3 -m venv needs Debian's python3-venv (ensurepip); install it when missing.
define ensure_venv_support
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv with apt"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
endef

$(VENV)/.installed: requirements.txt pyproject.toml
	$(ensure_venv_support)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

assets: $(VENV)/.installed
	$(VENV)/bin/python -m appliance.camera.assets >/dev/null

# The daemon on the camera (or the demo), a local broker if none answers, events printed.
run: $(VENV)/.installed assets
	$(ensure_mosquitto)
	$(VENV)/bin/python tools/run_demo.py

test: $(VENV)/.dev assets
	$(ensure_mosquitto)
	$(ensure_test_tools)
	$(VENV)/bin/ruff check appliance tools tests
	$(VENV)/bin/ruff format --check appliance tools tests
	$(VENV)/bin/python -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check appliance tools tests
	$(VENV)/bin/ruff format --check appliance tools tests

# Workstation only: TensorFlow lives in its own venv, never in the device's.
$(QVENV)/.installed: requirements-quantize.txt
	$(ensure_venv_support)
	$(PYTHON) -m venv $(QVENV)
	$(QVENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-quantize.txt
	touch $@

# The open-set curves in the manifest stay while an embedder's weights are unchanged;
# any curve the rebuild dropped (or that was never measured) is measured again on LFW,
# since the daemon refuses to start without one.
models: $(QVENV)/.installed $(VENV)/.installed
	$(QVENV)/bin/python tools/quantize.py $(CALIB)
	@for e in $$($(VENV)/bin/python tools/quantize.py --list-uncalibrated); do \
	  echo "measuring the open-set calibration of $$e on LFW"; \
	  $(VENV)/bin/python tools/evaluate.py identify --data $(SHARED)/lfw --embedder $$e \
	    --write-calibration --json build/eval/identify_lfw_$$e.json || exit 1; \
	done

# CI: regenerate the models from their sources and compare with the committed ones.
QUANTIZE_CHECK_MODELS ?= detector,facenet,mobilefacenet
quantize-check: $(QVENV)/.installed
	$(QVENV)/bin/python tools/quantize.py $(CALIB) --check --models $(QUANTIZE_CHECK_MODELS)

# FaceNet is the reference model of the foundation figures; fused is the device default.
eval: $(VENV)/.installed
	$(VENV)/bin/python tools/evaluate.py lfw --data $(SHARED)/lfw --json build/eval/lfw_facenet.json
	$(VENV)/bin/python tools/evaluate.py lfw --data $(SHARED)/lfw --embedder fused \
	  --json build/eval/lfw_fused.json
	$(VENV)/bin/python tools/evaluate.py detection --data $(SHARED)/detection --json build/eval/detection.json
	$(VENV)/bin/python tools/evaluate.py identify --data $(SHARED)/lfw --json build/eval/identify_lfw.json
	$(VENV)/bin/python tools/evaluate.py identify --data $(SHARED)/lfw --embedder fused \
	  --json build/eval/identify_lfw_fused.json
	$(VENV)/bin/python tools/evaluate.py identify --data $(SHARED)/scenes/examples/knn_examples \
	  --embedder fused --json build/eval/identify_knn.json

# Fails if a pinned runtime dependency has no aarch64 wheel for CPython 3.10 (Jetson:
# JetPack 6 is Ubuntu 22.04), 3.11 (Raspberry Pi OS bookworm) or 3.13 (trixie). The
# platform is the oldest glibc among them, Ubuntu 22.04's 2.35: pip matches --platform
# tags exactly, so every manylinux tag that glibc 2.35 runs is listed.
WHEEL_PLATFORMS := manylinux2014_aarch64 $(foreach v,$(shell seq 17 35),manylinux_2_$(v)_aarch64)
check-wheels:
	@for py in 310 311 313; do \
	  d=$$(mktemp -d); \
	  $(PYTHON) -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
	    $(addprefix --platform ,$(WHEEL_PLATFORMS)) --python-version $$py --implementation cp \
	    -d $$d -r requirements.txt || exit 1; \
	  echo "cp$$py aarch64: $$(ls $$d | tr '\n' ' ')"; rm -rf $$d; \
	done

# Discovery against a real, headless Home Assistant 2024.3 (its own venv; ~3 min to build).
HAVENV := .venv-ha
HA_PKGS := homeassistant==2024.3.3 'josepy<2' habluetooth==2.4.2 bluetooth-data-tools==1.19.0 \
	bluetooth-adapters==0.18.0 bluetooth-auto-recovery==1.3.0 bleak==0.21.1 \
	bleak-retry-connector==3.4.0 dbus-fast==2.21.1 paho-mqtt==1.6.1 SQLAlchemy==2.0.27 \
	fnv-hash-fast==0.5.0 psutil-home-assistant==0.0.1 janus==1.0.0 Pillow==10.2.0 \
	securetar==2024.2.1 home-assistant-frontend==20240307.0 PyTurboJPEG==1.7.1 numpy==1.26.0
$(HAVENV)/.installed:
	$(ensure_venv_support)
	$(PYTHON) -m venv $(HAVENV)
	PIP_CONSTRAINT= $(HAVENV)/bin/pip install --quiet --disable-pip-version-check $(HA_PKGS)
	touch $@

ha-check: $(VENV)/.installed assets $(HAVENV)/.installed
	$(ensure_mosquitto)
	$(VENV)/bin/python tools/ha_check.py --hass $(HAVENV)/bin/hass

# The same against the newest Home Assistant on Python 3.13, in a Debian trixie amd64 root
# filesystem (root; built once in /var/cache/appliance-ha, ~2 min; tools/ha/run.sh).
ha-check-current: $(VENV)/.installed assets
	$(ensure_mosquitto)
	tools/ha/run.sh check

# systemd-analyze verify on the unit (CI); fails on any warning about the unit file.
check-unit:
	bash tools/check_unit.sh

# On a Pi, as root: the service user, /opt/appliance, the unit, a command key.
install:
	$(SUDO) bash tools/install.sh

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache

# Side-by-side speed with the peers (face_recognition, MTCNN + Keras FaceNet, our float
# models), time-to-event, the daemon's CPU on an empty scene, and the web pages' cost to
# the door (headless chromium on the live view, driven by requirements-dev's selenium).
# The peers live in .venv-bench, never in the device's venv; `bench.py prepare` fetches
# FaceNet's h5 and builds the float models (TensorFlow of .venv-bench) and says first what
# it will skip.
.PHONY: bench
# aarch64 under qemu-user, as root (tools/arm64/README.md): the README's Pi install from PyPI's
# aarch64 wheels, the int8 models on ../shared/data photos compared with x86_64, and a test
# subset, in Debian bookworm (Python 3.11) and trixie (3.13) arm64 root filesystems.
arm64-check: $(VENV)/.installed
	tools/arm64/run.sh check

# 31 minutes of the real daemon at full speed: RSS, fds and threads against a bound.
soak: $(VENV)/.installed assets
	$(ensure_mosquitto)
	$(VENV)/bin/python tools/soak.py --minutes 31

bench: $(VENV)/.dev assets
	$(ensure_venv_support)
	$(ensure_mosquitto)
	@[ -f .venv-bench/.installed ] || { $(PYTHON) -m venv .venv-bench && \
	  .venv-bench/bin/pip install --quiet --disable-pip-version-check \
	    -r requirements-bench.txt && \
	  .venv-bench/bin/pip install --quiet --disable-pip-version-check --no-deps \
	    face-recognition==1.3.0 && touch .venv-bench/.installed; }
	$(VENV)/bin/python tools/bench.py prepare
	@[ -f $(SHARED)/scenes/examples/short_hamilton_clip.mp4 ] || echo "bench: time-to-event \
	  SKIPPED: no clip at $(SHARED)/scenes/examples/short_hamilton_clip.mp4 (set SHARED=)"
	-[ ! -f $(SHARED)/scenes/examples/short_hamilton_clip.mp4 ] || \
	  $(VENV)/bin/python tools/bench.py time-to-event \
	    --clip $(SHARED)/scenes/examples/short_hamilton_clip.mp4 \
	    --enrol "Lin-Manuel Miranda=$(SHARED)/scenes/examples/lin-manuel-miranda.png"
	$(VENV)/bin/python tools/bench.py idle
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || echo "bench: web SKIPPED: \
	  no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
	-[ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || \
	  $(VENV)/bin/python tools/bench.py web
	$(VENV)/bin/python tools/bench.py pipeline
