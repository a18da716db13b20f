"""idle CPU: what the daemon costs while nobody is at the door, which is most of the day.

The real daemon (tools/benchmarks/daemon.py) reads a 30 fps 640x480 MJPEG file in real
time showing the faceless backdrop the other benchmarks paste faces into, with a sensor's
noise (NOISE_SIGMA), so no two frames are the same; its CPU use is
utime + stime from /proc/<pid>/stat (every thread: grabber and MJPEG decoding, the frame
loop, MQTT) over a window after a warm-up, in % of one core. The window is cut into
slices so one run shows its own spread; the machine is shared, so the load average
before and after is recorded beside it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.daemon import bench_daemon
from tools.benchmarks.frames import FRAME_H, FRAME_W, backdrop

IDLE_FPS = 30.0
TARGET_PERCENT = 15.0  # of one core, issue 22


NOISE_SIGMA = 2.0  # grey levels: a camera sensor's noise, so no two frames are equal
NOISE_FRAMES = 30  # distinct noise patterns, cycled


def compose_empty_clip(out: Path, seconds: float) -> None:
    """`seconds` of the backdrop with sensor-like noise at 30 fps: long enough that the
    file does not end (and reopen) inside the measurement."""
    import cv2

    base = cv2.cvtColor(backdrop(seed=2), cv2.COLOR_RGB2BGR).astype(np.float32)
    rng = np.random.default_rng(0)
    frames = [
        np.clip(base + rng.normal(0, NOISE_SIGMA, base.shape), 0, 255).astype(np.uint8)
        for _ in range(NOISE_FRAMES)
    ]
    writer = cv2.VideoWriter(
        str(out), cv2.VideoWriter_fourcc(*"MJPG"), IDLE_FPS, (FRAME_W, FRAME_H)
    )
    for i in range(int(seconds * IDLE_FPS)):
        writer.write(frames[i % NOISE_FRAMES])
    writer.release()


def bench_idle(
    window_s: float = 30.0, warmup_s: float = 10.0, slice_s: float = 3.0
) -> dict[str, Any]:
    """CPU % of one core of the daemon on the empty scene, overall and per slice."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
        clip = Path(tmp) / "empty.avi"
        compose_empty_clip(clip, warmup_s + window_s + 15)
        with bench_daemon(clip.suffix, {"mqtt": {"state_interval_s": 1.0}}) as d:
            if not d.online.is_set():
                return {"error": "the daemon did not come online in 60 s"}
            d.source.symlink_to(clip)
            time.sleep(warmup_s)
            slices = []
            c0, t0 = d.cpu_s(), time.monotonic()
            start_states = len(d.received(d.topics.state))
            c, t = c0, t0
            while t - t0 < window_s - 1e-6:
                time.sleep(slice_s)
                c1, t1 = d.cpu_s(), time.monotonic()
                slices.append(100 * (c1 - c) / (t1 - t))
                c, t = c1, t1
            total = 100 * (c - c0) / (t - t0)
            states = [json.loads(p) for _, p in d.received(d.topics.state)[start_states:]]
    if not states:
        return {"error": "no state published during the window"}
    loop_fps = [s.get("fps", 0.0) for s in states]
    cam = states[-1].get("camera", {})
    s = np.array(slices)
    return {
        "idle_cpu_percent": round(total, 1),
        "target_percent": TARGET_PERCENT,
        "slices_percent": {
            "median": round(float(np.median(s)), 1),
            "min": round(float(s.min()), 1),
            "max": round(float(s.max()), 1),
            "n": len(slices),
            "slice_s": slice_s,
        },
        "window_s": round(t - t0, 1),
        "warmup_s": warmup_s,
        "frame_loop_fps_median": round(float(np.median(loop_fps)), 1),
        "camera": {k: cam.get(k) for k in ("state", "fps", "frames_read", "frames_dropped")},
        "stage_ms": states[-1].get("stage_ms", {}),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "source": f"{FRAME_W}x{FRAME_H} MJPEG file, {IDLE_FPS:.0f} fps realtime, empty "
        f"backdrop (no face) with noise sigma {NOISE_SIGMA} grey levels, decoded by the "
        "daemon's grabber",
    }
