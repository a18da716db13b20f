#!/usr/bin/env python3
"""Accuracy on real photos with the standard protocols, through the product's own pipeline.

    tools/evaluate.py lfw --data ../shared/data/lfw [--embedder NAME] [--float] [--flip]
        [--detector NAME] [--align auto|mesh|detector] [--pad PX] [--workers N] --json OUT
    .venv-bench/bin/python tools/evaluate.py lfw --data ../shared/data/lfw \
        --embedder face_recognition [--workers N] --json build/eval/lfw_face_recognition.json
    tools/evaluate.py detection --data ../shared/data/detection [--detector NAME] [--float]
        [--detector-file F] [--tiles CxR] [--tiles-when-empty] [--composed N] --json OUT
    tools/evaluate.py identify --data ../shared/data/lfw [--write-calibration] --json OUT
    tools/evaluate.py identify --data ../shared/data/scenes/examples/knn_examples --json OUT
    tools/evaluate.py lfw-detection --data ../shared/data/lfw [--float] --json OUT
    tools/evaluate.py enrol-crops --data ../shared/data/lfw [--limit N] [--grey] --json OUT
    tools/evaluate.py gates --data ../shared/data/lfw [--embedder NAME] --json OUT
    tools/evaluate.py liveness --data ../shared/data/liveness [--fps 6] [--visit-s 1.5] --json OUT

liveness: attack_accept (APCER) per attack type and bona_fide_reject (BPCER) per visit,
real recordings and simulations apart, tune and report people apart, with the device's
face mesh and `liveness` settings (tools/liveness_eval.py says how visits are made).

lfw: LFW View-2, all 6,000 pairs in 10 folds; each fold's threshold is chosen on the
other nine. Each 150x150 crop is padded to 250x250 (black), detected, aligned and
embedded exactly as the device does. A crop where no face is found is aligned as if the
face filled the crop (the LFW crops are centred faces), and counted. `--detector` and
`--align` pick the detector and what aligns its faces (auto: its keypoints, else the
face mesh; mesh: the mesh on any detector's box); `--pad 100` suits SSD-MobileNet, which
misses faces that fill its input. `lfw` and `identify` share one embedding cache per
embedder, detector, alignment and padding (build/eval), over `--workers` processes.
`--embedder face_recognition` runs the benchmark peer (dlib's HOG + ResNet, in
.venv-bench only) through the same pairs, padding, miss rule and folds.

detection: recall and precision at IoU >= 0.5 against dlib's hand-drawn boxes in
testing.xml and training.xml (the quantiser does not calibrate on these), and with
`--composed N` on N composed small-face frames (`composed_frames`: real LFW faces pasted
at 10-120 px widths into the dlib photos at 640x480 and 1280x720). Recall by face width
(<20, 20-40, 40-80, >=80 px), precision, and ms per frame at `--threads`.
`--detector` is blazeface or ssd_mobilenet; `--detector-file` a rebuild of its model at
another input size (tools/quantize.py --ssd-size); `--tiles 2x2` runs it on tiles too.

lfw-detection: the detector alone on every LFW image the pairs use, padded as `lfw`
pads it; a miss is counted exactly as `lfw` counts a detection failure (no face at all),
so int8 and float can be compared without running an embedder.

enrol-crops: enrolment straight from the unpadded 150x150 crops (a face filling the
photo, like an ID photo), through the product's gates with their default settings: the
share accepted when the detector looks once ("before") and with the photo routes' second
look with a border (`FacePipeline.photo_faces`, "after"), and each refusal code's count.
`--limit N` takes N crops spread evenly over the sorted file list; `--grey` makes them grey.

gates: what each enrolment gate buys (tools/gates_eval.py): LFW pairs split into bands
by the quality of the pair's worse photo, TAR at FAR 1e-3 and mean genuine cosine per band.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from appliance.vision import detectors  # noqa: E402
from appliance.vision.align import ARCFACE_112, align  # noqa: E402
from appliance.vision.detect import Detection  # noqa: E402
from appliance.vision.imageio import read_image  # noqa: E402
from appliance.vision.pipeline import (  # noqa: E402
    DEFAULT_EMBEDDER,
    FacePipeline,
    load_manifest,
    with_border,
)
from appliance.vision.quality import Quality, measure  # noqa: E402
from appliance.vision.similarity import l2_normalize  # noqa: E402

FLOAT_DIR = ROOT / "build" / "float-models"
ALIGN_HELP = "auto: the detector's keypoints, else the face mesh; mesh: the mesh on any box"
PAD = 50


def read_pairs(path: Path) -> tuple[list[tuple[str, str, bool]], int, int]:
    lines = path.read_text().split("\n")
    n_folds, n = map(int, lines[0].split())
    pairs = []
    for line in lines[1 : 1 + n_folds * 2 * n]:
        p = line.split()
        if len(p) == 3:
            pairs.append((f"{p[0]}_{int(p[1]):04d}.jpg", f"{p[0]}_{int(p[2]):04d}.jpg", True))
        else:
            pairs.append((f"{p[0]}_{int(p[1]):04d}.jpg", f"{p[2]}_{int(p[3]):04d}.jpg", False))
    return pairs, n_folds, 2 * n


def fallback_detection(size: int, pad: int = PAD) -> Detection:
    """A face filling the unpadded crop: the 112 template scaled onto it, for misses."""
    crop = size - 2 * pad
    kps = np.zeros((6, 2), np.float32)
    pts = ARCFACE_112 * (crop / 112.0) + pad
    kps[[0, 1, 2, 3]] = pts
    return Detection(np.array([pad, pad, pad + crop, pad + crop], np.float32), kps, 0.0)


def padded(path: Path, pad: int = PAD) -> np.ndarray:
    """An LFW crop with the black border every LFW evaluation here adds (the product's own
    `with_border`, which the photo routes use when they find no face)."""
    return with_border(read_image(path), pad)


def lfw_face(pipe: FacePipeline, path: Path, pad: int = PAD) -> tuple[np.ndarray, Detection, bool]:
    """(aligned crop, detection, found) for one LFW image: the face nearest the centre,
    or the fixed LFW box when the detector finds none. `--pad 100` for SSD-MobileNet:
    at 512 px it misses 15 of 193 LFW crops padded by 50 (the face too large for it) and
    none padded by 100."""
    img = padded(path, pad)
    dets = pipe.detect(img)
    if dets:
        c = np.array(img.shape[1::-1], np.float32) / 2
        d = min(dets, key=lambda d: float(np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - c)))
    else:
        d = fallback_detection(img.shape[0], pad)
    emb = pipe.embedder
    return align(img, d.keypoints, emb.template, emb.spec.size), d, bool(dets)


def lfw_crops(pipe: FacePipeline, images: list[Path]) -> tuple[np.ndarray, int]:
    """The aligned crop of each image (the face nearest the centre), and the misses."""
    faces = [lfw_face(pipe, p) for p in images]
    return np.stack([c for c, _, _ in faces]), sum(not found for _, _, found in faces)


_WORKER: dict[str, Any] = {}


def pipeline_kwargs(args: argparse.Namespace, flip: bool = False) -> dict[str, Any]:
    """`FacePipeline.load` arguments of an LFW run: embedder, detector, alignment."""
    return {
        "embedder": args.embedder,
        "threads": args.threads,
        "flip": flip,
        "float_models_dir": FLOAT_DIR if args.float else None,
        "detector": args.detector,
        "align": args.align,
    }


def _worker_init(kwargs: dict[str, Any], pad: int) -> None:
    """Each worker loads its own pipeline (no interpreter is shared across a fork)."""
    _WORKER["pipe"], _WORKER["pad"] = FacePipeline.load(**kwargs), pad


def _embed_chunk(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain and mirrored embeddings and the device's quality figures of a few LFW images
    (appliance.vision.quality; a face the detector missed gets score 0)."""
    pipe: FacePipeline = _WORKER["pipe"]
    faces = [lfw_face(pipe, p, _WORKER["pad"]) for p in paths]
    crops = np.stack([c for c, _, _ in faces])
    q = [(measure(d, c), found) for c, d, found in faces]
    rows = [(x.score if f else 0.0, x.eye_distance, x.blur, x.yaw, x.pitch, x.roll) for x, f in q]
    mirror = pipe.embedder.embed(np.ascontiguousarray(crops[:, :, ::-1]))
    return pipe.embedder.embed(crops), mirror, np.array(rows, np.float32)


