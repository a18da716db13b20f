"""The liveness decision: access fails closed (`denied`/`presentation_attack`, never
`granted`, and never by a timeout), attendance flags, events carry the figures; and the
frame loop holds a recognised visit until its liveness verdict is in."""

from __future__ import annotations

import types

import numpy as np

from appliance.access.decider import Decider
from appliance.access.events import Origin
from appliance.access.policy import PRESENTATION_ATTACK, AccessPolicy, Decision, Rules
from appliance.config.schema import Config, LivenessConfig, RecognitionConfig, parse
from appliance.frame_loop import FrameLoop
from appliance.identity.matcher import Match, Thresholds
from appliance.identity.tracker import Track, Tracker, Verdict, VoteRules
from appliance.liveness.verdict import Observation


def test_access_denies_a_face_that_is_not_live_before_the_rules():
    p = AccessPolicy(Rules("access", 60.0))
    assert p.decide("p1", 0.0, "d", live=False) == Decision("denied", PRESENTATION_ATTACK)
    assert p.decide("p1", 100.0, "d", live=True) == Decision("granted")
    assert p.decide("p2", 0.0, "d") == Decision("granted")  # liveness off
    assert p.decide(None, 0.0, "d", live=False) == Decision("unknown")


def test_attendance_records_the_visit_whatever_liveness_says():
    p = AccessPolicy(Rules("attendance", 60.0))
    assert p.decide("p1", 0.0, "d", live=False) == Decision("check_in")


def test_config_liveness_section_is_strict():
    cfg = parse("liveness:\n  mode: planarity\n  planarity_min: 0.05\n")
    assert cfg.liveness.mode == "planarity" and cfg.liveness.planarity_min == 0.05
    try:
        parse("liveness:\n  mode: sometimes\n")
    except ValueError as exc:
        assert "liveness.mode" in str(exc)
    else:
        raise AssertionError("a bad mode was accepted")


class Events:
    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.faces: list[np.ndarray | None] = []

    def publish(self, e: object) -> None:
        self.payloads.append(e.payload)  # type: ignore[attr-defined]
        self.faces.append(e.face)  # type: ignore[attr-defined]


def _verdict(track: Track, person: str | None = "p1") -> Verdict:
    m = Match(person, "Ann" if person else None, 0.8, "p1", 0.1, Thresholds(0.5, 0.05))
    return Verdict(track, person, m.name, 0.8, 0.7, 0.5, 3, m)


def _loop(mode: str, liveness: str) -> tuple[FrameLoop, Events]:
    cfg = Config(recognition=RecognitionConfig(mode=mode), liveness=LivenessConfig(mode=liveness))
    events = Events()
    origin = Origin(mode, "cam", "dev", {})
    decider = Decider(AccessPolicy(Rules(mode, 60.0)), origin, events, {"events": 0})
    loop = FrameLoop.__new__(FrameLoop)  # only the decision path: no camera, no models
    loop.recogniser = types.SimpleNamespace(cfg=cfg)
    loop.decider = decider
    loop.tracker = Tracker(VoteRules())
    return loop, events


def _flat(n: int) -> list[Observation]:
    pts = np.random.default_rng(0).uniform(0, 100, (396, 2)).astype(np.float32)
    return [Observation(0.1 * k, pts, 60.0, 0.3) for k in range(n)]


def test_recognised_but_undecided_liveness_waits_then_is_denied_when_the_visit_ends():
    loop, events = _loop("access", "planarity")
    t = Track(1, np.array([0, 0, 10, 10], np.float32), 0.0, 0)
    t.evidence = _flat(4)
    loop.tracker.tracks.append(t)
    loop._decide(_verdict(t), None, ended=False)
    assert events.payloads == [] and t.pending is not None  # no verdict yet: no event
    t.missed = 100
    loop.expire()  # the person left before liveness passed: fail closed
    (e,) = events.payloads
    assert e["decision"] == "denied" and e["reason"] == PRESENTATION_ATTACK
    assert e["live"] is False
    assert e["liveness"]["signals"]["planarity"]["threshold"] == 0.06


def test_liveness_off_grants_as_before_and_attendance_flags():
    loop, events = _loop("access", "off")
    t = Track(1, np.array([0, 0, 10, 10], np.float32), 0.0, 0)
    loop._decide(_verdict(t), None, ended=False)
    assert events.payloads[-1]["decision"] == "granted"
    assert "liveness" not in events.payloads[-1] and "live" not in events.payloads[-1]

    loop, events = _loop("attendance", "planarity")
    t = Track(2, np.array([0, 0, 10, 10], np.float32), 0.0, 0)
    t.evidence = _flat(20)
    t.evidence.append(Observation(3.0, t.evidence[0].points, 60.0, 0.3))  # window over
    loop._decide(_verdict(t), None, ended=False)
    assert events.payloads[-1]["decision"] == "check_in"
    assert events.payloads[-1]["live"] is False


def test_unknown_faces_are_not_held_for_liveness():
    loop, events = _loop("access", "planarity")
    t = Track(1, np.array([0, 0, 10, 10], np.float32), 0.0, 0)
    loop._decide(_verdict(t, None), None, ended=False)
    assert events.payloads[-1]["decision"] == "unknown"


def test_a_visit_decided_as_it_leaves_shows_its_best_face():
    """A stranger's visit is decided as they leave, when there is no current frame: the
    decision still carries a face, the one of the best-weighted vote, so the snapshot
    and the event log show who it was."""
    loop, events = _loop("access", "off")
    box = np.array([0, 0, 10, 10], np.float32)
    (t,) = loop.tracker.update([box], 0, 0.0)
    stranger = Match(None, None, 0.3, "p1", 0.1, Thresholds(0.5, 0.05))
    crops = [np.full((112, 112, 3), k, np.uint8) for k in (10, 20, 30)]
    for crop, weight in zip(crops, (0.4, 0.9, 0.2), strict=True):
        assert loop.tracker.vote(t, stranger, weight, types.SimpleNamespace(aligned=crop)) is None
    for k in range(loop.tracker.rules.max_missed + 1):
        loop.tracker.update([], 1 + k, 0.0)
    loop.expire()
    (e,) = events.payloads
    assert e["decision"] == "unknown"
    assert events.faces[0] is crops[1]  # weight 0.9, not the last frame's
