"""Shared fixtures: real models, real photos from registry packages, ../shared/data, and a
real Mosquitto (tools/broker.py, the one the tools start too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.camera import assets
from appliance.vision.imageio import read_image
from tools.broker import Broker, free_port

__all__ = ["Broker", "free_port"]  # tests/test_daemon.py imports free_port from here

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"evaluation photos not present at {SHARED} (only in the team's workplace)")
    return SHARED


@pytest.fixture(scope="session")
def pipeline():
    from appliance.vision.pipeline import FacePipeline

    return FacePipeline.load(threads=2)


@pytest.fixture(scope="session")
def astronaut():
    return read_image(assets.path("astronaut.png"))


@pytest.fixture(scope="session")
def group():
    return read_image(assets.path("group.jpg"))


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, persistence=True)
    b.start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _no_daemon_left_behind():
    yield
    from tests.daemon_harness import DaemonProcess

    for d in DaemonProcess.alive:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
    DaemonProcess.alive.clear()
