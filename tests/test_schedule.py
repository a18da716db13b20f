"""The door's access rules on their own: windows across midnight and on holidays, both DST
changes of Europe/Berlin in 2026, validity boundaries, door modes and the decision order,
with every malformed rule refused by a ScheduleError naming its field.

Berlin 2026: on Sunday 29 March at 01:00 UTC the clock jumps 02:00 CET -> 03:00 CEST; on
Sunday 25 October at 01:00 UTC it falls back 03:00 CEST -> 02:00 CET."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.access.schedule import (
    MAX_HOLIDAYS,
    MAX_WINDOWS,
    DoorMode,
    Group,
    ScheduleError,
    Validity,
    Window,
    check,
    next_change,
    parse_window,
    passage_open,
    zone,
)
from appliance.access.wallclock import _system_zone

BERLIN = ZoneInfo("Europe/Berlin")
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()  # the instant of the jump
AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=UTC).timestamp()  # the instant of the fall back
NOBODY_VALID = Validity()
NORMAL = DoorMode()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def at(tz, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)


def group(*windows: str, holidays: tuple[str, ...] = (), name: str = "staff") -> Group:
    return Group.from_dict(name, {"windows": list(windows), "holidays": list(holidays)})


# --- parsing windows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("mon-fri 08:00-18:00", {0, 1, 2, 3, 4}, 480, 1080),
        ("sat,sun 10:00-14:00", {5, 6}, 600, 840),
        ("daily 22:00-06:00", set(range(7)), 1320, 360),
        ("mon 00:00-24:00", {0}, 0, 1440),
        ("fri-mon 09:00-17:00", {4, 5, 6, 0}, 540, 1020),
        ("  Sat , SUNDAY   7:05-9:30 ", {5, 6}, 425, 570),
        ("wed 22:00-00:00", {2}, 1320, 1440),  # ends at the midnight after it starts
    ],
)
def test_window_forms(text, days, start, end):
    assert parse_window(text) == Window(frozenset(days), start, end)


def test_canonical_text():
    assert parse_window("Sat,Sun 10:00-14:00").text() == "sat,sun 10:00-14:00"
    assert parse_window("mon-sun 8:00-9:00").text() == "daily 08:00-09:00"
    assert parse_window("sun,fri,mon,sat 09:00-17:00").text() == "fri-mon 09:00-17:00"
    assert parse_window("mon,wed,thu,fri 1:00-2:00").text() == "mon,wed-fri 01:00-02:00"
    assert parse_window("tue 22:00-00:00").text() == "tue 22:00-24:00"


@st.composite
def any_window(draw) -> Window:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda e: e != start))
    return Window(days, start, end)


@given(any_window(), st.booleans())
def test_text_round_trips(w, upper):
    text = w.text().upper() if upper else w.text()
    assert parse_window(text) == w
    assert parse_window(text).text() == w.text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon 25:00-26:00", "'25:00' is not a time HH:MM"),
        ("mon 08:60-09:00", "'08:60' is not a time HH:MM"),
        ("mon 8-9", "'8' is not a time HH:MM"),
        ("mon 24:00-02:00", "cannot start at 24:00"),
        ("mon 24:30-02:00", "'24:30' is not a time HH:MM"),
        ("mox 08:00-09:00", "'mox' is not a day"),
        ("mon-frx 08:00-09:00", "'frx' is not a day"),
        ("mon-mon 08:00-09:00", "starts and ends on the same day"),
        ("mon,,tue 08:00-09:00", "empty day"),
        ("mon-fri,wed 08:00-09:00", "names wed twice"),
        ("mon 08:00-08:00", "starts and ends at the same time"),
        ("daily 00:00-00:00", "starts and ends at the same time"),
        ("mon", "is not a window DAYS HH:MM-HH:MM"),
        ("", "is not a window DAYS HH:MM-HH:MM"),
        ("08:00-09:00", "is not a window DAYS HH:MM-HH:MM"),
        ("mon 08:00", "is not a time range HH:MM-HH:MM"),
        ("mon tue 08:00-09:00", "'mon tue' is not a list of days"),
        ("mon 08:00 - 09:00", "is not a list of days"),
        ("mon \u0660\u0668:00-09:00", "is not a time HH:MM"),  # Arabic-Indic digits
    ],
)
def test_malformed_windows_are_refused(text, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")):
        parse_window(text)


def test_a_window_must_be_a_string():
    with pytest.raises(ScheduleError, match="got int"):
        parse_window(800)  # type: ignore[arg-type]


@given(st.text(alphabet="montuewdhfrisaly ,-:0123456789\t", max_size=30))
def test_any_text_is_a_window_or_a_schedule_error(text):
    try:
        w = parse_window(text)
    except ScheduleError:
        return
    assert parse_window(w.text()) == w


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((frozenset(), 0, 60), "days: a window needs at least one day"),
        (({0}, 0, 60), "days: expected a frozenset"),
        ((frozenset({7}), 0, 60), "days"),
        ((frozenset({0}), 1440, 60), "start"),
        ((frozenset({0}), 0, 0), "end"),
        ((frozenset({0}), 0, 1441), "end"),
        ((frozenset({0}), 60, 60), "starts and ends at the same time"),
    ],
)
def test_window_values_are_checked_when_built_directly(args, field):
    with pytest.raises(ScheduleError, match=field):
        Window(*args)


# --- groups: shape ------------------------------------------------------------------------


def test_group_round_trips_through_its_canonical_dict():
    g = Group.from_dict(
        "night-shift",
        {
            "windows": ["Sun,Fri,Sat,Mon 22:00-06:00", "wed 00:00-24:00"],
            "holidays": ["2026-12-25", "2026-01-01"],
        },
    )
    assert g.to_dict() == {
        "windows": ["fri-mon 22:00-06:00", "wed 00:00-24:00"],
        "holidays": ["2026-01-01", "2026-12-25"],
    }
    assert Group.from_dict(g.name, g.to_dict()) == g


def test_both_keys_are_optional_and_an_empty_group_never_opens():
    g = Group.from_dict("guards", {})
    assert g == Group("guards", (), frozenset())
    assert not g.open_at(at(BERLIN, 2026, 6, 1, 12))
    assert next_change(g, utc(2026, 6, 1), BERLIN) is None


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("staff", ["mon 08:00-09:00"], "group 'staff': expected a mapping"),
        ("staff", {"window": ["mon 08:00-09:00"]}, "window: unknown key"),
        ("staff", {"windows": "mon 08:00-09:00"}, "windows: expected a list of strings, got str"),
        ("staff", {"windows": [8]}, r"windows\[0\]: expected a string, got int"),
        (
            "staff",
            {"windows": ["mon 08:00-09:00", "tue 25:00-26:00"]},
            r"windows\[1\]: '25:00' is not a time HH:MM",
        ),
        ("staff", {"windows": ["mox 08:00-09:00"]}, r"windows\[0\]: 'mox' is not a day"),
        ("staff", {"holidays": "2026-12-25"}, "holidays: expected a list"),
        ("staff", {"holidays": [date(2026, 12, 25)]}, r"holidays\[0\]: expected a string"),
        ("staff", {"holidays": ["2026-02-30"]}, r"holidays\[0\]: '2026-02-30' is not a date"),
        ("staff", {"holidays": ["25.12.2026"]}, r"holidays\[0\]: '25.12.2026' is not a date"),
        ("staff", {"holidays": ["20261225"]}, r"holidays\[0\]: '20261225' is not a date"),
        (
            "staff",
            {"holidays": ["2026-12-25", "2026-12-25"]},
            r"holidays\[1\]: 2026-12-25 is listed twice",
        ),
        ("", {}, "name: '' is not a group name"),
        ("a" * 65, {}, "name: 'a{65}' is not a group name"),
        ("night shift", {}, "name: 'night shift' is not a group name"),
        ("büro", {}, "name: 'büro' is not a group name"),
        (
            "staff",
            {"windows": [f"mon {h:02d}:00-{h:02d}:30" for h in range(MAX_WINDOWS + 1)]},
            "windows: 33 entries, at most 32",
        ),
        (
            "staff",
            {
                "holidays": [
                    (date(2026, 1, 1) + timedelta(days=i)).isoformat()
                    for i in range(MAX_HOLIDAYS + 1)
                ]
            },
            "holidays: 367 entries, at most 366",
        ),
    ],
)
def test_bad_groups_are_refused_naming_the_field(name, spec, message):
    with pytest.raises(ScheduleError, match=message):
        Group.from_dict(name, spec)


def test_the_limits_themselves_are_accepted():
    g = Group.from_dict(
        "a" * 64,
        {
            "windows": [
                f"mon {h // 2:02d}:{h % 2 * 30:02d}-{h // 2:02d}:{h % 2 * 30 + 29:02d}"
                for h in range(MAX_WINDOWS)
            ],
            "holidays": [(date(2028, 1, 1) + timedelta(days=i)).isoformat() for i in range(366)],
        },
    )
    assert len(g.windows) == MAX_WINDOWS
    assert len(g.holidays) == MAX_HOLIDAYS


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        (
            ["mon-fri 08:00-18:00", "sat 10:00-12:00", "wed 17:00-19:00"],
            r"windows\[0\] 'mon-fri 08:00-18:00' and windows\[2\] 'wed 17:00-19:00' overlap "
            r"\(both open Wed 17:00\)",
        ),
        (  # Sunday night runs into Monday morning, across the end of the week
            ["sun 22:00-06:00", "mon 05:00-07:00"],
            r"windows\[0\] 'sun 22:00-06:00' and windows\[1\] 'mon 05:00-07:00' overlap "
            r"\(both open Mon 05:00\)",
        ),
        (["mon 08:00-09:00", "mon 08:00-09:00"], r"windows\[0\] .* and windows\[1\] .* overlap"),
        (["daily 00:00-24:00", "thu 23:59-00:01"], r"\(both open Thu 23:59\)"),
    ],
)
def test_overlapping_windows_are_refused_naming_both(windows, message):
    with pytest.raises(ScheduleError, match=message):
        group(*windows)


def test_touching_windows_are_not_an_overlap_and_do_not_change_the_state_where_they_meet():
    g = group("mon 08:00-12:00", "mon 12:00-18:00", "sun 20:00-08:00")
    monday = (2026, 6, 1)  # a Monday in summer time
    assert g.open_at(at(BERLIN, *monday, 12, 0))
    assert next_change(g, at(BERLIN, *monday, 10, 0).timestamp(), BERLIN) == (
        at(BERLIN, *monday, 18, 0).timestamp()
    )
    # Sunday 20:00 runs straight through Monday 08:00 into the next window
    assert next_change(g, at(BERLIN, 2026, 5, 31, 21, 0).timestamp(), BERLIN) == (
        at(BERLIN, *monday, 18, 0).timestamp()
    )


# --- groups: when they open ---------------------------------------------------------------


def test_a_night_window_belongs_to_the_day_it_starts():
    tz = UTC
    g = group("sat 22:00-02:00")  # 2026-06-06 is a Saturday
    assert not g.open_at(at(tz, 2026, 6, 6, 21, 59, 59))
    assert g.open_at(at(tz, 2026, 6, 6, 22, 0))
    assert g.open_at(at(tz, 2026, 6, 7, 1, 0))  # Sunday 01:00
    assert not g.open_at(at(tz, 2026, 6, 7, 2, 0))  # the end is exclusive
    assert not g.open_at(at(tz, 2026, 6, 7, 3, 0))
    assert not g.open_at(at(tz, 2026, 6, 7, 22, 30))  # Sunday is not a start day
    # Sat 00:30 would belong to Friday's window, and there is none
    assert not g.open_at(at(tz, 2026, 6, 6, 0, 30))


def test_a_holiday_cancels_the_windows_that_start_on_it_all_the_way_through():
    tz = UTC
    on_saturday = group("sat 22:00-02:00", "sun 10:00-12:00", holidays=("2026-06-06",))
    assert not on_saturday.open_at(at(tz, 2026, 6, 6, 23, 0))
    assert not on_saturday.open_at(at(tz, 2026, 6, 7, 1, 0))  # it STARTED on the holiday
    assert on_saturday.open_at(at(tz, 2026, 6, 7, 11, 0))
    assert on_saturday.open_at(at(tz, 2026, 6, 13, 23, 0))  # next Saturday as usual
    on_sunday = group("sat 22:00-02:00", "sun 10:00-12:00", holidays=("2026-06-07",))
    assert on_sunday.open_at(at(tz, 2026, 6, 7, 1, 0))  # began Saturday: runs to its end
    assert not on_sunday.open_at(at(tz, 2026, 6, 7, 11, 0))


def test_a_whole_day_window():
    tz = timezone(timedelta(hours=-5))
    g = group("mon 00:00-24:00")  # 2026-06-01 is a Monday
    assert not g.open_at(at(tz, 2026, 5, 31, 23, 59, 59))
    assert g.open_at(at(tz, 2026, 6, 1, 0, 0))
    assert g.open_at(at(tz, 2026, 6, 1, 23, 59, 59, 999999))
    assert not g.open_at(at(tz, 2026, 6, 2, 0, 0))
    assert next_change(g, at(tz, 2026, 6, 1, 9).timestamp(), tz) == at(tz, 2026, 6, 2).timestamp()


def test_a_wrapping_day_range():
    tz = UTC
    g = group("fri-mon 09:00-17:00")
    opens = {d: g.open_at(at(tz, 2026, 6, d, 12)) for d in range(1, 8)}  # Mon 1 .. Sun 7
    assert opens == {1: True, 2: False, 3: False, 4: False, 5: True, 6: True, 7: True}


def test_open_at_needs_an_aware_time():
    with pytest.raises(ScheduleError, match="naive"):
        group("daily 08:00-18:00").open_at(datetime(2026, 6, 1, 12))


# --- groups across DST --------------------------------------------------------------------


def test_spring_night_window_is_two_hours_long():
    g = group("sun 01:00-04:00")
    opens = utc(2026, 3, 29, 0, 0)  # 01:00 CET
    closes = utc(2026, 3, 29, 2, 0)  # 04:00 CEST
    assert not g.open_now(opens - 1, BERLIN)
    assert g.open_now(opens, BERLIN)
    assert g.open_now(SPRING, BERLIN)  # 03:00 CEST, the first instant after the gap
    assert g.open_now(closes - 1, BERLIN)
    assert not g.open_now(closes, BERLIN)
    assert next_change(g, opens - 3600, BERLIN) == opens
    assert next_change(g, opens, BERLIN) == closes


def test_autumn_night_window_is_four_hours_long():
    g = group("sun 01:00-04:00")
    opens = utc(2026, 10, 24, 23, 0)  # 01:00 CEST
    closes = utc(2026, 10, 25, 3, 0)  # 04:00 CET
    assert not g.open_now(opens - 1, BERLIN)
    assert g.open_now(opens, BERLIN)
    assert g.open_now(AUTUMN, BERLIN)
    assert g.open_now(closes - 1, BERLIN)
    assert not g.open_now(closes, BERLIN)
    assert next_change(g, opens, BERLIN) == closes


def test_a_start_inside_the_skipped_hour_opens_when_the_gap_ends():
    g = group("sun 02:30-05:00")  # 02:30 does not exist on 2026-03-29
    assert not g.open_at(at(BERLIN, 2026, 3, 29, 1, 59, 59))
    assert not g.open_now(SPRING - 1, BERLIN)
    assert g.open_now(SPRING, BERLIN)  # 03:00 CEST
    assert g.open_at(at(BERLIN, 2026, 3, 29, 3, 0))
    assert g.open_at(at(BERLIN, 2026, 3, 29, 4, 59))
    assert not g.open_at(at(BERLIN, 2026, 3, 29, 5, 0))
    assert next_change(g, utc(2026, 3, 28, 12), BERLIN) == SPRING
    # a week later 02:30 exists again and the window opens at 02:30 CEST
    assert next_change(g, utc(2026, 3, 30), BERLIN) == utc(2026, 4, 5, 0, 30)


def test_an_end_inside_the_skipped_hour_closes_when_the_gap_ends():
    g = group("sun 01:00-02:30")
    assert g.open_now(SPRING - 1, BERLIN)  # 01:59:59 CET
    assert not g.open_now(SPRING, BERLIN)
    assert next_change(g, utc(2026, 3, 29, 0, 30), BERLIN) == SPRING


def test_a_window_wholly_inside_the_skipped_hour_does_not_open_that_night():
    g = group("sun 02:00-02:45")
    assert not any(g.open_now(SPRING + s, BERLIN) for s in (-3600, -1, 0, 1, 2700))
    assert next_change(g, utc(2026, 3, 28), BERLIN) == utc(2026, 4, 5, 0, 0)


def test_both_autumn_0230s_are_inside_a_0200_0400_window():
    g = group("sun 02:00-04:00")
    first = at(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    second = at(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second.timestamp() - first.timestamp() == 3600
    assert g.open_at(first)
    assert g.open_at(second)
    assert not g.open_now(utc(2026, 10, 24, 23, 59, 59), BERLIN)  # 01:59:59 CEST
    assert g.open_now(utc(2026, 10, 25, 0, 0), BERLIN)  # the first 02:00
    assert next_change(g, utc(2026, 10, 25, 0, 0), BERLIN) == utc(2026, 10, 25, 3, 0)


def test_a_window_ending_in_the_repeated_hour_runs_until_its_second_occurrence():
    g = group("sat 22:00-02:30")
    assert g.open_at(at(BERLIN, 2026, 10, 25, 2, 45, fold=0))  # between the two 02:30s
    assert g.open_at(at(BERLIN, 2026, 10, 25, 2, 15, fold=1))
    assert not g.open_at(at(BERLIN, 2026, 10, 25, 2, 30, fold=1))
    assert next_change(g, utc(2026, 10, 24, 21), BERLIN) == utc(2026, 10, 25, 1, 30)


def test_check_near_both_changes():
    groups = {"night": group("sun 02:30-05:00", name="night"), "late": group("sun 02:00-04:00")}
    spring = [check(["night"], NOBODY_VALID, groups, NORMAL, SPRING + d, BERLIN) for d in (-1, 0)]
    assert spring == [("denied", "outside_schedule"), ("granted", None)]
    autumn = [
        check(["late"], NOBODY_VALID, groups, NORMAL, t, BERLIN)
        for t in (utc(2026, 10, 24, 23, 59, 59), AUTUMN - 1800, AUTUMN + 1800, utc(2026, 10, 25, 3))
    ]
    assert autumn == [
        ("denied", "outside_schedule"),
        ("granted", None),  # the first 02:30
        ("granted", None),  # the second 02:30
        ("denied", "outside_schedule"),  # 04:00 CET
    ]


def test_a_clock_set_back_across_midnight():
    """Goose Bay fell back at 00:01 to 23:01 of the day before (until 2010): on 2009-11-01
    the clock showed Sunday 00:00 for a minute, then Saturday 23:01 again."""
    tz = ZoneInfo("America/Goose_Bay")
    sunday = group("sun 00:00-01:00")
    assert not sunday.open_now(utc(2009, 11, 1, 2, 59, 59), tz)
    assert sunday.open_now(utc(2009, 11, 1, 3, 0), tz)  # Sunday 00:00 ADT, first shown
    back_on_saturday = utc(2009, 11, 1, 3, 30)
    assert datetime.fromtimestamp(back_on_saturday, tz).date() == date(2009, 10, 31)
    assert sunday.open_now(back_on_saturday, tz)  # the window has begun: it stays open
    assert next_change(sunday, back_on_saturday, tz) == utc(2009, 11, 1, 5, 0)  # 01:00 AST
    # A window that began on Friday and ends at Saturday 23:40 by the clock is still open
    # in the minute the clock already showed Sunday, since 23:40 comes round once more.
    friday = group("fri 23:45-23:40")
    sunday_minute = utc(2009, 11, 1, 3, 0, 30)
    assert datetime.fromtimestamp(sunday_minute, tz).date() == date(2009, 11, 1)
    assert friday.open_now(sunday_minute, tz)
    assert next_change(friday, sunday_minute, tz) == utc(2009, 11, 1, 3, 40)


# --- groups: properties -------------------------------------------------------------------


@st.composite
def groups_of_windows(draw, max_windows: int = 4) -> Group:
    """A valid group: candidate windows that overlap one already kept are dropped."""
    kept: tuple[Window, ...] = ()
    for w in draw(st.lists(any_window(), max_size=max_windows)):
        try:
            Group("g", (*kept, w))
        except ScheduleError:
            continue
        kept = (*kept, w)
    days = draw(st.lists(st.integers(0, 400), max_size=8))
    holidays = frozenset(date(2026, 1, 1) + timedelta(days=d) for d in days)
    return Group("g", kept, holidays)


def wall_inside(g: Group, wall: datetime) -> bool:
    """The rule as a person reads it off the wall clock: a window that started today or
    yesterday (not on a holiday) and has not reached its end on the clock."""
    for back in (0, 1):
        day = wall.date() - timedelta(days=back)
        if day in g.holidays:
            continue
        since = (wall - datetime.combine(day, time())) / timedelta(minutes=1)
        for w in g.windows:
            end = w.end_min if w.end_min > w.start_min else w.end_min + 1440
            if day.weekday() in w.days and w.start_min <= since < end:
                return True
    return False


instants_2026 = st.floats(utc(2026, 1, 1), utc(2027, 1, 1))
FIXED = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


def changes_2026(tz: ZoneInfo) -> list[float]:
    """The zone's offset changes in 2026, to within the half hour they all fall on."""
    found, t, prev = [], utc(2026, 1, 1), None
    while t < utc(2027, 1, 1):
        offset = datetime.fromtimestamp(t, tz).utcoffset()
        if prev is not None and offset != prev:
            found.append(t)
        prev, t = offset, t + 1800
    return found


