#!/usr/bin/env python3
"""Does calibrating the int8 embedder on LFW flatter its LFW accuracy?

    tools/calibration_compare.py photos --out /tmp/calib_other/photos \
        --list models/calibration/other_photos.txt
    .venv-quant/bin/python tools/quantize.py --calibration /tmp/calib_other/photos \
        --calibration-list models/calibration/other_photos.txt \
        --agreement-list /tmp/calib_other/photos/agreement_lfw_folds6-10.txt \
        --out /tmp/calib_other --float-out /tmp/calib_other/float --models facenet
    tools/calibration_compare.py compare --lfw ../shared/data/lfw \
        --model lfw_folds1-5=models/facenet_int8.tflite \
        --model other_photos=/tmp/calib_other/facenet_int8.tflite \
        --model float=build/float-models/facenet_float.tflite \
        --json build/eval/calibration_compare.json

photos: face photos that are not LFW, for a calibration that cannot have seen LFW. Every
face the product's detector finds in the non-LFW photos of ../shared/data (scenes/ photos,
knn_examples train and test, detection/ photos, and every 8th frame of the Hamilton clip)
is cut out as its own image (a square of 2.2x the box, black where it leaves the photo,
enlarged to at least 192 px), because tools/quantize.py calibrates on the largest face of
each photo. Photos of identities in LFW View-2 folds 6-10 are left out (EXCLUDE). The
crops go OUTSIDE the repository; the list of their names goes to --list, and
OUT/agreement_lfw_folds6-10.txt names the held-out LFW photos by absolute path (the
quantiser reads its agreement list relative to --calibration).

compare: LFW View-2 verification restricted to folds 6-10 (the last 3,000 pairs), which no
calibration saw. Each image is padded, detected (int8 detector), aligned and embedded
exactly as `tools/evaluate.py lfw` does (its functions are reused); the aligned crops are
computed once and cached, then embedded by each model. Accuracy is cross-validated over
the five folds (threshold chosen on four, tested on the fifth); TAR@FAR=1e-3 and EER are
over the 3,000 pairs; the mean cosine between the first two models' embeddings is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import cv2  # noqa: E402
import evaluate  # noqa: E402
import numpy as np  # noqa: E402

from appliance.vision.detect import FaceDetector  # noqa: E402
from appliance.vision.embed import Embedder, EmbedderSpec  # noqa: E402
from appliance.vision.imageio import read_image  # noqa: E402
from appliance.vision.pipeline import DEFAULT_EMBEDDER, MODELS_DIR, FacePipeline, load_manifest  # noqa: E402
from appliance.vision.runtime import TfliteModel  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
VIDEO = "scenes/examples/short_hamilton_clip.mp4"
VIDEO_STEP = 8
# Non-LFW photos showing identities of LFW View-2 folds 6-10 (the evaluated folds): Tom
# Cruise (fold 6); bald_guys.jpg has Bruce Willis (fold 6) and Jason Statham (fold 7).
EXCLUDE = {"detection/Tom_Cruise_avp_2014_4.jpg", "detection/bald_guys.jpg"}
CROP_SCALE = 2.2
CROP_MIN = 192


def other_sources(shared: Path) -> list[tuple[str, np.ndarray]]:
    """(name, RGB image) of every non-LFW photo and every VIDEO_STEP-th video frame."""
    out = []
    for sub in ("scenes", "detection"):
        for p in sorted((shared / sub).rglob("*")):
            rel = p.relative_to(shared).as_posix()
            if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and rel not in EXCLUDE:
                out.append((rel, read_image(p)))
    cap = cv2.VideoCapture(str(shared / VIDEO))
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % VIDEO_STEP == 0:
            out.append((f"{VIDEO}#{i:03d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        i += 1
    cap.release()
    return out


def face_crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(np.round(CROP_SCALE * max(box[2] - box[0], box[3] - box[1])))
    x0, y0 = int(np.round(cx - side / 2)), int(np.round(cy - side / 2))
    padded = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_CONSTANT)
    crop = padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]
    if side < CROP_MIN:
        crop = cv2.resize(crop, (CROP_MIN, CROP_MIN), interpolation=cv2.INTER_CUBIC)
    return crop


def run_photos(args: argparse.Namespace) -> int:
    det = FaceDetector(TfliteModel(MODELS_DIR / load_manifest()["models"]["detector"]["file"]))
    out = args.out / "faces"
    out.mkdir(parents=True, exist_ok=True)
    names, sources = [], 0
    for rel, img in other_sources(args.shared):
        dets = det.detect(img)
        sources += bool(dets)
        for k, d in enumerate(sorted(dets, key=lambda d: (d.box[0], d.box[1]))):
            stem = Path(rel).stem if "#" not in rel else Path(rel).name.replace("#", "_frame")
            stem = f"{Path(rel).parent.as_posix().replace('/', '__')}__{stem}"
            name = f"faces/{stem}_face{k}.png"
            crop = face_crop(img, d.box)
            cv2.imwrite(str(args.out / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            names.append(name)
    header = [
        f"# Face crops (relative to the --out folder of `tools/calibration_compare.py photos`)"
        f" of every face the int8 detector finds in the non-LFW photos of {args.shared_label}:",
        "# scenes/ (incl. knn_examples train/test), detection/, and every "
        f"{VIDEO_STEP}th frame of {VIDEO}; excluded (identity in LFW folds 6-10): "
        + ", ".join(sorted(EXCLUDE))
        + ".",
        f"# {len(names)} faces from {sources} photos/frames. Regenerate with:",
        "# tools/calibration_compare.py photos --out /tmp/calib_other/photos "
        "--list models/calibration/other_photos.txt",
    ]
    args.list.write_text("\n".join(header + names) + "\n")
    # tools/quantize.py reads --agreement-list relative to --calibration; absolute names
    # let the held-out LFW agreement photos stay where they are.
    held_out = ROOT / "models" / "calibration" / "lfw_folds6-10.txt"
    lfw_images = (args.shared / "lfw" / "images").resolve()
    agree = [
        str(lfw_images / n.strip())
        for n in held_out.read_text().splitlines()
        if n.strip() and not n.startswith("#")
    ]
    (args.out / "agreement_lfw_folds6-10.txt").write_text("\n".join(agree) + "\n")
    print(
        f"{len(names)} faces from {sources} photos/frames -> {out}; list {args.list}",
        file=sys.stderr,
    )
    return 0


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folds_subset(
    lfw: Path, folds: range, per_fold_limit: int | None
) -> tuple[list[tuple[str, str, bool]], np.ndarray]:
    """The pairs of the chosen View-2 folds (optionally the first N of each), and their fold."""
    pairs, _, per_fold = evaluate.read_pairs(lfw / "pairs.txt")
    keep, fold = [], []
    for k in folds:
        chunk = pairs[(k - 1) * per_fold : k * per_fold]
        if per_fold_limit:  # the same and different halves equally
            half = per_fold // 2
            chunk = chunk[: per_fold_limit // 2] + chunk[half : half + per_fold_limit // 2]
        keep += chunk
        fold += [k] * len(chunk)
    return keep, np.array(fold)


def aligned_crops(
    pipe: FacePipeline, lfw: Path, names: list[str], cache: Path
) -> tuple[np.ndarray, int]:
    """evaluate.lfw_crops on these images, cached (detection is the slow part)."""
    if cache.exists():
        z = np.load(cache)
        if list(z["names"]) == names:
            print(f"crops: cached {cache}", file=sys.stderr)
            return z["crops"], int(z["misses"])
    t0 = time.perf_counter()
    crops, misses = evaluate.lfw_crops(pipe, [lfw / "images" / n for n in names])
    print(
        f"crops: {len(names)} images in {time.perf_counter() - t0:.0f} s, {misses} misses",
        file=sys.stderr,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), crops=crops, misses=misses)
    return crops, misses


def embeddings(
    path: Path, embedder: str, crops: np.ndarray, threads: int, cache: Path
) -> tuple[np.ndarray, str, float]:
    """Unit embeddings of the crops by the model at `path` (its own sha256 as version)."""
    sha = file_sha(path)
    entry = dict(load_manifest()["models"][embedder], sha256=sha)
    if cache.exists():
        print(f"{path}: cached {cache}", file=sys.stderr)
        return np.load(cache), sha, float("nan")
    emb = Embedder(TfliteModel(path, threads), EmbedderSpec.from_manifest(embedder, entry))
    t0 = time.perf_counter()
    vecs = np.concatenate([emb.embed(crops[i : i + 32]) for i in range(0, len(crops), 32)])
    dt = time.perf_counter() - t0
    print(f"{path}: {len(crops)} crops in {dt:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vecs)
    return vecs, sha, dt


def verification(
    scores: np.ndarray, same: np.ndarray, fold: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    """evaluate.py's leave-one-fold-out figures, plus the error count; each pair's decision
    under its fold's threshold is kept for the paired comparison."""
    summary, correct = evaluate.cross_validate(scores, same, fold)
    return {**summary, "errors": int((~correct).sum())}, correct


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    lo, hi = map(int, args.folds.split("-"))
    pairs, fold = folds_subset(args.lfw, range(lo, hi + 1), args.pairs_per_fold)
    names = sorted({a for a, _, _ in pairs} | {b for _, b, _ in pairs})
    pipe = FacePipeline.load(embedder=args.embedder, threads=args.threads)
    spec = pipe.embedder.spec
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]
    tag = f"{pipe.detector.version}_{spec.size}_{spec.zoom}_{spec.shift_y}_{key}"
    crops, misses = aligned_crops(pipe, args.lfw, names, args.cache / f"crops_{tag}.npz")
    index = {n: i for i, n in enumerate(names)}
    ia = np.array([index[p[0]] for p in pairs])
    ib = np.array([index[p[1]] for p in pairs])
    same = np.array([p[2] for p in pairs])

    models: dict[str, Any] = {}
    vecs: dict[str, np.ndarray] = {}
    correct: dict[str, np.ndarray] = {}
    for label, path in args.model:
        sha = file_sha(path)
        v, sha, dt = embeddings(
            path, args.embedder, crops, args.threads, args.cache / f"emb_{sha[:12]}_{tag}.npy"
        )
        vecs[label] = v
        res, correct[label] = verification((v[ia] * v[ib]).sum(1), same, fold)
        models[label] = {"file": os.path.relpath(path, ROOT), "sha256": sha, **res}
        if dt == dt:
            models[label]["images_per_s"] = round(len(crops) / dt, 1)
        print(
            f"{label:14} acc {res['accuracy_mean']:.2f} +- {res['accuracy_std']:.2f} %  "
            f"TAR@1e-3 {res['tar_at_far_1e-3']:.2f} %  EER {res['eer']:.2f} %  "
            f"folds {res['fold_accuracies']}",
            file=sys.stderr,
        )

    labels = [lb for lb, _ in args.model]
    agreement, paired = {}, {}
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            cos = (vecs[x] * vecs[y]).sum(1)
            agreement[f"{x} vs {y}"] = {
                "cosine_mean": round(float(cos.mean()), 5),
                "cosine_min": round(float(cos.min()), 5),
                "cosine_p01": round(float(np.percentile(cos, 1)), 5),
            }
            d = [
                models[x]["fold_accuracies"][k] - models[y]["fold_accuracies"][k]
                for k in range(len(models[x]["fold_accuracies"]))
            ]
            paired[f"{x} - {y}"] = {
                "accuracy_diff_mean": round(float(np.mean(d)), 2),
                "accuracy_diff_std_over_folds": round(float(np.std(d)), 2),
                "fold_diffs": [round(v, 2) for v in d],
                "pairs_right_only_first": int((correct[x] & ~correct[y]).sum()),
                "pairs_right_only_second": int((~correct[x] & correct[y]).sum()),
                "mcnemar_exact_p": round(
                    mcnemar_p(
                        int((correct[x] & ~correct[y]).sum()), int((~correct[x] & correct[y]).sum())
                    ),
                    4,
                ),
                "tar_diff": round(models[x]["tar_at_far_1e-3"] - models[y]["tar_at_far_1e-3"], 2),
                "eer_diff": round(models[x]["eer"] - models[y]["eer"], 2),
            }
            print(
                f"{x} vs {y}: cosine mean {agreement[f'{x} vs {y}']['cosine_mean']:.5f}; "
                f"accuracy diff {np.mean(d):+.2f} (fold std {np.std(d):.2f}); pairs right "
                f"only by {x}: {paired[f'{x} - {y}']['pairs_right_only_first']}, only by {y}: "
                f"{paired[f'{x} - {y}']['pairs_right_only_second']}",
                file=sys.stderr,
            )
    return {
        "protocol": f"LFW View-2 pairs (150x150 crops padded to 250x250), folds {args.folds} "
        f"only ({len(pairs)} pairs); threshold chosen on the other folds of these "
        f"{hi - lo + 1}; TAR@FAR=1e-3 and EER over all {len(pairs)} pairs; "
        "crops detected and aligned once by the int8 detector as "
        "`tools/evaluate.py lfw` does, then embedded by each model",
        "embedder": args.embedder,
        "folds": args.folds,
        "pairs": len(pairs),
        "pairs_per_fold": len(pairs) // (hi - lo + 1),
        "images": len(names),
        "detector": pipe.detector.version,
        "detection_failures": misses,
        "detection_failure_handling": "aligned as if the face filled the 150x150 crop",
        "models": models,
        "embedding_agreement": agreement,
        "paired_differences": paired,
        "threads": args.threads,
    }


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def model_arg(text: str) -> tuple[str, Path]:
    label, _, path = text.partition("=")
    if not path:
        raise argparse.ArgumentTypeError("expected LABEL=PATH")
    return label, Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ph = sub.add_parser("photos", help="cut the non-LFW calibration faces out (outside the repo)")
    ph.add_argument("--shared", type=Path, default=SHARED)
    ph.add_argument("--out", type=Path, required=True)
    ph.add_argument("--list", type=Path, required=True)
    cmp = sub.add_parser("compare", help="LFW folds 6-10 accuracy of each model")
    cmp.add_argument("--lfw", type=Path, default=SHARED / "lfw")
    cmp.add_argument(
        "--model",
        type=model_arg,
        action="append",
        required=True,
        help="LABEL=PATH of an embedder .tflite (repeat; the first two are "
        "the calibrations compared)",
    )
    cmp.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="manifest entry giving input size, normalisation and output",
    )
    cmp.add_argument("--folds", default="6-10")
    cmp.add_argument(
        "--pairs-per-fold",
        type=int,
        help="only the first N/2 same and N/2 different pairs of each fold (a shorter run)",
    )
    cmp.add_argument("--threads", type=int, default=2)
    cmp.add_argument("--cache", type=Path, default=ROOT / "build" / "eval" / "calibration_compare")
    cmp.add_argument(
        "--json", type=Path, default=ROOT / "build" / "eval" / "calibration_compare.json"
    )
    args = p.parse_args(argv)
    if args.cmd == "photos":
        args.shared_label = "../shared/data"
        return run_photos(args)
    result = run_compare(args)
    text = json.dumps(result, indent=2)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
