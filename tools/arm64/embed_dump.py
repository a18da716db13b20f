"""Detector + embedder over a fixed set of real photos -> JSON, to compare two machines.

Run once on x86_64 in the normal .venv and once inside the arm64 root filesystem (under
qemu-user), then `tools/arm64/embed_compare.py A.json B.json`. The photos are read from
../shared/data (never copied into the repository); the set is fixed by name so both runs
see the same images in the same order.

    python tools/arm64/embed_dump.py --data ../shared/data --out build/arm64/x86_64.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from appliance.vision.imageio import read_image  # noqa: E402
from appliance.vision.pipeline import FacePipeline  # noqa: E402
from appliance.vision.runtime import runtime_version  # noqa: E402

# Whole scenes (several sizes, several faces, one with none) and LFW crops padded as in
# tests/test_pipeline_real.py, so the detector sees a face with context around it.
SCENE_GLOBS = (
    "scenes/examples/*.jpg",
    "scenes/examples/*.png",
    "scenes/test_images/*.jpg",
    "scenes/examples/knn_examples/test/*",
    "detection/*.jpg",
)
LFW_PAD = 50


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def photo_set(data: Path, lfw: int) -> list[tuple[str, Path, int]]:
    """(name, path, padding) for every photo, sorted by name; `lfw` LFW crops, evenly spaced."""
    out = [
        (str(p.relative_to(data)), p, 0) for g in SCENE_GLOBS for p in data.glob(g) if p.is_file()
    ]
    lfw_all = sorted((data / "lfw" / "images").glob("*.jpg"))
    if lfw and lfw_all:
        step = max(1, len(lfw_all) // lfw)
        out += [(str(p.relative_to(data)), p, LFW_PAD) for p in lfw_all[::step][:lfw]]
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lfw", type=int, default=40, help="how many LFW crops (evenly spaced)")
    ap.add_argument("--embedders", default="facenet,mobilefacenet")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no photos at {args.data}", file=sys.stderr)
        return 2
    photos = photo_set(args.data, args.lfw)
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime": runtime_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "embedders": {},
    }
    # One detector pass per photo, shared by every embedder. Each stage's output is hashed,
    # so a difference between machines can be traced to where it starts: decoding, the
    # detector's letterboxed input, its raw output, the aligned crop, or the embedding.
    names = args.embedders.split(",")
    pipes = {n: FacePipeline.load(embedder=n, threads=args.threads) for n in names}
    det = pipes[names[0]].detector
    for n in names:
        result["embedders"][n] = {}
    result["stages"] = {}
    for key, path, pad in photos:
        img = read_image(path)
        if pad:
            img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        x, lb = det.prepare(img)
        raw_boxes, raw_scores = det.raw(x)
        dets = det.postprocess(raw_boxes, raw_scores, lb, img.shape)
        result["stages"][key] = {
            "decoded": sha(img),
            "detector_input": sha(x),
            "detector_output": sha(raw_boxes) + sha(raw_scores),
        }
        for n, pipe in pipes.items():
            result["embedders"][n][key] = [
                {
                    "box": [float(v) for v in f.detection.box],
                    "keypoints": [[float(x), float(y)] for x, y in f.detection.keypoints],
                    "score": float(f.detection.score),
                    "aligned": sha(f.aligned),
                    "embedding": [float(v) for v in f.embedding],
                }
                for f in pipe.faces(img, detections=dets)
            ]
    for n in names:
        faces = sum(len(v) for v in result["embedders"][n].values())
        print(f"{n}: {len(photos)} photos, {faces} faces", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
