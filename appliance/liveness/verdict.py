"""The per-visit liveness verdict: from the face meshes of a track to live / attack.

The verdict is incremental, as the frame loop needs it: each processed frame of a track
adds an `Observation`; the visit is judged live the first time the required signals
pass their thresholds, and judged an attack once `max_s` seconds of the visit have gone
by (or the track leaves) without that. Until then it is undecided, and undecided is no
grant (the policy fails closed).

Modes (`liveness.mode`): `off`; `planarity` (the face must move out of plane: a
homography does not explain its mesh motion); `blink`; `any` (either signal);
`both` (both signals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from appliance.liveness import MODES
from appliance.liveness.signals import (
    RIGID,
    blink_score,
    blink_scores,
    planarity_score,
    planarity_scores,
)
from appliance.vision.landmarks import Landmarks

__all__ = ["MODES", "LiveVerdict", "LivenessRules", "Observation", "judge"]


@dataclass(frozen=True)
class Observation:
    """What liveness keeps of one frame of a face: no pixels, only geometry."""

    t: float  # seconds since the visit's first observation (capture clock)
    points: np.ndarray  # (len(RIGID), 2) rigid mesh points, frame pixels
    eye_distance: float
    ear: float

    @classmethod
    def of(cls, lm: Landmarks, t: float) -> Observation:
        eyes = lm.eye_centres()
        return cls(
            t=float(t),
            points=lm.points[RIGID, :2].astype(np.float32),
            eye_distance=float(np.linalg.norm(eyes[1] - eyes[0])),
            ear=lm.eye_aspect_ratio(),
        )


@dataclass(frozen=True)
class LivenessRules:
    """The config's `liveness` section as the verdict needs it (defaults: config.yaml's)."""

    mode: str = "off"
    planarity_min: float = 0.06  # homography residual, eye distances
    blink_min: float = 0.35  # EAR dip, fraction of the open EAR
    min_frames: int = 3  # observations before any verdict
    max_s: float = 1.5  # seconds of a visit to find the evidence in
    attendance_flag: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> LivenessRules:
        """From a `LivenessConfig` (or a whole `Config`), or the defaults for None."""
        if cfg is None:
            return cls()
        sec = getattr(cfg, "liveness", cfg)
        return cls(
            sec.mode,
            sec.planarity_min,
            sec.blink_min,
            sec.min_frames,
            sec.max_s,
            sec.attendance_flag,
        )

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def with_mode(self, mode: str) -> LivenessRules:
        return replace(self, mode=mode)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LiveVerdict:
    live: bool | None  # None: not decided yet
    decided_s: float | None  # visit time of the deciding observation
    signals: dict[str, float]  # each signal's score over the frames seen
    frames: int

    def figures(self, rules: LivenessRules) -> dict[str, Any]:
        """What an event carries: the mode, each signal's score and threshold."""
        return {
            "mode": rules.mode,
            "live": self.live,
            "frames": self.frames,
            "signals": {
                name: {"score": round(score, 4), "threshold": _threshold(name, rules)}
                for name, score in self.signals.items()
            },
        }


def _threshold(name: str, rules: LivenessRules) -> float:
    return rules.planarity_min if name == "planarity" else rules.blink_min


def scores(obs: list[Observation]) -> dict[str, float]:
    return {
        "planarity": planarity_score([o.points for o in obs], [o.eye_distance for o in obs]),
        "blink": blink_score([o.ear for o in obs]),
    }


def passes(sig: dict[str, float], rules: LivenessRules) -> bool:
    p = sig["planarity"] >= rules.planarity_min
    b = sig["blink"] >= rules.blink_min
    return {"planarity": p, "blink": b, "any": p or b, "both": p and b}.get(rules.mode, False)


def judge(obs: list[Observation], rules: LivenessRules, ended: bool = True) -> LiveVerdict:
    """The verdict on the observations so far. Live at the first prefix (of at least
    `min_frames`, within `max_s`) whose signals pass; an attack when no prefix within
    `max_s` does and the window is over (a later observation, or `ended`: the track
    left); else undecided."""
    window = [o for o in obs if o.t <= obs[0].t + rules.max_s] if obs else []
    if len(window) >= rules.min_frames:
        plan = planarity_scores([o.points for o in window], [o.eye_distance for o in window])
        blink = blink_scores([o.ear for o in window])
        for k in range(rules.min_frames, len(window) + 1):
            sig = {"planarity": float(plan[k - 1]), "blink": float(blink[k - 1])}
            if passes(sig, rules):
                return LiveVerdict(True, window[k - 1].t - window[0].t, sig, k)
    sig = scores(window) if window else {"planarity": 0.0, "blink": 0.0}
    over = ended or len(obs) > len(window)
    if over:
        t = window[-1].t - window[0].t if window else None
        return LiveVerdict(False, t, sig, len(window))
    return LiveVerdict(None, None, sig, len(window))
