"""`tools/evaluate.py liveness`: presentation-attack figures on real and simulated visits.

A *visit* is a run of consecutive frames of one face, as the daemon's tracker sees it:
real recordings are cut into visits of `--visit-s` seconds at `--fps` processed frames a
second (the NUAA frames, every 6th of a webcam's, are taken as they come, `NUAA_FRAMES`
to a visit). Each frame goes through the product's own detector and landmark stage
(largest face), and each visit through `appliance.liveness.verdict`, so the figures are
those of the device's code with the device's settings.

Real data (`--data`, the shared `liveness/` folder, and the Hamilton clip beside it in
`scenes/examples`): NUAA live and print sessions (subjects 1-9), live and replay phone
videos, the ASL webcam and GRID talking-head clips. Simulated attacks, made from the
bona fide material by `tools/presentation_attack.py`'s recapture chain so the print's
paper, the screen's bezel, moire and glare are the same as there: a still face printed
and moved by a hand as a rigid plane (tilting and turning with perspective), the same
still on a phone screen, the head cut out of a print (no paper edge), and a live clip
replayed on a phone screen (the screen moves as a plane, the face inside it moves as the
person did: the hardest case for an RGB camera).

Tuning and reporting are split by person: NUAA subjects 1-4 and the first half of the
bona fide clips (by file name) tune; the rest report. Real attacks and simulations are
reported separately, with the number of visits behind each figure.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.liveness.verdict import LivenessRules, Observation, judge
from appliance.vision.imageio import read_image
from appliance.vision.landmarks import FaceMesh
from appliance.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)

NUAA_FRAMES = 5  # kept NUAA frames (about 0.3 s apart) per visit
TUNE_NUAA = {"0001", "0002", "0003", "0004"}


@dataclass
class Visit:
    source: str  # file or session name
    kind: str  # live | print | screen_photo | screen_video | cutout
    real: bool  # a real recording (not a simulation)
    split: str  # tune | report
    frames: list[np.ndarray]  # RGB uint8
    fps: float


def video_frames(path: Path, fps: float, limit_s: float | None = None) -> list[np.ndarray]:
    """RGB frames of a video resampled to `fps` (nearest frame in time)."""
    cap = cv2.VideoCapture(str(path))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    out: list[np.ndarray] = []
    i, next_t = 0, 0.0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        t = i / src_fps
        if limit_s is not None and t > limit_s:
            break
        if t + 1e-9 >= next_t:
            out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            next_t += 1.0 / fps
        i += 1
    cap.release()
    return out


def chunks(frames: list[np.ndarray], n: int) -> Iterator[list[np.ndarray]]:
    """Consecutive visits of `n` frames (a shorter tail is dropped)."""
    for i in range(0, len(frames) - n + 1, n):
        yield frames[i : i + n]


def half(name: str, names: list[str]) -> str:
    return "tune" if sorted(names).index(name) < len(names) // 2 else "report"


def real_visits(data: Path, fps: float, visit_s: float) -> list[Visit]:
    n = max(2, round(fps * visit_s))
    visits: list[Visit] = []
    nuaa = data / "liveness" / "nuaa"
    for folder, kind in (("ClientRaw", "live"), ("ImposterRaw", "print")):
        sessions: dict[str, list[tuple[int, Path]]] = {}
        for p in sorted((nuaa / folder).glob("*/*.jpg")):
            key, frame = p.stem.rsplit("_", 1)
            sessions.setdefault(key, []).append((int(frame), p))
        for key, items in sorted(sessions.items()):
            paths = [p for _, p in sorted(items)]
            split = "tune" if key[:4] in TUNE_NUAA else "report"
            for c in chunks(paths, NUAA_FRAMES):
                frames = [read_image(p) for p in c]
                visits.append(Visit(f"nuaa/{key}", kind, True, split, frames, 3.3))
    vids = data / "liveness" / "videos"
    for p in sorted(vids.glob("*.mp4")):
        kind = "live" if p.stem.endswith("_live") else "screen_video"
        split = "tune" if p.stem.startswith("person1") else "report"
        for c in chunks(video_frames(p, fps), n):
            visits.append(Visit(f"videos/{p.name}", kind, True, split, c, fps))
    for sub in ("asl", "grid"):
        clips = sorted((data / "liveness" / "bona_fide" / sub).glob("*.m*"))
        names = [c.name for c in clips]
        for p in clips:
            for c in chunks(video_frames(p, fps), n):
                visits.append(Visit(f"{sub}/{p.name}", "live", True, half(p.name, names), c, fps))
    ham = data / "scenes" / "examples" / "short_hamilton_clip.mp4"
    if ham.is_file():
        for c in chunks(video_frames(ham, fps), n):
            visits.append(Visit("scenes/short_hamilton_clip.mp4", "live", True, "report", c, fps))
    return visits


# --- simulated attacks ----------------------------------------------------------------


def _held_quads(
    rng: np.random.Generator, n: int, w: float, h: float, cx: float, cy: float
) -> list[np.ndarray]:
    """Corners of a sheet held by a hand over `n` frames: drifting, tilting in plane,
    and turned about its vertical and horizontal axes (perspective), smoothly."""
    from tools.presentation_attack import Placement, quad

    t = np.linspace(0, 1, n)
    yaw = rng.uniform(-25, 25) * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6))
    pitch = rng.uniform(-15, 15) * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6))
    roll = rng.uniform(-6, 6) + rng.uniform(-5, 5) * t
    dx = rng.uniform(-20, 20) * t
    dy = rng.uniform(-10, 10) * t
    quads = []
    for k in range(n):
        p = Placement(0, cx + dx[k], cy + dy[k], 60.0, 1.0, float(roll[k]))
        c = quad(p, w, h, np.random.default_rng(0), 0.0)
        centre = c.mean(0)
        rel = c - centre
        # perspective from yaw/pitch: the far side shrinks (focal length 2x the width)
        f = 2.0 * w
        ya, pa = np.radians(yaw[k]), np.radians(pitch[k])
        x, y = rel[:, 0], rel[:, 1]
        z = x * np.sin(ya) + y * np.sin(pa)
        x2, y2 = x * np.cos(ya), y * np.cos(pa)
        s = f / (f + z)
        quads.append(np.stack([x2 * s, y2 * s], 1).astype(np.float32) + centre)
    return quads


def _still_face(frame: np.ndarray, pipe: FacePipeline) -> np.ndarray | None:
    """The largest face of a live frame with its surroundings, as a photo to attack with."""
    dets = pipe.detector.detect(frame)
    if not dets:
        return None
    d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    x1, y1, x2, y2 = d.box
    side = 2.0 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    m = np.float32([[1, 0, side / 2 - cx], [0, 1, side / 2 - cy]])
    s = int(side)
    return cv2.warpAffine(frame, m, (s, s), borderMode=cv2.BORDER_REFLECT)


def simulate(
    kind: str, faces: list[np.ndarray], rng: np.random.Generator, n: int
) -> list[np.ndarray]:
    """`n` frames of one simulated attack. `faces` is one photo (print, screen_photo,
    cutout) or a live clip's face crops (screen_video), all square."""
    from tools import presentation_attack as pa

    scene = pa.wall_scene().astype(np.float32)
    cx, cy = pa.W * rng.uniform(0.4, 0.6), pa.H * rng.uniform(0.4, 0.5)
    size = int(rng.uniform(150, 200))  # the held photo's face area, frame pixels
    if kind in ("print", "cutout"):
        sheet = pa.printed(cv2.resize(faces[0], (size, size)), rng, size)
        if kind == "cutout":  # the head cut out along an oval: no paper edge, no thumb
            s = sheet.shape[0]
            alpha = np.zeros((s, s), np.float32)
            cv2.ellipse(alpha, (s // 2, s // 2), (int(s * 0.3), int(s * 0.4)), 0, 0, 360, 1, -1)
            sheet = np.dstack([sheet, alpha])
        layers = [sheet] * n
    else:
        layers = [_screen(cv2.resize(f, (size, size)), rng) for f in faces[:n]]
        layers += [layers[-1]] * (n - len(layers))
    h, w = layers[0].shape[:2]
    quads = _held_quads(rng, n, float(w), float(h), cx, cy)
    out = []
    light = rng.uniform(0.85, 1.1)
    for layer, q in zip(layers, quads, strict=True):
        if layer.shape[2] == 4:
            rgb, a = layer[..., :3], layer[..., 3:]
            frame, mask = pa.paste(scene, rgb * a + scene.mean() * (1 - a), pa.corners(w, h), q)
            amask = pa.paste(np.zeros_like(scene), np.repeat(a, 3, 2), pa.corners(w, h), q)[0]
            frame = scene * (1 - amask) + frame * amask
        else:
            frame, mask = pa.paste(scene, layer, pa.corners(w, h), q)
            frame = pa.shadow(frame, mask, 0.3)
        out.append(pa.camera(frame * light, rng, blur=rng.uniform(0.6, 1.2)))
    return out


def _screen(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone showing `img`: black level, cool white, pixel grid and bezel (one frame)."""
    from tools import presentation_attack as pa

    x = pa.gamma(img.astype(np.float32), 0.85, gain=1.05, lift=10)
    x *= np.array([0.94, 1.0, 1.07], np.float32)
    _, xx = np.mgrid[0 : x.shape[0], 0 : x.shape[1]].astype(np.float32)
    x *= (0.85 + 0.15 * np.cos(2 * np.pi * xx / 2.7) ** 2)[..., None]
    bez = max(4, x.shape[1] // 20)
    phone = np.full((x.shape[0] + 4 * bez, x.shape[1] + 2 * bez, 3), 22, np.float32)
    phone[2 * bez : 2 * bez + x.shape[0], bez : bez + x.shape[1]] = x
    return phone


SIM_VERSION = 1  # bump when `simulate` or `simulated_visits` change what they make
CACHE = Path(__file__).resolve().parent.parent / "build" / "eval"


def cached_simulations(
    data: Path, fps: float, visit_s: float, pipe: FacePipeline, cache: Path = CACHE
) -> list[Visit]:
    """`simulated_visits`, made once and kept in build/eval (gitignored; frames of
    public clips, never committed): the recapture chain costs more than measuring."""
    path = cache / f"liveness_sim_v{SIM_VERSION}_fps{fps:g}_visit{visit_s:g}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        meta = [str(m).split("|") for m in z["meta"]]
        out = [
            Visit(src, kind, False, split, list(z[f"v{i}"]), fps)
            for i, (src, kind, split) in enumerate(meta)
        ]
        log.info("liveness: %d simulated visits from %s", len(out), path)
        return out
    t = time.perf_counter()
    out = simulated_visits(data, fps, visit_s, pipe)
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f"v{i}": np.stack(v.frames) for i, v in enumerate(out)}
    meta = np.array([f"{v.source}|{v.kind}|{v.split}" for v in out])
    np.savez_compressed(path, meta=meta, **arrays)
    took = time.perf_counter() - t
    log.info("liveness: %d simulated visits in %.0f s -> %s", len(out), took, path)
    return out


def simulated_visits(data: Path, fps: float, visit_s: float, pipe: FacePipeline) -> list[Visit]:
    """Attacks made from the bona fide clips' people (tune/report split as theirs): for
    each clip, a still of its middle frame printed, shown on a screen and cut out, and
    the clip itself replayed on a screen."""
    n = max(2, round(fps * visit_s))
    rng = np.random.default_rng(17)
    visits: list[Visit] = []
    for sub in ("asl", "grid"):
        clips = sorted((data / "liveness" / "bona_fide" / sub).glob("*.m*"))
        names = [c.name for c in clips]
        for p in clips:
            frames = video_frames(p, fps)
            if len(frames) < n:
                continue
            split = half(p.name, names)
            still = _still_face(frames[len(frames) // 2], pipe)
            if still is None:
                continue
            for kind in ("print", "screen_photo", "cutout"):
                sim = simulate(kind, [still], rng, n)
                visits.append(Visit(f"sim/{sub}/{p.name}", kind, False, split, sim, fps))
            crops = [c for c in (_still_face(f, pipe) for f in frames[:n]) if c is not None]
            if len(crops) == n:
                s = crops[0].shape[0]
                crops = [cv2.resize(c, (s, s)) for c in crops]
                sim = simulate("screen_video", crops, rng, n)
                visits.append(Visit(f"sim/{sub}/{p.name}", "screen_video", False, split, sim, fps))
    return visits


# --- measurement ----------------------------------------------------------------------


@dataclass
class Row:
    """One measured visit: its observations and the once-per-decision texture cues."""

    source: str
    kind: str
    real: bool
    split: str
    obs: list[Observation]
    cues: dict[str, float]  # border, moire on the decision frame ({} when no face)
    cue_t: float | None  # visit time of the decision frame
    verdicts: dict[tuple[str, float, float], Any] = field(default_factory=dict)


def observe(
    pipe: FacePipeline, mesh: FaceMesh, v: Visit, cue_frame: int, cost: dict[str, float]
) -> Row:
    """The visit's observations (largest face per frame) and, on its `cue_frame`-th
    face (the first frame a verdict can be given), the texture cues. `cost` gathers
    ms and counts per stage."""
    from tools.presentation_attack import border_cue, moire_cue

    obs: list[Observation] = []
    cues: dict[str, float] = {}
    cue_t = None
    for k, f in enumerate(v.frames):
        t = time.perf_counter()
        dets = pipe.detector.detect(f)
        cost["detect_ms"] += (time.perf_counter() - t) * 1000
        cost["frames"] += 1
        if not dets:
            continue
        d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        t = time.perf_counter()
        lm = mesh.landmarks(f, [d])[0]
        cost["mesh_ms"] += (time.perf_counter() - t) * 1000
        cost["faces"] += 1
        if lm is None:
            continue
        obs.append(Observation.of(lm, k / v.fps))
        if len(obs) == cue_frame:
            t = time.perf_counter()
            (face,) = pipe.faces(f, embed=False, detections=[d])
            cues = {"border": border_cue(f, d.box), "moire": moire_cue(face.aligned)}
            cost["cue_ms"] += (time.perf_counter() - t) * 1000
            cost["cue_runs"] += 1
            cue_t = k / v.fps
    return Row(v.source, v.kind, v.real, v.split, obs, cues, cue_t)


# Signals and combinations measured; each maps a row and the thresholds to (live, time).
COMBOS = ("blink", "planarity", "border", "moire", "texture", "texture+planarity")


def decide(row: Row, combo: str, rules: LivenessRules, th: dict[str, float]) -> tuple[bool, float]:
    """Would the visit be judged live under `combo`, and when (visit seconds)? The
    texture cues are judged once, on the decision frame: live when at most `th` (fewer
    straight edges beside the face, less screen moire than the tune people showed)."""
    texture_ok = bool(row.cues) and all(
        row.cues[c] <= th[c] for c in ("border", "moire") if c in combo or combo.startswith("tex")
    )
    cue_t = row.cue_t if row.cue_t is not None else rules.max_s
    if combo in ("border", "moire", "texture"):
        return texture_ok, cue_t
    mode = "planarity" if combo == "texture+planarity" else combo
    key = (mode, rules.planarity_min, rules.blink_min)
    if key not in row.verdicts:  # each row is judged by several combinations
        row.verdicts[key] = judge(row.obs, rules.with_mode(mode)) if row.obs else None
    v = row.verdicts[key]
    live = bool(v and v.live)
    t = v.decided_s if v and v.decided_s is not None else rules.max_s
    if combo == "texture+planarity":
        return live and texture_ok, max(t, cue_t)
    return live, t


def rates(rows: list[Row], combo: str, rules: LivenessRules, th: dict[str, float]) -> dict:
    """Per kind: visits, how many were judged live, and the share (attack_accept for
    attacks, bona_fide_reject for live), with the time to a live decision."""
    out: dict[str, Any] = {}
    for kind in sorted({r.kind for r in rows}):
        rs = [r for r in rows if r.kind == kind]
        res = [decide(r, combo, rules, th) for r in rs]
        live = sum(1 for ok, _ in res if ok)
        key = "bona_fide_reject" if kind == "live" else "attack_accept"
        share = (len(rs) - live) / len(rs) if kind == "live" else live / len(rs)
        times = [t for ok, t in res if ok]
        out[kind] = {
            "visits": len(rs),
            "judged_live": live,
            key: round(100 * share, 2),
            "live_decision_s_median": round(float(np.median(times)), 3) if times else None,
            "live_decision_s_p95": round(float(np.percentile(times, 95)), 3) if times else None,
        }
    attacks = [r for r in rows if r.kind != "live"]
    if attacks:
        n = sum(1 for r in attacks if decide(r, combo, rules, th)[0])
        share = round(100 * n / len(attacks), 2)
        out["all_attacks"] = {"visits": len(attacks), "attack_accept": share}
    return out


def tune(rows: list[Row], rules: LivenessRules, target: float) -> dict[str, float]:
    """Thresholds from the tune people alone: each texture cue's threshold is the
    smallest that refuses at most `target` % of their live visits (a cue above its
    threshold means an attack). Planarity keeps the configured threshold, and the
    tuned value that would meet the target is reported beside it."""
    live = [r for r in rows if r.split == "tune" and r.kind == "live"]
    th: dict[str, float] = {}
    for c in ("border", "moire"):
        vals = np.array([r.cues.get(c, np.inf) for r in live])
        th[c] = float(np.percentile(vals[np.isfinite(vals)], 100 - target)) if len(vals) else 0.0
    plan = [judge(r.obs, rules.with_mode("planarity")).signals["planarity"] for r in live if r.obs]
    th["planarity_for_target"] = float(np.percentile(plan, target)) if plan else 0.0
    return th


def run(args: argparse.Namespace) -> dict[str, Any]:
    from appliance.vision.landmarks import load_face_mesh

    pipe = FacePipeline.load(threads=1)
    mesh = load_face_mesh(threads=1)
    data = Path(args.data)
    t0 = time.perf_counter()
    visits = real_visits(data, args.fps, args.visit_s)
    log.info("liveness: %d real visits read in %.0f s", len(visits), time.perf_counter() - t0)
    if not args.no_sim:
        visits += cached_simulations(data, args.fps, args.visit_s, pipe)
    if args.limit:
        visits = visits[:: max(1, len(visits) // args.limit)]
    rules = LivenessRules.from_config(args.config)
    configured = rules.mode
    if not rules.on:  # measure what turning it on with these thresholds would do
        rules = rules.with_mode("planarity")
    cost = dict.fromkeys(("detect_ms", "mesh_ms", "cue_ms", "frames", "faces", "cue_runs"), 0.0)
    rows: list[Row] = []
    t1 = time.perf_counter()
    for i, v in enumerate(visits):
        rows.append(observe(pipe, mesh, v, rules.min_frames, cost))
        if (i + 1) % 50 == 0 or i + 1 == len(visits):
            took = time.perf_counter() - t1
            log.info("liveness: %d/%d visits measured, %.0f s", i + 1, len(visits), took)
    th = tune(rows, rules, args.target)
    result: dict[str, Any] = {
        "configured_mode": configured,
        "rules": rules.as_dict(),
        "thresholds_tuned": {k: round(v, 4) for k, v in th.items()},
        "target_bona_fide_reject_pct": args.target,
        "fps": args.fps,
        "visit_s": args.visit_s,
        "threads": 1,
        "cost_ms": {
            "detect_per_frame": round(cost["detect_ms"] / max(cost["frames"], 1), 2),
            "mesh_per_face": round(cost["mesh_ms"] / max(cost["faces"], 1), 2),
            "texture_cues_per_decision": round(cost["cue_ms"] / max(cost["cue_runs"], 1), 2),
        },
        "visits": len(rows),
    }
    for split in ("tune", "report"):
        for real in (True, False):
            sel = [r for r in rows if r.split == split and r.real == real]
            if not sel:
                continue
            name = f"{split}_{'real' if real else 'simulated'}"
            result[name] = {c: rates(sel, c, rules, th) for c in COMBOS}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result