# Berlin and New York change at night; Santiago and Beirut at midnight (the local date and
# the wall clock's date part ways); Lord Howe by half an hour.
DST_ZONES = {
    name: changes_2026(ZoneInfo(name))
    for name in (
        "Europe/Berlin",
        "America/New_York",
        "America/Santiago",
        "Asia/Beirut",
        "Australia/Lord_Howe",
    )
}
assert DST_ZONES["Europe/Berlin"] == [SPRING, AUTUMN]
assert all(len(c) == 2 for c in DST_ZONES.values())
zone_and_instant = st.sampled_from(sorted(DST_ZONES)).flatmap(
    lambda name: st.tuples(
        st.just(ZoneInfo(name)),
        st.one_of(
            instants_2026,
            st.sampled_from(DST_ZONES[name]).flatmap(
                lambda t: st.floats(t - 2 * 86400, t + 2 * 86400)
            ),
        ),
    )
)


@settings(max_examples=300)
@given(groups_of_windows(), instants_2026, st.sampled_from(FIXED))
def test_without_dst_open_is_exactly_the_wall_clock_rule(g, now, tz):
    local = datetime.fromtimestamp(now, tz)
    assert g.open_at(local) == wall_inside(g, local.replace(tzinfo=None))


@settings(max_examples=500)
@given(groups_of_windows(), zone_and_instant)
def test_across_dst_nobody_is_turned_away_while_the_clock_shows_an_open_window(g, tz_now):
    tz, now = tz_now
    local = datetime.fromtimestamp(now, tz)
    inside = wall_inside(g, local.replace(tzinfo=None))
    if inside:
        assert g.open_at(local)
    if min(abs(now - c) for c in DST_ZONES[str(tz)]) > 2 * 86400:
        assert g.open_at(local) == inside  # away from a change the two rules are one


