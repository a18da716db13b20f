"""The history pages: events (JSON and CSV), decision snapshots, attendance (JSON and
CSV). Dates are days in the door's time zone (reports.day_range)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from appliance.control import commands as c
from appliance.transport.http.api import (
    ApiError,
    Principal,
    download,
    jpeg,
    json_reply,
    query,
    query_int,
)
from appliance.transport.http.reports import day_range, iso, to_csv

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer

CSV = "text/csv; charset=utf-8"


def _event_filter(s: WebServer, req: Request, limit_default: int) -> c.ListEvents:
    since = until = None
    if query(req, "from") or query(req, "to"):
        since, until = day_range(query(req, "from"), query(req, "to"), s.tz())
    decision = query(req, "decision")
    if decision is not None and not decision.replace("_", "").isalpha():
        raise ApiError("malformed", "'decision' is a word such as granted, denied, unknown")
    return c.ListEvents(
        query(req, "person"),
        decision,
        since,
        until,
        query_int(req, "after", 0, 2**62, None),
        query_int(req, "limit", 1, 1000, limit_default) or limit_default,
    )


async def h_events(s: WebServer, req: Request, who: Principal) -> Response:
    events = (await s.run(_event_filter(s, req, 100), who))["events"]
    for e in events:
        e.pop("payload")
    return json_reply({"events": events})


async def h_events_csv(s: WebServer, req: Request, who: Principal) -> Response:
    events = (await s.run(_event_filter(s, req, 1000), who))["events"]
    tz = s.tz()
    rows = (
        (
            iso(e["at"], tz),
            e["kind"],
            e["decision"],
            e["reason"],
            e["name"],
            e["person_id"],
            e["score"],
            e["event_id"],
        )
        for e in events
    )
    header = ("time", "kind", "decision", "reason", "name", "person_id", "score", "event_id")
    return download(to_csv(header, rows), CSV, "events.csv")


async def h_snapshot(s: WebServer, req: Request, who: Principal) -> Response:
    r = await s.run(c.Snapshot(req.path_params["event_id"]), who)
    return jpeg(r["jpeg"])


async def _attendance(s: WebServer, req: Request, who: Principal) -> list[dict[str, Any]]:
    since, until = day_range(query(req, "from"), query(req, "to"), s.tz())
    return (await s.run(c.Attendance(since, until, query(req, "person")), who))["days"]


async def h_attendance(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply({"days": await _attendance(s, req, who)})


async def h_attendance_csv(s: WebServer, req: Request, who: Principal) -> Response:
    days = await _attendance(s, req, who)
    header = ("date", "name", "person_id", "first_in", "last_out", "time_present", "events")
    rows = (
        (
            d["date"],
            d["name"],
            d["person_id"],
            d["first_in"],
            d["last_out"],
            _hms(d["present_s"]),
            d["events"],
        )
        for d in days
    )
    return download(to_csv(header, rows), CSV, "attendance.csv")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
