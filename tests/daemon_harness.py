"""Run the real daemon process against a real broker, and listen like a consumer would."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.transport.mqtt.signing import sign
from appliance.transport.mqtt.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "door1"


class Listener:
    """A paho subscriber that records every message with its arrival time."""

    def __init__(self, port: int, topics: Topics, durable: bool = False) -> None:
        self.topics = topics
        self.messages: list[tuple[float, str, bytes]] = []
        self.cond = threading.Condition()
        if durable:  # a consumer with a persistent session: nothing is missed while away
            self.client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id="durable-listener",
                clean_session=False,
                protocol=paho.MQTTv311,
            )
        else:
            self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{topics.base}/#", qos=1)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def events(self) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(p) for _, t, p in self.messages if t == self.topics.event]

    def wait_for(self, pred: Any, timeout: float = 30.0) -> Any:
        end = time.time() + timeout
        with self.cond:
            while True:
                got = pred()
                if got:
                    return got
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError(f"timed out; last messages: {self.messages[-5:]}")
                self.cond.wait(min(left, 0.5))

    def reply(self, name: str, request_id: str | None, timeout: float = 30.0) -> dict:
        def find() -> dict | None:
            for _, t, p in self.messages:
                if t == self.topics.reply(name):
                    body = json.loads(p)
                    if body.get("request_id") == request_id:
                        return body
            return None

        return self.wait_for(find, timeout)

    def publish(self, topic: str, payload: bytes | str) -> None:
        end = time.time() + 15  # after a broker restart, wait for the reconnect
        while not self.client.is_connected() and time.time() < end:
            time.sleep(0.05)
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class DaemonProcess:
    alive: ClassVar[list[DaemonProcess]] = []  # the conftest kills leftovers

    def __init__(
        self, tmp: Path, port: int, source: str, settings: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.key = secrets.token_hex(32).encode()
        key_file = tmp / "command-key"
        key_file.write_bytes(self.key)
        self.config = tmp / "config.yaml"
        cfg: dict[str, dict[str, Any]] = {
            "camera": {"source": source},
            "storage": {"state_dir": str(tmp / "state")},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "device_id": DEVICE,
                "state_interval_s": 1.0,
                "reconnect_max_s": 2.0,
            },
            "commands": {"key_file": str(key_file)},
        }
        for section, values in (settings or {}).items():
            cfg.setdefault(section, {}).update(values)
        self.config.write_text(json.dumps(cfg))  # JSON is YAML
        self.topics = Topics("appliance", DEVICE)
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "daemon.log"

    def start(self, env: dict[str, str] | None = None) -> None:
        # Its own process group, so a test can cut "power" to the whole group at once.
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "appliance", "-c", str(self.config), "run"],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            )
        DaemonProcess.alive.append(self)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def kill(self, group: bool = False) -> None:
        """SIGKILL the daemon, or with `group` its whole process group (a power cut as
        far as a process can tell: nothing after this instant is written)."""
        assert self.proc is not None
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def signed(
        self,
        cmd: str,
        args: dict | None = None,
        request_id: str | None = None,
        ts: float | None = None,
    ) -> bytes:
        return sign(self.key, cmd, DEVICE, args or {}, request_id, ts)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def decided(self) -> list[str]:
        """Ids of the events the daemon logged as decided (over all its runs), in order.

        The daemon logs a decision only after the event is committed to the outbox, so
        each of these must reach the broker."""
        return [
            line.split("decision ")[1].split(":")[0]
            for line in self.log_text().splitlines()
            if "appliance.access.decider: decision " in line
        ]

    def online_count(self, listener: Listener) -> int:
        """How many times the daemon announced itself online (once per connection)."""
        with listener.cond:
            return sum(t == self.topics.status and p == b"online" for _, t, p in listener.messages)


def retained(port: int, seconds: float = 2.0) -> dict[str, bytes]:
    """What a subscriber connecting now is given for `#`: the broker's retained messages
    (an empty retained payload is no message)."""
    got: dict[str, bytes] = {}
    lock = threading.Lock()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

    def on_message(c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            with lock:
                got[msg.topic] = bytes(msg.payload)

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe("#", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(seconds)
    client.loop_stop()
    client.disconnect()
    with lock:
        return {t: p for t, p in got.items() if p}


def b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def serve_mjpeg(video: Path, url: str) -> subprocess.Popen:
    """ffmpeg as a one-client HTTP server streaming the file as MJPEG, looping.

    (ffmpeg cannot serve RTSP to a player: its `-rtsp_flags listen` is for receiving a
    published stream. HTTP exercises the same CAP_FFMPEG path, timeouts and reconnects.)
    """
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(video),
            "-an",
            "-c:v",
            "mjpeg",
            "-f",
            "mpjpeg",
            "-listen",
            "1",
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
