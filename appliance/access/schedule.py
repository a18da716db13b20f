"""When a door opens: access groups with weekly windows, holidays, per-person validity and
door modes, evaluated on the wall clock of the door's time zone.

Pure: every function is given the time and the rules; the only I/O is reading which zone
the system is in (`zone(None)`). The rules, and why they are so:

* A window belongs to the day it STARTS. "sat 22:00-02:00" is one stretch that opens on
  Saturday evening and closes on Sunday morning; a window whose end is not after its start
  runs past midnight. Deciding by the start day keeps one occurrence one unit: a holiday on
  Saturday cancels the whole night, including Sunday 01:00, instead of closing the door
  halfway through a shift that already began.
* A holiday is a local date on which the windows starting that day do not open. A shift
  that began the evening before still runs to its end on the holiday, for the same reason.
* DST: each occurrence is turned into one stretch of real time, from the first instant the
  door's clock shows its start until the last instant it shows its end. So nobody is turned
  away while the clock on the wall says the window is open: in the autumn both 02:30s are
  inside a 02:00-04:00 window, and a night shift 01:00-04:00 lasts 4 hours then and 2 hours
  in the spring. A time the clock skips (02:30 on the spring night in Europe) resolves to
  the first instant after the gap (03:00 local), for a start and an end alike; validity
  bounds given as local times follow the same rule.
* A door with no groups at all grants every enrolled, valid person, as it did before
  schedules existed: adding the first group is the moment the door starts to discriminate.
  Once groups exist a person must be in one of them (names of groups that no longer exist
  are ignored), and any one of their groups being open is enough.
* Validity (valid_from <= now < valid_until) is checked first and also in lockdown: an
  expired badge stays expired in an emergency. Lockdown lets in only its named group (or
  nobody), regardless of schedules, since lockdown is for emergencies. Passage mode holds
  the door unlocked while its group's schedule is open (`passage_open`, `next_change`);
  decisions about people stay as in normal mode.
* Overlapping windows inside one group are refused: they are always a typing mistake (a
  wider window already covers the narrower) and they would make the canonical form of a
  group depend on which of the two someone removes later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from appliance.access.wallclock import (
    DAY_NAMES,
    MINUTES_PER_DAY,
    ScheduleError,
    Window,
    _clock,
    _local_date,
    _overlap,
    _resolve,
    parse_window,
    zone,
)

__all__ = [
    "DAY_NAMES",
    "MINUTES_PER_DAY",
    "DoorMode",
    "Group",
    "ScheduleError",
    "Validity",
    "Window",
    "check",
    "next_change",
    "parse_window",
    "passage_open",
    "zone",
]

log = logging.getLogger(__name__)

MAX_WINDOWS = 32
MAX_HOLIDAYS = 366
HORIZON_S = 8 * 86400.0  # next_change looks this far ahead
MODES = ("normal", "passage", "lockdown")
REASONS = ("not_yet_valid", "expired", "lockdown", "not_in_group", "outside_schedule")

# ASCII: \d would otherwise take any script's digits, and int() would read them.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)


# --- groups -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A named set of weekly windows and holidays; members get in while a window is open."""

    name: str
    windows: tuple[Window, ...]
    holidays: frozenset[date] = field(default_factory=frozenset)  # local dates

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME.fullmatch(self.name) is None:
            raise ScheduleError(
                f"name: {self.name!r} is not a group name (1..64 of A-Z a-z 0-9 _ . -)"
            )
        if not isinstance(self.windows, tuple) or not all(
            isinstance(w, Window) for w in self.windows
        ):
            raise ScheduleError("windows: expected a tuple of Window")
        if len(self.windows) > MAX_WINDOWS:
            raise ScheduleError(
                f"windows: {len(self.windows)} windows, at most {MAX_WINDOWS} per group"
            )
        if not isinstance(self.holidays, frozenset) or not all(
            type(d) is date for d in self.holidays
        ):
            raise ScheduleError("holidays: expected a set of dates")
        if len(self.holidays) > MAX_HOLIDAYS:
            raise ScheduleError(
                f"holidays: {len(self.holidays)} dates, at most {MAX_HOLIDAYS} per group"
            )
        for i, a in enumerate(self.windows):
            for j in range(i + 1, len(self.windows)):
                b = self.windows[j]
                at = _overlap(a, b)
                if at is not None:
                    day, minute = divmod(at, MINUTES_PER_DAY)
                    raise ScheduleError(
                        f"windows[{i}] '{a.text()}' and windows[{j}] '{b.text()}' overlap "
                        f"(both open {DAY_NAMES[day].capitalize()} {_clock(minute)}); "
                        "merge them into one"
                    )

    @classmethod
    def from_dict(cls, name: str, spec: Mapping[str, object]) -> Group:
        """{"windows": ["mon-fri 08:00-18:00", ...], "holidays": ["2026-12-25", ...]};
        both keys optional (a group without windows is never open, useful for lockdown)."""
        if not isinstance(spec, Mapping):
            raise ScheduleError(
                f"group '{name}': expected a mapping with windows and holidays, "
                f"got {type(spec).__name__}"
            )
        unknown = sorted(str(k) for k in spec if k not in ("windows", "holidays"))
        if unknown:
            raise ScheduleError(f"{unknown[0]}: unknown key (known: windows, holidays)")
        windows = []
        for i, text in enumerate(_list(spec, "windows", MAX_WINDOWS)):
            try:
                windows.append(parse_window(text))
            except ScheduleError as e:
                raise ScheduleError(f"windows[{i}]: {e}") from None
        holidays: set[date] = set()
        for i, text in enumerate(_list(spec, "holidays", MAX_HOLIDAYS)):
            day = _parse_date(text, f"holidays[{i}]")
            if day in holidays:
                raise ScheduleError(f"holidays[{i}]: {text} is listed twice")
            holidays.add(day)
        return cls(name, tuple(windows), frozenset(holidays))

    def to_dict(self) -> dict[str, list[str]]:
        """The canonical form; `Group.from_dict(g.name, g.to_dict()) == g`."""
        return {
            "windows": [w.text() for w in self.windows],
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
        }

    def occurrences(self, first: date, last: date, tz: tzinfo) -> Iterator[tuple[float, float]]:
        """(open, close) unix times of every window starting on a local date first..last
        that is not a holiday, in start-date order."""
        day = first
        while day <= last:
            if day not in self.holidays:
                midnight = datetime.combine(day, time())
                for w in self.windows:
                    if day.weekday() in w.days:
                        start = midnight + timedelta(minutes=w.start_min)
                        end = start + timedelta(minutes=w.length_min)
                        opens = _resolve(start, tz, latest=False)
                        closes = _resolve(end, tz, latest=True)
                        if opens < closes:  # empty when both ends fall in one DST gap
                            yield opens, closes
            day += timedelta(days=1)

    def open_at(self, local: datetime) -> bool:
        """Whether a window is open at `local`, an aware datetime in the door's zone (its
        tzinfo is the zone the windows are read in; fold picks which autumn 02:30)."""
        tz = local.tzinfo
        if tz is None or local.utcoffset() is None:
            raise ScheduleError("local: a naive datetime; give one in the door's zone")
        t = local.timestamp()
        # A window is at most a day long on the wall clock, so by the clock only windows
        # that started today or yesterday can be open. One day more each side covers a
        # clock set back across midnight (America/Goose_Bay until 2010: 00:01 -> 23:01 of
        # the day before), after which the date on the clock goes backwards for an hour.
        today = local.date()
        return any(
            o <= t < c
            for o, c in self.occurrences(today - timedelta(days=2), today + timedelta(days=1), tz)
        )

    def open_now(self, now: float, tz: tzinfo) -> bool:
        """`open_at` for a unix time."""
        return self.open_at(datetime.fromtimestamp(now, tz))


