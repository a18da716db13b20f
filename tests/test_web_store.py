"""The web transport's stores and helpers alone: the event log (retention, erasure,
attendance), owner accounts (scrypt, lockout, tokens), CSV, the rate limit, the log
redaction and the `web`/`events` config sections."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import time

import pytest

from appliance.config.schema import ConfigError, parse
from appliance.store.event_log import EventLog, Retention
from appliance.store.users import UserError, Users
from appliance.transport.http.limits import RateLimit
from appliance.transport.http.logtail import redact
from appliance.transport.http.reports import day_range, to_csv

UTC = dt.timezone.utc


def decision(eid: str, at: float, d: str, pid: str | None, name: str | None, **kw) -> dict:
    return {"event_id": eid, "decided": at, "decision": d, "person_id": pid, "name": name, **kw}


def test_event_log_forgets_a_person_everywhere(tmp_path):
    log = EventLog(tmp_path / "e.sqlite3", Retention(90, 1000, True, 7))
    now = time.time()
    log.add_decision(decision("1", now, "granted", "p1", "Ann"), b"\xff\xd8jpeg")
    log.add_decision(decision("2", now + 1, "unknown", None, None, candidate="Ann"))
    log.add_door({"event_id": "3", "event": "unlocked", "name": "Ann", "at": now + 2})
    log.add_decision(decision("4", now + 3, "granted", "p2", "Bob"))
    assert log.snapshot("1") == b"\xff\xd8jpeg"
    assert log.forget("p1", "Ann") == 1
    assert log.snapshot("1") is None
    rows = log.query(limit=10)
    assert [r["event_id"] for r in rows] == ["4", "3", "2"]
    assert "Ann" not in str(rows)


def test_event_log_retention_and_bound(tmp_path):
    log = EventLog(tmp_path / "e.sqlite3", Retention(1, 100, False, 1))
    now = time.time()
    log.add_decision(decision("old", now - 2 * 86400, "granted", "p", "A"), b"x")
    for i in range(120):
        log.add_decision(decision(f"e{i}", now, "unknown", None, None))
    log.prune()
    ids = [r["event_id"] for r in log.query(limit=1000)]
    assert "old" not in ids and len(ids) == 100 and ids[0] == "e119"
    assert log.snapshot("old") is None  # snapshots off: never stored


def test_attendance_per_person_and_day(tmp_path):
    log = EventLog(tmp_path / "e.sqlite3", Retention(3650, 1000, False, 1))
    day = dt.datetime(2025, 3, 4, 8, 0, tzinfo=UTC).timestamp()
    log.add_decision(decision("a", day, "check_in", "p", "Ann"))
    log.add_decision(decision("b", day + 3600, "denied", "p", "Ann"))
    log.add_decision(decision("c", day + 9 * 3600, "check_out", "p", "Ann"))
    log.add_decision(decision("d", day + 86400, "granted", "p", "Ann"))
    since, until = day_range("2025-03-04", "2025-03-05", UTC)
    rows = log.attendance(since, until, UTC)
    assert [(r["date"], r["present_s"], r["events"]) for r in rows] == [
        ("2025-03-04", 9 * 3600, 2),
        ("2025-03-05", 0, 1),
    ]
    assert rows[0]["first_in"] == "2025-03-04T08:00:00+00:00"
    assert rows[1]["last_out"] is None


def test_csv_opens_in_a_spreadsheet():
    data = to_csv(("name", "score"), [('Zoë "Z", Jr.', -0.5), ("=HYPERLINK(1)", 1)])
    assert data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[1] == ['Zoë "Z", Jr.', "-0.5"]
    assert rows[2][0] == "'=HYPERLINK(1)"  # not a formula


def test_day_range_refuses_nonsense():
    for a, b in (("2025-02-30", None), ("2025-03-02", "2025-03-01"), ("x", None)):
        with pytest.raises(ValueError):
            day_range(a, b, UTC)


def test_users_scrypt_lockout_sessions_tokens(tmp_path):
    u = Users(tmp_path / "u.sqlite3")
    with pytest.raises(UserError):
        u.add("ann", "short", "t")
    with pytest.raises(UserError):
        u.add("a n", "long enough pw", "t")
    u.add("ann", "long enough pw", "t")
    with pytest.raises(UserError):
        u.add("bob", "long enough pw", "setup", only_if_none=True)
    stored = sqlite3.connect(tmp_path / "u.sqlite3").execute("SELECT hash FROM users").fetchone()
    assert stored[0].startswith("scrypt$16384$8$1$") and "long enough" not in stored[0]
    assert u.login("ann", "long enough pw", 3, 60) == "ann"
    for _ in range(3):
        with pytest.raises(UserError, match="wrong"):
            u.login("ann", "nope nope nope", 3, 60)
    with pytest.raises(UserError) as exc:
        u.login("ann", "long enough pw", 3, 60)
    assert exc.value.code == "locked"
    with pytest.raises(UserError, match="wrong"):
        u.login("nobody", "long enough pw", 3, 60)
    sid, s = u.new_session("ann", 1)
    assert u.session(sid) == s and u.session("forged") is None
    u.set_password("ann", "another long pw", "t")  # lifts the lock, ends the sessions
    assert u.session(sid) is None and u.login("ann", "another long pw", 3, 60) == "ann"
    t = u.new_token("ann", "script", "t")
    assert u.token_user(t["token"]) == "ann" and u.token_user(t["token"] + "x") is None
    u.revoke_token(t["id"], "t")
    assert u.token_user(t["token"]) is None
    actions = [a["action"] for a in u.audit_log()]
    assert {"user_add", "login_failed", "user_passwd", "token_create", "token_revoke"} <= set(
        actions
    )


def test_rate_limit_counts_failures_per_address():
    r = RateLimit(tries=2, window_s=60)
    assert r.wait("a") == 0
    r.hit("a")
    r.hit("a")
    assert r.wait("a") > 0 and r.wait("b") == 0


def test_log_tail_blanks_credentials():
    line = redact("setup code Zx9_abc token=apl_1_2 key: " + "ab" * 30 + " person 1234")
    assert "Zx9" not in line and "apl_" not in line and "abab" not in line
    assert line.endswith("person 1234")


def test_web_config_sections():
    cfg = parse("web:\n  enabled: true\n  listen: 127.0.0.1:9000\nevents:\n  snapshots: true\n")
    assert cfg.web.listen == "127.0.0.1:9000" and cfg.events.snapshots
    for bad in (
        "web:\n  listen: 8080\n",
        "web:\n  tls_cert_file: /etc/hostname\n",
        "web:\n  x: 1\n",
    ):
        with pytest.raises(ConfigError, match="line"):
            parse(bad)
