"""The access decision on its own: cooldown at its boundary, attendance check-in and
check-out across a day, group denial, and the event payload built from a verdict."""

from __future__ import annotations

import numpy as np

from appliance.access.events import Origin, event_payload
from appliance.access.policy import AccessPolicy, Rules
from appliance.identity.matcher import Match, Thresholds
from appliance.identity.tracker import Track, Verdict


def policy(mode: str = "access", cooldown: float = 60.0, groups: tuple[str, ...] = ()):
    return AccessPolicy(Rules(mode, cooldown, groups))


def test_cooldown_suppresses_until_exactly_its_end():
    p = policy(cooldown=60.0)
    assert p.decide("ann", None, 1000.0, "2026-12-01") == "granted"
    assert p.decide("ann", None, 1059.999, "2026-12-01") is None
    assert p.decide("ann", None, 1060.0, "2026-12-01") == "granted"  # 60 s later: a new visit
    assert p.decide("bob", None, 1000.5, "2026-12-01") == "granted"  # per person


def test_suppressed_decisions_do_not_extend_the_cooldown():
    p = policy(cooldown=10.0)
    assert p.decide("ann", None, 0.0, "d") == "granted"
    assert p.decide("ann", None, 9.0, "d") is None
    assert p.decide("ann", None, 10.0, "d") == "granted"


def test_strangers_are_unknown_and_never_suppressed():
    p = policy(cooldown=60.0)
    assert p.decide(None, None, 0.0, "d") == "unknown"
    assert p.decide(None, None, 0.1, "d") == "unknown"


def test_groups_deny_the_others():
    p = policy(groups=("staff",))
    assert p.decide("ann", "staff", 0.0, "d") == "granted"
    assert p.decide("bob", "visitors", 0.0, "d") == "denied"
    assert p.decide("cid", None, 0.0, "d") == "denied"
    assert policy().decide("cid", None, 0.0, "d") == "granted"  # no groups: everyone enrolled


def test_attendance_checks_in_then_out_and_starts_over_each_day():
    p = policy("attendance", cooldown=0.0)
    assert p.decide("ann", None, 0.0, "2026-12-01") == "check_in"
    assert p.decide("ann", None, 1.0, "2026-12-01") == "check_out"
    assert p.decide("ann", None, 2.0, "2026-12-01") == "check_in"
    assert p.decide("ann", None, 3.0, "2026-12-02") == "check_in"  # a new day: in again
    assert p.decide("bob", None, 3.0, "2026-12-02") == "check_in"


def test_check_out_left_open_yesterday_is_a_check_in_today():
    p = policy("attendance", cooldown=0.0)
    assert p.decide("ann", None, 0.0, "2026-12-01") == "check_in"
    assert p.decide("ann", None, 86400.0, "2026-12-02") == "check_in"


def test_forget_erases_the_person():
    p = policy("attendance", cooldown=60.0)
    assert p.decide("ann", None, 0.0, "d") == "check_in"
    p.forget("ann")
    assert p.decide("ann", None, 1.0, "d") == "check_in"  # no cooldown, no state left


def test_event_payload_has_every_documented_field():
    th = Thresholds(0.5, 0.05, "test")
    m = Match("pid1", "Ann", 0.8, "Ann", 0.3, th)
    track = Track(7, np.array([1.0, 2.0, 3.0, 4.0]), 12.3456, 5)
    v = Verdict(track, "pid1", "Ann", 0.81234, 0.31, 0.5, 3, m)
    origin = Origin("access", "demo", "door1", {"detector": "d", "embedder": "e"})
    p = event_payload(v, "granted", "ev1", 100.0, origin)
    assert set(p) == {
        "event_id", "type", "decision", "person_id", "name", "candidate", "score", "margin",
        "threshold", "margin_required", "frames", "box", "first_seen", "decided", "camera",
        "device", "models", "replayed",
    }  # fmt: skip
    assert p["decision"] == "granted" and p["score"] == 0.8123 and p["replayed"] is False
    assert p["box"] == [1.0, 2.0, 3.0, 4.0] and p["first_seen"] == 12.346