def _list(spec: Mapping[str, object], key: str, limit: int) -> list[str]:
    value = spec.get(key, [])
    if not isinstance(value, list | tuple):
        raise ScheduleError(f"{key}: expected a list of strings, got {type(value).__name__}")
    if len(value) > limit:
        raise ScheduleError(f"{key}: {len(value)} entries, at most {limit} per group")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ScheduleError(f"{key}[{i}]: expected a string, got {type(item).__name__}")
    return list(value)


def _parse_date(text: str, where: str) -> date:
    try:
        if _DATE.fullmatch(text) is None:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{where}: '{text}' is not a date YYYY-MM-DD") from None


# --- validity -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Validity:
    """When a person may get in at all: valid_from <= now < valid_until (either open)."""

    valid_from: datetime | None = None  # aware
    valid_until: datetime | None = None  # aware, exclusive

    def __post_init__(self) -> None:
        for name in ("valid_from", "valid_until"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, datetime) or v.utcoffset() is None):
                raise ScheduleError(f"{name}: expected an aware datetime, got {v!r}")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until.timestamp() <= self.valid_from.timestamp()
        ):
            raise ScheduleError(
                f"valid_until: {self.valid_until.isoformat()} is not after valid_from "
                f"{self.valid_from.isoformat()}"
            )

    @classmethod
    def parse(cls, valid_from: str | None, valid_until: str | None, tz: tzinfo) -> Validity:
        """ISO "2026-12-24" (as from: its local midnight; as until: through the END of that
        local day), "2026-12-24T18:00" (local to `tz`) or with an offset ("...+01:00", "Z")."""
        return cls(
            _parse_bound(valid_from, "valid_from", tz, end=False),
            _parse_bound(valid_until, "valid_until", tz, end=True),
        )

    def to_dict(self) -> dict[str, str | None]:
        """ISO times with their offset (a date-only until shows as the next local midnight,
        the exclusive end it means); `Validity.parse(**v.to_dict(), tz=tz)` round-trips."""
        return {
            "valid_from": None if self.valid_from is None else self.valid_from.isoformat(),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
        }

    def reason(self, now: float) -> str | None:
        """ "not_yet_valid", "expired" or None (valid at `now`)."""
        if self.valid_from is not None and now < self.valid_from.timestamp():
            return "not_yet_valid"
        if self.valid_until is not None and now >= self.valid_until.timestamp():
            return "expired"
        return None


