"""time-to-event: the real daemon on a looping clip, a real Mosquitto (tools/broker.py)
and a paho subscriber; seconds from the first tracked frame to the event's arrival."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.daemon import BenchDaemon, bench_daemon
from tools.benchmarks.frames import FRAME_H, FRAME_W, backdrop

TTE_FPS = 30.0


def compose_visits_clip(
    lfw: Path, out: Path, people: int = 20, empty_s: float = 1.0
) -> list[tuple[str, bytes]]:
    """A 30 fps 640x480 MJPEG clip in which `people` LFW identities walk up one after
    the other: `empty_s` of empty scene (longer than the frame loop's IDLE_AFTER_S, every
    visit starts from the idle rate), then 1.5 s of their second photo, growing from about
    40 to 55 px between the eyes (a person a metre from a door camera). Returns what to
    enrol: each person's first photo, padded as in the LFW evaluation (BlazeFace scores a
    face that fills the picture low) and upscaled 2x to pass the 40 px enrolment gate.

    The identities are every k-th one with two or more photos in name order, not chosen
    by score, so some are expected to be refused as unknown, as in the identify test.
    """
    import cv2

    from appliance.vision.imageio import read_image

    by_name: dict[str, list[Path]] = {}
    for f in sorted(lfw.glob("*_0*.jpg")):
        by_name.setdefault(f.stem.rsplit("_", 1)[0], []).append(f)
    names = [n for n, fs in sorted(by_name.items()) if len(fs) >= 2]
    chosen = names[:: max(1, len(names) // people)][:people]
    base = backdrop(seed=2)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), TTE_FPS, (FRAME_W, FRAME_H))
    enrol: list[tuple[str, bytes]] = []
    for name in chosen:
        first, second = by_name[name][0], by_name[name][1]
        padded = cv2.copyMakeBorder(read_image(first), 50, 50, 50, 50, cv2.BORDER_CONSTANT)
        big = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        enrol.append(
            (
                name.replace("_", " "),
                cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))[1].tobytes(),
            )
        )
        face = cv2.cvtColor(read_image(second), cv2.COLOR_RGB2BGR)
        for _ in range(int(empty_s * TTE_FPS)):
            writer.write(cv2.cvtColor(base, cv2.COLOR_RGB2BGR))
        steps = int(1.5 * TTE_FPS)
        for i in range(steps):
            side = int(140 + 40 * i / steps)  # eyes ~0.3 of an LFW crop's width
            f = cv2.cvtColor(base, cv2.COLOR_RGB2BGR)
            x, y = 320 - side // 2 + i, 220 - side // 2
            f[y : y + side, x : x + side] = cv2.resize(
                face, (side, side), interpolation=cv2.INTER_LINEAR
            )
            writer.write(f)
    writer.release()
    return enrol


# cooldown 0: one sample per granted visit. The door on mock pins: the relay energises as
# it would on a Pi (time to unlock).
TTE_CONFIG: dict[str, dict[str, Any]] = {
    "decision": {"cooldown_s": 0},
    "door": {"enabled": True, "relay_pin": 17, "unlock_s": 0.5},
}


def bench_time_to_event(
    clip: Path, enrol: list[tuple[str, bytes]], appearances: int
) -> dict[str, Any]:
    """The real daemon on a looping 30 fps file, a real Mosquitto, a paho subscriber:
    seconds from the capture of the first frame in which the face was tracked to the
    event's arrival at the subscriber, one sample per granted visit (cooldown 0)."""
    with bench_daemon(clip.suffix, TTE_CONFIG) as d:
        return run_visits(d, clip, enrol, appearances)


