"""Shared fixtures: real models, real photos from registry packages, ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.camera import assets
from appliance.vision.imageio import read_image

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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real Mosquitto on a free loopback port; stop()/start() simulate an outage."""

    def __init__(self, workdir: Path) -> None:
        import getpass
        import shutil

        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.exe).exists():
            raise RuntimeError(
                "mosquitto is not installed: `make test` installs it with apt "
                "(or: sudo apt-get install mosquitto)"
            )
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # Persistent, so a subscriber's queued QoS 1 messages survive a broker restart,
        # as they do on a real installation.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"autosave_interval 1\nuser {getpass.getuser()}\n"
        )
        self.log = workdir / "mosquitto.log"
        self.proc = None

    def start(self) -> None:
        import socket
        import subprocess
        import time

        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
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
