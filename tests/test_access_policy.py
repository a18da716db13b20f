"""The access decision on its own: cooldown at its boundary, attendance check-in and
check-out across a day, the rules' denial with its reason, and the event payload built
from a verdict."""

from __future__ import annotations

import numpy as np

from appliance.access.events import Origin, event_payload
from appliance.access.policy import AccessPolicy, Decision, Rules
from appliance.identity.matcher import Match, Thresholds
from appliance.identity.tracker import Track, Verdict


def policy(mode: str = "access", cooldown: float = 60.0, check=None):
    if check is None:
        return AccessPolicy(Rules(mode, cooldown))
    return AccessPolicy(Rules(mode, cooldown), check)


def d(p: AccessPolicy, person, now: float, day: str = "d") -> str | None:
    got = p.decide(person, now, day)
    return None if got is None else got.decision


def test_cooldown_suppresses_until_exactly_its_end():
    p = policy(cooldown=60.0)
    assert d(p, "ann", 1000.0, "2026-12-01") == "granted"
    assert d(p, "ann", 1059.999, "2026-12-01") is None
    assert d(p, "ann", 1060.0, "2026-12-01") == "granted"  # 60 s later: a new visit
    assert d(p, "bob", 1000.5, "2026-12-01") == "granted"  # per person


def test_suppressed_decisions_do_not_extend_the_cooldown():
    p = policy(cooldown=10.0)
    assert d(p, "ann", 0.0, "d") == "granted"
    assert d(p, "ann", 9.0, "d") is None
    assert d(p, "ann", 10.0, "d") == "granted"


def test_strangers_are_unknown_and_never_suppressed():
    p = policy(cooldown=60.0)
    assert d(p, None, 0.0, "d") == "unknown"
    assert d(p, None, 0.1, "d") == "unknown"


def test_the_rules_deny_with_their_reason_and_a_changed_outcome_is_not_held_back():
    open_from = 100.0  # "staff" opens at t=100

    def check(person: str, now: float) -> tuple[str, str | None]:
        if person != "ann":
            return "denied", "not_in_group"
        return ("granted", None) if now >= open_from else ("denied", "outside_schedule")

    p = policy(cooldown=60.0, check=check)
    assert p.decide("ann", 90.0, "d") == Decision("denied", "outside_schedule")
    assert p.decide("ann", 95.0, "d") is None  # the same refusal: one per visit
    assert p.decide("ann", 100.0, "d") == Decision("granted")  # opening time: not held back
    assert p.decide("ann", 120.0, "d") is None
    assert p.decide("bob", 0.0, "d") == Decision("denied", "not_in_group")
    assert d(policy(), "cid", 0.0) == "granted"  # no rules: everyone enrolled


def test_attendance_checks_in_then_out_and_starts_over_each_day():
    p = policy("attendance", cooldown=0.0)
    assert d(p, "ann", 0.0, "2026-12-01") == "check_in"
    assert d(p, "ann", 1.0, "2026-12-01") == "check_out"
    assert d(p, "ann", 2.0, "2026-12-01") == "check_in"
    assert d(p, "ann", 3.0, "2026-12-02") == "check_in"  # a new day: in again
    assert d(p, "bob", 3.0, "2026-12-02") == "check_in"


def test_check_out_left_open_yesterday_is_a_check_in_today():
    p = policy("attendance", cooldown=0.0)
    assert d(p, "ann", 0.0, "2026-12-01") == "check_in"
    assert d(p, "ann", 86400.0, "2026-12-02") == "check_in"


def test_forget_erases_the_person():
    p = policy("attendance", cooldown=60.0)
    assert d(p, "ann", 0.0, "d") == "check_in"
    p.forget("ann")
    assert d(p, "ann", 1.0, "d") == "check_in"  # no cooldown, no state left


def test_event_payload_has_every_documented_field():
    th = Thresholds(0.5, 0.05, "test")
    m = Match("pid1", "Ann", 0.8, "Ann", 0.3, th)
    track = Track(7, np.array([1.0, 2.0, 3.0, 4.0]), 12.3456, 5)
    v = Verdict(track, "pid1", "Ann", 0.81234, 0.31, 0.5, 3, m)
    origin = Origin("access", "demo", "door1", {"detector": "d", "embedder": "e"})
    p = event_payload(v, "granted", "ev1", 100.0, origin)
    assert set(p) == {
        "event_id", "type", "decision", "reason", "person_id", "name", "candidate", "score",
        "margin", "threshold", "margin_required", "frames", "box", "first_seen", "decided",
        "camera", "device", "models", "replayed",
    }  # fmt: skip
    assert p["decision"] == "granted" and p["score"] == 0.8123 and p["replayed"] is False
    assert p["box"] == [1.0, 2.0, 3.0, 4.0] and p["first_seen"] == 12.346