def run_visits(
    d: BenchDaemon,
    clip: Path,
    enrol: list[tuple[str, bytes]],
    appearances: int,
    before_clip: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """On a daemon started with TTE_CONFIG: enrol the people, call `before_clip` (the web
    benchmark starts its clients there), link the clip and wait for `appearances` granted
    visits (30 s each at most). Time-to-event and relay latencies as above, and over the
    same window the frames the loop processed per second (its `counters.frames` in the
    retained state, `mqtt.state_interval_s` apart) and the daemon's CPU in % of one core."""
    names = {n for n, _ in enrol}

    def events() -> list[tuple[float, dict[str, Any]]]:
        return [(t, json.loads(p)) for t, p in d.received(d.topics.event)]

    enrolled = [d.enrol(name, photo) for name, photo in enrol]
    if before_clip is not None:
        before_clip()
    states_before = len(d.received(d.topics.state))
    c0, t0 = d.cpu_s(), time.monotonic()
    d.source.symlink_to(clip.resolve())
    end = time.time() + 30 * appearances
    while time.time() < end:
        hits = [e for _, e in events() if e.get("decision") == "granted" and e["name"] in names]
        if len(hits) >= appearances:
            break
        time.sleep(0.5)
    got = events()
    cpu = 100 * (d.cpu_s() - c0) / (time.monotonic() - t0)
    states = [json.loads(p) for _, p in d.received(d.topics.state)[states_before:]]
    states = [s for s in states if s.get("counters", {}).get("frames")]
    fps = None
    if len(states) >= 2 and states[-1]["time"] > states[0]["time"]:
        frames = states[-1]["counters"]["frames"] - states[0]["counters"]["frames"]
        fps = round(frames / (states[-1]["time"] - states[0]["time"]), 2)
    granted = [(t, e) for t, e in got if e.get("decision") == "granted" and e["name"] in names]
    lat = np.array([t - e["first_seen"] for t, e in granted])
    # Relay energised (the door event's own time) after the first frame of the visit.
    first_seen = {e["event_id"]: e["first_seen"] for _, e in granted}
    unlock = np.array(
        [
            e["at"] - first_seen[e["cause_event_id"]]
            for _, e in got
            if e.get("type") == "door"
            and e.get("event") == "unlocked"
            and e.get("cause_event_id") in first_seen
        ]
    )
    if lat.size == 0:
        return {
            "appearances": 0,
            "events": len(got),
            "enrolled": sum(enrolled),
            "frames_per_s": fps,
            "cpu_percent": round(cpu, 1),
            "error": "no granted event",
        }
    return {
        "appearances": int(lat.size),
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p95_s": round(float(np.percentile(lat, 95)), 3),
        "min_s": round(float(lat.min()), 3),
        "max_s": round(float(lat.max()), 3),
        "samples_s": [round(float(x), 3) for x in lat],
        "enrolled": sum(enrolled),
        "enrolment_refused": len(enrol) - sum(enrolled),
        "people_granted": len({e["name"] for _, e in granted}),
        "min_frames": 3,
        "other_events": len(got) - len(granted),
        "frames_per_s": fps,
        "cpu_percent": round(cpu, 1),
        "relay": (
            {
                "unlocks": int(unlock.size),
                "p50_s": round(float(np.percentile(unlock, 50)), 3),
                "p95_s": round(float(np.percentile(unlock, 95)), 3),
                "max_s": round(float(unlock.max()), 3),
                "what": "first frame of the visit -> relay energised (mock GPIO pins)",
            }
            if unlock.size
            else {"unlocks": 0}
        ),
    }


def measure(
    lfw: Path, clip: Path | None, enrol: str | None, appearances: int, empty_s: float = 1.0
) -> dict[str, dict[str, Any]]:
    """The composed LFW visits (when `lfw` is a folder) and the real clip (when `clip`
    and `enrol`, NAME=PHOTO, are given); each printed as it finishes."""
    tte: dict[str, Any] = {}
    if lfw.is_dir():  # door-distance visits of 20 people: the headline
        with tempfile.TemporaryDirectory(prefix="tte-clip-") as tmp:
            visits = Path(tmp) / "visits.avi"
            people = compose_visits_clip(lfw, visits, empty_s=empty_s)
            tte["visits"] = bench_time_to_event(visits, people, appearances)
        tte["visits"]["source"] = (
            f"20 LFW people in turn, {empty_s:g} s empty then 1.5 s of a "
            "second photo, 40-55 px between the eyes, 30 fps"
        )
        print("visits", json.dumps(tte["visits"]))
    if clip and enrol:  # a real video: a small face at the embedding gate
        name, photo = enrol.split("=", 1)
        tte["clip"] = bench_time_to_event(clip, [(name, Path(photo).read_bytes())], appearances)
        tte["clip"]["source"] = f"{clip.name}, looped, {name} enrolled"
        print("clip", json.dumps(tte["clip"]))
    return tte
