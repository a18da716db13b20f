#!/usr/bin/env python3
"""What the appliance does when someone holds up a photo of an enrolled person.

    PYTHONPATH=. tools/presentation_attack.py [--data ../shared/data] [--people 50]
        [--queries 3] [--strangers 100] [--seed 0] [--out build/presentation_attack.json]

SECURITY.md must say what happens at the door when a printed or on-screen photo is shown.
Nobody here has a camera pointed at a printout, so the attack is simulated: held-out LFW
photos of enrolled people are "recaptured" as a print, a low-resolution print and a phone
screen inside a 640x480 door scene, and every simulated frame goes through the device's
own code (Recogniser: detect -> align -> the daemon's per-frame gates -> embed -> the
open-set match with the thresholds config.yaml and the model manifest give). The same
photo pasted into the same scene without any recapture artifact is the genuine baseline,
so the difference between rows is what the recapture chain alone changes. It is a proxy
for a live face, not one: no live person is in this data. Photos of people who are not
enrolled (LFW single-image identities), shown as they are and as a print, check that the
scenes themselves let no stranger in.

Outcomes per frame: not_detected; gated (the daemon tracks the face but does not embed
it: too small or too turned); accepted_true (the attack succeeds); accepted_other;
unknown. median_blur is the quality module's sharpness of the aligned face; it mostly
reflects the defocus this simulation chose for each condition, so it is no finding.

Every frame is a deterministic function of (--seed, query, condition): rerunning gives
the same numbers. The photos are read from the shared data folder and never copied into
the repository; example frames go to build/ (gitignored).

Single frames are scored. The daemon votes over the frames of a visit, but a photo held
still gives near-identical frames, so voting raises the confidence in the photo rather
than rejecting it; it is no defence here.

The optional cue study (printed last) scores two cheap, non-learned cues on the same
frames: long straight edges beside the face (paper edge, phone bezel), and peaky
mid/high-frequency energy (a screen's moire) in the aligned face. Their thresholds are set
on this simulation's own head-only genuine frames (`genuine_oval`, no photo edge) in
front of two uncluttered backgrounds, so the rates are optimistic; nothing here is wired
into the daemon.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from appliance.config import schema as config_mod  # noqa: E402
from appliance.config.schema import Config, StorageConfig  # noqa: E402
from appliance.identity.gates import EnrolmentRefused  # noqa: E402
from appliance.identity.recogniser import Recogniser  # noqa: E402
from appliance.vision.imageio import read_image  # noqa: E402
from appliance.vision.pipeline import Face, FacePipeline  # noqa: E402

W, H = 640, 480  # config.yaml camera.width/height defaults
LFW_EYES = 45.0  # typical eye distance (px) in a 150x150 LFW crop, measured by the detector
PAD = 50  # enrolment photos get the black border tools/evaluate.py gives LFW crops
CONDITIONS = ("genuine", "print", "lowres_print", "screen", "genuine_oval")
ATTACKS = ("print", "lowres_print", "screen")
OFFICE = "examples/obama.jpg"  # a real room; the attacker's photo covers his face


# --- scenes -------------------------------------------------------------------------


def wall_scene() -> np.ndarray:
    """A plain corridor wall beside a door frame, lit from above: the usual door view."""
    rng = np.random.default_rng(12345)
    y = np.linspace(1.05, 0.80, H, dtype=np.float32)[:, None]
    x = np.linspace(0.95, 1.02, W, dtype=np.float32)[None, :]
    base = np.array([178, 172, 160], np.float32)
    img = base[None, None, :] * (y * x)[..., None]
    tex = cv2.GaussianBlur(rng.normal(0, 6, (H, W)).astype(np.float32), (0, 0), 3)
    img += tex[..., None]
    img[:, 520:548] = np.array([120, 98, 78], np.float32) * y[..., None]  # door frame
    img[:, 548:] = np.array([150, 126, 100], np.float32) * y[..., None]  # the door
    img[:, 518:520] *= 0.7
    cv2.rectangle(img, (470, 250), (492, 285), (225, 225, 220), -1)  # light switch
    return np.clip(img, 0, 255).astype(np.uint8)


def office_scene(data: Path, pipe: FacePipeline) -> tuple[np.ndarray, tuple[float, float]]:
    """A real photo of a room with a person in it, and where that person's face is: an
    attacker holds the photo in front of their own face."""
    img = read_image(data / "scenes" / OFFICE)
    w = img.shape[1]
    img = cv2.resize(img[: w * H // W], (W, H), interpolation=cv2.INTER_AREA)
    dets = pipe.detector.detect(img)
    if not dets:
        return img, (W / 2, H * 0.4)
    b = max(dets, key=lambda d: d.score).box
    return img, (float(b[0] + b[2]) / 2, float(b[1] + b[3]) / 2)


@dataclass(frozen=True)
class Placement:
    """Where the face goes, shared by every condition of one query so rows are paired."""

    scene: int
    cx: float
    cy: float
    eyes: float  # eye distance in the frame, pixels
    gain: float  # scene lighting
    angle: float  # in-plane tilt of the held photo, degrees


def placement(
    rng: np.random.Generator, scenes: list[tuple[np.ndarray, tuple[float, float]]]
) -> Placement:
    k = int(rng.integers(len(scenes)))
    cx, cy = scenes[k][1]
    if k == 0:  # the wall: anywhere near the middle, a face 45-75 px between the eyes
        cx, cy = rng.uniform(0.35, 0.6) * W, rng.uniform(0.38, 0.55) * H
        eyes = rng.uniform(45, 75)
    else:  # over the person's face (78 px between the eyes), about as large
        cx, cy = cx + rng.uniform(-10, 10), cy + rng.uniform(-5, 15)
        eyes = rng.uniform(65, 80)
    return Placement(k, cx, cy, eyes, rng.uniform(0.85, 1.1), rng.uniform(-6, 6))


# --- image helpers ------------------------------------------------------------------


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def gamma(img: np.ndarray, g: float, gain: float = 1.0, lift: float = 0.0) -> np.ndarray:
    """`lift` raises the black level (a screen is never black), `gain` the white."""
    x = np.clip(img.astype(np.float32) / 255.0, 0, 1) ** g
    return np.clip(lift + (255.0 - lift) * x * gain, 0, 255)


def camera(frame: np.ndarray, rng: np.random.Generator, blur: float) -> np.ndarray:
    """The door camera, the same for every condition: optics, sensor noise, its JPEG."""
    f = frame.astype(np.float32)
    if blur > 0:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    f += rng.normal(0, 2.0, f.shape).astype(np.float32)
    return jpeg(np.clip(f, 0, 255).astype(np.uint8), 85)


def quad(p: Placement, w: float, h: float, rng: np.random.Generator, skew: float) -> np.ndarray:
    """Corners (tl, tr, br, bl) of a w x h rectangle centred on the placement, tilted
    in plane and with each corner jittered by `skew` of its size (a hand-held sheet is
    never parallel to the sensor)."""
    a = np.radians(p.angle)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    c = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float32) / 2
    c = c @ r.T + rng.uniform(-skew, skew, (4, 2)).astype(np.float32) * [w, h]
    return (c + np.array([p.cx, p.cy], np.float32)).astype(np.float32)


def paste(
    scene: np.ndarray, layer: np.ndarray, src: np.ndarray, dst: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `layer` (with corners `src`) onto `dst` over the scene; returns frame, mask."""
    m = cv2.getPerspectiveTransform(src.astype(np.float32), dst)
    warped = cv2.warpPerspective(layer.astype(np.float32), m, (W, H), flags=cv2.INTER_LINEAR)
    ones = np.ones(layer.shape[:2], np.float32)
    mask = cv2.warpPerspective(ones, m, (W, H), flags=cv2.INTER_LINEAR)[..., None]
    return scene * (1 - mask) + warped * mask, mask


