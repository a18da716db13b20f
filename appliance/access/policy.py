"""The access decision: who gets in, when an attendance event is a check-in or -out.

Pure: it is given the time and a function that applies the door's rules (groups,
schedules, validity, door mode: `access.schedule` through the `RuleBook`), and keeps
only its own small memory (when each person was last decided and how, each person's
attendance state today). No I/O, no clock of its own, so every rule is tested at its
boundary without a camera or broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.config.schema import Config

# person id, now -> ("granted", None) | ("denied", reason)
AccessCheck = Callable[[str, float], tuple[str, str | None]]


def everyone(person_id: str, now: float) -> tuple[str, str | None]:
    """A door with no rules: every enrolled person is granted."""
    return "granted", None


PRESENTATION_ATTACK = "presentation_attack"  # the denial reason of a failed liveness check


@dataclass(frozen=True)
class Rules:
    mode: str  # access | attendance
    cooldown_s: float  # one event per person per this many seconds

    @classmethod
    def from_config(cls, cfg: Config) -> Rules:
        return cls(cfg.recognition.mode, cfg.decision.cooldown_s)


@dataclass(frozen=True)
class Decision:
    decision: str  # granted | denied | unknown | check_in | check_out
    reason: str | None = None  # why a `denied`: outside_schedule, expired, ...


class AccessPolicy:
    def __init__(self, rules: Rules, check: AccessCheck = everyone) -> None:
        self.rules = rules
        self.check = check
        self._last: dict[str, tuple[float, Decision]] = {}
        self._attendance: dict[str, tuple[str, str]] = {}  # person -> (day, last decision)

    def decide(
        self, person_id: str | None, now: float, day: str, live: bool | None = None
    ) -> Decision | None:
        """The decision for a recognised person (or `unknown`); None when the person was
        decided the same way less than `cooldown_s` ago (one event per visit, not one per
        track). A different outcome (denied at 07:59, granted at 08:00) is not held back.

        `live` is the visit's liveness verdict when liveness is on (None: off). In access
        mode anything but True is `denied` with reason `presentation_attack`, before the
        door's rules are asked: a face that failed, or never passed, the check is no
        grant. Attendance records the visit either way (the event carries `live`)."""
        if person_id is None:
            return Decision("unknown")
        last = self._last.get(person_id)
        if self.rules.mode == "attendance":
            if last is not None and now - last[0] < self.rules.cooldown_s:
                return None
            prev = self._attendance.get(person_id)
            in_today = prev is not None and prev == (day, "check_in")
            d = Decision("check_out" if in_today else "check_in")
            self._attendance[person_id] = (day, d.decision)
        elif live is not None and live is not True:
            d = Decision("denied", PRESENTATION_ATTACK)
        else:
            d = Decision(*self.check(person_id, now))
            if last is not None and last[1] == d and now - last[0] < self.rules.cooldown_s:
                return None
        self._last[person_id] = (now, d)
        return d

    def forget(self, person_id: str) -> None:
        """A deleted person leaves no trace here either."""
        self._last.pop(person_id, None)
        self._attendance.pop(person_id, None)
