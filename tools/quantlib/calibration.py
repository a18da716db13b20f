"""Representative data for int8 calibration, made from real face photos.

The detector is calibrated on whole frames (the photo padded as the evaluation pads it,
and the same face placed small in a 640x480 frame, as a door camera sees it). The
embedders are calibrated on faces aligned by the product's own pipeline, so the int8
ranges are measured on exactly what the device will feed them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from appliance.vision.align import align, template
from appliance.vision.detect import Detection, FaceDetector, letterbox
from appliance.vision.detect import normalise as detector_normalise
from appliance.vision.embed import EmbedderSpec
from appliance.vision.embed import normalise as embedder_normalise
from appliance.vision.imageio import read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def list_images(root: Path, listing: Path | None) -> list[Path]:
    """The calibration photos: those named in `listing` (relative to root), else all."""
    if listing is not None:
        names = [ln.strip() for ln in listing.read_text().splitlines()]
        return [root / n for n in names if n and not n.startswith("#")]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def digest(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and bytes: changes if any photo or the set changes."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def detector_frames(paths: list[Path], pad: int = 50, seed: int = 0) -> Iterator[np.ndarray]:
    """Uint8 RGB frames: each photo padded, and its face small in a 640x480 frame."""
    rng = np.random.default_rng(seed)
    for p in paths:
        img = read_image(p)
        yield cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        frame = cv2.GaussianBlur(cv2.resize(img, (640, 480)), (0, 0), 12)
        side = int(rng.integers(90, 300))
        small = cv2.resize(img, (side, side * img.shape[0] // img.shape[1]))
        y = int(rng.integers(0, 480 - small.shape[0]))
        x = int(rng.integers(0, 640 - small.shape[1]))
        frame[y : y + small.shape[0], x : x + small.shape[1]] = small
        yield frame


def detector_inputs(paths: list[Path], size: int = FaceDetector.INPUT_SIZE) -> Iterator[np.ndarray]:
    """The frames letterboxed to a `size` square and scaled to [-1, 1], as both detectors
    (BlazeFace, SSD-MobileNet) normalise them."""
    for frame in detector_frames(paths):
        x, _ = letterbox(frame, size)
        yield detector_normalise(x)[None]


def aligned_faces(
    paths: list[Path], detector: FaceDetector, size: int, zoom: float, shift_y: float, pad: int = 50
) -> list[np.ndarray]:
    """The largest face of each photo, aligned as the device aligns it; photos without
    a face are skipped."""
    tmpl = template(size, zoom, shift_y)
    out = []
    for p in paths:
        img = cv2.copyMakeBorder(read_image(p), pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        dets = detector.detect(img)
        if not dets:
            continue
        d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        out.append(align(img, d.keypoints, tmpl, size))
    return out


def largest_faces(
    paths: list[Path], detector: FaceDetector, pad: int = 50
) -> Iterator[tuple[np.ndarray, Detection]]:
    """Each padded photo with its largest face (photos without a face are skipped)."""
    for p in paths:
        img = cv2.copyMakeBorder(read_image(p), pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        dets = detector.detect(img)
        if dets:
            yield img, max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))


def mesh_crops(paths: list[Path], detector: FaceDetector) -> list[np.ndarray]:
    """The face mesh's uint8 input crop of each photo's largest face, cut as the device
    cuts it (`appliance.vision.landmarks.roi_transform`), and of every photo a second
    crop off the face (`off_face`): calibrated on faces only, the int8 face-presence
    logit lost its negative range and called every crop a face."""
    from appliance.vision.landmarks import mesh_crop

    out = []
    for img, d in largest_faces(paths, detector):
        out.append(mesh_crop(img, d)[0])
        out.append(mesh_crop(img, off_face(d))[0])
    return out


def off_face(d: Detection) -> Detection:
    """The same box moved by its own width and height: mostly border and hair."""
    w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
    shift = np.array([w, h, w, h], np.float32)
    return Detection(d.box + shift, np.zeros((0, 2), np.float32), d.score)


def mesh_inputs(crops: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Float batches of one in [0, 1], as `FaceMesh` feeds a float model."""
    for c in crops:
        yield (c.astype(np.float32) / np.float32(255.0))[None]


def embedder_inputs(faces: list[np.ndarray], spec: EmbedderSpec) -> Iterator[np.ndarray]:
    """Normalised float batches of one, exactly as the device normalises them."""
    for f in faces:
        yield embedder_normalise(f[None], spec)


def lfw_fold_identities(pairs: Path) -> dict[int, set[str]]:
    """Identities in each View-2 fold of pairs.txt (the folds are identity-disjoint)."""
    lines = pairs.read_text().split("\n")
    n_folds, n = map(int, lines[0].split())
    folds: dict[int, set[str]] = {}
    i = 1
    for f in range(1, n_folds + 1):
        ids: set[str] = set()
        for _ in range(2 * n):
            parts = lines[i].split()
            i += 1
            ids.update([parts[0]] if len(parts) == 3 else [parts[0], parts[2]])
        folds[f] = ids
    return folds


def lfw_fold_list(lfw: Path, folds: range, count: int) -> list[str]:
    """`count` image names of identities in `folds`, the first by sha256 of the name."""
    by_fold = lfw_fold_identities(lfw / "pairs.txt")
    ids = set().union(*(by_fold[f] for f in folds))
    names = [p.name for p in (lfw / "images").glob("*.jpg") if p.stem.rsplit("_", 1)[0] in ids]
    names.sort(key=lambda x: hashlib.sha256(x.encode()).hexdigest())
    return sorted(names[:count])
