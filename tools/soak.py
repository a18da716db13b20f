#!/usr/bin/env python3
"""A long run of the real daemon at full speed on a looping video: does it leak?

Starts Mosquitto on a free loopback port and the daemon on the Hamilton clip from
../shared/data (the built-in demo scene when that is absent) with `realtime: false`, so
frames come as fast as the pipeline takes them; enrols Lin-Manuel Miranda so the run
makes decisions and events; and samples the process every `--every` seconds: resident
memory (VmRSS), open file descriptors, threads, and the daemon's own status (frames,
fps, events, outbox). Writes build/soak.json and prints one line per sample.

Growth is judged after a warm-up (the first samples include model loading and the
first allocations of every code path): the verdict is "no growth beyond the bound"
when RSS rose by at most `--rss-bound-mb` and the fd count by at most 2 from the
post-warm-up sample to the last.

    python tools/soak.py --minutes 30
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from appliance.transport.mqtt.signing import sign  # noqa: E402
from appliance.transport.mqtt.topics import Topics  # noqa: E402
from tools.broker import Broker, BrokerError  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "scenes" / "examples"
DEVICE = "soak"


def proc_sample(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"].strip()),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline")
    ap.add_argument("--rss-bound-mb", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "soak.json")
    a = ap.parse_args(argv)

    work = ROOT / "build" / "soak"
    work.mkdir(parents=True, exist_ok=True)
    try:
        broker = Broker(work, persistence=False)
        broker.start()
    except BrokerError as e:
        sys.exit(str(e))
    port = broker.port
    clip = SHARED / "short_hamilton_clip.mp4"
    source = str(clip) if clip.exists() else "demo"
    key = secrets.token_hex(32)
    (work / "command-key").write_text(key)
    cfg = {
        "camera": {"source": source, "realtime": False},
        "storage": {"state_dir": str(work / "state")},
        "mqtt": {"host": "127.0.0.1", "port": port, "device_id": DEVICE, "state_interval_s": 5.0},
        "commands": {"key_file": str(work / "command-key")},
    }
    (work / "config.yaml").write_text(json.dumps(cfg))
    topics = Topics("appliance", DEVICE)
    latest: dict[str, dict] = {}
    events = [0]
    sub = paho.Client(CallbackAPIVersion.VERSION2)

    def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        if m.topic == topics.state:
            latest["state"] = json.loads(m.payload)
        elif m.topic == topics.event:
            events[0] += 1
        elif m.topic == topics.reply("enroll"):
            latest["enroll"] = json.loads(m.payload)

    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, r, p: c.subscribe(f"{topics.base}/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    log = (work / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "appliance", "-c", str(work / "config.yaml"), "run"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[dict] = []
    stop = threading.Event()
    try:
        time.sleep(8)
        photo = SHARED / "lin-manuel-miranda.png"
        if photo.exists():
            body = sign(
                key.encode(),
                "enroll",
                DEVICE,
                {
                    "name": "Lin-Manuel Miranda",
                    "images": [base64.b64encode(photo.read_bytes()).decode()],
                },
                "soak",
            )
            sub.publish(topics.command("enroll"), body, qos=1)
        t0 = time.time()
        end = t0 + a.minutes * 60
        while time.time() < end and daemon.poll() is None and not stop.is_set():
            s = {"t_s": round(time.time() - t0, 1), **proc_sample(daemon.pid)}
            st = latest.get("state", {})
            s |= {
                "frames": st.get("counters", {}).get("frames"),
                "fps": st.get("fps"),
                "events_received": events[0],
                "outbox_depth": st.get("outbox", {}).get("depth"),
            }
            samples.append(s)
            print(json.dumps(s), flush=True)
            stop.wait(a.every)
        alive = daemon.poll() is None
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(30)
        sub.loop_stop()
        broker.stop()
    base = next((s for s in samples if s["t_s"] >= a.warmup), samples[0])
    last = samples[-1]
    rss_growth = (last["rss_kb"] - base["rss_kb"]) / 1024
    fd_growth = last["fds"] - base["fds"]
    verdict = alive and rss_growth <= a.rss_bound_mb and fd_growth <= 2
    summary = {
        "minutes": round(last["t_s"] / 60, 1),
        "source": source,
        "realtime": False,
        "alive_at_end": alive,
        "enrolled": latest.get("enroll", {}).get("ok"),
        "rss_mb_first": round(samples[0]["rss_kb"] / 1024, 1),
        "rss_mb_baseline": round(base["rss_kb"] / 1024, 1),
        "baseline_t_s": base["t_s"],
        "rss_mb_end": round(last["rss_kb"] / 1024, 1),
        "rss_mb_max": round(max(s["rss_kb"] for s in samples) / 1024, 1),
        "fds_baseline": base["fds"],
        "fds_end": last["fds"],
        "threads_end": last["threads"],
        "frames": last["frames"],
        "events_received": events[0],
        "bound": {"rss_growth_mb": a.rss_bound_mb, "fd_growth": 2},
        "verdict": "no growth beyond the bound" if verdict else "FAILED",
        "samples": samples,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
