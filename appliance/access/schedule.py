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
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_OF = {n: i for i, n in enumerate(DAY_NAMES)} | {n: i for i, n in enumerate(_FULL_DAY_NAMES)}
MINUTES_PER_DAY = 1440
_WEEK = 7 * MINUTES_PER_DAY
MAX_WINDOWS = 32
MAX_HOLIDAYS = 366
HORIZON_S = 8 * 86400.0  # next_change looks this far ahead
MODES = ("normal", "passage", "lockdown")
REASONS = ("not_yet_valid", "expired", "lockdown", "not_in_group", "outside_schedule")

# ASCII: \d would otherwise take any script's digits, and int() would read them.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)
_EXAMPLE = "e.g. 'mon-fri 08:00-18:00'"


class ScheduleError(ValueError):
    """A rule that cannot be used; the message names the field and what is wrong with it."""


# --- windows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One weekly window on the wall clock of the door's zone."""

    days: frozenset[int]  # 0=Mon..6=Sun: the day the window STARTS
    start_min: int  # minutes after local midnight, 0..1439
    end_min: int  # 1..1440; end_min <= start_min: runs past midnight into the next day

    def __post_init__(self) -> None:
        if not isinstance(self.days, frozenset):
            raise ScheduleError(f"days: expected a frozenset of days, got {self.days!r}")
        if not self.days:
            raise ScheduleError("days: a window needs at least one day")
        if not all(type(d) is int and 0 <= d <= 6 for d in self.days):
            raise ScheduleError(f"days: {sorted(self.days)!r} are not all days 0 (Mon)..6 (Sun)")
        if type(self.start_min) is not int or not 0 <= self.start_min < MINUTES_PER_DAY:
            raise ScheduleError(f"start: {self.start_min!r} is not a minute 0..1439 of the day")
        if type(self.end_min) is not int or not 0 < self.end_min <= MINUTES_PER_DAY:
            raise ScheduleError(f"end: {self.end_min!r} is not a minute 1..1440 of the day")
        if self.start_min == self.end_min:
            raise ScheduleError(
                f"'{_clock(self.start_min)}-{_clock(self.end_min)}' starts and ends at the "
                "same time; a whole day is 00:00-24:00"
            )

    @property
    def length_min(self) -> int:
        """How long the window is on the wall clock (a night window counts across midnight)."""
        if self.end_min > self.start_min:
            return self.end_min - self.start_min
        return self.end_min + MINUTES_PER_DAY - self.start_min

    def text(self) -> str:
        """The canonical form; `parse_window(w.text()) == w`."""
        return f"{_days_text(self.days)} {_clock(self.start_min)}-{_clock(self.end_min)}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _days_text(days: frozenset[int]) -> str:
    """Runs of consecutive days, Sunday->Monday wrapping allowed: "mon-fri", "sat,sun",
    "fri-mon", "mon,wed"; "daily" for all seven."""
    if len(days) == 7:
        return "daily"
    runs = []
    for d in sorted(days):
        if (d - 1) % 7 in days:
            continue  # not the first day of its run
        n = 1
        while (d + n) % 7 in days:
            n += 1
        runs.append((d, n))
    parts = []
    for d, n in runs:
        last = DAY_NAMES[(d + n - 1) % 7]
        if n == 1:
            parts.append(DAY_NAMES[d])
        elif n == 2:
            parts.append(f"{DAY_NAMES[d]},{last}")
        else:
            parts.append(f"{DAY_NAMES[d]}-{last}")
    return ",".join(parts)


def _parse_day(name: str) -> int:
    try:
        return _DAY_OF[name]
    except KeyError:
        raise ScheduleError(
            f"'{name}' is not a day (mon, tue, wed, thu, fri, sat, sun, or daily)"
        ) from None


def _parse_days(text: str) -> frozenset[int]:
    if text == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"'{text}' has an empty day between commas")
        if "-" in item:
            first, _, last = item.partition("-")
            a, b = _parse_day(first), _parse_day(last)
            if a == b:
                raise ScheduleError(f"day range '{item}' starts and ends on the same day")
            new = [(a + i) % 7 for i in range((b - a) % 7 + 1)]
        else:
            new = [_parse_day(item)]
        for d in new:
            if d in days:
                raise ScheduleError(f"'{text}' names {DAY_NAMES[d]} twice")
            days.add(d)
    return frozenset(days)


def _parse_clock(text: str, *, end: bool) -> int:
    m = _CLOCK.fullmatch(text)
    if m is None or int(m[2]) > 59 or int(m[1]) > 24 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise ScheduleError(f"'{text}' is not a time HH:MM")
    minute = int(m[1]) * 60 + int(m[2])
    if minute == MINUTES_PER_DAY and not end:
        raise ScheduleError("a window cannot start at 24:00; start it at 00:00 of the next day")
    return minute


