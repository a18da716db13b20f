"""The frames every system is timed on: 640x480, a faceless backdrop with 0, 1 or 3
real faces pasted in, as a door camera delivers them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FRAME_W, FRAME_H = 640, 480
FACE_COUNTS = (0, 1, 3)


def _load_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_patches(pipe: Any, lfw: Path | None) -> list[np.ndarray]:
    """Three real faces (RGB patches twice the detected box, face centred).

    The appliance's own detector finds the faces in the source photos only to cut the
    patches; every system then sees the same composed frames.
    """
    sources = [_load_rgb(asset_path("astronaut.png"))]
    if lfw is not None and lfw.is_dir():
        names = sorted(p for p in lfw.glob("*_0001.jpg"))
        sources += [_load_rgb(p) for p in names[1:3]]
    group = _load_rgb(asset_path("group.jpg"))
    patches = []
    for img in sources:
        dets = pipe.detector.detect(img)
        if dets:
            patches.append(_patch(img, dets[0].box))
    for d in pipe.detector.detect(group):  # fallback when LFW is absent
        if len(patches) >= 3:
            break
        patches.append(_patch(group, d.box))
    return patches[:3]


def _patch(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    h, w = img.shape[:2]
    a, b = int(max(0, cx - half)), int(max(0, cy - half))
    return img[b : int(min(h, cy + half)), a : int(min(w, cx + half))].copy()


def backdrop(seed: int) -> np.ndarray:
    """An RGB 640x480 scene with no face for any detector: a smooth gradient with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    base = np.stack(
        [90 + 60 * xx / FRAME_W, 110 + 40 * yy / FRAME_H, 130 - 30 * xx / FRAME_W], axis=2
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def compose_frames(patches: list[np.ndarray]) -> dict[int, np.ndarray]:
    """640x480 BGR frames (as a camera delivers them) with 0, 1 and 3 faces.

    The background is a smooth gradient with noise, not a photo, so that the 0-face frame
    really has no face for any detector; faces are pasted 160 px wide (about 80 px
    between the box edges), a person a metre or two from a door camera.
    """
    import cv2

    base = backdrop(seed=1)
    frames = {}
    slots = [(240, 160), (40, 60), (440, 60)]
    for n in FACE_COUNTS:
        f = base.copy()
        for (x, y), p in zip(slots[:n], patches[:n], strict=True):
            f[y : y + 160, x : x + 160] = cv2.resize(p, (160, 160), interpolation=cv2.INTER_AREA)
        frames[n] = cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
    return frames


def asset_path(name: str) -> Path:
    from appliance.camera import assets

    return assets.path(name)
