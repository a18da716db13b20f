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
from dataclasses import dataclass
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


def observe(pipe: FacePipeline, mesh: FaceMesh, v: Visit) -> tuple[list[Observation], float]:
    """The visit's observations (largest face per frame) and the ms the mesh took."""
    obs: list[Observation] = []
    ms = 0.0
    for k, f in enumerate(v.frames):
        dets = pipe.detector.detect(f)
        if not dets:
            continue
        d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        t = time.perf_counter()
        lm = mesh.landmarks(f, [d])[0]
        ms += (time.perf_counter() - t) * 1000
        if lm is not None:
            obs.append(Observation.of(lm, k / v.fps))
    return obs, ms


def rates(rows: list[dict[str, Any]], rules: LivenessRules) -> dict[str, Any]:
    """Per kind: visits, how many were judged live, and the share (attack_accept for
    attacks, bona_fide_reject for live)."""
    out: dict[str, Any] = {}
    for kind in sorted({r["kind"] for r in rows}):
        rs = [r for r in rows if r["kind"] == kind]
        verdicts = [judge(r["obs"], rules) for r in rs]
        live = sum(1 for v in verdicts if v.live)
        key = "bona_fide_reject" if kind == "live" else "attack_accept"
        share = (len(rs) - live) / len(rs) if kind == "live" else live / len(rs)
        times = [v.decided_s for v in verdicts if v.decided_s is not None]
        out[kind] = {
            "visits": len(rs),
            "judged_live": live,
            key: round(100 * share, 2),
            "decision_s_median": round(float(np.median(times)), 3) if times else None,
            "decision_s_p95": round(float(np.percentile(times, 95)), 3) if times else None,
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from appliance.vision.landmarks import load_face_mesh

    pipe = FacePipeline.load(threads=1)
    mesh = load_face_mesh(threads=1)
    data = Path(args.data)
    t0 = time.perf_counter()
    visits = real_visits(data, args.fps, args.visit_s)
    if not args.no_sim:
        visits += simulated_visits(data, args.fps, args.visit_s, pipe)
    if args.limit:
        visits = visits[:: max(1, len(visits) // args.limit)]
    rows = []
    frames = 0
    mesh_ms = 0.0
    for v in visits:
        obs, ms = observe(pipe, mesh, v)
        frames += len(obs)
        mesh_ms += ms
        rows.append({"source": v.source, "kind": v.kind, "real": v.real, "split": v.split,
                     "obs": obs})  # fmt: skip
    rules = LivenessRules.from_config(args.config)
    configured = rules.mode
    if not rules.on:  # measure what turning it on with these thresholds would do
        rules = rules.with_mode("planarity")
    result: dict[str, Any] = {
        "configured_mode": configured,
        "rules": rules.as_dict(),
        "fps": args.fps,
        "visit_s": args.visit_s,
        "landmark_ms_per_face": round(mesh_ms / max(frames, 1), 2),
        "threads": 1,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for split in ("tune", "report"):
        for real in (True, False):
            sel = [r for r in rows if r["split"] == split and r["real"] == real]
            if sel:
                result[f"{split}_{'real' if real else 'simulated'}"] = rates(sel, rules)
    result["signals"] = signal_table(rows, rules)
    return result


def signal_table(rows: list[dict[str, Any]], rules: LivenessRules) -> dict[str, Any]:
    """Each signal alone (the others off) and combined, on the report split."""
    out: dict[str, Any] = {}
    report = [r for r in rows if r["split"] == "report"]
    for name, mode in (("blink", "blink"), ("planarity", "planarity"), ("combined", rules.mode)):
        out[name] = {
            "real": rates([r for r in report if r["real"]], rules.with_mode(mode)),
            "simulated": rates([r for r in report if not r["real"]], rules.with_mode(mode)),
        }
    return out
