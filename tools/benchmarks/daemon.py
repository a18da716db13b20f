"""The real daemon for a benchmark: a throwaway Mosquitto (tools/broker.py), a config in a
temporary folder, `python -m appliance run` as a child process and a paho subscriber on
everything the device publishes. time-to-event and idle CPU both measure through this,
so they measure the same daemon the same way."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.benchmarks.common import ROOT


@dataclass
class BenchDaemon:
    proc: subprocess.Popen[bytes]
    work: Path
    source: Path  # the camera file; absent until the benchmark links its clip there
    key: str
    topics: Any
    client: Any
    messages: list[tuple[float, str, bytes]] = field(default_factory=list)
    online: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def received(self, topic: str) -> list[tuple[float, bytes]]:
        with self._cond:
            return [(t, p) for t, tp, p in self.messages if tp == topic]

    def wait(self, topic: str, after: int, timeout: float) -> bytes | None:
        """The first payload on `topic` beyond the `after` already there, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [p for _, tp, p in self.messages if tp == topic]
                if len(got) > after:
                    return got[after]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def enrol(self, name: str, photo: bytes, timeout: float = 60.0) -> bool:
        """A signed `enroll` command, as Home Assistant or a phone would send it."""
        from appliance.transport.mqtt.signing import sign

        reply = self.topics.reply("enroll")
        before = len(self.received(reply))
        payload = sign(
            self.key.encode(),
            "enroll",
            "bench",
            {"name": name, "images": [base64.b64encode(photo).decode()]},
        )
        self.client.publish(self.topics.command("enroll"), payload, qos=1)
        r = self.wait(reply, before, timeout)
        return bool(r and json.loads(r).get("ok"))

    def cpu_s(self) -> float:
        """utime + stime of the daemon process (all its threads), in seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def bench_daemon(
    source_suffix: str,
    config: dict[str, Any],
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[BenchDaemon]:
    """A running daemon reading `<work>/clip<suffix>` (linked by the caller when it wants
    frames to flow), with `config` sections merged over the benchmark's defaults; online
    (or 60 s passed) when entered, stopped and cleaned up on exit. `before_start` is
    given the config file first (the web benchmark makes its owner account there, with
    the CLI, as an installer would)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.transport.mqtt.topics import Topics
    from tools.broker import Broker

    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    broker = Broker(work, persistence=False)
    broker.start()
    key = secrets.token_hex(32)
    (work / "key").write_text(key)
    source = work / f"clip{source_suffix}"
    cfg: dict[str, Any] = {
        "camera": {"source": str(source), "reopen_max_s": 1.0},
        "storage": {"state_dir": str(work / "state")},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "device_id": "bench"},
        "commands": {"key_file": str(work / "key")},
    }
    for section, values in config.items():
        cfg.setdefault(section, {}).update(values)
    (work / "c.yaml").write_text(json.dumps(cfg))
    if before_start is not None:
        try:
            before_start(work / "c.yaml")
        except BaseException:
            broker.stop()
            shutil.rmtree(work, ignore_errors=True)
            raise
    topics = Topics("appliance", "bench")
    client = paho.Client(CallbackAPIVersion.VERSION2)
    messages: list[tuple[float, str, bytes]] = []
    online = threading.Event()
    cond = threading.Condition()

    def on_message(c: Any, u: Any, m: Any) -> None:
        with cond:
            messages.append((time.time(), m.topic, bytes(m.payload)))
            cond.notify_all()
        if m.topic == topics.status and m.payload == b"online":
            online.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{topics.base}/#", qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()  # before the daemon starts, so its "online" is not missed
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "-c", str(work / "c.yaml"), "run"],
        cwd=ROOT,
        stdout=(work / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        # The door on gpiozero's mock pins when the config enables one (time-to-unlock).
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )
    d = BenchDaemon(proc, work, source, key, topics, client, messages, online, cond)
    try:
        d.online.wait(60)
        yield d
    finally:
        proc.terminate()
        proc.wait(30)
        client.loop_stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