def _parse_bound(text: str | None, where: str, tz: tzinfo, *, end: bool) -> datetime | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ScheduleError(
            f"{where}: expected an ISO date or time string, got {type(text).__name__}"
        )
    bad = ScheduleError(
        f"{where}: '{text}' is not a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM[+HH:MM]"
    )
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            naive = datetime.combine(day, time())
        elif _DATETIME.fullmatch(text):
            naive = datetime.fromisoformat(text)
        else:
            raise bad
        if naive.tzinfo is not None:
            return naive.astimezone(tz)
        return datetime.fromtimestamp(_resolve(naive, tz, latest=end), tz)
    except (ValueError, OverflowError, OSError):  # OverflowError/OSError: beyond year 1..9999
        raise bad from None


# --- door modes and the decision ----------------------------------------------------------


@dataclass(frozen=True)
class DoorMode:
    """normal; passage (held unlocked while `group`'s schedule is open); lockdown (only
    `group` is let in, None: nobody)."""

    mode: str = "normal"
    group: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScheduleError(
                f"mode: unknown door mode {self.mode!r} (one of {', '.join(MODES)})"
            )
        if self.mode == "passage" and self.group is None:
            raise ScheduleError("group: passage mode needs the group whose schedule holds it open")
        if self.mode == "normal" and self.group is not None:
            raise ScheduleError(f"group: normal mode takes no group (got '{self.group}')")

    @classmethod
    def parse(cls, mode: str, group: str | None, groups: Mapping[str, Group]) -> DoorMode:
        """A mode set by a person: the group must exist on this door."""
        if not isinstance(mode, str):
            raise ScheduleError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        mode = mode.strip().lower()
        if group == "":
            group = None
        if group is not None and not isinstance(group, str):
            raise ScheduleError(f"group: expected a group name, got {type(group).__name__}")
        result = cls(mode, group)
        if group is not None and group not in groups:
            known = ", ".join(sorted(groups)) or "none defined"
            raise ScheduleError(f"group: unknown group '{group}' (known: {known})")
        return result

    def to_dict(self) -> dict[str, str | None]:
        return {"mode": self.mode, "group": self.group}


def check(
    person_groups: Sequence[str],
    validity: Validity,
    groups: Mapping[str, Group],
    mode: DoorMode,
    now: float,
    tz: tzinfo,
) -> tuple[str, str | None]:
    """("granted", None) or ("denied", reason) for a recognised, enrolled person at `now`;
    the reasons are REASONS, checked in that order (see the module docstring for why)."""
    if isinstance(person_groups, str):
        raise TypeError("person_groups: a sequence of group names, not one string")
    reason = validity.reason(now)
    if reason is not None:
        return "denied", reason
    if mode.mode == "lockdown":
        # A lockdown group deleted since the mode was set lets nobody in: fail closed.
        if mode.group is not None and mode.group in groups and mode.group in person_groups:
            return "granted", None
        return "denied", "lockdown"
    if not groups:
        return "granted", None
    mine = [groups[g] for g in person_groups if g in groups]
    if not mine:
        return "denied", "not_in_group"
    local = datetime.fromtimestamp(now, tz)
    if any(g.open_at(local) for g in mine):
        return "granted", None
    return "denied", "outside_schedule"


def passage_open(mode: DoorMode, groups: Mapping[str, Group], now: float, tz: tzinfo) -> bool:
    """Whether the door is held unlocked now: passage mode and its group's schedule open."""
    if mode.mode != "passage" or mode.group not in groups:
        return False
    return groups[mode.group].open_now(now, tz)


def next_change(group: Group, now: float, tz: tzinfo) -> float | None:
    """The next unix time after `now` at which the group's open/closed state changes, or
    None when it does not change within 8 days (no windows, always open, a long holiday):
    the door thread sleeps until then (at most 8 days) instead of polling."""
    today = _local_date(now, tz)
    spans = sorted(group.occurrences(today - timedelta(days=2), today + timedelta(days=9), tz))
    merged: list[list[float]] = []
    for o, c in spans:  # touching or overlapping stretches are one: no change where they meet
        if merged and o <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], c)
        else:
            merged.append([o, c])
    for o, c in merged:
        if o <= now < c:
            change = c
            break
        if o > now:
            change = o
            break
    else:
        return None
    return change if change - now <= HORIZON_S else None
