"""The landmark stage: MediaPipe's face mesh (468 points) on a face the detector found.

A detector gives a box and, for BlazeFace, six coarse keypoints; liveness needs the eye
lids (a blink is a few pixels of lid travel) and many points spread over the face (a
print moves as a plane, a head does not), and a box-only detector needs alignment points.
One stage serves all of them: from any detector's box (and the eye keypoints when the
detector has them, for the roll) it cuts the square region MediaPipe's face-landmark
graph cuts (the box's longer side x 1.5, turned upright by the eyes), runs the mesh on
192x192 pixels in [0, 1] and maps the points back to frame pixels.

Mesh point numbers are MediaPipe's canonical face-mesh topology; "right" and "left" are
the subject's, as in `appliance.vision.detect` (the subject's right eye is on the image's
left).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.vision.detect import LEFT_EYE, RIGHT_EYE, Detection
from appliance.vision.runtime import ModelError, TfliteModel, pixel_lut

log = logging.getLogger(__name__)

MESH_INPUT = 192
NUM_POINTS = 468
POINTS_OUTPUT = "conv2d_20"  # (N, 1, 1, 1404): x, y, z per point, in input pixels
FLAG_OUTPUT = "conv2d_30"  # (N, 1, 1, 1): face-presence logit
ROI_SCALE = 1.5  # MediaPipe's face_detection_front_detection_to_roi scale
PIXEL_MEAN, PIXEL_STD = 0.0, 255.0  # the mesh takes pixels in [0, 1]

# Eye contours for the eye aspect ratio (Soukupova & Cech 2016): corner, two upper lid
# points, corner, two lower lid points, in the order p1..p6 of their formula.
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)
# Alignment points equivalent to BlazeFace's six, for box-only detectors. Each eye is the
# mean of its 16 contour points (MediaPipe's FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE): the
# centre of the visible eye, as BlazeFace's eye keypoint and dlib's six-point mean are.
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
# The mouth centre is midway between the top of the upper lip and the bottom of the lower
# lip: on 150 LFW faces it sits 1.12 eye distances below the eye line where BlazeFace's
# mouth point sits (1.135); the corners' mean sits at 1.05 and would tilt the pose.
NOSE_TIP = 1
MOUTH_TOP_BOTTOM = (0, 17)
RIGHT_EAR_POINT, LEFT_EAR_POINT = 234, 454  # the face contour beside each ear (tragion)


@dataclass(frozen=True)
class Landmarks:
    """The mesh of one face: points (468, 3) in frame pixels (z in the same scale,
    relative, towards the camera negative) and the mesh's own face-presence score."""

    points: np.ndarray
    score: float

    def eye_aspect_ratio(self) -> float:
        """Mean of both eyes' lid opening over eye width: about 0.25-0.35 open, under
        0.15 shut; independent of the face's size."""
        return float(np.mean([_ear(self.points[:, :2], e) for e in (RIGHT_EYE_EAR, LEFT_EYE_EAR)]))

    def eye_centres(self) -> np.ndarray:
        """(2, 2): the subject's right eye (image left), then left eye, in frame pixels:
        the mean of each eye's contour."""
        p = self.points[:, :2]
        return np.stack([p[list(RIGHT_EYE_CONTOUR)].mean(0), p[list(LEFT_EYE_CONTOUR)].mean(0)])

    def bounds(self) -> np.ndarray:
        """(x1, y1, x2, y2) around all points: the box the mesh's next cut is made from."""
        p = self.points[:, :2]
        return np.concatenate([p.min(0), p.max(0)]).astype(np.float32)

    def keypoints(self) -> np.ndarray:
        """(6, 2) alignment points in BlazeFace's keypoint order (right eye, left eye,
        nose tip, mouth centre, right ear, left ear; `appliance.vision.detect`), so any
        detector's box is aligned and its quality measured as BlazeFace's keypoints are."""
        p = self.points[:, :2]
        eyes = self.eye_centres()
        mouth = p[list(MOUTH_TOP_BOTTOM)].mean(0)
        rest = [p[NOSE_TIP], mouth, p[RIGHT_EAR_POINT], p[LEFT_EAR_POINT]]
        return np.vstack([eyes, *rest]).astype(np.float32)


