"""Which OpenCV resamplers give the same pixels on aarch64 as on x86_64.

Run it on both (on aarch64 inside `tools/arm64/run.sh shell SUITE`), then compare:

    .venv/bin/python tools/arm64/resize_probe.py --data ../shared/data --out x86.json
    .venv/bin/python tools/arm64/resize_probe.py --compare x86.json build/arm64/probe.json

For every photo (dlib's detection set, the scenes, every 25th LFW crop padded as in the
evaluation) and a 640x480 rescale of it, it hashes the detector-sized image made by
INTER_AREA, by INTER_LINEAR, and by pyrDown halvings then INTER_LINEAR (what
`appliance.vision.detect.letterbox` does), plus a bilinear warpAffine as the aligner uses.
It is why the letterbox no longer uses INTER_AREA (tools/arm64/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

SIZE = 192
METHODS = ("area", "linear", "pyrdown_linear", "warp_affine")


def resample(img: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    if method == "warp_affine":
        a, s = rng.uniform(-0.3, 0.3), rng.uniform(0.3, 1.5)
        m = np.array(
            [
                [s * np.cos(a), -s * np.sin(a), rng.uniform(-50, 0)],
                [s * np.sin(a), s * np.cos(a), rng.uniform(-50, 0)],
            ]
        )
        return cv2.warpAffine(
            img, m, (160, 160), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    h, w = img.shape[:2]
    scale = SIZE / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if method == "area":
        return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    if method == "pyrdown_linear":
        while img.shape[1] >= 2 * nw and img.shape[0] >= 2 * nh:
            img = cv2.pyrDown(img)
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)


def photos(data: Path) -> list[Path]:
    files = sorted((data / "detection").glob("*.jpg"))
    files += sorted((data / "scenes" / "examples").glob("*.jpg"))
    files += sorted((data / "scenes" / "examples").glob("*.png"))
    return files + sorted((data / "lfw" / "images").glob("*.jpg"))[::25]


def probe(data: Path) -> dict[str, dict[str, str]]:
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, str]] = {}
    for f in photos(data):
        img = cv2.imread(str(f))
        if img is None:
            continue
        if f.parent.name == "images":  # an LFW crop, padded as tools/evaluate.py does
            img = cv2.copyMakeBorder(img, 50, 50, 50, 50, cv2.BORDER_CONSTANT)
        vga = cv2.resize(img, (640, 480), interpolation=cv2.INTER_LINEAR)
        for k, im in enumerate((img, vga)):
            out[f"{f.relative_to(data)}#{k}"] = {
                m: hashlib.sha256(resample(im, m, rng).tobytes()).hexdigest()[:16] for m in METHODS
            }
    return out


def compare(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> dict[str, int]:
    common = sorted(set(a) & set(b))
    return {"images": len(common), **{m: sum(a[k][m] != b[k][m] for k in common) for m in METHODS}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args(argv)
    if args.compare:
        a, b = (json.loads(x.read_text())["hashes"] for x in args.compare)
        print(json.dumps({"images_differing_by_method": compare(a, b)}))
        return 0
    if not args.data or not args.out:
        p.error("--data and --out, or --compare A B")
    result = {"opencv": cv2.__version__, "hashes": probe(args.data)}
    args.out.write_text(json.dumps(result) + "\n")
    print(f"{len(result['hashes'])} images, OpenCV {cv2.__version__} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
