"""tools/gates_eval.py: the band table that says what an enrolment gate buys."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import gates_eval


def _pairs_and_vectors() -> tuple[np.ndarray, list[str], dict[str, np.ndarray], list]:
    """Ten people with two photos each; person 0's second photo is small (eyes 20 px) and
    its vector points away from the first, so only its genuine pair fails."""
    rng = np.random.default_rng(0)
    files, vecs, eyes = [], [], []
    for p in range(10):
        base = rng.normal(size=64)
        for k in range(2):
            files.append(f"p{p}_{k}.jpg")
            v = -base if (p == 0 and k == 1) else base + rng.normal(size=64) * 0.1
            vecs.append(v / np.linalg.norm(v))
            eyes.append(20.0 if (p == 0 and k == 1) else 50.0)
    pairs = [(f"p{p}_0.jpg", f"p{p}_1.jpg", True) for p in range(10)]
    pairs += [(f"p{p}_0.jpg", f"p{(p + 1) % 10}_1.jpg", False) for p in range(10)]
    ones = np.ones(len(files), np.float32)
    quality = {
        "score": ones,
        "eye_distance": np.array(eyes, np.float32),
        "blur": ones * 100,
        "frontal": ones,
    }
    return np.array(vecs, np.float32), files, quality, pairs


def test_the_band_below_a_gate_shows_its_worse_matches():
    vecs, files, quality, pairs = _pairs_and_vectors()
    defaults = {"score": 0.6, "eye_distance": 30.0, "blur": 20.0, "frontal": 0.3}
    out = gates_eval.run(vecs, files, quality, pairs, defaults, far=0.0)
    eye = out["gates"]["eye_distance"]
    assert eye["images_refused_percent"] == 5.0  # 1 of 20 photos
    by_band = {tuple(r["band"]): r for r in eye["bands"]}
    small = by_band[(0.0, 25.0)]
    large = by_band[(45.0, None)]
    assert (small["genuine_pairs"], small["impostor_pairs"]) == (1, 1)
    assert small["tar_percent"] == 0.0
    assert large["genuine_pairs"] == 9 and large["tar_percent"] == 100.0
    assert small["mean_genuine_cosine"] < large["mean_genuine_cosine"]
    # No impostor pair is above the threshold chosen at FAR 0.
    assert sum(r["false_accepts"] for r in eye["bands"]) == 0
    # A band nobody falls in is reported empty, not as a rate.
    assert by_band[(30.0, 35.0)]["tar_percent"] is None
