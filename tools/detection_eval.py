"""Detector evaluation for tools/evaluate.py (`detection`, `lfw-detection`): recall and
precision at IoU 0.5 on dlib's labelled photos and on composed small-face frames, by face
width, with ms per frame; and detector misses on the padded LFW crops. Kept apart from
evaluate.py (LFW verification and identification) so each stays readable; the protocol
is evaluate.py's module docstring's.
"""

from __future__ import annotations

import argparse
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from evaluate import FLOAT_DIR, ROOT, padded, read_pairs

from appliance.vision import detectors
from appliance.vision.detect import Detection, iou
from appliance.vision.detectors.tiled import TiledDetector
from appliance.vision.imageio import read_image
from appliance.vision.pipeline import MODELS_DIR, load_manifest


def read_boxes(xml: Path) -> dict[str, np.ndarray]:
    out = {}
    for img in ET.parse(xml).getroot().iter("image"):
        boxes = [
            [
                int(b.get("left")),
                int(b.get("top")),
                int(b.get("left")) + int(b.get("width")),
                int(b.get("top")) + int(b.get("height")),
            ]
            for b in img.iter("box")
            if b.get("ignore") != "1"
        ]
        out[img.get("file")] = np.array(boxes, np.float32).reshape(-1, 4)
    return out


