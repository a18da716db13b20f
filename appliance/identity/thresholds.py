"""From a target stranger-accept rate and the gallery's size to accept thresholds.

A stranger is accepted when their best person in the gallery scores at or above the
threshold. With a per-person impostor rate p(t) (how often one enrolled person's
templates score at least t against someone else), a gallery of N people accepts a
stranger with probability about 1 - (1 - p(t))^N. So the same threshold that is safe
for a family of 4 lets strangers in at an office of 500; the threshold must grow with N.

p(t) is measured, not guessed: `tools/evaluate.py identify --write-calibration` computes
it on LFW (every single-image identity against every enrolled person's template centroid)
and stores it in models/manifest.json next to the embedder it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.identity.matcher import Thresholds

DEFAULT_TARGETS = {"access": 0.001, "attendance": 0.01}  # stranger-accept rate per visit
DEFAULT_MARGIN = 0.05
GRID = np.round(np.arange(0.20, 0.9501, 0.005), 4)


@dataclass(frozen=True)
class Calibration:
    thresholds: np.ndarray  # increasing grid of cosine thresholds
    person_far: np.ndarray  # p(t) at each grid point
    margin: float
    source: str
    # What aligned the faces it was measured on (appliance.vision.detectors.alignment);
    # entries written before it was recorded were all BlazeFace-aligned.
    aligned_by: str = "blazeface"

    @classmethod
    def from_scores(
        cls, impostor: np.ndarray, margin: float = DEFAULT_MARGIN, source: str = ""
    ) -> Calibration:
        """`impostor`: per-person best-of cosines of strangers against enrolled people."""
        s = np.sort(np.asarray(impostor, np.float64).ravel())
        far = 1.0 - np.searchsorted(s, GRID, side="left") / max(len(s), 1)
        return cls(GRID.copy(), far, margin, source)

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> Calibration:
        return cls(
            np.asarray(entry["thresholds"], np.float64),
            np.asarray(entry["person_far"], np.float64),
            float(entry["margin"]),
            str(entry.get("source", "")),
            str(entry.get("aligned_by", "blazeface")),
        )

    def as_manifest(self, comparisons: int) -> dict[str, Any]:
        return {
            "what": "p(t): fraction of (stranger, enrolled person) cosines >= t",
            "source": self.source,
            "comparisons": comparisons,
            "margin": self.margin,
            "thresholds": [float(t) for t in self.thresholds],
            "person_far": [float(f"{v:.3g}") for v in self.person_far],
        }

    def stranger_accept(self, threshold: float, people: int) -> float:
        """Predicted stranger-accept rate of a gallery of `people` at `threshold`."""
        p = float(np.interp(threshold, self.thresholds, self.person_far))
        return 1.0 - (1.0 - p) ** max(people, 1)

    def for_target(self, target: float, people: int) -> Thresholds:
        """The lowest grid threshold whose predicted stranger-accept rate is <= target.

        The grid is coarse (0.005) and p(t) is a point estimate: at a door's targets it
        rests on a handful of strangers, so measured rates land near the target, on
        either side (README, open-set identification). Taking p(t) at a 95 % upper
        bound instead was tried: it cannot certify 0.1 % for hundreds of people from
        LFW's few thousand strangers at all, and rejected nearly everyone there.
        """
        n = max(people, 1)
        per_person = 1.0 - (1.0 - target) ** (1.0 / n)
        ok = np.nonzero(self.person_far <= per_person)[0]
        t = float(self.thresholds[ok[0]]) if ok.size else float(self.thresholds[-1])
        why = (
            f"target stranger-accept {target:.3%} for {n} people "
            f"(p(t) <= {per_person:.2e} per person; {self.source})"
        )
        return Thresholds(t, self.margin, why)


def calibration_key(aligned_by: str) -> str:
    """The manifest key of the curve measured on faces aligned by `aligned_by`:
    `open_set` for BlazeFace's keypoints (the first one measured), `open_set_<name>`
    for another (e.g. `open_set_mesh`)."""
    return "open_set" if aligned_by == "blazeface" else f"open_set_{aligned_by}"


def load_calibration(
    embedder: str, flip: bool, aligned_by: str = "blazeface"
) -> Calibration | None:
    """The curve measured for this embedder, flip setting and alignment, if the manifest
    has one."""
    from appliance.vision.pipeline import load_manifest

    entry = load_manifest()["models"][embedder].get(calibration_key(aligned_by), {})
    cal = entry.get("flip" if flip else "plain")
    return Calibration.from_manifest(cal) if cal else None


def resolve(
    calibration: Calibration | None,
    mode: str,
    people: int,
    target: float | None = None,
    fixed: float | None = None,
    margin: float | None = None,
) -> Thresholds:
    """The thresholds the device uses: a fixed override, else the calibrated mapping."""
    m = margin if margin is not None else (calibration.margin if calibration else DEFAULT_MARGIN)
    if fixed is not None:
        return Thresholds(fixed, m, "fixed in config (recognition.threshold)")
    if calibration is None:
        raise ValueError(
            "no open-set calibration for this embedder in models/manifest.json; "
            "set recognition.threshold or run tools/evaluate.py identify "
            "--write-calibration"
        )
    th = calibration.for_target(target if target is not None else DEFAULT_TARGETS[mode], people)
    return Thresholds(th.accept, m, th.why)