def embed_images(
    args: argparse.Namespace, paths: list[Path], flip: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain, mirrored, quality rows) of every image, over `--workers` processes."""
    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    kwargs = pipeline_kwargs(args, flip)
    with contextlib.ExitStack() as stack:
        if args.workers > 1:
            ctx = mp.get_context("spawn")
            pool = stack.enter_context(ctx.Pool(args.workers, _worker_init, (kwargs, args.pad)))
            results = pool.imap(_embed_chunk, chunks)
        else:
            _worker_init(kwargs, args.pad)
            results = map(_embed_chunk, chunks)
        plain, mirror, rows = zip(*results, strict=True)
    return np.concatenate(plain), np.concatenate(mirror), np.concatenate(rows)


QUALITY_COLUMNS = ("score", "eye_distance", "blur", "yaw", "pitch", "roll")


def quality_of(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The quality figures by name, `frontal` made from the pose as the device makes it
    (the cache keeps the pose, so a change to `Quality.frontal` applies at once)."""
    out = {k: rows[:, i] for i, k in enumerate(QUALITY_COLUMNS)}
    out["frontal"] = np.array(
        [Quality(0.0, 0.0, 0.0, *map(float, r[3:6])).frontal for r in rows], np.float32
    )
    return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (midpoints between scores)."""
    s = np.sort(np.unique(scores))
    cands = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    acc = [((scores >= t) == same).mean() for t in cands]
    return float(cands[int(np.argmax(acc))])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    neg = np.sort(scores[~same])[::-1]
    k = int(np.floor(far * len(neg)))  # false accepts allowed
    thr = neg[k] + 1e-7 if k < len(neg) else neg[-1]
    return float((scores[same] >= thr).mean()), float(thr)


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    ts = np.sort(np.unique(scores))
    frr = np.array([(scores[same] < t).mean() for t in ts])
    far = np.array([(scores[~same] >= t).mean() for t in ts])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def lfw_protocol(
    scores: np.ndarray, pairs: list[tuple[str, str, bool]], n_folds: int, per_fold: int
) -> dict[str, Any]:
    """The 10-fold figures from one score per pair (higher = more alike): each fold's
    threshold is chosen on the other nine; TAR at FAR 1e-3 and EER on all pairs."""
    same = np.array([p[2] for p in pairs])
    return cross_validate(scores, same, np.repeat(np.arange(n_folds), per_fold))[0]


def cross_validate(
    scores: np.ndarray, same: np.ndarray, fold: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    """Leave-one-fold-out accuracy (threshold on the other folds), TAR at FAR 1e-3 and EER
    over all pairs; also each pair's decision under its fold's threshold."""
    accs, thrs = [], []
    correct = np.zeros(len(scores), bool)
    for k in np.unique(fold):
        t = best_threshold(scores[fold != k], same[fold != k])
        m = fold == k
        correct[m] = (scores[m] >= t) == same[m]
        accs.append(correct[m].mean())
        thrs.append(t)
    tar, tar_thr = tar_at_far(scores, same, 1e-3)
    return {
        "accuracy_mean": round(100 * float(np.mean(accs)), 2),
        "accuracy_std": round(100 * float(np.std(accs)), 2),
        "fold_accuracies": [round(100 * float(x), 2) for x in accs],
        "tar_at_far_1e-3": round(100 * tar, 2),
        "threshold_at_far_1e-3": round(tar_thr, 4),
        "eer": round(100 * eer(scores, same), 2),
        "threshold": round(float(np.mean(thrs)), 4),
    }, correct


def run_lfw(args: argparse.Namespace) -> dict[str, Any]:
    if args.embedder in PEERS:
        return run_lfw_peer(args)
    pairs, n_folds, per_fold = read_pairs(args.data / "pairs.txt")
    names = sorted({a for a, _, _ in pairs} | {b for _, b, _ in pairs})
    t0 = time.perf_counter()
    files, variants, misses, _ = lfw_embeddings(args)
    vecs = variants["flip" if args.flip else "plain"]
    index = {n: i for i, n in enumerate(files)}
    a = vecs[[index[p[0]] for p in pairs]]
    b = vecs[[index[p[1]] for p in pairs]]
    scores = (a * b).sum(1)
    elapsed = time.perf_counter() - t0
    return {
        "protocol": f"LFW View-2 pairs (150x150 crops, a {args.pad}-px black border), 10-fold",
        "embedder": args.embedder,
        "detector": args.detector,
        "aligned_by": detectors.alignment(args.detector, args.align),
        "precision": "float" if args.float else "int8",
        "flip": args.flip,
        "pairs": len(pairs),
        "images": len(names),
        **lfw_protocol(scores, pairs, n_folds, per_fold),
        "detection_failures": misses,
        "detection_failure_handling": "aligned as if the face filled the 150x150 crop",
        "pairs_per_s": round(len(pairs) / elapsed, 1),
        "images_per_s": round(len(names) / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "threads": args.threads,
        "workers": args.workers,
    }


# ---------------------------------------------------------------- comparison models
# Benchmark peers, never product dependencies: they are imported only when chosen with
# `lfw --embedder NAME`, and run in .venv-bench (see requirements-bench.txt).
PEERS = ("face_recognition",)


def nearest_centre(boxes: list[np.ndarray], size: tuple[int, int]) -> int:
    """Index of the box (x0, y0, x1, y1) whose centre is nearest the image centre: the
    face `lfw_crops` keeps for our own models."""
    c = np.array(size, np.float32) / 2
    return int(np.argmin([np.linalg.norm((b[:2] + b[2:]) / 2 - c) for b in boxes]))


def face_recognition_encoder() -> tuple[Any, dict[str, str]]:
    """face_recognition as bench.py's peer runs it: HOG with upsample 1 on the padded
    image, the face nearest the centre, 5-point landmarks and dlib's ResNet descriptor
    (one jitter). A miss is encoded from the unpadded crop's box, the counterpart of
    `fallback_detection`. Returns (image -> (128-d encoding, found), versions)."""
    from importlib import metadata

    import face_recognition as fr

    def encode(img: np.ndarray) -> tuple[np.ndarray, bool]:
        locs = fr.face_locations(img, number_of_times_to_upsample=1, model="hog")
        if locs:  # (top, right, bottom, left)
            boxes = [
                np.array([left, top, right, bottom], np.float32)
                for top, right, bottom, left in locs
            ]
            loc = locs[nearest_centre(boxes, img.shape[1::-1])]
        else:
            h, w = img.shape[:2]
            loc = (PAD, w - PAD, h - PAD, PAD)
        enc = fr.face_encodings(img, [loc], num_jitters=1, model="small")
        return np.asarray(enc[0], np.float64), bool(locs)

    versions = {
        d: metadata.version(d) for d in ("dlib-bin", "face-recognition", "face-recognition-models")
    }
    return encode, versions


_PEER: dict[str, Any] = {}


def _peer_encode(path: Path) -> tuple[np.ndarray, bool]:
    return _PEER["encode"](padded(path))


def run_lfw_peer(args: argparse.Namespace) -> dict[str, Any]:
    """LFW with a comparison model on exactly our protocol: the same pairs, padding,
    nearest-centre face, miss handling and 10-fold thresholds. The pair score is minus
    the Euclidean distance between encodings (face_recognition's `face_distance`);
    thresholds are reported as distances (same person when the distance is below)."""
    if args.flip or args.float:
        raise SystemExit("evaluate: --flip and --float apply to our own models only")
    encode, versions = face_recognition_encoder()
    _PEER["encode"] = encode
    pairs, n_folds, per_fold = read_pairs(args.data / "pairs.txt")
    names = sorted({a for a, _, _ in pairs} | {b for _, b, _ in pairs})
    paths = [args.data / "images" / n for n in names]
    t0 = time.perf_counter()
    vecs, missed = [], []
    with contextlib.ExitStack() as stack:
        if args.workers > 1:  # forked after the models load; each image is independent
            pool = stack.enter_context(mp.get_context("fork").Pool(args.workers))
            results = pool.imap(_peer_encode, paths, chunksize=8)
        else:
            results = map(_peer_encode, paths)
        for i, (n, (v, found)) in enumerate(zip(names, results, strict=True)):
            vecs.append(v)
            if not found:
                missed.append(n)
            if (i + 1) % 500 == 0:
                rate = (i + 1) / (time.perf_counter() - t0)
                print(
                    f"{i + 1}/{len(names)} images, {rate:.1f}/s, {len(missed)} without a face",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.perf_counter() - t0
    index = {n: i for i, n in enumerate(names)}
    m = np.stack(vecs)
    dist = np.linalg.norm(m[[index[p[0]] for p in pairs]] - m[[index[p[1]] for p in pairs]], axis=1)
    res = lfw_protocol(-dist, pairs, n_folds, per_fold)
    for k in ("threshold", "threshold_at_far_1e-3"):
        res[k] = round(-res[k], 4)
    return {
        "protocol": "LFW View-2 pairs (150x150 crops padded to 250x250), 10-fold",
        "embedder": args.embedder,
        "model": "dlib HOG detector (upsample 1) + 5-point landmarks + ResNet descriptor "
        "(face_recognition.face_encodings, 1 jitter)",
        "precision": "float",
        "flip": False,
        "score": "Euclidean distance between 128-d encodings; same person below the "
        "threshold (face_recognition's default tolerance is 0.6)",
        "pairs": len(pairs),
        "images": len(names),
        **res,
        "detection_failures": len(missed),
        "detection_failure_handling": "encoded from the box of the unpadded 150x150 crop "
        "(the face assumed to fill it)",
        "missed": missed,
        "pairs_per_s": round(len(pairs) / elapsed, 1),
        "images_per_s": round(len(names) / elapsed, 2),
        "threads": 1,
        "workers": args.workers,
        "versions": versions,
    }


def lfw_embeddings(
    args: argparse.Namespace,
) -> tuple[list[str], dict[str, np.ndarray], int, dict[str, np.ndarray]]:
    """Plain and flip-summed embeddings and the quality figures of every LFW image,
    cached per embedder, detector and alignment."""
    files = sorted(p.name for p in (args.data / "images").glob("*.jpg"))
    tag = pipeline_tag(args) + ("-float" if args.float else "")
    cache = ROOT / "build" / "eval" / f"lfw_embeddings_{tag}.npz"
    if cache.exists():
        z = np.load(cache)
        if list(z["files"]) == files and z["quality"].shape[1] == len(QUALITY_COLUMNS):
            variants = {"plain": z["plain"], "flip": z["flip"]}
            return files, variants, int(z["misses"]), quality_of(z["quality"])
    t0 = time.perf_counter()
    p, mirror, rows = embed_images(args, [args.data / "images" / f for f in files])
    print(f"embedded {len(files)} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    f = l2_normalize(p + mirror)
    misses = int((rows[:, 0] == 0).sum())
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, files=np.array(files), plain=p, flip=f, misses=misses, quality=rows)
    return files, {"plain": p, "flip": f}, misses, quality_of(rows)


def pipeline_tag(args: argparse.Namespace) -> str:
    """Embedder version, detector model version and alignment, without loading models."""
    from appliance.vision.pipeline import embedder_version

    d = detectors.info(args.detector)
    sha = load_manifest()["models"][d.manifest_key]["sha256"][:12]
    aligned = detectors.alignment(args.detector, args.align)
    return f"{embedder_version(args.embedder)}-{d.name}-{sha}-{aligned}-pad{args.pad}"


def run_identify(args: argparse.Namespace) -> dict[str, Any]:
    if (args.data / "train").is_dir():
        return run_identify_folders(args)
    import identify_eval

    t0 = time.perf_counter()
    files, variants, misses, quality = lfw_embeddings(args)
    result = identify_eval.run(variants, files, quality)
    result.update(
        {
            "protocol": identify_eval.__doc__.strip().split("\n\n")[1],
            "embedder": args.embedder,
            "detector": args.detector,
            "aligned_by": detectors.alignment(args.detector, args.align),
            "precision": "float" if args.float else "int8",
            "images": len(files),
            "detection_failures": misses,
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "workers": args.workers,
        }
    )
    if args.write_calibration:
        write_calibration(args, files, variants)
    print_identify_table(result)
    return result


def write_calibration(
    args: argparse.Namespace, files: list[str], variants: dict[str, np.ndarray]
) -> None:
    """The open-set curve of `--embedder` into the manifest, with the detector and the
    alignment that made it (the device refuses a calibration of another alignment)."""
    import identify_eval

    embedder = args.embedder
    aligned = detectors.alignment(args.detector, args.align)
    made_by = {"detector": args.detector, "aligned_by": aligned}
    path = ROOT / "models" / "manifest.json"
    manifest = json.loads(path.read_text())
    split = identify_eval.make_split(files, 2)
    src = (
        f"LFW pairs images (150x150 crops): {len(split.strangers)} single-image "
        f"identities against {len(split.people)} people enrolled with 2 photos each"
    )
    if aligned != "blazeface":
        src += f", through {args.detector} aligned by {aligned}, {args.pad}-px border"
    from appliance.identity.thresholds import calibration_key

    manifest["models"][embedder][calibration_key(aligned)] = {
        v: {**identify_eval.device_calibration(vecs, split, source=src), **made_by}
        for v, vecs in variants.items()
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote the open-set calibration of {embedder} to {path}", file=sys.stderr)


def print_identify_table(result: dict[str, Any]) -> None:
    cols = ("correct_accept", "wrong_person_accept", "stranger_accept", "false_reject")

    def row(variant: str, entry: str, label: str, cells: list[Any], tail: Any) -> None:
        print(
            f"{variant:8} {entry:18} {label:22} "
            + " ".join(f"{c:>20}" for c in cells)
            + f"  {tail}",
            file=sys.stderr,
        )

    row("variant", "entry", "mode (target)", list(cols), "thresholds")
    for variant, res in result["variants"].items():
        for entry, modes in res.items():
            for mode in ("access", "attendance"):
                r = modes[mode]
                label = f"{mode} ({r['target_stranger_accept']}%)"
                row(variant, entry, label, [r[c] for c in cols], r["thresholds"])
    for weight, res in result.get("quality_weighting", {}).items():
        for entry, r in res.items():
            label = f"{weight[:22]} ({r['target_stranger_accept']}%)"
            row("qweight", entry, label, [r[c] for c in cols], r["thresholds"][:2])


def run_identify_folders(args: argparse.Namespace) -> dict[str, Any]:
    """Enrol train/<name>/*, identify every face of test/*: the tutorials' knn layout."""
    import tempfile

    from appliance.config.schema import Config, EnrolmentConfig, StorageConfig
    from appliance.identity.recogniser import Recogniser

    with tempfile.TemporaryDirectory() as tmp:
        # Tutorial photos are small; keep the gates but accept the small faces they have.
        cfg = Config(
            storage=StorageConfig(tmp),
            enrolment=EnrolmentConfig(min_eye_distance=15.0, min_frontal=0.3),
        )
        svc = Recogniser.open(cfg, FacePipeline.load(embedder=args.embedder, threads=args.threads))
        enrolled, refused = {}, {}
        for d in sorted((args.data / "train").iterdir()):
            ok = 0
            for img in sorted(d.iterdir()):
                try:
                    svc.enrol(d.name, [img], "file", "evaluate", force=True, largest=True)
                    ok += 1
                except Exception as exc:
                    refused[f"{d.name}/{img.name}"] = str(exc)
            enrolled[d.name] = ok
        th = svc.thresholds()
        rows = []
        for img in sorted((args.data / "test").iterdir()):
            found = [i.as_dict() for i in svc.identify(read_image(img))]
            rows.append({"image": img.name, "faces": found})
            for f in found or [None]:
                desc = (
                    (
                        f"{f['person']:<16} cosine {f['score']:.3f} margin {f['margin']:.3f} "
                        f"(best {f['candidate']})"
                    )
                    if f
                    else "no face"
                )
                print(f"{img.name:28} {desc}", file=sys.stderr)
        svc.close()
    return {"enrolled": enrolled, "refused": refused, "thresholds": th.as_dict(), "results": rows}


def run_enrol_crops(args: argparse.Namespace) -> dict[str, Any]:
    from collections import Counter

    from appliance.config.schema import EnrolmentConfig
    from appliance.identity.gates import EnrolmentRefused, check_gates, pick_face

    pipe = FacePipeline.load(embedder=args.embedder, threads=args.threads)
    every = sorted((args.data / "images").glob("*.jpg"))
    step = max(1, len(every) // args.limit)
    files = every[::step][: args.limit]
    gates = EnrolmentConfig()
    counts: dict[str, Counter[str]] = {"before": Counter(), "after": Counter()}
    refused: dict[str, str] = {}
    for f in files:
        img = read_image(f)
        if args.grey:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        for when, look in (("before", pipe.faces), ("after", pipe.photo_faces)):
            try:
                check_gates(pick_face(look(img, embed=False), photo=when == "after"), gates)
                counts[when]["accepted"] += 1
            except EnrolmentRefused as exc:
                counts[when][exc.code] += 1
                if when == "after":
                    refused[f.name] = f"{exc.code}: {exc.reason}"
    n = len(files)

    def share(c: Counter[str]) -> dict[str, Any]:
        return {
            "accepted_percent": round(100 * c["accepted"] / max(n, 1), 1),
            "face_found_percent": round(100 * (n - c["no_face"]) / max(n, 1), 1),
            "codes": dict(sorted(c.items())),
        }

    return {
        "protocol": f"enrolment from unpadded LFW 150x150 crops (every {step}th of the "
        f"{len(every)} sorted files), default enrolment gates ({gates})",
        "grey": args.grey,
        "images": n,
        "before": share(counts["before"]),
        "after": share(counts["after"]),
        "refused_after": refused,
    }


def run_gates(args: argparse.Namespace) -> dict[str, Any]:
    import gates_eval

    from appliance.config.schema import EnrolmentConfig

    files, variants, _, quality = lfw_embeddings(args)
    pairs, _, _ = read_pairs(args.data / "pairs.txt")
    g = EnrolmentConfig()
    defaults = {
        "score": g.min_score,
        "eye_distance": g.min_eye_distance,
        "blur": g.min_blur,
        "frontal": g.min_frontal,
    }
    result = gates_eval.run(variants["plain"], files, quality, pairs, defaults)
    result["embedder"] = args.embedder
    gates_eval.print_table(result)
    return result


def run_detection(args: argparse.Namespace) -> dict[str, Any]:
    import detection_eval

    return detection_eval.run_detection(args)


def run_lfw_detection(args: argparse.Namespace) -> dict[str, Any]:
    import detection_eval

    return detection_eval.run_lfw_detection(args)


def run_liveness(args: argparse.Namespace) -> dict[str, Any]:
    """--data is the shared `liveness/` folder (or the data root above it); the Hamilton
    clip is read from `scenes/examples` beside it."""
    import logging

    import liveness_eval

    from appliance.config.schema import load as load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress on stderr
    if (args.data / "nuaa").is_dir():
        args.data = args.data.parent
    args.config = load_config(args.config)
    return liveness_eval.run(args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lfw = sub.add_parser("lfw", help="LFW View-2 verification")
    lfw.add_argument("--flip", action="store_true", help="add the mirrored face's embedding")

    det = sub.add_parser("detection", help="detector recall/precision")
    det.add_argument("--composed", type=int, default=0, help="composed small-face frames")
    det.add_argument(
        "--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw", help="LFW folder"
    )
    ide = sub.add_parser("identify", help="open-set identification (LFW, or train/ + test/)")
    ide.add_argument(
        "--write-calibration",
        action="store_true",
        help="store the measured open-set curve in models/manifest.json",
    )
    gates = sub.add_parser("gates", help="LFW pairs by the quality of the worse photo")
    lfw_det = sub.add_parser("lfw-detection", help="detector misses on the padded LFW images")
    lfw_det.add_argument("--tight", action="store_true", help="the crops without the border")
    lfw_det.add_argument("--limit", type=int, default=0, help="images to try (spread evenly)")
    for s in (lfw, ide, gates):
        s.add_argument("--workers", type=int, default=1, help="processes embedding images")
        s.add_argument("--align", default="auto", choices=detectors.ALIGN_CHOICES, help=ALIGN_HELP)
        s.add_argument("--pad", type=int, default=PAD, help="black border around each crop, px")
    for s in (lfw, det, ide, lfw_det, gates):
        s.add_argument("--detector", default="blazeface", choices=sorted(detectors.DETECTORS))
    for s in (det, lfw_det):
        s.add_argument("--detector-file", type=Path, help="the detector's model from this file")
        s.add_argument("--score-threshold", type=float, default=0.5)
        s.add_argument("--tiles", help="also run on a grid of tiles, e.g. 2x2")
        s.add_argument(
            "--tiles-when-empty", action="store_true", help="tiles only when the frame finds none"
        )
    crops = sub.add_parser("enrol-crops", help="enrolment from unpadded LFW crops, default gates")
    crops.add_argument("--limit", type=int, default=300, help="crops to try (spread evenly)")
    crops.add_argument("--grey", action="store_true", help="make the crops grey first")
    live = sub.add_parser("liveness", help="presentation-attack rates (tools/liveness_eval.py)")
    live.add_argument("--fps", type=float, default=6.0, help="frames processed per second")
    live.add_argument("--visit-s", type=float, default=1.5, help="seconds per visit")
    live.add_argument("--limit", type=int, default=0, help="visits to measure (spread evenly)")
    live.add_argument("--no-sim", action="store_true", help="real recordings only")
    live.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    live.add_argument(
        "--target", type=float, default=3.0, help="bona_fide_reject %% the tuned cues may cost"
    )
    for s in (lfw, det, ide, lfw_det, crops, gates, live):
        s.add_argument("--data", type=Path, required=True)
        s.add_argument(
            "--embedder",
            default=DEFAULT_EMBEDDER,
            help="facenet, mobilefacenet; lfw also takes face_recognition "
            "(a comparison model, .venv-bench only)",
        )
        s.add_argument(
            "--float",
            action="store_true",
            help=f"use the float models from {FLOAT_DIR.relative_to(ROOT)}",
        )
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)
    if not args.data.exists():
        print(f"evaluate: no data at {args.data}", file=sys.stderr)
        return 2
    if args.float and not FLOAT_DIR.exists():
        print(f"evaluate: no float models in {FLOAT_DIR}; run `make models`", file=sys.stderr)
        return 2
    run = {
        "lfw": run_lfw,
        "detection": run_detection,
        "lfw-detection": run_lfw_detection,
        "identify": run_identify,
        "enrol-crops": run_enrol_crops,
        "gates": run_gates,
        "liveness": run_liveness,
    }
    result = run[args.cmd](args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
