"""CLI commands that look at photos: detect, verify, identify. Read-only, no daemon.

Each photo is read and looked at on its own: a bad file gets its own error line (and an
`error` entry in JSON output), the others are still processed, and the exit code is 1
when any file failed. A face that fills the photo is found (`photo_faces`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config.schema import Config
from appliance.vision.imageio import ImageError, read_image


def pipeline(cfg: Config) -> Any:
    from appliance.identity.recogniser import load_pipeline

    return load_pipeline(cfg)


def recogniser(cfg: Config) -> Any:
    from appliance.identity.recogniser import Recogniser

    return Recogniser.open(cfg, pipeline(cfg))


def each_photo(
    paths: list[Path], look: Callable[[np.ndarray], list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], int]:
    """`{"image", "faces"}` per photo, or `{"image", "error"}` for one that cannot be
    read (also said on stderr); and how many failed."""
    out: list[dict[str, Any]] = []
    failed = 0
    for p in paths:
        try:
            out.append({"image": str(p), "faces": look(read_image(p))})
        except ImageError as exc:
            failed += 1
            print(f"appliance: {exc}", file=sys.stderr)
            out.append({"image": str(p), "error": exc.reason})
    return out, failed


def cmd_detect(args: argparse.Namespace, cfg: Config) -> int:
    pipe = pipeline(cfg)
    out, failed = each_photo(
        args.images, lambda img: [f.as_dict() for f in pipe.photo_faces(img, embed=False)]
    )
    print(json.dumps(out, indent=2))
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.identity.thresholds import load_calibration, resolve
    from appliance.vision.similarity import cosine

    pipe = pipeline(cfg)
    vecs = []
    for p in (args.image1, args.image2):
        try:
            faces = pipe.photo_faces(read_image(p))
        except ImageError as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            continue
        if not faces:
            print(f"{p}: no face found", file=sys.stderr)
            continue
        vecs.append(faces[0].embedding)
    if len(vecs) < 2:
        return 1
    s = cosine(vecs[0], vecs[1])
    r = cfg.recognition
    cal = load_calibration(cfg.models.embedder, cfg.models.flip, pipe.aligned_by)
    th = resolve(cal, r.mode, 1, r.stranger_accept, r.threshold, r.margin)  # 1: photo to photo
    verdict = "same person" if s >= th.accept else "different people"
    print(
        json.dumps(
            {
                "cosine": round(s, 4),
                "threshold": round(th.accept, 4),
                "why": th.why,
                "verdict": verdict,
            }
        )
    )
    return 0


def cmd_identify(args: argparse.Namespace, cfg: Config) -> int:
    svc = recogniser(cfg)
    th = svc.thresholds()
    try:
        results, failed = each_photo(
            args.images, lambda img: [i.as_dict() for i in svc.identify(img)]
        )
    finally:
        svc.close()
    if args.json:
        print(json.dumps({"thresholds": th.as_dict(), "results": results}, indent=2))
        return 1 if failed else 0
    print(f"accept at cosine >= {th.accept:.3f} and margin >= {th.margin:.3f} ({th.why})")
    for r in results:
        if "error" in r:
            continue  # said on stderr already
        if not r["faces"]:
            print(f"{r['image']}: no face")
        for f in r["faces"]:
            print(
                f"{r['image']}: {f['person']:<20} cosine {f['score']:.3f} "
                f"(best {f['candidate']}), margin {f['margin']:.3f}, box {f['box']}"
            )
    return 1 if failed else 0