@settings(max_examples=500)
@given(
    groups_of_windows(),
    zone_and_instant,
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_next_change_is_the_next_instant_the_state_flips(g, tz_now, fractions):
    tz, now = tz_now
    state = g.open_now(now, tz)
    change = next_change(g, now, tz)
    if change is None:
        samples = [now + f * 8 * 86400 for f in fractions]
    else:
        assert now < change <= now + 8 * 86400
        assert g.open_now(change, tz) != state
        before = [now + f * (change - now) for f in fractions] + [change - 0.001]
        samples = [t for t in before if now <= t < change]  # float rounding may reach change
    for t in samples:
        assert g.open_now(t, tz) == state, (t, change)


def test_next_change_is_none_when_nothing_changes_for_eight_days():
    always = group("daily 00:00-24:00")
    assert next_change(always, utc(2026, 6, 1, 12), BERLIN) is None
    # one holiday breaks the week: the change is the holiday's local midnight
    broken = group("daily 00:00-24:00", holidays=("2026-06-05",))
    assert next_change(broken, utc(2026, 6, 1, 12), BERLIN) == at(BERLIN, 2026, 6, 5).timestamp()
    # a weekly window on a holiday: the next opening is 14 days away, beyond the horizon
    monday_off = group("mon 08:00-09:00", holidays=("2026-06-08",))
    assert next_change(monday_off, at(BERLIN, 2026, 6, 1, 10).timestamp(), BERLIN) is None


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(["windows", "holidays", "extra"]), st.integers()),
            st.one_of(
                st.none(),
                st.text(max_size=20),
                st.lists(st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=4),
            ),
            max_size=3,
        ),
    ),
    st.text(max_size=70),
)
def test_any_junk_is_a_group_or_a_schedule_error(spec, name):
    try:
        g = Group.from_dict(name, spec)
    except ScheduleError:
        return
    assert Group.from_dict(g.name, g.to_dict()) == g


