"""Liveness signals over the face meshes of one visit. Pure numpy/OpenCV, no models.

- **blink**: the eye aspect ratio (EAR) dips and comes back. A print or a still photo
  on a screen cannot blink; a replayed video can.
- **planarity**: a print or a screen is a flat object, so whatever it shows moves
  between two frames as one plane, and the mesh points of frame A map onto those of
  frame B through a single homography up to the mesh's own jitter. A head is not flat:
  as it turns, the nose moves against the cheeks and the face oval slides over the
  ears (parallax), and the best homography leaves a residual. The residual is measured
  in eye distances, so it is independent of how far the face is.

Both scores are "higher is more live"; the thresholds live in the config and the
verdict module, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Points used for the homography fit: every mesh point but the lips and the eyes, whose
# opening changes on a print bent by a hand no more than on a live face, but which a
# live face moves by talking and blinking; the rigid rest carries the parallax signal.
_LIPS = {
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
    191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405,
    409, 415,
}  # fmt: skip
_EYES = {
    7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246, 249, 263,
    362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
}  # fmt: skip
RIGID = np.array([i for i in range(468) if i not in _LIPS and i not in _EYES], dtype=np.int64)


def blink_scores(ears: Sequence[float]) -> np.ndarray:
    """`blink_score` of every prefix of `ears` at once (element k: the first k+1 values),
    so the incremental verdict does not recompute the visit for each new frame."""
    e = np.asarray(ears, dtype=np.float64)
    out = np.zeros(e.size)
    for k in range(3, e.size + 1):
        out[k - 1] = blink_score(e[:k])
    return out


def blink_score(ears: Sequence[float]) -> float:
    """How deep the deepest closing of the eyes was, as a fraction of the open EAR.

    The open EAR is the visit's 80th percentile; the closing counts only if the eyes
    opened again after it (a face that ends the visit with its eyes shut, or a photo
    of someone with narrow eyes, is no blink). 0 when there are fewer than 3 frames.
    About 0.1 for open eyes with mesh jitter; a blink reaches 0.4-0.7.
    """
    e = np.asarray(ears, dtype=np.float64)
    if e.size < 3:
        return 0.0
    open_ = float(np.percentile(e, 80))
    if open_ <= 1e-6:
        return 0.0
    # the closing at i counts if the eyes reopened afterwards (suffix max over i+1..)
    later = np.maximum.accumulate(e[::-1])[::-1][2:]
    inner = e[1:-1]
    ok = later >= 0.85 * open_
    if not ok.any():
        return 0.0
    return float(max(float(np.max(1.0 - inner[ok] / open_)), 0.0))


def homography_residual(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """RMS distance (in units of `scale`) between points `b` and points `a` mapped by
    the least-squares homography a -> b; both (N, 2) with N >= 4."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    h, _ = cv2.findHomography(a, b, 0)
    if h is None:
        return 0.0
    proj = cv2.perspectiveTransform(a[None], h)[0]
    return float(np.sqrt(np.mean(np.sum((proj - b) ** 2, axis=1))) / max(scale, 1e-6))


def motion(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """How far the points moved between two frames beyond a shift and a zoom, in units
    of `scale`: turning and tilting show here, walking closer does not."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a0, b0 = a - a.mean(0), b - b.mean(0)
    k = np.sqrt((b0**2).sum() / max((a0**2).sum(), 1e-12))
    return float(np.sqrt(np.mean(np.sum((a0 * k - b0) ** 2, axis=1))) / max(scale, 1e-6))


def planarity_scores(points: Sequence[np.ndarray], scales: Sequence[float]) -> np.ndarray:
    """`planarity_score` of every prefix (element k: the first k+1 frames), from one
    pass of homographies: each frame against the first three."""
    n = len(points)
    out = np.zeros(n)
    best = 0.0
    for j in range(1, n):
        b = np.asarray(points[j])[:, :2]
        for i in range(min(3, j)):
            a = np.asarray(points[i])[:, :2]
            best = max(best, homography_residual(a, b, 0.5 * (scales[i] + scales[j])))
        out[j] = best
    return out


def planarity_score(points: Sequence[np.ndarray], scales: Sequence[float]) -> float:
    """The non-planarity of a visit: the largest homography residual between the
    visit's first frames and any later frame, in eye distances. `points` are each
    frame's (N, 2) points, the same N points every frame (the device passes the `RIGID`
    mesh points).

    Each frame is compared with the visit's first three, so a slow turn across the
    visit is seen in full rather than as many tiny steps the mesh jitter drowns. 0 with
    fewer than 2 frames.
    """
    if len(points) < 2:
        return 0.0
    return float(planarity_scores(points, scales)[-1])