def parse_window(text: str) -> Window:
    """ "mon-fri 08:00-18:00", "sat,sun 10:00-14:00", "daily 22:00-06:00" (across midnight),
    "mon 00:00-24:00" (a whole day), "fri-mon 09:00-17:00" (wrapping day range).
    Case-insensitive; full day names are accepted too."""
    if not isinstance(text, str):
        raise ScheduleError(f"expected a window like {_EXAMPLE}, got {type(text).__name__}")
    parts = text.strip().lower().rsplit(None, 1)
    if len(parts) != 2:
        raise ScheduleError(f"'{text}' is not a window DAYS HH:MM-HH:MM, {_EXAMPLE}")
    days_text = re.sub(r"\s*,\s*", ",", parts[0].strip())
    if re.search(r"\s", days_text):
        raise ScheduleError(f"'{parts[0]}' is not a list of days, {_EXAMPLE}")
    start_text, sep, end_text = parts[1].partition("-")
    if not sep:
        raise ScheduleError(f"'{parts[1]}' is not a time range HH:MM-HH:MM, {_EXAMPLE}")
    days = _parse_days(days_text)
    start = _parse_clock(start_text, end=False)
    end = _parse_clock(end_text, end=True)
    if end == start:
        raise ScheduleError(
            f"'{parts[1]}' starts and ends at the same time; a whole day is 00:00-24:00"
        )
    # "22:00-00:00" ends at the midnight after its start, the same instant as 24:00.
    return Window(days, start, MINUTES_PER_DAY if end == 0 else end)


def _weekly(w: Window) -> Iterator[tuple[int, int]]:
    """The window's stretches in minutes after Monday 00:00 (may end past the week's end)."""
    for d in sorted(w.days):
        a = d * MINUTES_PER_DAY + w.start_min
        yield a, a + w.length_min


def _overlap(a: Window, b: Window) -> int | None:
    """The first minute of the week (0..10079) at which both windows are open, or None."""
    found = []
    for a0, a1 in _weekly(a):
        for b0, b1 in _weekly(b):
            for shift in (-_WEEK, 0, _WEEK):
                lo, hi = max(a0, b0 + shift), min(a1, b1 + shift)
                if lo < hi:
                    found.append(lo % _WEEK)
    return min(found) if found else None


# --- time zones ---------------------------------------------------------------------------


def zone(name: str | None) -> tzinfo:
    """The door's zone by IANA name; None or "" is the system's zone."""
    if name is None or name == "":
        return _system_zone()
    if not isinstance(name, str):
        raise ScheduleError(f"timezone: expected a zone name like 'Europe/Berlin', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"timezone: unknown time zone '{name}'") from None


def _system_zone(localtime: Path = Path("/etc/localtime")) -> tzinfo:
    """The zone `time.localtime` uses: $TZ when it names a zone, else /etc/localtime (a link
    into the zone database names its zone; a copied file is read as it is). Without either,
    the current fixed offset, which is wrong after the next DST change, hence the warning."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            log.warning("TZ=%s is not a zone name; reading %s instead", env, localtime)
    try:
        target = os.path.realpath(localtime)
        if "/zoneinfo/" in target:
            try:
                return ZoneInfo(target.split("/zoneinfo/", 1)[1])
            except (ZoneInfoNotFoundError, ValueError):
                pass  # a database outside zoneinfo's search path: read the file itself
        with open(localtime, "rb") as f:
            return ZoneInfo.from_file(f, key=str(localtime))
    except (OSError, ValueError) as e:
        fixed = datetime.now().astimezone().tzinfo
        assert fixed is not None  # astimezone() always returns an aware datetime
        log.warning(
            "cannot read the system time zone from %s (%s); using the fixed offset %s, "
            "which will be wrong after the next DST change: name the door's zone explicitly",
            localtime,
            e,
            fixed,
        )
        return fixed


def _resolve(naive: datetime, tz: tzinfo, *, latest: bool) -> float:
    """The unix time of a wall-clock reading in `tz`: the first instant the clock shows it,
    or the last with `latest` (the two differ only in the repeated hour of autumn); a
    reading the clock skips is the first instant after the gap."""
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    if first <= second:
        return second if latest else first
    # In a gap fold=0 applies the offset before the change, fold=1 the one after, so
    # second < transition <= first: find the transition (tz changes are whole seconds).
    target = datetime.fromtimestamp(first, tz).utcoffset()
    lo, hi = math.floor(second), math.ceil(first)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _local_date(now: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(now, tz).date()


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
