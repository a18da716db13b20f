"""Tracking and voting: one decision per visit, from several frames that agree.

A single frame can be blurred, turned or half-lit; a person standing at a door gives
many frames. Faces are linked across frames by box overlap (IoU), each track collects
the matcher's verdicts of its good frames, and a track is decided once:
- a person, when `min_frames` accepted frames name them and they hold the majority of
  the quality-weighted votes;
- `unknown`, when `unknown_frames` frames were not accepted as anyone, or the track
  reached `max_frames` votes, or it left the picture after at least `min_frames` votes
  without a majority.
A track that leaves with fewer votes is dropped silently (a glimpse is not a visit).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.identity.matcher import Match
from appliance.vision.detect import iou


@dataclass(frozen=True)
class VoteRules:
    min_frames: int = 3
    unknown_frames: int = 10
    max_frames: int = 20
    iou: float = 0.3
    max_missed: int = 8  # processed frames a track survives without its face


@dataclass
class Vote:
    match: Match
    weight: float


@dataclass
class Track:
    id: int
    box: np.ndarray
    first_seen: float  # capture time (wall clock) of the first frame with this face
    last_frame: int
    votes: list[Vote] = field(default_factory=list)
    missed: int = 0
    decided: bool = False
    frames_seen: int = 1
    # Liveness: the visit's observations (geometry only, appliance.liveness.verdict) and
    # a recognition verdict held back until the liveness verdict is in.
    evidence: list[Any] = field(default_factory=list)
    pending: Any = None
    # The face of the best-weighted vote: a visit decided as it leaves has no current
    # frame, and its decision (the snapshot, the event log) still shows who it was.
    best_face: Any = None
    best_weight: float = 0.0


@dataclass(frozen=True)
class Verdict:
    track: Track
    person_id: str | None
    name: str | None
    score: float  # mean raw cosine of the winning votes (or the best candidate's)
    margin: float
    threshold: float
    frames: int  # votes used
    last: Match  # the last matcher result, for its threshold and candidate


class Tracker:
    def __init__(self, rules: VoteRules) -> None:
        self.rules = rules
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, boxes: list[np.ndarray], frame: int, captured: float) -> list[Track]:
        """Assign this frame's boxes to tracks (greedy by IoU); returns the track per box."""
        out: list[Track | None] = [None] * len(boxes)
        free = set(range(len(self.tracks)))
        pairs = []
        for i, b in enumerate(boxes):
            if self.tracks:
                ious = iou(b, np.stack([t.box for t in self.tracks]))
                pairs += [(float(v), i, j) for j, v in enumerate(ious) if v >= self.rules.iou]
        for _, i, j in sorted(pairs, reverse=True):
            if out[i] is None and j in free:
                free.discard(j)
                t = self.tracks[j]
                t.box, t.last_frame, t.missed = boxes[i], frame, 0
                t.frames_seen += 1
                out[i] = t
        for i, b in enumerate(boxes):
            if out[i] is None:
                t = Track(next(self._ids), b, captured, frame)
                self.tracks.append(t)
                out[i] = t
        for j in free:
            self.tracks[j].missed += 1
        return [t for t in out if t is not None]

    def vote(self, track: Track, match: Match, weight: float, face: Any = None) -> Verdict | None:
        if track.decided:
            return None
        weight = max(weight, 1e-3)
        track.votes.append(Vote(match, weight))
        if face is not None and weight > track.best_weight:
            track.best_face, track.best_weight = face, weight
        return self._decide(track, leaving=False)

    def expire(self) -> list[Verdict]:
        """Drop tracks that left; a leaving track with enough votes is decided now."""
        gone = [t for t in self.tracks if t.missed > self.rules.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.rules.max_missed]
        verdicts = []
        for t in gone:
            if t.pending is not None:  # recognised, waiting for liveness: decide it now
                verdicts.append(t.pending[0])
                continue
            v = None if t.decided else self._decide(t, leaving=True)
            if v:
                verdicts.append(v)
        return verdicts

    def expire_all(self) -> list[Verdict]:
        """At shutdown: every track leaves now."""
        for t in self.tracks:
            t.missed = self.rules.max_missed + 1
        return self.expire()

    def _decide(self, t: Track, leaving: bool) -> Verdict | None:
        r = self.rules
        weights: dict[str, float] = {}
        counts: dict[str, int] = {}
        for v in t.votes:
            key = v.match.person_id or ""
            weights[key] = weights.get(key, 0.0) + v.weight
            counts[key] = counts.get(key, 0) + 1
        total = sum(weights.values())
        people = [k for k in counts if k]
        if people:
            best = max(people, key=lambda k: weights[k])
            if counts[best] >= r.min_frames and weights[best] > total / 2:
                return self._verdict(t, best)
        unknown = counts.get("", 0)
        if (
            unknown >= r.unknown_frames
            or len(t.votes) >= r.max_frames
            or (leaving and len(t.votes) >= r.min_frames)
        ):
            return self._verdict(t, None)
        return None

    def _verdict(self, t: Track, person_id: str | None) -> Verdict:
        t.decided = True
        if person_id:
            won = [v.match for v in t.votes if v.match.person_id == person_id]
            name = won[-1].name
        else:
            won = [v.match for v in t.votes]
            name = None
        score = float(np.mean([m.score for m in won]))
        margin = float(np.mean([m.margin for m in won]))
        last = t.votes[-1].match
        return Verdict(
            t, person_id, name, score, margin, last.thresholds.accept, len(t.votes), last
        )
