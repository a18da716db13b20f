"""The built-in demo camera: real photos animated into a 640x480 scene that loops.

An enrolled person (the astronaut) walks up to the door, leaves, then a stranger (a face
from a group photo) does the same. Used by `make run` on machines without a camera, and
by tests; the faces are real photos, only their motion is synthetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.camera import assets
from appliance.vision.imageio import read_image

WIDTH, HEIGHT = 640, 480
KNOWN_NAME = "astronaut"
# A head-and-shoulders crop (x1, y1, x2, y2) of each source photo.
KNOWN_CROP = (120, 20, 340, 260)  # astronaut.png, 512x512
STRANGER_CROP = (0, 240, 230, 470)  # group.jpg, the second face from the left


@dataclass(frozen=True)
class DemoFrame:
    index: int
    image: np.ndarray  # RGB uint8
    truth: str | None  # who is in the frame: KNOWN_NAME, "stranger" or None


def _backdrop() -> np.ndarray:
    y = np.linspace(70, 150, HEIGHT, dtype=np.float32)[:, None]
    x = np.linspace(0, 30, WIDTH, dtype=np.float32)[None, :]
    g = (y + x).astype(np.uint8)
    return np.dstack([g, g, (g * 0.9).astype(np.uint8)])


def _walk(person: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The person grows from far to near while moving towards the centre."""
    back = _backdrop()
    for i in range(n):
        t = i / max(n - 1, 1)
        side = int(120 + 200 * t)
        img = cv2.resize(person, (side, side * person.shape[0] // person.shape[1]))
        cx = int(WIDTH * (0.2 + 0.3 * t))
        x1 = max(0, cx - side // 2)
        y1 = max(0, int(HEIGHT * 0.55 - img.shape[0] / 2))
        frame = back.copy()
        h = min(img.shape[0], HEIGHT - y1)
        w = min(img.shape[1], WIDTH - x1)
        frame[y1 : y1 + h, x1 : x1 + w] = img[:h, :w]
        yield frame


def known_photo() -> np.ndarray:
    """The enrolment photo of the demo's known person."""
    return read_image(assets.path("astronaut.png"))


def frames(walk: int = 45, gap: int = 15, loop: bool = True) -> Iterator[DemoFrame]:
    x1, y1, x2, y2 = KNOWN_CROP
    known = known_photo()[y1:y2, x1:x2]
    x1, y1, x2, y2 = STRANGER_CROP
    stranger = read_image(assets.path("group.jpg"))[y1:y2, x1:x2]
    empty = _backdrop()
    i = 0
    while True:
        for person, truth in ((known, KNOWN_NAME), (stranger, "stranger")):
            for f in _walk(person, walk):
                yield DemoFrame(i, f, truth)
                i += 1
            for _ in range(gap):
                yield DemoFrame(i, empty.copy(), None)
                i += 1
        if not loop:
            return
