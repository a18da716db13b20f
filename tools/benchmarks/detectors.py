"""detectors: each detector configuration's time per frame at 1 thread, with MACs.

    .venv/bin/python -m tools.benchmarks.detectors [--repeats N] [--ssd-dir build/ssd] \
        [--json build/bench/detectors.json]

The same 640x480 frames the pipeline benchmark uses (0, 1 and 3 faces pasted 160 px
wide on a faceless backdrop, tools/benchmarks/frames.py), through `detect()` exactly as
the device calls it: BlazeFace alone, BlazeFace on 2x2 and 3x3 tiles (always, and only
when the frame is empty), and SSD-MobileNet int8 at each input size found in
`--ssd-dir/<size>/` (tools/quantize.py --ssd-size) plus the committed one; then BlazeFace
and SSD with the face-mesh alignment (`FacePipeline.detect`: detector + mesh). Accuracy of
the same configurations is tools/evaluate.py detection's; the README puts both together.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from tools.benchmarks.common import ROOT, machine_full, stats
from tools.benchmarks.frames import compose_frames, face_patches
from tools.benchmarks.projection import model_macs


def configurations(ssd_dir: Path) -> dict[str, tuple[Any, Path]]:
    """Name -> (detector, model file) for every configuration measured."""
    from appliance.vision import detectors
    from appliance.vision.detectors.tiled import TiledDetector
    from appliance.vision.pipeline import MODELS_DIR, load_manifest

    models = load_manifest()["models"]
    blaze = detectors.load("blazeface", MODELS_DIR, models, 1)
    blaze_file = MODELS_DIR / models["detector"]["file"]
    out: dict[str, tuple[Any, Path]] = {"blazeface": (blaze, blaze_file)}
    for grid in ((2, 2), (3, 3)):
        for empty in (False, True):
            name = f"blazeface_tiles{grid[0]}x{grid[1]}" + ("_when_empty" if empty else "")
            out[name] = (TiledDetector(blaze, *grid, only_when_empty=empty), blaze_file)
    files = sorted(ssd_dir.glob("*/ssd_mobilenetv1_*_int8.tflite")) if ssd_dir.is_dir() else []
    if "ssd_mobilenet" in models:
        files.append(MODELS_DIR / models["ssd_mobilenet"]["file"])
    for f in files:
        det = detectors.load("ssd_mobilenet", MODELS_DIR, models, 1, model_file=f)
        out.setdefault(f"ssd_mobilenet_{det.input_size}", (det, f))
    return out


def bench_detectors(repeats: int, ssd_dir: Path, lfw: Path | None) -> dict[str, Any]:
    from appliance.vision.pipeline import FacePipeline

    frames = compose_frames(face_patches(FacePipeline.load(threads=1), lfw))
    result: dict[str, Any] = {"machine": machine_full(), "threads": 1, "configurations": {}}
    for name, (det, path) in configurations(ssd_dir).items():
        entry: dict[str, Any] = {"model": path.name, "macs": model_macs(path)}
        for n, frame in frames.items():
            rgb = frame[:, :, ::-1].copy()
            timing = stats(functools.partial(det.detect, rgb), repeats)
            entry[f"faces_{n}"] = {"found": len(det.detect(rgb)), **timing}
        result["configurations"][name] = entry
        print(name, {k: v["median_ms"] for k, v in entry.items() if k.startswith("faces_")})
    # With the mesh alignment: FacePipeline.detect, the detector plus one mesh batch over
    # its faces (what a box-only detector's frame costs before the embedder).
    for detector in ("blazeface", "ssd_mobilenet"):
        pipe = FacePipeline.load(threads=1, embedder="facenet", detector=detector, align="mesh")
        entry = {"model": f"{detector} + face_mesh", "aligned_by": pipe.aligned_by}
        for n, frame in frames.items():
            rgb = frame[:, :, ::-1].copy()
            timing = stats(functools.partial(pipe.detect, rgb), repeats)
            entry[f"faces_{n}"] = {"found": len(pipe.detect(rgb)), **timing}
        result["configurations"][f"{detector}_mesh"] = entry
        print(f"{detector}_mesh", {k: v["median_ms"] for k, v in entry.items() if "faces_" in k})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--ssd-dir", type=Path, default=ROOT / "build" / "ssd")
    p.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw" / "images")
    p.add_argument("--json", type=Path, default=ROOT / "build" / "bench" / "detectors.json")
    args = p.parse_args(argv)
    result = bench_detectors(args.repeats, args.ssd_dir, args.lfw if args.lfw.is_dir() else None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
