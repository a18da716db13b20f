"""A throwaway Mosquitto on a free loopback port, for the tests and the tools.

    broker = Broker(workdir, persistence=False)
    broker.start()            # returns once the port answers
    ...                       # connect to 127.0.0.1:broker.port
    broker.stop()             # and start() again: an outage and its end

or `with Broker(workdir) as broker:`. Two brokers bridged, as a site broker and a
company hub (replication's setup, README "Several doors"):

    hub = Broker(workdir / "hub"); hub.start()
    site = Broker(workdir / "site", bridge=Bridge(hub.port, ("appliance/site/#",)))
    site.start()              # site.stop() is then also a bridge outage

 The configuration (`mosquitto.conf`) and the log
(`mosquitto.log`, started afresh by the first start() and appended to by the next) are
written in `workdir`. Standard library only: the tests, `tools/run_demo.py`,
`tools/soak.py`, `tools/bench.py` and `tools/ha_check.py` import it from any venv.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
INSTALL = "sudo apt-get install mosquitto"


class BrokerError(RuntimeError):
    """Mosquitto is missing or did not start; the message says what to do."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def mosquitto_exe() -> str:
    """The mosquitto binary: on PATH, or where Debian puts it (/usr/sbin is often not on a
    user's PATH)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise BrokerError(
            f"mosquitto is not installed: {INSTALL} "
            "(make test, make run, make soak, make bench and make ha-check do this when they can)"
        )
    return exe


class Bridge:
    """A Mosquitto bridge from the broker that has it to another on loopback: the
    `topics` patterns both ways at QoS 1, a persistent bridge session (nothing lost
    while the bridge is down), retained messages carried (`try_private`), reconnecting
    within a second or two after either end comes back."""

    def __init__(self, port: int, topics: tuple[str, ...], name: str = "hub") -> None:
        self.port = port
        self.topics = topics
        self.name = name

    def conf(self) -> str:
        lines = [
            f"connection {self.name}",
            f"address {HOST}:{self.port}",
            "cleansession false",
            "try_private true",
            "restart_timeout 1 2",
            "keepalive_interval 10",
            *(f"topic {t} both 1" for t in self.topics),
        ]
        return "\n".join(lines) + "\n"


class Broker:
    """A real Mosquitto on a free loopback port; stop()/start() simulate an outage.

    With `persistence` (the default, as the tests need it) a subscriber's queued QoS 1
    messages survive a restart, as they do on a real installation; the tools that only
    need a broker for one run pass `persistence=False`. The `user` line keeps Mosquitto,
    when started as root, from dropping to a `mosquitto` user that cannot write `workdir`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: bool = True,
        start_timeout_s: float = 10.0,
        bridge: Bridge | None = None,
    ) -> None:
        self.exe = mosquitto_exe()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.start_timeout_s = start_timeout_s
        store = (
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n"
            if persistence
            else "persistence false\n"
        )
        user = f"user {getpass.getuser()}\n"
        bridged = bridge.conf() if bridge else ""
        self.conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\n{store}{user}{bridged}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False

    def start(self) -> None:
        """Start Mosquitto and wait until its port accepts a connection."""
        with self.log.open("ab" if self._started else "wb") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        self._started = True
        end = time.monotonic() + self.start_timeout_s
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                socket.create_connection((HOST, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not start; {self.log}:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop Mosquitto (SIGTERM, SIGKILL after 10 s); start() may follow."""
        if self.proc:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