def corners(w: int, h: int) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def shadow(frame: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """A soft shadow of the held object on whatever is behind it."""
    m = np.roll(mask[..., 0], (7, 5), axis=(0, 1))
    m = cv2.GaussianBlur(m, (0, 0), 6)[..., None] * (1 - mask)
    return frame * (1 - strength * m)


# --- conditions ---------------------------------------------------------------------


def render_genuine(
    photo: np.ndarray, scene: np.ndarray, p: Placement, rng: np.random.Generator, oval: bool = False
) -> np.ndarray:
    """The photo as it is in the scene's light and through the camera's optics, with no
    recapture step: the nearest a still photo comes to a live face.

    The whole photo (face, hair and its own background, as the enrolment photos have
    them) is blended in with a soft edge: the recognition baseline. `oval` keeps only
    the head, so there is no straight photo edge at all: the baseline for the border cue,
    which a rectangle would trip (cutting away hair and context costs recognition a
    few points, so it is not the recognition baseline)."""
    k = p.eyes / LFW_EYES
    s = round(photo.shape[0] * k)
    face = cv2.resize(photo, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    if oval:
        alpha = np.clip((0.5 - np.sqrt((xx / 0.78) ** 2 + (yy / 0.98) ** 2)) / 0.08, 0, 1)
    else:
        alpha = np.clip((0.5 - np.maximum(np.abs(xx), np.abs(yy))) / 0.08, 0, 1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), s / 40)[..., None]
    f = scene.astype(np.float32)
    x0, y0 = round(p.cx - s / 2), round(p.cy - s / 2)
    x1, y1 = max(x0, 0), max(y0, 0)
    x2, y2 = min(x0 + s, W), min(y0 + s, H)
    a = alpha[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
    f[y1:y2, x1:x2] = f[y1:y2, x1:x2] * (1 - a) + face[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0] * a
    return camera(f * p.gain, rng, blur=0.5)


def printed(photo: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The photo as a glossy print: recompressed once on its way to the printer, a
    compressed ink gamut, slightly desaturated and warm, a white paper border, a thumb."""
    src = jpeg(photo, int(rng.integers(50, 81)))
    img = cv2.resize(src, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = 0.85 * img + 0.15 * grey
    img = 18 + img * (225 / 255) * np.array([1.02, 1.0, 0.95], np.float32)
    img += rng.normal(0, 2.5, img.shape).astype(np.float32)  # paper grain, dot gain
    b = round(size * rng.uniform(0.07, 0.14))
    paper = np.array([244, 242, 236], np.float32)
    sheet = np.empty((size + 2 * b, size + 2 * b, 3), np.float32)
    sheet[:] = paper
    sheet[b : b + size, b : b + size] = img
    # a thumb holding the bottom edge
    n = sheet.shape[0]
    tx = int(n * rng.uniform(0.3, 0.7))
    cv2.ellipse(sheet, (tx, n), (int(n * 0.08), int(b * 1.6)), 0, 180, 360, (196, 150, 128), -1)
    return sheet


def render_print(
    photo: np.ndarray, scene: np.ndarray, p: Placement, rng: np.random.Generator
) -> np.ndarray:
    """A print held up in front of the camera: tilted, lit differently from the room,
    slightly out of focus (it is held closer than a person stands)."""
    size = round(photo.shape[0] * p.eyes / LFW_EYES)
    sheet = printed(photo, rng, size)
    n = sheet.shape[0]
    # light across the sheet: a gradient and a gamma, as from a ceiling lamp
    g = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.95, 1.15), n, dtype=np.float32)
    sheet = sheet * (g[:, None, None] if rng.random() < 0.5 else g[None, :, None])
    sheet = gamma(sheet, rng.uniform(0.8, 1.25))
    frame, mask = paste(scene.astype(np.float32), sheet, corners(n, n), quad(p, n, n, rng, 0.05))
    frame = shadow(frame, mask, 0.35)
    return camera(frame * p.gain, rng, blur=rng.uniform(0.8, 1.5))


def render_lowres_print(
    photo: np.ndarray, scene: np.ndarray, p: Placement, rng: np.random.Generator
) -> np.ndarray:
    """A print made from a small picture (a face cut from a group photo or a profile
    thumbnail): the source has only 16-24 px between the eyes, then it is enlarged."""
    eyes = rng.uniform(16, 24)
    s = max(8, round(photo.shape[0] * eyes / LFW_EYES))
    small = jpeg(cv2.resize(photo, (s, s), interpolation=cv2.INTER_AREA), int(rng.integers(60, 81)))
    big = cv2.resize(small, photo.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return render_print(big, scene, p, rng)


def render_screen(
    photo: np.ndarray, scene: np.ndarray, p: Placement, rng: np.random.Generator
) -> np.ndarray:
    """The photo on a phone: a dark bezel, the screen's own gamma, black level and cool
    white, its pixel grid beating against the camera's (moire), a reflection, defocus."""
    over = 2  # the screen is drawn at twice the frame's scale, so warping it down aliases
    size = round(photo.shape[0] * p.eyes / LFW_EYES) * over
    img = cv2.resize(
        jpeg(photo, int(rng.integers(60, 91))), (size, size), interpolation=cv2.INTER_CUBIC
    ).astype(np.float32)
    img = gamma(img, rng.uniform(0.75, 0.95), gain=rng.uniform(1.0, 1.15), lift=10)
    img *= np.array([0.94, 1.0, 1.07], np.float32)  # cool white point
    sw, sh = size, int(size * 1.45)  # portrait screen, photo in the middle, black around
    screen = np.full((sh, sw, 3), 8, np.float32)
    top = (sh - size) // 2
    screen[top : top + size] = img
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    # sub-pixel stripes (screen-door) and a slow interference pattern (moire)
    pitch = rng.uniform(2.2, 3.4)
    grid = 0.82 + 0.18 * np.cos(2 * np.pi * xx / pitch) ** 2
    th = rng.uniform(0, np.pi)
    period = rng.uniform(5, 11) * over
    moire = 1 + rng.uniform(0.05, 0.1) * np.sin(
        2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period + rng.uniform(0, 6.3)
    )
    screen *= (grid * moire)[..., None]
    bez = int(sw * 0.05)
    phone = np.full((sh + 2 * bez * 2, sw + 2 * bez, 3), 22, np.float32)
    cv2.rectangle(phone, (0, 0), (phone.shape[1] - 1, phone.shape[0] - 1), (70, 70, 74), 2)
    phone[2 * bez : 2 * bez + sh, bez : bez + sw] = screen
    ph, pw = phone.shape[:2]
    frame, mask = paste(
        scene.astype(np.float32), phone, corners(pw, ph), quad(p, pw / over, ph / over, rng, 0.04)
    )
    frame = shadow(frame, mask, 0.25)
    # specular glare: a lamp reflected in the glass
    gx = p.cx + rng.uniform(-0.4, 0.4) * pw / over
    gy = p.cy + rng.uniform(-0.5, 0.5) * ph / over
    sig = rng.uniform(0.1, 0.25) * pw / over
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    glare = rng.uniform(50, 130) * np.exp(-((xx - gx) ** 2 + ((yy - gy) / 1.6) ** 2) / (2 * sig**2))
    frame = frame + (glare[..., None] * mask)
    return camera(frame * p.gain, rng, blur=rng.uniform(0.8, 1.6))


RENDER: dict[
    str, Callable[[np.ndarray, np.ndarray, Placement, np.random.Generator], np.ndarray]
] = {
    "genuine": render_genuine,
    "print": render_print,
    "lowres_print": render_lowres_print,
    "screen": render_screen,
    "genuine_oval": lambda photo, scene, p, rng: render_genuine(photo, scene, p, rng, True),
}


# --- cheap cues (measured, not used by the device) ------------------------------------


def border_cue(frame: np.ndarray, box: np.ndarray) -> float:
    """How many sides of the face (0-4) have a long straight edge beside them, outside
    the face box: a print's paper and photo edges or a phone's bezel give them, a head
    in front of a wall usually does not. Lines, not a closed outline, because a thumb or
    a dark suit behind a dark bezel breaks the outline."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    rx1, ry1 = max(int(x1 - 0.8 * bw), 0), max(int(y1 - 0.8 * bh), 0)
    fh, fw = frame.shape[:2]
    rx2, ry2 = min(int(x2 + 0.8 * bw), fw), min(int(y2 + 0.8 * bh), fh)
    grey = cv2.cvtColor(frame[ry1:ry2, rx1:rx2], cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 30, 90)
    lines = cv2.HoughLinesP(
        edges, 1, np.pi / 180, 40, minLineLength=0.6 * min(bw, bh), maxLineGap=6
    )
    sides: set[str] = set()
    for lx1, ly1, lx2, ly2 in [] if lines is None else lines[:, 0].astype(float):
        lx1, lx2, ly1, ly2 = lx1 + rx1, lx2 + rx1, ly1 + ry1, ly2 + ry1
        ang = abs(np.degrees(np.arctan2(ly2 - ly1, lx2 - lx1))) % 180
        if ang < 20 or ang > 160:  # horizontal: above or below the face, across it
            over = min(max(lx1, lx2), x2) - max(min(lx1, lx2), x1)
            ym = (ly1 + ly2) / 2
            if over >= 0.5 * bw and ym < y1:
                sides.add("top")
            elif over >= 0.5 * bw and ym > y2:
                sides.add("bottom")
        elif 70 < ang < 110:  # vertical: left or right of the face, along it
            over = min(max(ly1, ly2), y2) - max(min(ly1, ly2), y1)
            xm = (lx1 + lx2) / 2
            if over >= 0.5 * bh and xm < x1:
                sides.add("left")
            elif over >= 0.5 * bh and xm > x2:
                sides.add("right")
    return float(len(sides))


def moire_cue(aligned: np.ndarray) -> float:
    """Peak-to-median ratio of the aligned face's spectrum in the mid/high band: a
    screen's pixel grid and its beat with the sensor put sharp peaks there; skin does
    not."""
    g = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g -= cv2.GaussianBlur(g, (0, 0), 3)
    n = g.shape[0]
    win = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(g * win)))
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    r = np.sqrt(xx**2 + yy**2) / (n / 2)
    band = spec[(r > 0.25) & (r < 0.95)]
    return float(band.max() / (np.median(band) + 1e-6))


# --- running ------------------------------------------------------------------------


@dataclass
class Query:
    file: str
    person: str


def lfw_groups(images: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for f in sorted(p.name for p in images.glob("*.jpg")):
        groups.setdefault(f.rsplit("_", 1)[0], []).append(f)
    return groups


def padded(path: Path) -> np.ndarray:
    return cv2.copyMakeBorder(read_image(path), PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT)


def enrol(
    svc: Recogniser,
    images: Path,
    groups: dict[str, list[str]],
    want: int,
    per_person: int,
    queries: int,
    rng: np.random.Generator,
) -> tuple[list[str], list[Query], dict[str, str]]:
    """Enrol `want` people through the service (gates and duplicate check as on the
    device), each with the first `per_person` photos that pass; the rest are queries."""
    multi = [n for n, g in groups.items() if len(g) >= 3]
    order = rng.permutation(len(multi))
    enrolled: list[str] = []
    qs: list[Query] = []
    refused: dict[str, str] = {}
    for i in order:
        if len(enrolled) == want:
            break
        name = multi[int(i)]
        ok: list[str] = []
        for f in groups[name]:
            if len(ok) == per_person:
                break
            try:
                svc.template_from(padded(images / f), "file")
                ok.append(f)
            except EnrolmentRefused as exc:
                refused[f] = exc.code
        rest = [f for f in groups[name] if f not in ok]
        if len(ok) < per_person or not rest:
            continue
        try:
            svc.enrol(name, [padded(images / f) for f in ok], "file", "presentation_attack")
        except EnrolmentRefused as exc:
            refused[name] = exc.code
            continue
        enrolled.append(name)
        qs += [Query(f, name) for f in rest[:queries]]
    return enrolled, qs, refused


def pick(faces: list[Face], p: Placement) -> Face | None:
    """The face at the place we put one (the office scene has a person of its own)."""
    best, dist = None, p.eyes * 1.5
    for f in faces:
        b = f.box
        d = float(np.hypot((b[0] + b[2]) / 2 - p.cx, (b[1] + b[3]) / 2 - p.cy))
        if d < dist:
            best, dist = f, d
    return best


def judge(
    svc: Recogniser, cfg: Config, frame: np.ndarray, p: Placement, truth: str | None, cues: bool
) -> dict[str, Any]:
    """One frame through the device's per-frame path: detect, align, the daemon's gates
    (decision.min_eye_distance, min_frontal), embed, match."""
    faces = svc.pipeline.faces(frame)
    face = pick(faces, p)
    row: dict[str, Any] = {"faces": len(faces)}
    if face is None:
        return {**row, "outcome": "not_detected"}
    q = face.quality
    row.update(
        {
            "eye_distance": round(q.eye_distance, 1),
            "blur": round(q.blur, 1),
            "det_score": round(q.score, 3),
            "frontal": round(q.frontal, 3),
        }
    )
    if cues:
        row["border_cue"] = round(border_cue(frame, face.box), 3)
        row["moire_cue"] = round(moire_cue(face.aligned), 3)
    if q.eye_distance < cfg.decision.min_eye_distance or q.frontal < cfg.decision.min_frontal:
        return {**row, "outcome": "gated"}
    m = svc.match(face.embedding[None])[0]
    if truth is not None:
        j = svc.matcher.names.index(truth)
        row["cos_true"] = round(float(svc.matcher.person_scores(face.embedding)[0, j]), 4)
    row.update({"score": round(m.score, 4), "candidate": m.candidate})
    if not m.accepted:
        outcome = "unknown"
    elif truth is not None and m.name == truth:
        outcome = "accepted_true"
    else:
        outcome = "accepted_other"
    return {**row, "outcome": outcome}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)

    def pct(k: str) -> float:
        return round(100 * sum(r["outcome"] == k for r in rows) / max(n, 1), 1)

    cos = [r["cos_true"] for r in rows if "cos_true" in r]
    det = [r for r in rows if r["outcome"] != "not_detected"]
    return {
        "n": n,
        "detected": round(100 * len(det) / max(n, 1), 1),
        "gated": pct("gated"),
        "accepted_true": pct("accepted_true"),
        "accepted_other": pct("accepted_other"),
        "unknown": pct("unknown"),
        "not_detected": pct("not_detected"),
        "mean_cos_true": round(float(np.mean(cos)), 4) if cos else None,
        "median_blur": round(float(np.median([r["blur"] for r in det])), 1) if det else None,
        "median_det_score": round(float(np.median([r["det_score"] for r in det])), 3)
        if det
        else None,
    }


def cue_study(rows: dict[str, list[dict[str, Any]]], fa: float = 0.05) -> dict[str, Any]:
    """For each cue: the threshold that flags at most `fa` of the genuine (oval) frames,
    and how many frames of each attack and of the whole-photo genuine frames it flags
    there; plus ROC AUC of each attack against the oval genuine frames."""
    out: dict[str, Any] = {}
    for cue in ("border_cue", "moire_cue"):
        gen = np.array([r[cue] for r in rows["genuine_oval"] if cue in r])
        if gen.size == 0:
            continue
        thr = float(np.quantile(gen, 1 - fa, method="higher"))
        res: dict[str, Any] = {
            "threshold": round(thr, 3),
            "genuine_flagged": round(100 * float((gen > thr).mean()), 1),
        }
        for cond in (*ATTACKS, "genuine"):
            att = np.array([r[cue] for r in rows[cond] if cue in r])
            if att.size == 0:
                continue
            auc = float(
                (att[:, None] > gen[None]).mean() + 0.5 * (att[:, None] == gen[None]).mean()
            )
            res[cond] = {"flagged": round(100 * float((att > thr).mean()), 1), "auc": round(auc, 3)}
        out[cue] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument("--people", type=int, default=50, help="identities to enrol")
    ap.add_argument("--per-person", type=int, default=2, help="enrolment photos per person")
    ap.add_argument("--queries", type=int, default=3, help="held-out photos per person")
    ap.add_argument(
        "--strangers",
        type=int,
        default=100,
        help="photos of people not enrolled, shown genuine and as a print",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="default: config.yaml")
    ap.add_argument("--no-cues", action="store_true", help="skip the cue study")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "presentation_attack.json")
    ap.add_argument(
        "--examples",
        type=Path,
        default=ROOT / "build" / "presentation_attack",
        help="folder for a few example frames (PNG)",
    )
    args = ap.parse_args(argv)
    images = args.data / "lfw" / "images"
    if not images.is_dir():
        print(f"presentation_attack: no LFW images at {images}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(config_mod.load(args.config), storage=StorageConfig(tmp))
        pipe = FacePipeline.load(
            embedder=cfg.models.embedder,
            threads=args.threads or cfg.models.threads,
            flip=cfg.models.flip,
            score_threshold=cfg.detector.score_threshold,
        )
        svc = Recogniser.open(cfg, pipe)
        rng = np.random.default_rng(args.seed)
        groups = lfw_groups(images)
        people, queries, refused = enrol(
            svc, images, groups, args.people, args.per_person, args.queries, rng
        )
        singles = [g[0] for g in groups.values() if len(g) == 1]
        strangers = [
            Query(singles[int(i)], "") for i in rng.permutation(len(singles))[: args.strangers]
        ]
        th = svc.thresholds()
        scenes = [(wall_scene(), (W / 2, H / 2)), office_scene(args.data, pipe)]
        rows: dict[str, list[dict[str, Any]]] = {c: [] for c in CONDITIONS}
        rows["stranger_genuine"], rows["stranger_print"] = [], []
        args.examples.mkdir(parents=True, exist_ok=True)
        jobs = [(qi, q, c) for qi, q in enumerate(queries) for c in CONDITIONS]
        jobs += [
            (len(queries) + si, s, c)
            for si, s in enumerate(strangers)
            for c in ("genuine", "print")
        ]
        saved: dict[tuple[int, str], int] = {}
        for qi, q, cond in jobs:
            photo = read_image(images / q.file)
            p = placement(np.random.default_rng([args.seed, qi]), scenes)
            ci = CONDITIONS.index(cond)
            frame = RENDER[cond](
                photo, scenes[p.scene][0], p, np.random.default_rng([args.seed, qi, ci + 1])
            )
            row = judge(svc, cfg, frame, p, q.person or None, not args.no_cues)
            key = cond if q.person else f"stranger_{cond}"
            rows[key].append({"file": q.file, "scene": p.scene, **row})
            if saved.setdefault((p.scene, cond), qi) == qi and qi < 20:  # one per scene
                cv2.imwrite(
                    str(args.examples / f"q{qi}_{cond}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                )
        svc.close()
    result = {
        "what": "simulated presentation attacks (photo of an enrolled person shown to the "
        "camera), single frames through the device pipeline",
        "embedder": pipe.embedder.spec.version,
        "detector": pipe.detector.version,
        "thresholds": th.as_dict(),
        "mode": cfg.recognition.mode,
        "people": len(people),
        "enrol_photos_per_person": args.per_person,
        "queries": len(queries),
        "strangers": len(strangers),
        "seed": args.seed,
        "frame": [W, H],
        "refused_enrolment_photos": refused,
        "daemon_gates": {
            "min_eye_distance": cfg.decision.min_eye_distance,
            "min_frontal": cfg.decision.min_frontal,
        },
        "summary": {k: summarise(v) for k, v in rows.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if not args.no_cues:
        result["cues"] = cue_study(rows)
    result["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"wrote {args.out}; example frames in {args.examples}", file=sys.stderr)
    return 0


def print_table(result: dict[str, Any]) -> None:
    th = result["thresholds"]
    print(
        f"{result['embedder']}, {result['people']} people enrolled "
        f"({result['enrol_photos_per_person']} photos each), {result['mode']} mode: "
        f"accept cosine >= {th['accept']}, margin {th['margin']}"
    )
    cols = (
        "n",
        "detected",
        "gated",
        "accepted_true",
        "accepted_other",
        "unknown",
        "mean_cos_true",
        "median_blur",
    )
    print(f"{'condition':17}" + "".join(f"{c:>15}" for c in cols))
    for k, s in result["summary"].items():
        print(f"{k:17}" + "".join(f"{'-' if s[c] is None else s[c]!s:>15}" for c in cols))
    for cue, res in result.get("cues", {}).items():
        parts = [
            f"{c}: {v['flagged']}% flagged (AUC {v['auc']})"
            for c, v in res.items()
            if isinstance(v, dict)
        ]
        print(
            f"cue {cue} > {res['threshold']} (genuine_oval flagged {res['genuine_flagged']}%): "
            + "; ".join(parts)
        )


if __name__ == "__main__":
    sys.exit(main())
