#!/usr/bin/env python3
"""`make run`: the daemon with everything it needs on a fresh machine, events printed.

- Uses the broker in config.yaml if one answers there; otherwise starts a local
  Mosquitto on a free loopback port (state under build/run/).
- Creates a command key for this run's device (build/run/command-key) if none is set.
- On the demo source, enrols the demo's known person from their photo (signed MQTT
  command, exactly as a user would) so the output shows a recognition and a stranger.
- Prints every event the daemon publishes, as a subscriber would see it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from appliance.camera import assets, demo  # noqa: E402
from appliance.config.schema import load  # noqa: E402
from appliance.transport.mqtt.signing import sign  # noqa: E402
from appliance.transport.mqtt.topics import Topics, device_id  # noqa: E402
from tools.broker import Broker, BrokerError  # noqa: E402

RUN = ROOT / "build" / "run"


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 1.0).close()
        return True
    except OSError:
        return False


def main() -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    base = load(ROOT / "config.yaml")
    broker = None
    host, port = base.mqtt.host, base.mqtt.port
    if not reachable(host, port):
        try:
            broker = Broker(RUN, persistence=False)
            broker.start()
        except BrokerError as e:
            sys.exit(f"no MQTT broker answers at {host}:{port} and {e}")
        host, port = broker.host, broker.port
        print(
            f"run: no broker at {base.mqtt.host}:{base.mqtt.port}; started Mosquitto on "
            f"{host}:{port}",
            flush=True,
        )
    key_file = RUN / "command-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    text = (ROOT / "config.yaml").read_text()
    cfg_path = RUN / "config.yaml"
    overrides = {
        "mqtt": {"host": host, "port": port},
        "storage": {"state_dir": str(RUN / "state")},
        "commands": {"key_file": str(key_file)},
    }
    cfg_path.write_text(_merge(text, overrides))
    cfg = load(cfg_path)
    topics = Topics(cfg.mqtt.prefix, device_id(cfg.mqtt.device_id))
    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, r, p: c.subscribe(
        [(topics.event, 1), (topics.reply("enroll"), 1)]
    )
    sub.on_message = lambda c, u, m: print(f"{m.topic}: {m.payload.decode()}", flush=True)
    sub.connect(host, port)
    sub.loop_start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "appliance", "-c", str(cfg_path), "run"], env=env
    )
    stop = threading.Event()

    def forward(sig: int, _frame: object) -> None:
        stop.set()
        daemon.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    if cfg.camera.source in ("demo", "auto") and not Path("/dev/video0").exists():
        time.sleep(3)
        payload = sign(
            key_file.read_text().strip().encode(),
            "enroll",
            topics.device,
            {"name": demo.KNOWN_NAME, "images": [_b64(assets.path("astronaut.png"))]},
            "make-run",
        )
        sub.publish(topics.command("enroll"), payload, qos=1)
    rc = daemon.wait()
    sub.loop_stop()
    if broker:
        broker.stop()
    return rc


def _b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def _merge(text: str, overrides: dict[str, dict[str, object]]) -> str:
    """Replace `key: value` lines inside the named sections of the commented config."""
    out, section = [], None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")) and line.endswith(":"):
            section = line[:-1]
        stripped = line.strip()
        key = stripped.split(":", 1)[0]
        if (
            section in overrides
            and line.startswith("  ")
            and key in overrides[section]
            and not stripped.startswith("#")
        ):
            line = f"  {key}: {json.dumps(overrides[section][key])}"
        out.append(line)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
