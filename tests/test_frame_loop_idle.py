"""The frame loop does less while the scene is empty: after IDLE_AFTER_S without a face it
detects on every other frame of a 30 fps camera, and on an unchanged scene only once a
heartbeat; on every frame again from the first face on, which is found at most one frame
after it appears.

The real door (App, real models, real gallery) runs its frame loop on scripted frames
with 30 fps capture times; only the camera is scripted (the hardware adapter).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import numpy as np
import pytest

from appliance import frame_loop
from appliance.camera import assets
from appliance.camera.grabber import Frame
from appliance.vision.imageio import read_image

FPS = 30.0


class ScriptedCamera:
    """Hands out the scripted frames one by one, then stops the loop."""

    def __init__(self, frames: list[Frame], stop: threading.Event) -> None:
        self.frames = list(frames)
        self.stop = stop
        self.taken: list[int] = []

    def latest(self, timeout: float) -> Frame | None:
        if not self.frames:
            self.stop.set()
            return None
        f = self.frames.pop(0)
        self.taken.append(f.index)
        return f

    def blocked_s(self) -> float:
        return 0.0


@pytest.fixture
def door(tmp_path: Any) -> Any:
    """A fresh door per test: the loop remembers when it last saw a face."""
    from appliance.app import App
    from appliance.config.schema import load

    tmp = tmp_path
    cfg_file = tmp / "config.yaml"
    cfg_file.write_text(json.dumps({"storage": {"state_dir": str(tmp / "state")}}))
    d = App(load(cfg_file), cfg_file)
    yield d
    d.outbox.close()
    d.recogniser.close()


def run_script(door: Any, images: list[np.ndarray]) -> tuple[list[int], list[Any]]:
    """Frame i captured at i/30 s; returns the indices detected on and the tracks made."""
    loop = door.loop
    detected: list[int] = []
    real = loop.process

    def process(frame: Frame) -> None:
        detected.append(frame.index)
        real(frame)

    base = time.monotonic()
    frames = [Frame(i, base + i / FPS, img) for i, img in enumerate(images)]
    stop = threading.Event()
    made: list[Any] = []
    update = loop.tracker.update

    def tracked(boxes: list[np.ndarray], index: int, wall: float) -> list[Any]:
        tracks = update(boxes, index, wall)
        made.extend((index, t) for t in tracks if t not in [m for _, m in made])
        return tracks

    loop.camera = ScriptedCamera(frames, stop)
    loop.process = process  # type: ignore[method-assign]
    loop.tracker.update = tracked  # type: ignore[method-assign]
    try:
        loop.run(stop, lambda: None)
    finally:
        del loop.process
        del loop.tracker.update
    return detected, made


def scenes() -> tuple[np.ndarray, np.ndarray]:
    empty = np.full((480, 640, 3), 90, np.uint8)
    face = empty.copy()
    face[:, 64:576] = read_image(assets.path("astronaut.png"))[16:496]
    return empty, face


def moving(empty: np.ndarray, i: int) -> np.ndarray:
    """The empty scene with something faceless moving through it (a grey box)."""
    f = empty.copy()
    x = (i * 7) % 560
    f[200:280, x : x + 80] = 200
    return f


@pytest.mark.parametrize("face_at", [60, 61])
def test_changing_empty_scene_detects_every_other_frame_until_a_face_comes(
    door: Any, face_at: int
) -> None:
    empty, face = scenes()
    busy_until = face_at + 29 + int(FPS * frame_loop.IDLE_AFTER_S)
    images = [
        face if face_at <= i < face_at + 30 else moving(empty, i) for i in range(busy_until + 30)
    ]
    detected, made = run_script(door, images)

    before = [i for i in detected if i < face_at]
    assert before == list(range(0, face_at, 2))  # idle from the start: every other frame
    first = min(i for i in detected if i >= face_at)
    assert first - face_at <= 1  # a face that walks in waits one frame at most
    assert made and made[0][0] == first  # and is tracked from that frame
    # every frame while the face is there, and for IDLE_AFTER_S after its last frame
    assert [i for i in detected if first <= i < busy_until] == list(range(first, busy_until))
    tail = [i for i in detected if i > busy_until]  # then every other frame again
    assert len(tail) >= 10 and all(b - a == 2 for a, b in itertools.pairwise(tail))


def test_unchanged_empty_scene_is_detected_once_a_heartbeat(door: Any) -> None:
    """A still, empty scene (sensor noise aside) holds no new face: it is detected on
    about once every IDLE_HEARTBEAT_S, and a face that appears is detected at once."""
    empty, face = scenes()
    rng = np.random.default_rng(0)

    def noisy(img: np.ndarray) -> np.ndarray:
        return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)

    face_at = 91
    images = [noisy(face if face_at <= i < face_at + 10 else empty) for i in range(face_at + 10)]
    detected, made = run_script(door, images)

    still = [i for i in detected if i < face_at]
    beat = int(FPS * frame_loop.IDLE_HEARTBEAT_S)
    assert still[0] == 0 and len(still) >= 3  # frames 0, ~30, ~60 (~90)
    assert all(beat <= b - a <= beat + 1 for a, b in itertools.pairwise(still))
    first = min(i for i in detected if i >= face_at)
    assert first - face_at <= 1 and made and made[0][0] == first
