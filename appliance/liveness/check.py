"""One recorded visit through the device's liveness check: for `appliance check-liveness`.

A video file, or a folder of frames, is played as the camera would deliver it: every
frame through the device's detector and face mesh (the largest face), the observations
into the same incremental `judge` the frame loop uses with the same `liveness` settings,
stopping as soon as the verdict is in. So an owner who records a print, a phone replay
or themselves at the door sees what the door would decide, and how long it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.liveness.verdict import LivenessRules, Observation, judge
from appliance.vision.imageio import ImageError, read_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ClipError(ValueError):
    """A file that is neither a readable video nor a folder with frames in it."""


def clip_frames(path: Path, folder_fps: float = 10.0) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, RGB frame) of a video file, or of a folder's images in name order taken
    `folder_fps` a second. Raises `ClipError` before the first frame when `path` holds
    none."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ClipError(f"{path}: no {'/'.join(IMAGE_SUFFIXES)} frames in the folder")
        return ((k / folder_fps, read_image(p)) for k, p in enumerate(files))
    if not path.is_file():
        raise ClipError(f"{path}: no such file or folder")
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise ClipError(f"{path}: not a video OpenCV can read")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 1.0 <= fps <= 240.0 else 30.0  # containers without a rate: a webcam's

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        k, f = 0, first
        try:
            while ok and f is not None:
                yield k / fps, cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
                k += 1
                more, f = cap.read()
                if not more:
                    break
        finally:
            cap.release()

    return frames()


@dataclass(frozen=True)
class ClipVerdict:
    file: str
    verdict: str  # live | attack | no_face
    decided_s: float | None  # visit seconds (from the first face) to the verdict
    frames: int  # frames read
    faces: int  # frames with a face mesh
    seconds: float  # wall time the check took here
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "verdict": self.verdict,
            "decided_s": None if self.decided_s is None else round(self.decided_s, 3),
            "frames": self.frames,
            "faces": self.faces,
            "seconds": round(self.seconds, 3),
            "liveness": self.figures,
        }


def check_clip(
    pipe: Any, path: Path, rules: LivenessRules, folder_fps: float = 10.0
) -> ClipVerdict:
    """The verdict the device would give the visit recorded in `path` (largest face per
    frame; the visit starts at the first face). `pipe` is a `FacePipeline`."""
    t0 = time.perf_counter()
    obs: list[Observation] = []
    start: float | None = None
    frames = 0
    verdict = None
    try:
        for t, img in clip_frames(path, folder_fps):
            frames += 1
            dets = pipe.detect(img)
            if not dets:
                continue
            d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
            lm = pipe.landmarks.landmarks(img, [d])[0]
            if lm is None:
                continue
            start = t if start is None else start
            obs.append(Observation.of(lm, t - start))
            verdict = judge(obs, rules, ended=False)
            if verdict.live is not None:
                break
    except ImageError as exc:
        raise ClipError(f"{path}: {exc}") from exc
    if obs and (verdict is None or verdict.live is None):
        verdict = judge(obs, rules, ended=True)  # the clip ended: the visit left
    elapsed = time.perf_counter() - t0
    if verdict is None:
        return ClipVerdict(str(path), "no_face", None, frames, 0, elapsed, {"mode": rules.mode})
    name = "live" if verdict.live else "attack"
    log.debug("%s: %s after %d frames", path, name, frames)
    return ClipVerdict(
        str(path), name, verdict.decided_s, frames, len(obs), elapsed, verdict.figures(rules)
    )