def _ear(p: np.ndarray, idx: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = (p[i] for i in idx)
    width = float(np.linalg.norm(p1 - p4))
    if width <= 1e-6:
        return 0.0
    return float(np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * width)


def roi_transform(det: Detection) -> np.ndarray:
    """2x3 affine from frame pixels to the mesh's 192x192 input for one detection.

    The square's side is the box's longer side x 1.5 around the box centre; when the
    detector gives eye keypoints the square is turned so the eyes are level (as
    MediaPipe's graph does), else it is axis-aligned.
    """
    x1, y1, x2, y2 = (float(v) for v in det.box)
    side = max(x2 - x1, y2 - y1) * ROI_SCALE
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    angle = 0.0
    kp = det.keypoints
    if kp is not None and len(kp) > max(LEFT_EYE, RIGHT_EYE):
        dx, dy = kp[LEFT_EYE] - kp[RIGHT_EYE]
        angle = float(np.degrees(np.arctan2(dy, dx)))
    m = cv2.getRotationMatrix2D((cx, cy), angle, MESH_INPUT / max(side, 1.0))
    m[:, 2] += (MESH_INPUT / 2 - cx, MESH_INPUT / 2 - cy)
    return m


def mesh_crop(frame: np.ndarray, det: Detection) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's uint8 input crop of one detection and the frame->crop transform (the
    one cut, shared by the device and the quantiser's calibration)."""
    m = roi_transform(det)
    crop = cv2.warpAffine(
        frame, m, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )
    return crop, m


class FaceMesh:
    """Frame + detections -> one `Landmarks` per detection (None where the mesh says
    the region holds no face)."""

    version = "face_mesh"  # set from the manifest's sha256 by `load_face_mesh`

    def __init__(self, model: TfliteModel, presence_threshold: float = 0.5) -> None:
        if model.input_shape[1:] != (MESH_INPUT, MESH_INPUT, 3):
            raise ModelError(f"face mesh input must be 192x192x3, got {model.input_shape}")
        model.require_output(POINTS_OUTPUT, (1, 1, NUM_POINTS * 3))
        model.require_output(FLAG_OUTPUT, (1, 1, 1))
        self.model = model
        self.presence_threshold = presence_threshold
        self._lut = pixel_lut(model.input_quant, model.input_dtype, PIXEL_MEAN, PIXEL_STD)

    def landmarks(self, frame: np.ndarray, dets: list[Detection]) -> list[Landmarks | None]:
        """The mesh of each detection, in frame pixels; one batch for all faces."""
        if not dets:
            return []
        crops, mats = zip(*(mesh_crop(frame, d) for d in dets), strict=True)
        batch = np.stack(crops)
        if self._lut is not None:
            x = cv2.LUT(batch.reshape(-1, MESH_INPUT, 3), self._lut).reshape(batch.shape)
        else:
            x = batch.astype(np.float32) / np.float32(PIXEL_STD)
        out = self.model.run(x)
        raw = out[POINTS_OUTPUT].reshape(len(dets), NUM_POINTS, 3)
        flags = 1.0 / (1.0 + np.exp(-out[FLAG_OUTPUT].reshape(-1).astype(np.float64)))
        result: list[Landmarks | None] = []
        for pts, flag, m in zip(raw, flags, mats, strict=True):
            if flag < self.presence_threshold:
                result.append(None)
                continue
            inv = cv2.invertAffineTransform(m)
            xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
            z = pts[:, 2:3] * float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
            result.append(Landmarks(np.hstack([xy, z]).astype(np.float32), float(flag)))
        return result


def load_face_mesh(models_dir: Path | None = None, threads: int = 1) -> FaceMesh:
    """The face mesh named `face_mesh` in the model manifest."""
    from appliance.vision.pipeline import MODELS_DIR, load_manifest  # it imports this module

    folder = MODELS_DIR if models_dir is None else models_dir
    models = load_manifest(folder)["models"]
    if "face_mesh" not in models:
        raise ModelError(f"no face_mesh in {folder / 'manifest.json'}: run tools/quantize.py")
    entry = models["face_mesh"]
    mesh = FaceMesh(TfliteModel(folder / entry["file"], threads))
    mesh.version = f"face_mesh-{entry['sha256'][:12]}"
    return mesh
