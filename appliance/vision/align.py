"""Face alignment: a similarity transform from detector keypoints to a canonical face.

Embedders are trained on faces cut the same way every time; feeding them a loose box
costs accuracy (on LFW, 0.6 points for FaceNet and 3.6 for MobileFaceNet). Four BlazeFace
keypoints are used: both eyes, the nose tip and the mouth centre. The ears are left out:
they are often hidden and badly placed on turned heads.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.vision.detect import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE

# The ArcFace/InsightFace 112x112 template (image-left eye first), with the two mouth
# corners merged into the mouth centre that BlazeFace predicts.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],  # eye on the image's left (subject's right)
        [73.5318, 51.5014],  # eye on the image's right
        [56.0252, 71.7366],  # nose tip
        [56.1396, 92.2848],  # mouth centre
    ],
    dtype=np.float32,
)
KEYPOINTS = (RIGHT_EYE, LEFT_EYE, NOSE, MOUTH)


def template(size: int, zoom: float = 1.0, shift_y: float = 0.0) -> np.ndarray:
    """The 112 template scaled to `size`, zoomed about its centre.

    `zoom` < 1 leaves more context around the face, as models trained on loose MTCNN
    crops (FaceNet) expect; `shift_y` moves the face down in the crop, as a fraction
    of `size`.
    """
    centre = np.array([56.0, 56.0], dtype=np.float32)
    pts = (ARCFACE_112 - centre) * zoom + centre
    pts = pts * (size / 112.0)
    pts[:, 1] += shift_y * size
    return pts.astype(np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst, 2x3.

    Umeyama's closed form; written out rather than using cv2.estimateAffinePartial2D,
    which runs RANSAC and can drop one of only four points.
    """
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    r = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def align(frame: np.ndarray, keypoints: np.ndarray, tmpl: np.ndarray, size: int) -> np.ndarray:
    """Warp the face into a size x size crop whose keypoints sit on `tmpl`."""
    m = similarity(keypoints[list(KEYPOINTS)], tmpl)
    return cv2.warpAffine(
        frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
