"""Weekly windows on the wall clock of the door's zone, and the zone itself.

The parsing and the real-time arithmetic behind `appliance.access.schedule`: a window
("mon-fri 08:00-18:00", "sat 22:00-02:00") and its canonical text, the stretches of the
week it covers, and the turning of a wall-clock reading into unix time across DST (the
rules are in schedule's docstring). Pure, except reading which zone the system is in.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_OF = {n: i for i, n in enumerate(DAY_NAMES)} | {n: i for i, n in enumerate(_FULL_DAY_NAMES)}
MINUTES_PER_DAY = 1440
_WEEK = 7 * MINUTES_PER_DAY
# ASCII: \d would otherwise take any script's digits, and int() would read them.
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)
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