# --- validity -----------------------------------------------------------------------------


def test_a_date_until_covers_the_whole_last_local_day():
    v = Validity.parse(None, "2026-12-24", BERLIN)
    assert v.valid_until == at(BERLIN, 2026, 12, 25)
    assert v.reason(at(BERLIN, 2026, 12, 24, 23, 59, 59).timestamp()) is None
    assert v.reason(at(BERLIN, 2026, 12, 25).timestamp()) == "expired"


def test_a_date_from_starts_at_its_local_midnight():
    v = Validity.parse("2026-12-24", None, BERLIN)
    assert v.reason(at(BERLIN, 2026, 12, 23, 23, 59, 59).timestamp()) == "not_yet_valid"
    assert v.reason(at(BERLIN, 2026, 12, 24).timestamp()) is None


def test_one_day_of_validity():
    v = Validity.parse("2026-12-24", "2026-12-24", BERLIN)
    assert v.valid_until.timestamp() - v.valid_from.timestamp() == 86400


def test_a_time_until_is_exclusive_and_local_unless_it_has_an_offset():
    local = Validity.parse(None, "2026-12-24T18:00", BERLIN)
    assert local.reason(utc(2026, 12, 24, 16, 59, 59)) is None
    assert local.reason(utc(2026, 12, 24, 17, 0)) == "expired"
    offset = Validity.parse(None, "2026-12-24T18:00+00:00", BERLIN)
    assert offset.valid_until.timestamp() == utc(2026, 12, 24, 18)
    assert offset.valid_until.hour == 19  # shown on the door's clock
    assert Validity.parse(None, "2026-12-24T18:00:00Z", BERLIN) == offset
    assert Validity.parse(None, "2026-12-24 18:00", BERLIN) == local


