"""Open-set identification on LFW: how often an enrolled person is named, and how rarely a
stranger is let in, at thresholds chosen without looking at the test queries.

Protocol (issue 3): identities with 3+ images are enrolled with their first 1 (or 2)
images and queried with the rest; single-image identities are strangers. Identities are
split in two halves by a hash of the name; the thresholds for one half come from the
calibration curve measured on the other half's strangers (appliance.identity.thresholds), and the
counts of both halves are pooled. `gallery_100` draws 100 enrolled people at random
(5 draws); there every image of a person not drawn is a stranger too, and the curve is
measured as the device's is, on all 747 people, then mapped to 100
(`gallery_100_self_calibrated` measures it on the 100 drawn instead).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.identity.matcher import Matcher, Thresholds, decide
from appliance.identity.thresholds import DEFAULT_MARGIN, Calibration
from appliance.store.gallery import TemplateSet

TARGETS = {"access": 0.001, "attendance": 0.01}
COMBINE = (
    "centroid"  # what the device uses (appliance.identity.recogniser): it measured best, below
)


def identity(filename: str) -> str:
    return filename.rsplit("_", 1)[0]


def half(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 2


@dataclass
class Split:
    people: list[str]  # enrolled identities
    enrol: list[list[int]]  # image indices per person
    queries: list[tuple[int, int]]  # (image index, person index)
    strangers: list[int]  # image indices


def make_split(files: list[str], k: int, people_subset: list[str] | None = None) -> Split:
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(identity(f), []).append(i)
    for g in groups.values():
        g.sort(key=lambda i: files[i])
    multi = sorted(n for n, g in groups.items() if len(g) >= 3)
    people = multi if people_subset is None else sorted(people_subset)
    chosen = set(people)
    strangers = [g[0] for n, g in sorted(groups.items()) if len(g) == 1]
    if people_subset is not None:  # everyone not drawn is a stranger to this gallery
        strangers += [i for n in multi if n not in chosen for i in groups[n]]
    enrol = [groups[n][:k] for n in people]
    queries = [(i, j) for j, n in enumerate(people) for i in groups[n][k:]]
    return Split(people, enrol, queries, strangers)


def matcher_for(
    vecs: np.ndarray, split: Split, combine: str, weights: np.ndarray | None = None
) -> Matcher:
    """A matcher over the split's enrolled templates; with `weights` (one per image) each
    template is scaled by its weight first, so a centroid becomes a weighted centroid."""
    owner = np.concatenate([[j] * len(e) for j, e in enumerate(split.enrol)]).astype(np.int32)
    rows = np.concatenate(split.enrol)
    t = vecs[rows] if weights is None else vecs[rows] * weights[rows, None]
    return Matcher(TemplateSet(split.people, split.people, owner, t.astype(np.float32)), combine)


def rates(
    gen_scores: np.ndarray,
    gen_truth: np.ndarray,
    str_scores: np.ndarray,
    th: Thresholds,
    people: list[str],
) -> dict[str, Any]:
    g = decide(gen_scores, people, people, th)
    s = decide(str_scores, people, people, th)
    correct = sum(m.accepted and m.name == people[t] for m, t in zip(g, gen_truth, strict=True))
    wrong = sum(m.accepted and m.name != people[t] for m, t in zip(g, gen_truth, strict=True))
    rejected = sum(not m.accepted for m in g)
    let_in = sum(m.accepted for m in s)
    return {
        "genuine": len(g),
        "strangers": len(s),
        "correct": correct,
        "wrong": wrong,
        "rejected": rejected,
        "strangers_accepted": let_in,
    }


def pct(counts: dict[str, Any]) -> dict[str, float]:
    g, s = max(counts["genuine"], 1), max(counts["strangers"], 1)
    return {
        "correct_accept": round(100 * counts["correct"] / g, 2),
        "wrong_person_accept": round(100 * counts["wrong"] / g, 3),
        "stranger_accept": round(100 * counts["strangers_accepted"] / s, 3),
        "false_reject": round(100 * counts["rejected"] / g, 2),
    }


def cross_validated(
    vecs: np.ndarray,
    files: list[str],
    split: Split,
    combine: str,
    target: float,
    margin: float = DEFAULT_MARGIN,
    calibrate_on: Split | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Thresholds for each half from the other half's strangers; counts pooled.

    `calibrate_on`: measure p(t) with the other half's strangers against this (larger)
    gallery instead of the tested one, as the device does: it maps a curve measured on
    747 people to its own gallery's size, it does not measure its own 100 people.
    """
    m = matcher_for(vecs, split, combine, weights)
    q_idx = np.array([i for i, _ in split.queries])
    q_truth = np.array([j for _, j in split.queries])
    gen = m.person_scores(vecs[q_idx])
    strs = m.person_scores(vecs[split.strangers])
    q_half = np.array([half(identity(files[i])) for i in q_idx])
    s_half = np.array([half(identity(files[i])) for i in split.strangers])
    if calibrate_on is None:
        cal_strs, cal_half = strs, s_half
    else:
        cal_strs = matcher_for(vecs, calibrate_on, combine, weights).person_scores(
            vecs[calibrate_on.strangers]
        )
        cal_half = np.array([half(identity(files[i])) for i in calibrate_on.strangers])
    total: dict[str, int] = {}
    used = []
    for test in (0, 1):
        cal = Calibration.from_scores(cal_strs[cal_half != test], margin, "other half's strangers")
        th = cal.for_target(target, len(split.people))
        used.append(th.accept)
        c = rates(
            gen[q_half == test], q_truth[q_half == test], strs[s_half == test], th, split.people
        )
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return {
        **pct(total),
        "counts": total,
        "target_stranger_accept": round(100 * target, 3),
        "thresholds": [round(t, 4) for t in used],
        "margin": margin,
        "people": len(split.people),
        "templates": int(m.template_count),
    }


