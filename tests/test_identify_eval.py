"""tools/identify_eval.py, the open-set protocol of issue 3, on synthetic embeddings.

The real figures come from `tools/evaluate.py identify` on ../shared/data/lfw; this checks
that the protocol's bookkeeping holds (who is enrolled, who is a stranger, thresholds from
the other half) and that quality weighting does what it claims, on data where the answer
is known: well-separated people, and a bad enrolment photo with a low quality figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import identify_eval as ie

DIM = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(bad_first_photo: bool = False, seed: int = 0):
    """120 people with 4 photos each (near their own centre), 600 single-photo strangers.

    With `bad_first_photo`, every person's first photo (an enrolment photo) is somebody
    else's face entirely, and its quality figures say so (pose and score near 0).
    """
    rng = np.random.default_rng(seed)
    files, vecs, frontal = [], [], []
    for p in range(120):
        centre = _unit(rng.normal(size=DIM))
        for k in range(4):
            v = _unit(centre + 0.5 * _unit(rng.normal(size=DIM)))
            bad = bad_first_photo and k == 0
            files.append(f"Person_{p:03d}_{k + 1:04d}.jpg")
            vecs.append(_unit(rng.normal(size=DIM)) if bad else v)
            frontal.append(0.01 if bad else 1.0)
    for s in range(600):
        files.append(f"Stranger_{s:03d}_0001.jpg")
        vecs.append(_unit(rng.normal(size=DIM)))
        frontal.append(1.0)
    n = len(files)
    quality = {
        "score": np.array(frontal, np.float32),
        "frontal": np.array(frontal, np.float32),
        "blur": np.full(n, 100.0, np.float32),
        "eye_distance": np.full(n, 60.0, np.float32),
    }
    return files, np.stack(vecs), quality


def test_split_enrols_people_with_three_photos_and_keeps_strangers_out():
    files, _, _ = synthetic()
    split = ie.make_split(files, 2)
    assert len(split.people) == 120
    assert all(len(e) == 2 for e in split.enrol)
    assert len(split.queries) == 120 * 2  # photos 3 and 4 of each
    assert len(split.strangers) == 600
    drawn = ie.make_split(files, 2, split.people[:100])
    # The 20 people not drawn become strangers to the 100-person gallery, all 4 photos each.
    assert len(drawn.strangers) == 600 + 20 * 4


def test_report_has_the_issue_keys_and_separable_people_are_named():
    files, vecs, quality = synthetic()
    res = ie.run({"plain": vecs}, files, quality)
    for entry in ("enrol_1", "enrol_2", "gallery_100"):
        op = res[entry]["operating_point"]
        assert set(op) >= {
            "correct_accept",
            "wrong_person_accept",
            "stranger_accept",
            "false_reject",
            "thresholds",
        }
    op = res["enrol_2"]["operating_point"]
    assert op["correct_accept"] > 95.0
    assert op["wrong_person_accept"] == 0.0
    assert op["counts"]["genuine"] == 240 and op["counts"]["strangers"] == 600
    assert set(res["quality_weighting"]) == {"frontal", "sharpness", "score_frontal_sharpness"}


def test_quality_weighting_discounts_a_bad_enrolment_photo():
    files, vecs, quality = synthetic(bad_first_photo=True)
    split = ie.make_split(files, 2)
    target = ie.TARGETS["attendance"]
    plain = ie.cross_validated(vecs, files, split, ie.COMBINE, target)
    weighted = ie.cross_validated(
        vecs, files, split, ie.COMBINE, target, weights=quality["frontal"]
    )
    # Half of each plain centroid is noise; the weighted one is almost only the good photo.
    assert weighted["correct_accept"] > plain["correct_accept"] + 5.0
    assert weighted["stranger_accept"] <= 2.0