def test_local_bounds_on_the_dst_nights_follow_the_window_rule():
    v = Validity.parse("2026-03-29T02:30", "2026-10-25T02:30", BERLIN)
    assert v.valid_from.timestamp() == SPRING  # skipped: the first instant after the gap
    assert v.valid_until.timestamp() == utc(2026, 10, 25, 1, 30)  # the second 02:30


@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [
        ("2026-12-24T18:00", "2026-12-24T18:00"),
        ("2026-12-24T18:00", "2026-12-24T17:59"),
        ("2026-12-25", "2026-12-24"),
        ("2026-12-24T18:00+00:00", "2026-12-24T18:30+01:00"),  # 17:30 UTC: earlier
    ],
)
def test_until_not_after_from_is_refused(valid_from, valid_until):
    with pytest.raises(ScheduleError, match=r"valid_until: .* is not after valid_from"):
        Validity.parse(valid_from, valid_until, BERLIN)


def test_offsets_are_compared_as_instants():
    v = Validity.parse("2026-12-24T18:00+01:00", "2026-12-24T17:30+00:00", BERLIN)
    assert v.valid_until.timestamp() - v.valid_from.timestamp() == 1800


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "message"),
    [
        ("2026-02-30", None, "valid_from: '2026-02-30' is not a date"),
        ("24.12.2026", None, "valid_from: '24.12.2026' is not a date"),
        ("20261224", None, "valid_from: '20261224' is not a date"),
        ("", None, "valid_from: '' is not a date"),
        ("\u0662026-12-24", None, "valid_from: .* is not a date"),
        (None, "2026-12-24T25:00", "valid_until: '2026-12-24T25:00' is not a date"),
        (None, "2026-12-24T18", "valid_until: '2026-12-24T18' is not a date"),
        (None, "2026-12-24T18:00+25:00", "valid_until: .* is not a date"),
        (None, "9999-12-31", "valid_until: '9999-12-31' is not a date"),  # no next day
        (20261224, None, "valid_from: expected an ISO date or time string, got int"),
    ],
)
def test_bad_bounds_are_refused_naming_the_field(valid_from, valid_until, message):
    with pytest.raises(ScheduleError, match=message):
        Validity.parse(valid_from, valid_until, BERLIN)


