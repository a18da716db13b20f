"""Per-face quality measures, computed once so later gates (enrolment, voting) can use them.

All are cheap and come from what the pipeline already has: the detector's keypoints
and the aligned crop. Blur is measured on the aligned crop, so it does not depend on
how large the face was in the frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from appliance.vision.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, Detection

# Where BlazeFace's nose keypoint sits, between the eye line (0) and the mouth (1), on a
# face looking straight ahead: the median over 700 LFW faces (every 10th file) is 0.561,
# not the 0.5 that was assumed, which took 0.12 off every level face's `frontal`.
LEVEL_PITCH = 0.56


@dataclass(frozen=True)
class Quality:
    score: float  # detector score, 0..1
    eye_distance: float  # pixels in the frame
    blur: float  # variance of the Laplacian of the aligned grey crop; low = blurred
    yaw: float  # -1..1: nose offset from the eye midline, in half eye-distances
    pitch: float  # nose height between eye line and mouth, LEVEL_PITCH is level
    roll: float  # degrees of the eye line from horizontal

    @property
    def frontal(self) -> float:
        """0..1, 1 = looking straight at the camera; a single number for gates and weights."""
        return float(
            max(0.0, 1.0 - abs(self.yaw))
            * max(0.0, 1.0 - 2.0 * abs(self.pitch - LEVEL_PITCH))
            * max(0.0, 1.0 - abs(self.roll) / 45.0)
        )

    def as_dict(self) -> dict[str, float]:
        d = {k: round(float(v), 4) for k, v in asdict(self).items()}
        d["frontal"] = round(self.frontal, 4)
        return d


def pose(keypoints: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) estimates from four keypoints, in the units `Quality` documents."""
    re, le, nose, mouth = (keypoints[i] for i in (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH))
    eye_vec = le - re
    d = float(np.linalg.norm(eye_vec))
    if d < 1e-6:
        return 1.0, 0.5, 90.0
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    # Rotate so the eye line is horizontal, then read offsets in that frame.
    c, s = eye_vec / d
    rot = np.array([[c, s], [-s, c]], dtype=np.float32)
    mid = (re + le) / 2
    n = rot @ (nose - mid)
    m = rot @ (mouth - mid)
    yaw = float(np.clip(n[0] / (d / 2), -1.0, 1.0))
    pitch = float(n[1] / m[1]) if abs(m[1]) > 1e-6 else 0.5
    return yaw, pitch, roll


def blur_measure(aligned: np.ndarray) -> float:
    grey = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def measure(det: Detection, aligned: np.ndarray) -> Quality:
    yaw, pitch, roll = pose(det.keypoints)
    return Quality(
        score=det.score,
        eye_distance=det.eye_distance,
        blur=blur_measure(aligned),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
    )
