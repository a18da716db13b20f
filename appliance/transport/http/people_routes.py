"""People and enrolment: list, search, one person, enrol from photos or the camera,
rename, delete, rights, export and import, thumbnails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.control import commands as c
from appliance.control.commands import CommandError
from appliance.transport.http.api import (
    ApiError,
    Principal,
    command,
    flag,
    jpeg,
    json_reply,
    query,
    reply,
    uploads,
)

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer


async def _people(s: WebServer, who: Principal) -> list[dict[str, Any]]:
    people = (await s.run(c.ListPeople(), who))["people"]
    rules = await s.run(c.ListRules(), who)
    try:
        seen = (await s.run(c.LastSeen(), who))["last_seen"]
    except CommandError:
        seen = {}
    for p in people:
        r = rules["people"].get(p["id"], {})
        p["groups"] = r.get("groups", [])
        p["valid_from"] = r.get("valid_from")
        p["valid_until"] = r.get("valid_until")
        p["last_seen"] = seen.get(p["id"])
    return people


async def h_people(s: WebServer, req: Request, who: Principal) -> Response:
    people = await _people(s, who)
    q = (query(req, "q") or "").casefold()
    if q:
        people = [p for p in people if q in p["name"].casefold() or q == p["id"]]
    return json_reply({"people": people})


async def h_person(s: WebServer, req: Request, who: Principal) -> Response:
    key = req.path_params["who"]
    for p in await _people(s, who):
        if key in (p["id"], p["name"]) or key.casefold() == p["name"].casefold():
            templates = (await s.run(c.Templates(p["id"]), who))["templates"]
            return json_reply({"person": p, "templates": templates})
    raise ApiError("not_found", f"no person {key!r}")


async def h_enrol(s: WebServer, req: Request, who: Principal) -> Response:
    photos, fields = await uploads(req, "photos")
    name = fields.get("name", "")
    if not name.strip() or len(name) > c.MAX_NAME:
        raise ApiError("malformed", f"'name' must be non-empty text (at most {c.MAX_NAME})")
    cmd = c.EnrolPhotos(
        name.strip(), c.photos(photos), flag(fields, "force"), flag(fields, "keep_good")
    )
    result = await s.run(cmd, who)
    return json_reply(result, 201 if result["enrolled"] else 422)


async def h_capture(s: WebServer, req: Request, who: Principal) -> Response:
    return await command(s, req, who, "enroll", lambda b: {**b, "capture": True}, 201)


async def h_capture_status(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.CaptureStatus())


async def h_rename(s: WebServer, req: Request, who: Principal) -> Response:
    key = req.path_params["who"]
    return await command(s, req, who, "rename", lambda b: {"name": key, "new_name": b.get("name")})


async def h_delete(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.Delete(req.path_params["who"]))


async def h_access(s: WebServer, req: Request, who: Principal) -> Response:
    key = req.path_params["who"]
    return await command(s, req, who, "access", lambda b: {**b, "name": key})


async def h_export(s: WebServer, req: Request, who: Principal) -> Response:
    data = await s.run(c.ExportGallery(), who)
    return JSONResponse(
        data,
        headers={
            "content-disposition": 'attachment; filename="gallery.json"',
            "cache-control": "no-store",
        },
    )


async def h_import(s: WebServer, req: Request, who: Principal) -> Response:
    return await command(s, req, who, "import", lambda b: {"data": b})


async def h_thumbnail(s: WebServer, req: Request, who: Principal) -> Response:
    try:
        n = int(req.path_params["n"])
    except ValueError:
        raise ApiError("malformed", "the thumbnail number is a whole number") from None
    r = await s.run(c.Thumbnail(req.path_params["who"], n), who)
    return jpeg(r["jpeg"])