def test_validity_built_directly_needs_aware_times():
    with pytest.raises(ScheduleError, match="valid_from: expected an aware datetime"):
        Validity(datetime(2026, 1, 1))


@given(
    st.one_of(st.none(), instants_2026),
    st.one_of(st.none(), instants_2026),
    st.sampled_from([BERLIN, UTC, ZoneInfo("America/New_York")]),
)
def test_validity_round_trips_through_its_dict(a, b, tz):
    if a is not None and b is not None and b <= a:
        a, b = b, a + 1
    v = Validity(
        None if a is None else datetime.fromtimestamp(a, tz),
        None if b is None else datetime.fromtimestamp(b, tz),
    )
    again = Validity.parse(**v.to_dict(), tz=tz)
    assert again.to_dict() == v.to_dict()
    for x, y in ((v.valid_from, again.valid_from), (v.valid_until, again.valid_until)):
        assert (x is None and y is None) or x.timestamp() == y.timestamp()


# --- the decision -------------------------------------------------------------------------

MON_NOON = at(BERLIN, 2026, 6, 1, 12).timestamp()  # a Monday
MON_NIGHT = at(BERLIN, 2026, 6, 1, 23).timestamp()
GROUPS = {
    "day": group("mon-fri 08:00-18:00", name="day"),
    "night": group("daily 22:00-06:00", name="night"),
    "guards": group(name="guards"),
}


