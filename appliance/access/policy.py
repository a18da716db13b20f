"""The access decision: who gets in, when an attendance event is a check-in or -out.

Pure: it is given the time and the person's group and keeps only its own small memory
(when each person was last decided, each person's attendance state today). No I/O, no
clock of its own, so every rule is tested at its boundary without a camera or broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.schema import Config


@dataclass(frozen=True)
class Rules:
    mode: str  # access | attendance
    cooldown_s: float  # one event per person per this many seconds
    allowed_groups: tuple[str, ...]  # access: empty means everyone enrolled

    @classmethod
    def from_config(cls, cfg: Config) -> Rules:
        return cls(cfg.recognition.mode, cfg.decision.cooldown_s, cfg.decision.allowed_groups)


class AccessPolicy:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._last: dict[str, float] = {}
        self._attendance: dict[str, tuple[str, str]] = {}  # person -> (day, last decision)

    def decide(self, person_id: str | None, group: str | None, now: float, day: str) -> str | None:
        """The decision for a recognised person (or `unknown`); None when the person was
        decided less than `cooldown_s` ago (one event per visit, not one per track)."""
        if person_id is None:
            return "unknown"
        last = self._last.get(person_id)
        if last is not None and now - last < self.rules.cooldown_s:
            return None
        self._last[person_id] = now
        if self.rules.mode == "attendance":
            prev = self._attendance.get(person_id)
            in_today = prev is not None and prev == (day, "check_in")
            decision = "check_out" if in_today else "check_in"
            self._attendance[person_id] = (day, decision)
            return decision
        groups = self.rules.allowed_groups
        return "granted" if not groups or group in groups else "denied"

    def forget(self, person_id: str) -> None:
        """A deleted person leaves no trace here either."""
        self._last.pop(person_id, None)
        self._attendance.pop(person_id, None)
