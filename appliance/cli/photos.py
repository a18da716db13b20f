"""CLI commands that look at photos: detect, verify, identify. Read-only, no daemon."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.config.schema import Config
from appliance.vision.imageio import read_image


def pipeline(cfg: Config) -> Any:
    from appliance.vision.pipeline import FacePipeline

    return FacePipeline.load(
        embedder=cfg.models.embedder,
        threads=cfg.models.threads,
        flip=cfg.models.flip,
        score_threshold=cfg.detector.score_threshold,
    )


def recogniser(cfg: Config) -> Any:
    from appliance.identity.recogniser import Recogniser

    return Recogniser.open(cfg, pipeline(cfg))


def cmd_detect(args: argparse.Namespace, cfg: Config) -> int:
    pipe = pipeline(cfg)
    out = []
    for p in args.images:
        faces = pipe.faces(read_image(p), embed=False)
        out.append({"image": str(p), "faces": [f.as_dict() for f in faces]})
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.identity.thresholds import load_calibration, resolve
    from appliance.vision.similarity import cosine

    pipe = pipeline(cfg)
    vecs = []
    for p in (args.image1, args.image2):
        faces = pipe.faces(read_image(p))
        if not faces:
            print(f"{p}: no face found", file=sys.stderr)
            return 1
        vecs.append(faces[0].embedding)
    s = cosine(vecs[0], vecs[1])
    r = cfg.recognition
    cal = load_calibration(cfg.models.embedder, cfg.models.flip)
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
    results = []
    for p in args.images:
        found = svc.identify(read_image(p))
        results.append({"image": str(p), "faces": [i.as_dict() for i in found]})
    svc.close()
    if args.json:
        print(json.dumps({"thresholds": th.as_dict(), "results": results}, indent=2))
        return 0
    print(f"accept at cosine >= {th.accept:.3f} and margin >= {th.margin:.3f} ({th.why})")
    for r in results:
        if not r["faces"]:
            print(f"{r['image']}: no face")
        for f in r["faces"]:
            print(
                f"{r['image']}: {f['person']:<20} cosine {f['score']:.3f} "
                f"(best {f['candidate']}), margin {f['margin']:.3f}, box {f['box']}"
            )
    return 0
