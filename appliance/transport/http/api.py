"""What every handler shares: the error type and its HTTP statuses, the caller, a route
row, and the request parsing and JSON replies, written once.

`command` is the one path a change takes from a request: parse the JSON body, build the
typed command with `from_args` (the same validation MQTT and the CLI get), run it through
the command service on the bus, reply JSON; any refusal on the way becomes the same
problem document (`WebServer._endpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.control import commands as c
from appliance.control.commands import CommandError, from_args

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer

COOKIE = "appliance_session"
MAX_JSON = 64 << 20  # a gallery import with many people
STATUS = {
    "malformed": 400,
    "invalid": 400,
    "unknown_command": 400,
    "ImageError": 400,
    "ValueError": 400,
    "weak_password": 400,
    "bad_user": 400,
    "unauthorized": 401,
    "bad_login": 401,
    "csrf": 403,
    "forbidden": 403,
    "not_found": 404,
    "unknown_user": 404,
    "unknown_token": 404,
    "exists": 409,
    "no_door": 409,
    "no_event_log": 409,
    "length_required": 411,
    "too_large": 413,
    "unsupported_media_type": 415,
    "locked": 429,
    "rate_limited": 429,
    "internal": 500,
    "busy": 503,
    "timeout": 504,
    "storage": 507,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)


@dataclass(frozen=True)
class Principal:
    user: str
    via: str  # session | token | none
    csrf: str = ""
    sid: str = ""

    @property
    def actor(self) -> str:
        return f"web:{self.user}"


Handler = Callable[["WebServer", Request, Principal], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: bool = True
    body: str | None = None  # json | multipart | image, for the schema
    query: tuple[str, ...] = ()
    produces: str = "application/json"


def error_status(exc: CommandError) -> int:
    if exc.code == "GalleryError":
        if exc.message.startswith("no "):
            return 404
        return 409 if "taken" in exc.message else 400
    if exc.code.endswith("Error"):  # ScheduleError, ValueError, ...: bad input
        return 400
    return STATUS.get(exc.code, 422)  # enrolment refusals (too_small, duplicate, ...): 422


def json_reply(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers={"cache-control": "no-store"})


def problem(code: str, message: str, status: int) -> JSONResponse:
    return json_reply({"error": {"code": code, "message": message}}, status)


def download(data: bytes, media_type: str, name: str) -> Response:
    """A file the browser saves (`name`), never cached."""
    return Response(
        data,
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "cache-control": "no-store",
        },
    )


def jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"cache-control": "no-store"})


async def body_json(req: Request) -> dict[str, Any]:
    if req.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json")
    raw = await req.body()
    if len(raw) > MAX_JSON:
        raise ApiError("too_large", f"JSON body larger than {MAX_JSON} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError("malformed", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError("malformed", "the body must be a JSON object")
    return data


async def reply(s: WebServer, who: Principal, cmd: c.Command, status: int = 200) -> Response:
    """Run a typed command through the command service; its result as JSON."""
    return json_reply(await s.run(cmd, who), status)


async def command(
    s: WebServer,
    req: Request,
    who: Principal,
    name: str,
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    """Body -> `from_args(name, shape(body))` -> command service -> JSON. `shape` adds
    what the URL says (the person, the group) or the defaults the web page implies."""
    body = await body_json(req)
    cmd = from_args(name, shape(body) if shape else body, source="http")
    return await reply(s, who, cmd, status)


def query(req: Request, name: str) -> str | None:
    v = req.query_params.get(name)
    return v if v not in (None, "") else None


def query_int(req: Request, name: str, lo: int, hi: int, default: int | None) -> int | None:
    v = query(req, name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError("malformed", f"'{name}' must be a whole number") from None
    if not lo <= n <= hi:
        raise ApiError("malformed", f"'{name}' must be {lo}..{hi}")
    return n


async def uploads(req: Request, field: str) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Multipart photos under `field` and the other (text) fields."""
    if not req.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError("unsupported_media_type", f"send multipart/form-data with '{field}' files")
    try:
        form = await req.form(
            max_files=c.MAX_IMAGES, max_fields=20, max_part_size=c.MAX_IMAGE_BYTES + 1
        )
    except Exception as exc:  # MultiPartException, a malformed body
        raise ApiError("malformed", f"bad multipart body: {exc}") from None
    photos: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            elif key == field:
                data = await value.read(c.MAX_IMAGE_BYTES + 1)
                label = f"photo {value.filename}" if value.filename else f"image {len(photos) + 1}"
                photos.append((label[: c.MAX_NAME], data))
    finally:
        await form.close()
    return photos, fields


def flag(fields: dict[str, str], name: str) -> bool:
    v = fields.get(name, "false").lower()
    if v not in ("true", "false", "1", "0", "on", "off", ""):
        raise ApiError("malformed", f"'{name}' must be true or false")
    return v in ("true", "1", "on")
