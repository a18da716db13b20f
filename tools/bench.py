#!/usr/bin/env python3
"""Benchmarks that write JSON (never timed assertions in tests).

    tools/bench.py matching [--json build/bench/matching.json]
    tools/bench.py time-to-event --clip ../shared/data/scenes/examples/short_hamilton_clip.mp4 \
        --enrol "Lin-Manuel Miranda=../shared/data/scenes/examples/lin-manuel-miranda.png"

matching: one query against 100 ... 100,000 templates through the device's Matcher
(median and p99 over repeated runs after a warm-up), and the time to open a SQLite
gallery of 10,000 people and load its matrix, as the daemon does at start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from appliance.gallery import Gallery, Template, TemplateSet  # noqa: E402
from appliance.matcher import Matcher, Thresholds  # noqa: E402
from appliance.service import COMBINE  # noqa: E402

DIM = 128


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}


def unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(max(3, repeats // 10)):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    a = np.array(ts)
    return {"median_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a,
            99)), 4), "min_ms": round(float(a.min()), 4), "max_ms": round(float(a.max()), 4),
            "runs": repeats}


def bench_matching() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    th = Thresholds(0.6, 0.05)
    out: dict[str, Any] = {"combine": COMBINE, "templates_per_person": 2, "sizes": {}}
    q = unit_rows(1, rng)
    for n in (100, 1_000, 10_000, 100_000):
        people = n // 2
        owner = np.repeat(np.arange(people, dtype=np.int32), 2)
        ids = [f"p{i}" for i in range(people)]
        m = Matcher(TemplateSet(ids, ids, owner, unit_rows(n, rng)), COMBINE)
        best = Matcher(TemplateSet(ids, ids, owner, m.matrix), "best")
        out["sizes"][str(n)] = {"centroid": timed(lambda m=m: m.match(q, th), 200),
                                "best_of": timed(lambda b=best: b.match(q, th), 200)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.sqlite3"
        with Gallery(path) as g:
            vecs = unit_rows(10_000, rng)
            g.db.execute("BEGIN")
            for i in range(10_000):  # one bulk transaction; enrol() per person is slower
                g.db.execute("INSERT INTO persons (id, name, meta, created, updated) "
                             "VALUES (?,?,?,?,?)", (f"id{i}", f"person {i}", "{}", 0, 0))
                g.db.execute("INSERT INTO templates (person_id, embedding, embedder, source, "
                             "created) VALUES (?,?,?,?,?)", (f"id{i}", vecs[i].tobytes(),
                                                              "v", "bench", 0))
            g.db.execute("COMMIT")
        t0 = time.perf_counter()
        with Gallery(path) as g:
            m = Matcher(g.template_set("v"), COMBINE)
        out["gallery_load_10000_people_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        assert m.size == 10_000
        with Gallery(path) as g:
            t0 = time.perf_counter()
            g.enrol("new person", [Template(vecs[0], "v", "bench")], "bench")
            out["enrol_one_into_10000_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return out


def bench_time_to_event(clip: Path, name: str, photo: Path, appearances: int) -> dict[str, Any]:
    """The real daemon on a looping 30 fps file, a real Mosquitto, a paho subscriber:
    seconds from the capture of the first frame in which the face was tracked to the
    event's arrival at the subscriber, one sample per play of the clip (cooldown 0)."""
    import base64
    import secrets
    import shutil
    import socket
    import subprocess
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.signing import sign
    from appliance.topics import Topics

    work = Path(tempfile.mkdtemp(prefix="tte-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import getpass

    (work / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                                 f"user {getpass.getuser()}\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                               str(work / "m.conf")], stderr=subprocess.DEVNULL)
    key = secrets.token_hex(32)
    (work / "key").write_text(key)
    source = work / "clip.mp4"
    cfg = {"camera": {"source": str(source), "reopen_max_s": 1.0},
           "storage": {"state_dir": str(work / "state")},
           "mqtt": {"host": "127.0.0.1", "port": port, "device_id": "bench"},
           "commands": {"key_file": str(work / "key")}, "decision": {"cooldown_s": 0}}
    (work / "c.yaml").write_text(json.dumps(cfg))
    topics = Topics("appliance", "bench")
    got: list[tuple[float, dict[str, Any]]] = []
    online = threading.Event()
    replied = threading.Event()

    def on_message(c: Any, u: Any, m: Any) -> None:
        if m.topic == topics.event:
            got.append((time.time(), json.loads(m.payload)))
        elif m.topic == topics.status and m.payload == b"online":
            online.set()
        elif m.topic == topics.reply("enroll"):
            replied.set()

    time.sleep(0.5)
    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, r, p: c.subscribe(f"{topics.base}/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    daemon = subprocess.Popen([sys.executable, "-m", "appliance", "-c", str(work / "c.yaml"),
                               "run"], cwd=ROOT, stdout=(work / "daemon.log").open("wb"),
                              stderr=subprocess.STDOUT)
    try:
        online.wait(60)
        payload = sign(key.encode(), "enroll", "bench",
                       {"name": name, "images": [base64.b64encode(photo.read_bytes()).decode()]})
        sub.publish(topics.command("enroll"), payload, qos=1)
        replied.wait(60)
        source.symlink_to(clip.resolve())
        end = time.time() + 30 * appearances
        while time.time() < end:
            hits = [e for _, e in got if e["decision"] == "granted" and e["name"] == name]
            if len(hits) >= appearances:
                break
            time.sleep(0.5)
    finally:
        daemon.terminate()
        daemon.wait(30)
        sub.loop_stop()
        broker.terminate()
    lat = np.array([t - e["first_seen"] for t, e in got
                    if e["decision"] == "granted" and e["name"] == name])
    shutil.rmtree(work, ignore_errors=True)
    return {"appearances": int(lat.size), "p50_s": round(float(np.percentile(lat, 50)), 3),
            "p95_s": round(float(np.percentile(lat, 95)), 3), "min_s": round(float(lat.min()), 3),
            "max_s": round(float(lat.max()), 3), "source_fps": 29.97, "min_frames": 3,
            "other_events": sum(1 for _, e in got if e["name"] != name)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("section", choices=("matching", "time-to-event"))
    p.add_argument("--json", type=Path)
    p.add_argument("--clip", type=Path)
    p.add_argument("--enrol", help="NAME=PHOTO of the person who appears in the clip")
    p.add_argument("--appearances", type=int, default=20)
    args = p.parse_args(argv)
    out = args.json or ROOT / "build" / "bench" / f"{args.section}.json"
    if args.section == "time-to-event":
        name, photo = args.enrol.split("=", 1)
        result = {"machine": machine(), "time_to_event": bench_time_to_event(
            args.clip, name, Path(photo), args.appearances)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["time_to_event"]))
        return 0
    args.json = out
    result = {"machine": machine(), "matching": bench_matching()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'templates':>10} {'centroid median/p99 ms':>24} {'best-of median/p99 ms':>24}")
    for n, r in result["matching"]["sizes"].items():
        c, b = r["centroid"], r["best_of"]
        print(f"{n:>10} {c['median_ms']:>11.3f} / {c['p99_ms']:<10.3f} "
              f"{b['median_ms']:>11.3f} / {b['p99_ms']:<10.3f}")
    print(f"gallery load, 10,000 people: {result['matching']['gallery_load_10000_people_ms']} ms")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
