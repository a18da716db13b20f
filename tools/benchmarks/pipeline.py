"""pipeline: every system (ours int8, fused and float, face_recognition, MTCNN + Keras
FaceNet) on the same 640x480 frames; per-stage and end-to-end timings at 1 thread and
at all cores, the speed ratios, model MAC counts, peak RSS and the last time-to-event."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.identity.matcher import Thresholds
from tools.benchmarks.common import BENCH, ROOT, machine_full, stats
from tools.benchmarks.frames import FRAME_H, FRAME_W, compose_frames, face_patches
from tools.benchmarks.matching import random_matcher
from tools.benchmarks.peak import measure_peak
from tools.benchmarks.peers import run_peer
from tools.benchmarks.prepare import FLOAT_DIR, SYSTEMS
from tools.benchmarks.projection import model_macs
from tools.benchmarks.summary import annotate, cpu_ratios, speed_ratios


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
    # The same in CPU time: on a shared machine the wall time of a frame also holds the
    # time another job had the core, which is nobody's code.
    invokes_cpu = stages["detect_invoke"]["cpu_ms"] + stages["embed_invoke"]["cpu_ms"]
    outside_cpu = 100 * (1 - invokes_cpu / e2e["1"]["cpu_ms"])
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
        "outside_models_share_cpu": round(outside_cpu, 1),
    }


def spread(runs: list[dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    """Per ratio: every run's value, and their min, median and max."""
    out = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if r[key] is not None]
        out[key] = {
            "runs": [r[key] for r in runs],
            "min": min(vals) if vals else None,
            "median": round(float(np.median(vals)), 2) if vals else None,
            "max": max(vals) if vals else None,
        }
    return out


def bench_pipeline(
    repeats: int,
    peer_repeats: int,
    plan: dict[str, dict[str, Any]],
    lfw: Path | None,
    runs: int = 1,
) -> dict[str, Any]:
    """Every system `plan` (prepare.prepare) lets run on the same frames, at 1 thread and
    at all cores; the others are recorded with the reason they were skipped.

    `runs` times over, each run every system in turn (so a load change on a shared
    machine falls on all of them alike): the ratios move by 20% or more between runs
    here, so one run's ratio says little. `systems` and `ratios` are the run with the
    median fused-vs-face_recognition ratio; `ratio_spread` has every run's."""
    import subprocess

    from appliance.vision.pipeline import FacePipeline

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    probe = FacePipeline.load(threads=1)
    frames = compose_frames(face_patches(probe, lfw))
    timed: dict[str, Any] = {
        "appliance_int8": lambda t, npz: bench_appliance(frames, t, repeats),
        "appliance_fused": lambda t, npz: bench_appliance(frames, t, repeats, embedder="fused"),
        "appliance_float": lambda t, npz: bench_appliance(frames, t, repeats, FLOAT_DIR),
        "face_recognition": lambda t, npz: run_peer("face_recognition", npz, t, peer_repeats),
        "classic": lambda t, npz: run_peer(
            "classic", npz, t, peer_repeats, Path(plan["classic"].get("h5", ""))
        ),
    }
    every: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "frames.npz"
        np.savez(npz, **{str(k): v for k, v in frames.items()})
        for k in range(runs):
            print(f"bench: pipeline run {k + 1} of {runs}", flush=True)
            systems: dict[str, dict[str, Any]] = {name: {} for name in SYSTEMS}
            for t in thread_counts:
                for name in SYSTEMS:
                    systems[name][f"threads_{t}"] = (
                        timed[name](t, npz)
                        if plan[name]["run"]
                        else {"error": f"skipped: {plan[name]['reason']}"}
                    )
            every.append(systems)
    per_run = [speed_ratios(s) for s in every]
    order = sorted(range(runs), key=lambda k: per_run[k]["fused_vs_face_recognition"] or 0.0)
    systems = every[order[runs // 2]]
    skipped = {n: p["reason"] for n, p in plan.items() if not p["run"]}
    for name in SYSTEMS:  # planned, but failed while it ran (in any of the runs)
        errors = [r["error"] for s in every for r in s[name].values() if "error" in r]
        if plan[name]["run"] and errors:
            skipped[name] = f"failed: {errors[0]}"
    peak = measure_peak()  # what the models' shares of peak are taken against
    rss = json.loads(
        subprocess.run(
            [sys.executable, str(BENCH), "rss-probe"],
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

    ratios = per_run[order[runs // 2]]
    tte_path = ROOT / "build" / "bench" / "time-to-event.json"
    tte: dict[str, Any] = {
        "p50": None,
        "p95": None,
        "note": "run `tools/bench.py time-to-event` first",
    }
    if tte_path.is_file():
        tte_runs = json.loads(tte_path.read_text())["time_to_event"]
        t = tte_runs.get("visits") or tte_runs.get("clip") or {}
        if t.get("appearances"):
            tte = {
                "p50": round(t["p50_s"] * 1e3),
                "p95": round(t["p95_s"] * 1e3),
                "appearances": t["appearances"],
                "what": t["source"],
                "source": str(tte_path.relative_to(ROOT)),
            }
        if tte_runs.get("clip", {}).get("appearances"):
            c = tte_runs["clip"]
            tte["real_clip"] = {
                "p50": round(c["p50_s"] * 1e3),
                "p95": round(c["p95_s"] * 1e3),
                "appearances": c["appearances"],
                "what": c["source"],
            }
    idle_path = ROOT / "build" / "bench" / "idle.json"  # `tools/bench.py idle`, if run
    idle: dict[str, Any] = {"note": "run `tools/bench.py idle` first"}
    if idle_path.is_file():
        i = json.loads(idle_path.read_text())["idle"]
        idle = {k: i.get(k) for k in ("idle_cpu_percent", "slices_percent", "source")}
        idle["from"] = str(idle_path.relative_to(ROOT))
    one = systems["appliance_int8"]["threads_1"]
    return annotate(
        {
            "machine": machine_full(),
            "versions": library_versions(),
            "systems_run": [n for n in SYSTEMS if n not in skipped],
            "systems_skipped": skipped,
            "thread_counts": thread_counts,
            "repeats": repeats,
            "peer_repeats": peer_repeats,
            "frame": f"{FRAME_W}x{FRAME_H} BGR, faces 160 px patches, gradient background",
            "embedder": probe.embedder.spec.name,
            "macs": macs,
            "host_peak_measured": peak,
            "systems": systems,
            "ratios": ratios,
            "rss_mb": rss["rss_mb"],
            "rss_probe": rss,
            "outside_models_share": one["outside_models_share"],
            "outside_models": {
                name: {
                    "wall": systems[system]["threads_1"].get("outside_models_share"),
                    "cpu": systems[system]["threads_1"].get("outside_models_share_cpu"),
                }
                for name, system in (("facenet", "appliance_int8"), ("fused", "appliance_fused"))
            },
            "runs": runs,
            "ratio_spread": spread(per_run),
            "cpu_ratio_spread": spread([cpu_ratios(s) for s in every]),
            "time_to_event_ms": tte,
            "idle": idle,
            "note": "median over repeated runs after warm-up; min/max beside it. "
            "Shared machine: see machine.load_average before trusting small gaps.",
        }
    )
