"""What each enrolment gate buys: LFW pairs split by the quality of the pair's worse photo.

A gate is worth its refusals only if the photos it refuses make worse matches. For every
LFW View-2 pair the worse of its two photos (lower score, closer eyes, more blur, less
frontal, as `appliance.vision.quality` measures them on the padded crop the enrolment
routes' second look sees) puts the pair in a band; per band this reports the genuine
pairs' true-accept rate at the threshold where all 3,000 impostor pairs give a false
accept rate of 1e-3, their mean cosine, and the impostor pairs' false accepts. A band
below a gate's default that matches as well as the bands above it is evidence that the
gate refuses photos the models handle; a band that matches worse is the gate's reason.
Bands with few pairs are noisy (at 100 genuine pairs one miss is a point): the counts
are beside every figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BANDS = {
    "score": (0.0, 0.5, 0.6, 0.7, 0.8),
    "eye_distance": (0.0, 25.0, 30.0, 35.0, 40.0, 45.0),
    "blur": (0.0, 10.0, 15.0, 20.0, 30.0),
    "frontal": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
}


def band_table(
    scores: np.ndarray,
    same: np.ndarray,
    worse: np.ndarray,
    edges: tuple[float, ...],
    threshold: float,
) -> list[dict[str, Any]]:
    """One row per band [lo, hi) of `worse` (the last band is open above)."""
    rows = []
    for lo, hi in zip(edges, (*edges[1:], np.inf), strict=True):
        m = (worse >= lo) & (worse < hi)
        g, i = m & same, m & ~same
        rows.append(
            {
                "band": [float(lo), None if np.isinf(hi) else float(hi)],
                "genuine_pairs": int(g.sum()),
                "tar_percent": round(100 * float((scores[g] >= threshold).mean()), 2)
                if g.any()
                else None,
                "mean_genuine_cosine": round(float(scores[g].mean()), 4) if g.any() else None,
                "impostor_pairs": int(i.sum()),
                "false_accepts": int((scores[i] >= threshold).sum()),
            }
        )
    return rows


def run(
    vecs: np.ndarray,
    files: list[str],
    quality: dict[str, np.ndarray],
    pairs: list[tuple[str, str, bool]],
    defaults: dict[str, float],
    far: float = 1e-3,
) -> dict[str, Any]:
    idx = {f: i for i, f in enumerate(files)}
    a = np.array([idx[p[0]] for p in pairs])
    b = np.array([idx[p[1]] for p in pairs])
    same = np.array([p[2] for p in pairs])
    scores = (vecs[a] * vecs[b]).sum(1)
    neg = np.sort(scores[~same])[::-1]
    threshold = float(neg[int(np.floor(far * len(neg)))] + 1e-7)
    out: dict[str, Any] = {
        "protocol": __doc__.strip().split("\n\n")[0],
        "far": far,
        "threshold": round(threshold, 4),
        "tar_percent_all": round(100 * float((scores[same] >= threshold).mean()), 2),
        "gates": {},
    }
    for key, edges in BANDS.items():
        worse = np.minimum(quality[key][a], quality[key][b])
        out["gates"][key] = {
            "default": defaults[key],
            "images_refused_percent": round(100 * float((quality[key] < defaults[key]).mean()), 1),
            "bands": band_table(scores, same, worse, edges, threshold),
        }
    return out


def print_table(result: dict[str, Any]) -> None:
    print(
        f"threshold {result['threshold']} (FAR {result['far']:g} over all impostor pairs), "
        f"TAR all {result['tar_percent_all']} %"
    )
    for key, g in result["gates"].items():
        print(f"{key}: default {g['default']}, refuses {g['images_refused_percent']} % of images")
        for r in g["bands"]:
            lo, hi = r["band"]
            print(
                f"  [{lo:g}, {'' if hi is None else f'{hi:g}'}) genuine {r['genuine_pairs']:5d}"
                f" TAR {r['tar_percent']} % mean cos {r['mean_genuine_cosine']}"
                f" | impostor {r['impostor_pairs']:5d} false accepts {r['false_accepts']}"
            )