def decide(person_groups, now, validity=NOBODY_VALID, groups=GROUPS, mode=NORMAL):
    return check(person_groups, validity, groups, mode, now, BERLIN)


def test_a_door_without_groups_lets_every_valid_person_in():
    assert decide([], MON_NIGHT, groups={}) == ("granted", None)
    assert decide(["anything"], MON_NIGHT, groups={}) == ("granted", None)
    expired = Validity.parse(None, "2026-05-31", BERLIN)
    assert decide([], MON_NIGHT, expired, groups={}) == ("denied", "expired")


def test_groups_schedules_and_unknown_names():
    assert decide(["day"], MON_NOON) == ("granted", None)
    assert decide(["day"], MON_NIGHT) == ("denied", "outside_schedule")
    assert decide(["night"], MON_NIGHT) == ("granted", None)
    assert decide(["day", "night"], MON_NIGHT) == ("granted", None)  # any open group
    assert decide(["day", "night"], MON_NOON) == ("granted", None)
    assert decide(["guards"], MON_NOON) == ("denied", "outside_schedule")
    assert decide([], MON_NOON) == ("denied", "not_in_group")
    assert decide(["deleted", "typo"], MON_NOON) == ("denied", "not_in_group")
    assert decide(["deleted", "day"], MON_NOON) == ("granted", None)
    assert decide(("day",), MON_NOON) == ("granted", None)


def test_validity_is_checked_first():
    future = Validity.parse("2026-06-02", None, BERLIN)
    past = Validity.parse(None, "2026-06-01T11:59", BERLIN)
    assert decide(["day"], MON_NOON, future) == ("denied", "not_yet_valid")
    assert decide([], MON_NOON, future) == ("denied", "not_yet_valid")
    assert decide(["day"], MON_NOON, past) == ("denied", "expired")
    assert decide(["day"], MON_NOON, Validity.parse("2026-06-01T12:00", None, BERLIN)) == (
        "granted",
        None,
    )


def test_lockdown_lets_only_its_group_in_regardless_of_schedule():
    lockdown = DoorMode.parse("lockdown", "guards", GROUPS)
    assert decide(["guards"], MON_NIGHT, mode=lockdown) == ("granted", None)
    assert decide(["day", "guards"], MON_NIGHT, mode=lockdown) == ("granted", None)
    assert decide(["day"], MON_NOON, mode=lockdown) == ("denied", "lockdown")
    assert decide([], MON_NOON, mode=lockdown) == ("denied", "lockdown")
    expired = Validity.parse(None, "2026-05-31", BERLIN)
    assert decide(["guards"], MON_NIGHT, expired, mode=lockdown) == ("denied", "expired")
    nobody = DoorMode.parse("lockdown", None, GROUPS)
    assert decide(["guards"], MON_NOON, mode=nobody) == ("denied", "lockdown")
    assert decide([], MON_NOON, groups={}, mode=nobody) == ("denied", "lockdown")
    # the group was deleted after the mode was set: nobody, not everybody
    without_guards = {k: v for k, v in GROUPS.items() if k != "guards"}
    assert decide(["guards"], MON_NOON, groups=without_guards, mode=lockdown) == (
        "denied",
        "lockdown",
    )