def curve(
    vecs: np.ndarray, split: Split, combine: str, margin: float = DEFAULT_MARGIN
) -> list[dict[str, Any]]:
    """Rates over a fixed grid of thresholds on all queries (descriptive, not tuned)."""
    m = matcher_for(vecs, split, combine)
    gen = m.person_scores(vecs[[i for i, _ in split.queries]])
    truth = np.array([j for _, j in split.queries])
    strs = m.person_scores(vecs[split.strangers])
    out = []
    for t in np.round(np.arange(0.40, 0.901, 0.025), 3):
        th = Thresholds(float(t), margin)
        out.append({"threshold": float(t), **pct(rates(gen, truth, strs, th, split.people))})
    return out


def device_calibration(
    vecs: np.ndarray, split: Split, margin: float = DEFAULT_MARGIN, source: str = ""
) -> dict[str, Any]:
    """The curve the device ships: every stranger against the whole enrolled gallery."""
    m = matcher_for(vecs, split, COMBINE)
    strs = m.person_scores(vecs[split.strangers])
    return Calibration.from_scores(strs, margin, source).as_manifest(int(strs.size))


def gallery_draws(full: Split, seed: int, n: int = 5, size: int = 100) -> list[list[str]]:
    """The `gallery_100` draws: `n` random sets of `size` enrolled people, the same for a
    given seed wherever they are measured."""
    rng = np.random.default_rng(seed)
    return [list(rng.choice(full.people, size, replace=False)) for _ in range(n)]


