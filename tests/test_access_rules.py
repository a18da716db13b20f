"""The access rules as stored and applied: groups, rights, validity and the door mode in
the gallery's SQLite file, through the RuleBook (the one path every route takes), with
the command service's refusals for bad input, and the audit log."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from appliance.access.rulebook import RuleBook
from appliance.config.schema import Config, parse
from appliance.control import commands as c
from appliance.control.commands import CommandError
from appliance.control.events import DomainEvents, RulesChanged
from appliance.store.gallery import Gallery, GalleryError, Template

BERLIN = ZoneInfo("Europe/Berlin")
CFG = parse('access: {timezone: "Europe/Berlin"}')


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()


def tpl(seed: int) -> Template:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return Template(v / np.linalg.norm(v), "test-embedder", "file")


@pytest.fixture
def book(tmp_path):
    g = Gallery(tmp_path / "gallery.sqlite3")
    events = DomainEvents()
    seen: list[RulesChanged] = []
    events.subscribe(RulesChanged, seen.append)
    rb = RuleBook(g, CFG, events)
    rb.seen = seen  # type: ignore[attr-defined]
    yield g, rb
    g.close()


def test_no_groups_means_everyone_then_groups_and_schedules_apply(book):
    g, rb = book
    ann = g.enrol("Ann", [tpl(1)], "cli:me")
    monday_9 = ts(2026, 12, 7, 9, 0)
    assert rb.check(ann.id, monday_9) == ("granted", None)
    rb.set_group("staff", {"windows": ["mon-fri 08:00-18:00"]}, "cli:me")
    assert rb.check(ann.id, monday_9) == ("denied", "not_in_group")
    rb.set_person("Ann", {"groups": ["STAFF"]}, "cli:me")  # names are case-insensitive
    assert rb.rights[ann.id].groups == ("staff",)
    assert rb.check(ann.id, monday_9) == ("granted", None)
    assert rb.check(ann.id, ts(2026, 12, 7, 19, 0)) == ("denied", "outside_schedule")
    assert [e.what for e in rb.seen] == ["group_set", "access_set"]


def test_validity_and_lockdown_and_passage(book):
    g, rb = book
    ann = g.enrol("Ann", [tpl(1)], "cli:me")
    rb.set_group("staff", {"windows": ["daily 00:00-24:00"]}, "cli:me")
    rb.set_group("security", {"windows": ["mon-fri 08:00-09:00"]}, "cli:me")
    rb.set_person("Ann", {"groups": ["staff"], "valid_until": "2026-12-24"}, "cli:me")
    assert rb.check(ann.id, ts(2026, 12, 24, 23, 59)) == ("granted", None)  # the whole day
    assert rb.check(ann.id, ts(2026, 12, 25, 0, 0)) == ("denied", "expired")
    rb.set_mode("lockdown", "security", "cli:me")
    assert rb.check(ann.id, ts(2026, 12, 7, 10, 0)) == ("denied", "lockdown")
    rb.set_mode("passage", "security", "cli:me")
    assert rb.passage_open(ts(2026, 12, 7, 8, 30)) is True
    assert rb.passage_open(ts(2026, 12, 7, 9, 30)) is False
    rb.set_mode("normal", None, "cli:me")
    assert rb.passage_open(ts(2026, 12, 7, 8, 30)) is False


def test_bad_input_changes_nothing(book):
    g, rb = book
    g.enrol("Ann", [tpl(1)], "cli:me")
    rb.set_group("staff", {"windows": ["mon-fri 08:00-18:00"]}, "cli:me")
    before = rb.snapshot()
    audit_before = len(g.audit_log(1000))
    bad = [
        lambda: rb.set_group("staff", {"windows": ["mon-fri 08:00-18:00", "mon 17:00-19:00"]}, "x"),
        lambda: rb.set_group("night", {"windows": ["someday 08:00-09:00"]}, "x"),
        lambda: rb.set_group("night", {"windows": ["mon 25:00-26:00"]}, "x"),
        lambda: rb.set_group("night", {"holidays": ["2026-13-01"]}, "x"),
        lambda: rb.set_person("Ann", {"groups": ["nosuchgroup"]}, "x"),
        lambda: rb.set_person("Bob", {"groups": ["staff"]}, "x"),
        lambda: rb.set_person(
            "Ann", {"valid_from": "2026-12-24", "valid_until": "2026-12-01"}, "x"
        ),
        lambda: rb.set_mode("open-sesame", None, "x"),
        lambda: rb.set_mode("lockdown", "nosuchgroup", "x"),
        lambda: rb.delete_group("nosuchgroup", "x"),
    ]
    for attempt in bad:
        with pytest.raises(ValueError) as exc:  # ScheduleError and GalleryError both
            attempt()
        assert str(exc.value)
    assert rb.snapshot() == before
    assert len(g.audit_log(1000)) == audit_before


def test_delete_group_takes_people_out_and_delete_person_erases_their_rights(book):
    g, rb = book
    ann = g.enrol("Ann", [tpl(1)], "cli:me")
    rb.set_group("staff", {"windows": ["daily 00:00-24:00"]}, "cli:me")
    rb.set_group("night", {"windows": ["daily 22:00-06:00"]}, "cli:me")
    rb.set_person("Ann", {"groups": ["staff", "night"], "valid_from": "2026-01-01"}, "cli:me")
    assert rb.delete_group("night", "cli:me") == {"deleted": "night", "members": 1}
    assert rb.rights[ann.id].groups == ("staff",)
    g.delete("Ann", "cli:me")
    rb.load()
    assert ann.id not in rb.rights
    # Nothing of her rights is left in the file, or in the audit details.
    rows = g.db.execute("SELECT COUNT(*) FROM person_access").fetchone()[0]
    assert rows == 0
    details = [e["detail"] for e in g.audit_log(1000) if e["person_id"] == ann.id]
    assert all("valid_from" not in d for d in details)


def test_another_process_changing_the_file_is_seen_by_refresh(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    g = Gallery(path)
    rb = RuleBook(g, CFG, DomainEvents())
    assert rb.refresh() is False
    other = Gallery(path)
    RuleBook(other, CFG, DomainEvents()).set_group("staff", {"windows": ["mon 08:00-09:00"]}, "x")
    other.close()
    assert rb.refresh() is True and "staff" in rb.groups
    g.close()


def test_migration_keeps_the_older_metadata_group(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    db = sqlite3.connect(path)
    from appliance.store.gallery import MIGRATIONS

    db.executescript(MIGRATIONS[0])
    db.execute(
        "INSERT INTO persons VALUES ('p1', 'Ann', '{\"group\": \"staff\"}', 0, 0), "
        "('p2', 'Bob', '{}', 0, 0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    g = Gallery(path)
    rb = RuleBook(g, Config(), DomainEvents())
    assert rb.rights["p1"].groups == ("staff",) and "p2" not in rb.rights
    g.close()


def test_commands_parse_and_refuse_with_a_clear_error():
    assert c.from_args("group_set", {"name": "staff", "windows": ["mon 08:00-09:00"]}) == (
        c.SetGroup("staff", {"windows": ["mon 08:00-09:00"]})
    )
    assert c.from_args("unlock", {"duration_s": 3, "reason": "delivery"}) == c.Unlock(
        3.0, "delivery"
    )
    for name, args in [
        ("group_set", {"name": "staff", "colour": "red"}),
        ("access", {"name": "Ann"}),
        ("access", {"name": "Ann", "groups": "staff"}),
        ("access", {"name": "Ann", "valid_until": 20261224}),
        ("door_mode", {}),
        ("unlock", {"duration_s": 0}),
        ("unlock", {"duration_s": 1e9}),
        ("unlock", {"duration_s": True}),
    ]:
        with pytest.raises(CommandError) as exc:
            c.from_args(name, args)
        assert exc.value.code == "malformed" and exc.value.message


def test_gallery_errors_name_what_is_missing(book):
    _, rb = book
    with pytest.raises(GalleryError, match="no person called 'Zed'"):
        rb.set_person("Zed", {"groups": []}, "x")


def test_an_unknown_time_zone_is_a_config_error_naming_key_and_line():
    from appliance.config.schema import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse("camera:\n  width: 640\naccess:\n  timezone: Mars/Base\n")
    (problem,) = exc.value.problems
    assert "line 4" in problem and "'access.timezone'" in problem and "Mars/Base" in problem
    assert str(parse('access: {timezone: "America/New_York"}').access.timezone)