def run_lfw_detection(args: argparse.Namespace) -> dict[str, Any]:
    det = detection_detector(args)
    pairs, _, _ = read_pairs(args.data / "pairs.txt")
    names = sorted({a for a, _, _ in pairs} | {b for _, b, _ in pairs})
    if args.limit:
        names = names[:: max(1, len(names) // args.limit)][: args.limit]
    look = read_image if args.tight else padded
    missed = [n for n in names if not det.detect(look(args.data / "images" / n))]
    return {
        "protocol": "every LFW View-2 pair image (150x150 crop "
        + ("as it is, a tight crop" if args.tight else "padded to 250x250")
        + "); a miss is no face at all, as `lfw` counts detection failures",
        "detector": args.detector,
        "precision_of_model": "float" if args.float else "int8",
        "score_threshold": det.score_threshold,
        "images": len(names),
        "detection_failures": len(missed),
        "recall": round(100 * (1 - len(missed) / len(names)), 3),
        "missed": missed,
    }


SIZE_BANDS = ((0, 20), (20, 40), (40, 80), (80, 10_000))
BAND_NAMES = ("<20", "20-40", "40-80", ">=80")
# Where the face is in an LFW 150x150 crop: the mean of BlazeFace's and SSD-MobileNet's
# median boxes on 100 padded held-out crops (folds 6-10), so neither detector's box
# convention is the truth (BlazeFace [19, 27, 132, 140], SSD [26, 20, 124, 138]).
LFW_FACE_BOX = (23.0, 24.0, 128.0, 139.0)
COMPOSED_SIZES = ((640, 480), (1280, 720))


def detection_detector(args: argparse.Namespace) -> Any:
    """`--detector` (int8, float with --float, or --detector-file), tiled with --tiles."""
    det = detectors.load(
        args.detector,
        MODELS_DIR,
        load_manifest()["models"],
        args.threads,
        args.score_threshold,
        FLOAT_DIR if args.float else None,
        args.detector_file,
    )
    if args.tiles:
        cols, rows = map(int, args.tiles.lower().split("x"))
        det = TiledDetector(det, cols, rows, only_when_empty=args.tiles_when_empty)
    return det


def background_photos(data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dlib photos with their hand-drawn boxes, and dogs.jpg (no face)."""
    out = []
    for name in ("testing.xml", "training.xml"):
        for file, gt in read_boxes(data / name).items():
            out.append((read_image(data / file), gt))
    if (data / "dogs.jpg").exists():
        out.append((read_image(data / "dogs.jpg"), np.zeros((0, 4), np.float32)))
    return out


def composed_frames(
    data: Path, lfw: Path, n: int, seed: int = 7
) -> list[tuple[np.ndarray, np.ndarray]]:
    """N frames with known face boxes: several real faces pasted small into real photos.

    Each frame is a dlib photo (or dogs.jpg) cropped to 4:3 or 16:9 and resized to
    640x480 or 1280x720 (alternately), its own hand-labelled faces kept as truth; then
    3-8 LFW crops (held-out folds 6-10; up to 60 tries to place them) scaled so the
    face box (LFW_FACE_BOX) is 10-120 px wide (log-uniform), blurred (Gaussian sigma
    up to 1.2 px, growing with faces over 40 px), brightened or darkened (gain
    0.6-1.4), pasted through a feathered ellipse around the face where they overlap
    nothing else; then the whole frame is JPEG-encoded at quality 40-95.
    Pasted faces have cleaner edges and poses than real crowds: this set flatters a
    detector, and the dlib photos' own real scenes keep the figures honest.
    """
    rng = np.random.default_rng(seed)
    backs = background_photos(data)
    names = [
        ln.strip()
        for ln in (ROOT / "models" / "calibration" / "lfw_folds6-10.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    fx1, fy1, fx2, fy2 = LFW_FACE_BOX
    frames = []
    for i in range(n):
        fw, fh = COMPOSED_SIZES[i % 2]
        img, gt = backs[i % len(backs)]
        h, w = img.shape[:2]
        cw, ch = (w, round(w * fh / fw)) if w * fh / fw <= h else (round(h * fw / fh), h)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        frame = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (fw, fh), interpolation=cv2.INTER_AREA)
        sx, sy = fw / cw, fh / ch
        boxes = [
            b
            for b in (gt - [x0, y0, x0, y0]) * [sx, sy, sx, sy]
            if b[0] >= 0 and b[1] >= 0 and b[2] <= fw and b[3] <= fh
        ]
        want, placed = int(rng.integers(3, 9)), 0
        for _ in range(60):
            if placed == want:
                break
            width = float(np.exp(rng.uniform(np.log(10), np.log(120))))
            k = width / (fx2 - fx1)
            face = read_image(lfw / "images" / names[int(rng.integers(len(names)))])
            side = max(4, round(150 * k))
            face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
            sigma = rng.uniform(0, 1.2) * max(1.0, width / 40)
            if sigma > 0.3:
                face = cv2.GaussianBlur(face, (0, 0), sigma)
            face = np.clip(face.astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255)
            px, py = int(rng.integers(0, fw - side + 1)), int(rng.integers(0, fh - side + 1))
            box = np.array([px + fx1 * k, py + fy1 * k, px + fx2 * k, py + fy2 * k], np.float32)
            grown = box + np.array([-1, -1, 1, 1]) * (box[2] - box[0]) * 0.3
            if any(
                min(grown[2], b[2]) > max(grown[0], b[0])
                and min(grown[3], b[3]) > max(grown[1], b[1])
                for b in boxes
            ):
                continue
            mask = np.zeros((side, side), np.float32)
            centre = (round((fx1 + fx2) / 2 * k), round((fy1 + fy2) / 2 * k))
            axes = (max(1, round((fx2 - fx1) * 0.62 * k)), max(1, round((fy2 - fy1) * 0.62 * k)))
            cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, side / 25))[:, :, None]
            region = frame[py : py + side, px : px + side].astype(np.float32)
            frame[py : py + side, px : px + side] = (mask * face + (1 - mask) * region).astype(
                np.uint8
            )
            boxes.append(box)
            placed += 1
        _, enc = cv2.imencode(
            ".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))]
        )
        frame = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        frames.append((frame, np.array(boxes, np.float32).reshape(-1, 4)))
    return frames


def match_pairs(gt: np.ndarray, dets: list[Detection], thr: float = 0.5) -> list[int]:
    """Greedy one-to-one matching by detector score: the ground-truth indices matched."""
    used: list[int] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if len(gt) == 0:
            break
        m = iou(d.box, gt)
        for j in np.argsort(-m):
            if m[j] < thr:
                break
            if int(j) not in used:
                used.append(int(j))
                break
    return used


def score_frames(detector: Any, frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Recall (overall and by face width), precision and ms per frame on labelled frames."""
    n_gt = np.zeros(len(SIZE_BANDS), int)
    n_hit = np.zeros(len(SIZE_BANDS), int)
    n_det = 0
    ms: list[float] = []
    for frame, gt in frames:
        t = time.perf_counter()
        dets = detector.detect(frame)
        ms.append(1000 * (time.perf_counter() - t))
        n_det += len(dets)
        hit = set(match_pairs(gt, dets))
        for j, b in enumerate(gt):
            band = next(i for i, (lo, hi) in enumerate(SIZE_BANDS) if lo <= b[2] - b[0] < hi)
            n_gt[band] += 1
            n_hit[band] += int(j in hit)
    return {
        "frames": len(frames),
        "faces": int(n_gt.sum()),
        "detections": n_det,
        "recall": round(100 * n_hit.sum() / max(n_gt.sum(), 1), 2),
        "precision": round(100 * n_hit.sum() / max(n_det, 1), 2),
        "recall_by_size": {
            name: {"faces": int(g), "recall": round(100 * h / g, 2) if g else None}
            for name, g, h in zip(BAND_NAMES, n_gt, n_hit, strict=True)
        },
        "recall_20px_and_over": round(100 * n_hit[1:].sum() / max(n_gt[1:].sum(), 1), 2),
        "ms_per_frame": round(float(np.median(ms)), 2),
    }


def run_detection(args: argparse.Namespace) -> dict[str, Any]:
    detector = detection_detector(args)
    inner = getattr(detector, "inner", detector)
    result: dict[str, Any] = {
        "detector": args.detector,
        "model": inner.model.path.name,
        "input_size": inner.model.input_shape[1],
        "tiles": args.tiles or None,
        "tiles_only_when_empty": bool(args.tiles and args.tiles_when_empty),
        "precision_of_model": "int8" if inner.model.input_dtype == np.int8 else "float",
        "threads": args.threads,
        "iou": 0.5,
        "score_threshold": args.score_threshold,
        "sets": {},
    }
    dlib = [
        (read_image(args.data / file), gt)
        for name in ("testing.xml", "training.xml")
        for file, gt in read_boxes(args.data / name).items()
    ]
    result["sets"]["dlib"] = score_frames(detector, dlib)
    dogs = args.data / "dogs.jpg"
    if dogs.exists():
        result["false_positives_on_dogs_jpg"] = len(detector.detect(read_image(dogs)))
    if args.composed:
        frames = composed_frames(args.data, args.lfw, args.composed)
        result["sets"]["composed"] = score_frames(detector, frames)
    for key in ("recall", "precision", "recall_by_size", "ms_per_frame"):
        result[key] = result["sets"]["composed" if args.composed else "dlib"][key]
    return result
