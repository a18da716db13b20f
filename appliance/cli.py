"""The one console entry point: `appliance <subcommand>`; `main(argv) -> int`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from appliance import __version__
from appliance.config import Config, ConfigError, load
from appliance.imageio import ImageError, read_image
from appliance.runtime import ModelError

log = logging.getLogger(__name__)


def _pipeline(cfg: Config):
    from appliance.pipeline import FacePipeline

    return FacePipeline.load(embedder=cfg.models.embedder, threads=cfg.models.threads,
                             flip=cfg.models.flip,
                             score_threshold=cfg.detector.score_threshold)


def _frames(source: str) -> Iterator[tuple[int, np.ndarray]]:
    """Frames from the configured source. The daemon issue brings the full camera adapters
    (picamera2, reconnects); this serves the demo, V4L2, URLs and files."""
    if source == "auto":
        source = "0" if Path("/dev/video0").exists() else "demo"
    if source == "demo":
        from appliance import demo

        for f in demo.frames():
            yield f.index, f.image
        return
    import cv2

    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera source {source!r}")
    i = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    """Run the pipeline on the camera (or the demo) and print who it sees.

    Until the gallery exists, the demo's known person is enrolled in memory from their
    photo, so the output shows recognition and rejection on real faces.
    """
    from appliance import demo
    from appliance.similarity import cosine_matrix

    pipe = _pipeline(cfg)
    faces = pipe.faces(demo.known_photo())
    if not faces:
        raise ModelError("no face found in the demo enrolment photo")
    gallery = np.stack([faces[0].embedding])
    names = [demo.KNOWN_NAME]
    thr = cfg.recognition.threshold
    source = args.source or cfg.camera.source
    print(f"appliance {__version__}: source={source} embedder={cfg.models.embedder} "
          f"threshold={thr:.2f}; enrolled: {', '.join(names)}", flush=True)
    last: tuple[str, ...] | None = None
    t0 = time.perf_counter()
    for n, (idx, frame) in enumerate(_frames(source), start=1):
        if args.frames and n > args.frames:
            break
        found = pipe.faces(frame)
        labels = []
        for f in found:
            scores = cosine_matrix(f.embedding[None], gallery)[0]
            j = int(np.argmax(scores))
            s = float(scores[j])
            who = names[j] if s >= thr else "unknown"
            labels.append(f"{who} (cosine {s:.2f} vs {names[j]}, threshold {thr:.2f})")
        key = tuple(lbl.split(" ")[0] for lbl in labels)
        if key != last:
            fps = n / (time.perf_counter() - t0)
            print(f"frame {idx:5d}: " + ("; ".join(labels) if labels else "no face")
                  + f"  [{fps:.1f} fps]", flush=True)
            last = key
    return 0


def cmd_detect(args: argparse.Namespace, cfg: Config) -> int:
    pipe = _pipeline(cfg)
    out = []
    for p in args.images:
        faces = pipe.faces(read_image(p), embed=False)
        out.append({"image": str(p), "faces": [f.as_dict() for f in faces]})
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.similarity import cosine

    pipe = _pipeline(cfg)
    vecs = []
    for p in (args.image1, args.image2):
        faces = pipe.faces(read_image(p))
        if not faces:
            print(f"{p}: no face found", file=sys.stderr)
            return 1
        vecs.append(faces[0].embedding)
    s = cosine(vecs[0], vecs[1])
    thr = cfg.recognition.threshold
    verdict = "same person" if s >= thr else "different people"
    print(json.dumps({"cosine": round(s, 4), "threshold": thr, "verdict": verdict}))
    return 0


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    print(f"{args.file}: OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="appliance", description="Face-recognition door appliance")
    p.add_argument("--version", action="version", version=f"appliance {__version__}")
    p.add_argument("-c", "--config", type=Path, default=None, help="config.yaml to use")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run on the camera (or the demo) and print who it sees")
    r.add_argument("--source", help="override camera.source")
    r.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    d = sub.add_parser("detect", help="print the faces found in images as JSON")
    d.add_argument("images", nargs="+", type=Path)
    v = sub.add_parser("verify", help="are two photos the same person?")
    v.add_argument("image1", type=Path)
    v.add_argument("image2", type=Path)
    vc = sub.add_parser("validate-config", help="check a config file; name each bad key")
    vc.add_argument("file", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "validate-config":
            cfg = load(args.file)
        else:
            cfg = load(args.config) if args.config else Config()
        handler = {"run": cmd_run, "detect": cmd_detect, "verify": cmd_verify,
                   "validate-config": cmd_validate}[args.cmd]
        return handler(args, cfg)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except (ImageError, ModelError, RuntimeError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