def test_passage_mode_decides_people_as_normal_and_holds_the_door_on_schedule():
    passage = DoorMode.parse("passage", "day", GROUPS)
    assert decide(["night"], MON_NOON, mode=passage) == ("denied", "outside_schedule")
    assert passage_open(passage, GROUPS, MON_NOON, BERLIN)
    assert not passage_open(passage, GROUPS, MON_NIGHT, BERLIN)
    assert not passage_open(NORMAL, GROUPS, MON_NOON, BERLIN)
    assert not passage_open(DoorMode.parse("lockdown", "day", GROUPS), GROUPS, MON_NOON, BERLIN)
    assert not passage_open(passage, {}, MON_NOON, BERLIN)  # its group deleted: locked
    assert next_change(GROUPS["day"], MON_NOON, BERLIN) == at(BERLIN, 2026, 6, 1, 18).timestamp()


def test_one_string_is_not_a_list_of_groups():
    with pytest.raises(TypeError, match="person_groups"):
        decide("day", MON_NOON)


@pytest.mark.parametrize(
    ("mode", "group_name", "message"),
    [
        ("open", None, "mode: unknown door mode 'open'"),
        (3, None, "mode: expected one of normal, passage, lockdown"),
        ("passage", None, "group: passage mode needs"),
        ("passage", "cleaners", r"group: unknown group 'cleaners' \(known: day, guards, night\)"),
        ("lockdown", "cleaners", "group: unknown group 'cleaners'"),
        ("normal", "day", "group: normal mode takes no group"),
        ("lockdown", 5, "group: expected a group name, got int"),
    ],
)
def test_bad_door_modes_are_refused(mode, group_name, message):
    with pytest.raises(ScheduleError, match=message):
        DoorMode.parse(mode, group_name, GROUPS)


def test_door_modes_that_parse():
    assert DoorMode.parse("Normal", None, {}) == DoorMode()
    assert DoorMode.parse("lockdown", "", GROUPS) == DoorMode("lockdown", None)
    assert DoorMode.parse("passage", "day", GROUPS).to_dict() == {"mode": "passage", "group": "day"}
    with pytest.raises(ScheduleError, match="known: none defined"):
        DoorMode.parse("passage", "day", {})


# --- time zones ---------------------------------------------------------------------------


def test_zone_by_name():
    assert zone("Europe/Berlin") == BERLIN
    assert zone("UTC").utcoffset(datetime(2026, 6, 1)) == timedelta(0)


@pytest.mark.parametrize("name", ["Mars/Base", "../../etc/passwd", "/etc/localtime", "Europe/"])
def test_unknown_zones_are_refused(name):
    with pytest.raises(ScheduleError, match=f"timezone: unknown time zone '{name}'"):
        zone(name)


def test_the_message_from_the_brief():
    with pytest.raises(ScheduleError) as e:
        zone("Mars/Base")
    assert str(e.value) == "timezone: unknown time zone 'Mars/Base'"


def test_no_name_is_the_zone_time_localtime_uses(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert zone(None) == ZoneInfo("Asia/Tokyo")
    assert zone("") == ZoneInfo("Asia/Tokyo")


SYSTEM_BERLIN = Path("/usr/share/zoneinfo/Europe/Berlin")
needs_tzdata = pytest.mark.skipif(
    not SYSTEM_BERLIN.is_file(), reason=f"the system zone database is not at {SYSTEM_BERLIN}"
)


@needs_tzdata
def test_system_zone_from_a_link_into_the_zone_database(tmp_path, monkeypatch):
    monkeypatch.delenv("TZ", raising=False)
    link = tmp_path / "localtime"
    link.symlink_to(SYSTEM_BERLIN)
    assert _system_zone(link) == BERLIN


@needs_tzdata
def test_system_zone_from_a_copied_file_keeps_its_dst_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "not a zone")
    copy = tmp_path / "localtime"
    shutil.copyfile(SYSTEM_BERLIN, copy)
    tz = _system_zone(copy)
    assert tz.utcoffset(datetime(2026, 1, 15)) == timedelta(hours=1)
    assert tz.utcoffset(datetime(2026, 7, 15)) == timedelta(hours=2)


def test_without_a_system_zone_the_fixed_offset_is_used_with_a_warning(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("TZ", raising=False)
    with caplog.at_level(logging.WARNING, logger="appliance.access.schedule"):
        tz = _system_zone(tmp_path / "missing")
    now = datetime.now()
    assert tz.utcoffset(now) == now.astimezone().utcoffset()
    assert "wrong after the next DST change" in caplog.text
    assert os.fspath(tmp_path / "missing") in caplog.text