def quality_weights(quality: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Template weights from the device's quality figures (appliance.vision.quality), each in 0..1:
    pose alone, sharpness alone (blur against the median image's, capped at 1), and the
    product of those with the detector score."""
    sharp = np.minimum(1.0, quality["blur"] / float(np.median(quality["blur"])))
    frontal = quality["frontal"]
    return {
        "frontal": frontal,
        "sharpness": sharp,
        "score_frontal_sharpness": quality["score"] * frontal * sharp,
    }


def weighted(
    vecs: np.ndarray, files: list[str], quality: dict[str, np.ndarray], seed: int = 0
) -> dict[str, Any]:
    """Quality-weighted centroids against the plain centroid, on enrol_2 and gallery_100
    (the same draws as `run`), with the same cross-validated thresholds."""
    full = make_split(files, 2)
    subsets = gallery_draws(full, seed)
    out: dict[str, Any] = {}
    for name, w in quality_weights(quality).items():
        w = np.maximum(w, 1e-3).astype(np.float32)  # a zero weight would drop the template
        e2 = cross_validated(vecs, files, full, COMBINE, TARGETS["attendance"], weights=w)
        draws = [
            {
                "access": cross_validated(
                    vecs,
                    files,
                    make_split(files, 2, sub),
                    COMBINE,
                    TARGETS["access"],
                    calibrate_on=full,
                    weights=w,
                )
            }
            for sub in subsets
        ]
        out[name] = {"enrol_2": e2, "gallery_100": _mean_of(draws, "access")}
    return out


def run(
    vecs_by_variant: dict[str, np.ndarray],
    files: list[str],
    quality: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All entries of the report. `vecs_by_variant` maps e.g. 'plain'/'flip' to (n, d);
    `quality` (per image, see `quality_weights`) adds the quality-weighting measurement."""
    out: dict[str, Any] = {"variants": {}}
    main = "plain"
    for variant, vecs in vecs_by_variant.items():
        res: dict[str, Any] = {}
        for k in (1, 2):
            split = make_split(files, k)
            for combine in (COMBINE, "best") if k == 2 else (COMBINE,):
                key = f"enrol_{k}" + ("" if combine == COMBINE else f"_{combine}")
                res[key] = {
                    mode: cross_validated(vecs, files, split, combine, t)
                    for mode, t in TARGETS.items()
                }
        full = make_split(files, 2)
        draws, self_cal = [], []
        for subset in gallery_draws(full, seed):
            split = make_split(files, 2, subset)
            draws.append(
                {
                    mode: cross_validated(vecs, files, split, COMBINE, t, calibrate_on=full)
                    for mode, t in TARGETS.items()
                }
            )
            self_cal.append(
                {
                    mode: cross_validated(vecs, files, split, COMBINE, t)
                    for mode, t in TARGETS.items()
                }
            )
        res["gallery_100"] = {mode: _mean_of(draws, mode) for mode in TARGETS}
        res["gallery_100"]["draws"] = 5
        res["gallery_100"]["calibration"] = (
            "p(t) from the other half's single-image "
            "strangers against all 747 people, mapped to "
            "100 (what the device does)"
        )
        res["gallery_100_self_calibrated"] = {mode: _mean_of(self_cal, mode) for mode in TARGETS}
        res["gallery_100_self_calibrated"]["calibration"] = (
            "p(t) from the other half's strangers against the 100 people drawn"
        )
        out["variants"][variant] = res
    base = out["variants"][main]
    out["enrol_1"] = {"operating_point": base["enrol_1"]["attendance"], **base["enrol_1"]}
    out["enrol_2"] = {"operating_point": base["enrol_2"]["attendance"], **base["enrol_2"]}
    out["gallery_100"] = {"operating_point": base["gallery_100"]["access"], **base["gallery_100"]}
    out["curve_enrol_2"] = curve(vecs_by_variant[main], make_split(files, 2), COMBINE)
    out["combine"] = COMBINE
    if quality is not None:
        out["quality_weighting"] = weighted(vecs_by_variant[main], files, quality, seed)
    return out


def _mean_of(draws: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    keys = ("correct_accept", "wrong_person_accept", "stranger_accept", "false_reject")
    res: dict[str, Any] = {k: round(float(np.mean([d[mode][k] for d in draws])), 3) for k in keys}
    res["thresholds"] = [t for d in draws for t in d[mode]["thresholds"]]
    res["target_stranger_accept"] = draws[0][mode]["target_stranger_accept"]
    res["strangers_per_draw"] = draws[0][mode]["counts"]["strangers"]
    res["stranger_accept_per_draw"] = [d[mode]["stranger_accept"] for d in draws]
    return res
