"""The HTTP server: Starlette on uvicorn in its own thread; the only web framework import.

Every endpoint is one row of `ROUTES`, which also yields the OpenAPI schema the server
publishes (/api/v1/openapi.json), so the documentation cannot drift from the routes.
A request is authenticated (session cookie, or `Authorization: Bearer <token>`), checked
for CSRF when it changes something and comes from a session, turned into a typed command
and submitted to the bus; the frame loop runs it and the reply comes back as JSON.

Why these choices:
- Sessions are server-side rows (users.sqlite3); the cookie is `HttpOnly` (no script
  reads it), `SameSite=Strict` (no other site's page sends it) and `Secure` under TLS.
- CSRF: a change made with a session must carry the session's CSRF token in the
  `X-CSRF-Token` header, which only our own page can read (from /api/v1/session). A
  token-authenticated script needs none: a browser never adds a Bearer header by itself.
- Login takes JSON only, so no cross-site HTML form can post it; ten tries a minute per
  address, and a user name locks after `web.login_max_failures` wrong passwords.
- A content security policy allowing only our own scripts, styles and images, so even
  a name that got past the page's escaping could not run.
- Bodies need a Content-Length within the MQTT image limits (10 photos of 6 MiB); photos
  are decoded by the command service through appliance/vision/imageio.py.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from appliance import __version__
from appliance.config.schema import Config
from appliance.control import commands as c
from appliance.control.bus import CommandBus
from appliance.control.commands import CommandError, from_args
from appliance.control.settings import LIVE
from appliance.store.users import UserError, Users
from appliance.transport.http.address import page_url
from appliance.transport.http.limits import RateLimit
from appliance.transport.http.live import LiveView
from appliance.transport.http.logtail import LogTail
from appliance.transport.http.reports import day_range, iso, to_csv

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
COOKIE = "appliance_session"
REPLY_TIMEOUT_S = 180.0  # a camera enrolment may take its whole capture timeout
MAX_BODY = c.MAX_IMAGES * c.MAX_IMAGE_BYTES + (1 << 20)
MAX_JSON = 64 << 20  # a gallery import with many people
SAFE = ("GET", "HEAD")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
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


def _error_status(exc: CommandError) -> int:
    if exc.code == "GalleryError":
        if exc.message.startswith("no "):
            return 404
        return 409 if "taken" in exc.message else 400
    if exc.code.endswith("Error"):  # ScheduleError, ValueError, ...: bad input
        return 400
    return STATUS.get(exc.code, 422)  # enrolment refusals (too_small, duplicate, ...): 422


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers={"cache-control": "no-store"})


def _problem(code: str, message: str, status: int) -> JSONResponse:
    return _json({"error": {"code": code, "message": message}}, status)


# --- request helpers -------------------------------------------------------------------


async def _body_json(req: Request) -> dict[str, Any]:
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


def _q(req: Request, name: str) -> str | None:
    v = req.query_params.get(name)
    return v if v not in (None, "") else None


def _q_int(req: Request, name: str, lo: int, hi: int, default: int | None) -> int | None:
    v = _q(req, name)
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError:
        raise ApiError("malformed", f"'{name}' must be a whole number") from None
    if not lo <= n <= hi:
        raise ApiError("malformed", f"'{name}' must be {lo}..{hi}")
    return n


async def _uploads(req: Request, field: str) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
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


def _flag(fields: dict[str, str], name: str) -> bool:
    v = fields.get(name, "false").lower()
    if v not in ("true", "false", "1", "0", "on", "off", ""):
        raise ApiError("malformed", f"'{name}' must be true or false")
    return v in ("true", "1", "on")


class WebServer:
    def __init__(
        self,
        cfg: Callable[[], Config],
        bus: CommandBus,
        users: Users,
        live: LiveView,
        logtail: LogTail,
        tz: Callable[[], Any],
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.users = users
        self.live = live
        self.logtail = logtail
        self.tz = tz
        self.limit = RateLimit()
        self.setup_code: str | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(routes=self._routes())
        self.tls = bool(cfg().web.tls_cert_file)

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return page_url(self.cfg().web)

    def start(self) -> None:
        w = self.cfg().web
        host, _, port = w.listen.rpartition(":")
        config = uvicorn.Config(
            self._asgi,
            host=host.strip("[]"),
            port=int(port),
            log_config=None,  # the daemon's logging stays as it is
            access_log=False,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,  # the client address is the socket's: rate limits hold
            ssl_certfile=w.tls_cert_file or None,
            ssl_keyfile=w.tls_key_file or None,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self.thread.start()
        if self.users.count() == 0:
            self.setup_code = secrets.token_urlsafe(12)
            # The one place a credential is logged, on purpose: the owner reads it from
            # the journal once (the log tail page blanks it).
            log.warning(
                "no web account yet: open %s and create the owner with setup code %s "
                "(or run `appliance user add NAME`)",
                self.url,
                self.setup_code,
            )

    def _serve(self) -> None:
        assert self.server is not None
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; the door goes on
            log.error("web server could not listen on %s", self.cfg().web.listen)
        except Exception:
            log.exception("web server stopped")

    def wait_started(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server is not None and self.server.started:
                return True
            if self.thread is None or not self.thread.is_alive():
                return False
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.server = self.thread = None

    # --- ASGI: size limit and security headers around the app -------------------------

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["method"] not in SAFE:
            length = headers.get(b"content-length")
            if length is None and headers.get(b"transfer-encoding"):
                await _problem("length_required", "send a Content-Length", 411)(
                    scope, receive, send
                )
                return
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await _problem("too_large", f"body larger than {MAX_BODY} bytes", 413)(
                    scope, receive, send
                )
                return
        extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
        if self.tls:
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def send_with_headers(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = list(msg.get("headers", [])) + extra
            await send(msg)

        await self.app(scope, receive, send_with_headers)

    def _routes(self) -> list[StarletteRoute]:
        out = []
        for r in ROUTES:
            out.append(StarletteRoute(r.path, self._endpoint(r), methods=[r.method]))
        out += [
            StarletteRoute("/", self._page, methods=["GET"]),
            StarletteRoute("/static/{name}", self._static, methods=["GET"]),
        ]
        return out

    def _endpoint(self, r: Route) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(req: Request) -> Response:
            try:
                who = await self._authenticate(req) if r.auth else Principal("", "none")
                return await r.handler(self, req, who)
            except ApiError as exc:
                return _problem(exc.code, exc.message, exc.status)
            except CommandError as exc:
                return _problem(exc.code, exc.message, _error_status(exc))
            except UserError as exc:
                return _problem(exc.code, exc.message, STATUS.get(exc.code, 400))
            except ValueError as exc:
                return _problem("malformed", str(exc), 400)

        return endpoint

    async def _page(self, req: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def _static(self, req: Request) -> Response:
        name = req.path_params["name"]
        allowed = {p.name for p in STATIC.iterdir() if p.name != "index.html"}
        if name not in allowed:
            return _problem("not_found", "no such file", 404)
        return FileResponse(STATIC / name, headers={"cache-control": "no-cache"})

    # --- authentication --------------------------------------------------------------

    async def _authenticate(self, req: Request) -> Principal:
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            user = await run_in_threadpool(self.users.token_user, auth[7:].strip())
            if user is None:
                raise ApiError("unauthorized", "unknown or revoked API token")
            return Principal(user, "token")
        sid = req.cookies.get(COOKIE)
        s = await run_in_threadpool(self.users.session, sid) if sid else None
        if s is None:
            raise ApiError("unauthorized", "log in first")
        who = Principal(s.user, "session", s.csrf, sid or "")
        if req.method not in SAFE:
            self._check_csrf(req, who)
        return who

    def _check_csrf(self, req: Request, who: Principal) -> None:
        sent = req.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, who.csrf):
            raise ApiError("csrf", "missing or wrong X-CSRF-Token header; reload the page")
        origin = req.headers.get("origin")
        if origin and origin != f"{req.url.scheme}://{req.headers.get('host', '')}":
            raise ApiError("csrf", f"request from another origin ({origin}) refused")

    async def run(self, cmd: c.Command, who: Principal) -> Any:
        fut = self.bus.submit(cmd, who.actor)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), REPLY_TIMEOUT_S)
        except TimeoutError:
            raise ApiError("timeout", "the door did not answer in time") from None

    def cookie(self, resp: Response, sid: str, max_age: int) -> None:
        resp.set_cookie(
            COOKIE,
            sid,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.tls,
        )


# --- handlers --------------------------------------------------------------------------


async def h_health(s: WebServer, req: Request, who: Principal) -> Response:
    return _json({"ok": True})


async def h_openapi(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(openapi())


def _client(req: Request) -> str:
    return req.client.host if req.client else "?"


async def h_login(s: WebServer, req: Request, who: Principal) -> Response:
    wait = s.limit.wait(_client(req))
    if wait:
        resp = _problem("rate_limited", f"too many failed logins; wait {wait:.0f} s", 429)
        resp.headers["retry-after"] = str(int(wait) + 1)
        return resp
    body = await _body_json(req)
    user, password = body.get("user"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        raise ApiError("malformed", "send {'user': ..., 'password': ...} as text")
    w = s.cfg().web
    try:
        name = await run_in_threadpool(
            s.users.login, user, password, w.login_max_failures, w.lockout_s
        )
    except UserError as exc:
        s.limit.hit(_client(req))
        log.info("web login refused from %s: %s", _client(req), exc.code)
        raise
    sid, session = await run_in_threadpool(s.users.new_session, name, w.session_hours)
    resp = _json({"user": name, "csrf": session.csrf})
    s.cookie(resp, sid, int(w.session_hours * 3600))
    log.info("web login: %s from %s", name, _client(req))
    return resp


async def h_setup(s: WebServer, req: Request, who: Principal) -> Response:
    wait = s.limit.wait(_client(req))
    if wait:
        return _problem("rate_limited", f"too many failed tries; wait {wait:.0f} s", 429)
    body = await _body_json(req)
    code = body.get("code")
    if s.setup_code is None or not isinstance(code, str):
        raise ApiError("forbidden", "no setup is open (an owner exists); log in instead")
    if not hmac.compare_digest(code.encode(), s.setup_code.encode()):
        s.limit.hit(_client(req))
        raise ApiError("forbidden", "wrong setup code (it is in the daemon's log)")
    await run_in_threadpool(s.users.add, body.get("user"), body.get("password"), "web:setup", True)
    s.setup_code = None
    return _json({"created": body["user"]}, 201)


async def h_session(s: WebServer, req: Request, who: Principal) -> Response:
    return _json({"user": who.user, "csrf": who.csrf, "via": who.via, "version": __version__})


async def h_logout(s: WebServer, req: Request, who: Principal) -> Response:
    if who.sid:
        await run_in_threadpool(s.users.end_session, who.sid)
    resp = _json({"logged_out": who.user})
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=s.tls)
    return resp


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
    q = (_q(req, "q") or "").casefold()
    if q:
        people = [p for p in people if q in p["name"].casefold() or q == p["id"]]
    return _json({"people": people})


async def h_person(s: WebServer, req: Request, who: Principal) -> Response:
    key = req.path_params["who"]
    for p in await _people(s, who):
        if key in (p["id"], p["name"]) or key.casefold() == p["name"].casefold():
            return _json({"person": p})
    raise ApiError("not_found", f"no person {key!r}")


async def h_enrol(s: WebServer, req: Request, who: Principal) -> Response:
    photos, fields = await _uploads(req, "photos")
    name = fields.get("name", "")
    if not name.strip() or len(name) > c.MAX_NAME:
        raise ApiError("malformed", f"'name' must be non-empty text (at most {c.MAX_NAME})")
    cmd = c.EnrolPhotos(
        name.strip(), c.photos(photos), _flag(fields, "force"), _flag(fields, "keep_good")
    )
    result = await s.run(cmd, who)
    return _json(result, 201 if result["enrolled"] else 422)


async def h_capture(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    cmd = from_args("enroll", {**body, "capture": True}, source="http")
    return _json(await s.run(cmd, who), 201)


async def h_rename(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    cmd = from_args("rename", {"name": req.path_params["who"], "new_name": body.get("name")})
    return _json(await s.run(cmd, who))


async def h_delete(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(c.Delete(req.path_params["who"]), who))


async def h_access(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    return _json(await s.run(from_args("access", {**body, "name": req.path_params["who"]}), who))


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
    return _json(await s.run(from_args("import", {"data": await _body_json(req)}), who))


async def h_thumbnail(s: WebServer, req: Request, who: Principal) -> Response:
    try:
        n = int(req.path_params["n"])
    except ValueError:
        raise ApiError("malformed", "the thumbnail number is a whole number") from None
    r = await s.run(c.Thumbnail(req.path_params["who"], n), who)
    return Response(r["jpeg"], media_type="image/jpeg", headers={"cache-control": "no-store"})


def _event_filter(s: WebServer, req: Request, limit_default: int) -> c.ListEvents:
    since = until = None
    if _q(req, "from") or _q(req, "to"):
        since, until = day_range(_q(req, "from"), _q(req, "to"), s.tz())
    decision = _q(req, "decision")
    if decision is not None and not decision.replace("_", "").isalpha():
        raise ApiError("malformed", "'decision' is a word such as granted, denied, unknown")
    return c.ListEvents(
        _q(req, "person"),
        decision,
        since,
        until,
        _q_int(req, "after", 0, 2**62, None),
        _q_int(req, "limit", 1, 1000, limit_default) or limit_default,
    )


async def h_events(s: WebServer, req: Request, who: Principal) -> Response:
    events = (await s.run(_event_filter(s, req, 100), who))["events"]
    for e in events:
        e.pop("payload")
    return _json({"events": events})


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
    return _csv(to_csv(header, rows), "events.csv")


def _csv(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "cache-control": "no-store",
        },
    )


async def h_snapshot(s: WebServer, req: Request, who: Principal) -> Response:
    r = await s.run(c.Snapshot(req.path_params["event_id"]), who)
    return Response(r["jpeg"], media_type="image/jpeg", headers={"cache-control": "no-store"})


async def _attendance(s: WebServer, req: Request, who: Principal) -> list[dict[str, Any]]:
    since, until = day_range(_q(req, "from"), _q(req, "to"), s.tz())
    return (await s.run(c.Attendance(since, until, _q(req, "person")), who))["days"]


async def h_attendance(s: WebServer, req: Request, who: Principal) -> Response:
    return _json({"days": await _attendance(s, req, who)})


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
    return _csv(to_csv(header, rows), "attendance.csv")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


async def h_door(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(c.DoorStatus(), who))


async def h_unlock(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    return _json(await s.run(from_args("unlock", {"reason": f"web:{who.user}", **body}), who))


async def h_mode(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(from_args("door_mode", await _body_json(req)), who))


async def h_rules(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(c.ListRules(), who))


async def h_group_set(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    return _json(
        await s.run(from_args("group_set", {**body, "name": req.path_params["name"]}), who)
    )


async def h_group_delete(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(from_args("group_delete", {"name": req.path_params["name"]}), who))


async def h_status(s: WebServer, req: Request, who: Principal) -> Response:
    return _json(await s.run(c.Status(), who))


def _live_values(cfg: Config) -> dict[str, Any]:
    return {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in LIVE}


async def h_settings(s: WebServer, req: Request, who: Principal) -> Response:
    return _json({"settings": _live_values(s.cfg()), "settable": list(LIVE)})


async def h_settings_set(s: WebServer, req: Request, who: Principal) -> Response:
    result = await s.run(c.SetLive(await _body_json(req)), who)
    return _json({**result, "settings": _live_values(s.cfg())})


async def h_log(s: WebServer, req: Request, who: Principal) -> Response:
    level = _q(req, "level")
    if level is not None and level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ApiError("malformed", "'level' is one of info, warning, error")
    return _json({"lines": s.logtail.tail(_q_int(req, "n", 1, 500, 200) or 200, level)})


async def h_recognize(s: WebServer, req: Request, who: Principal) -> Response:
    ctype = req.headers.get("content-type", "")
    if ctype.startswith("image/"):
        data = await req.body()
        photos = [("image 1", data)]
    else:
        photos, _ = await _uploads(req, "photo")
    if len(photos) != 1:
        raise ApiError("malformed", "send exactly one 'photo'")
    c.photos(photos)
    return _json(await s.run(c.Recognize(photos[0][1]), who))


async def h_tokens(s: WebServer, req: Request, who: Principal) -> Response:
    return _json({"tokens": await run_in_threadpool(s.users.tokens)})


async def h_token_new(s: WebServer, req: Request, who: Principal) -> Response:
    body = await _body_json(req)
    t = await run_in_threadpool(s.users.new_token, who.user, body.get("label"), who.actor)
    return _json(t, 201)


async def h_token_revoke(s: WebServer, req: Request, who: Principal) -> Response:
    await run_in_threadpool(s.users.revoke_token, req.path_params["id"], who.actor)
    return _json({"revoked": req.path_params["id"]})


async def h_live(s: WebServer, req: Request, who: Principal) -> Response:
    jpeg = s.live.touch()
    if jpeg is None:
        return Response(status_code=204, headers={"cache-control": "no-store", "retry-after": "1"})
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "no-store"})


V1 = "/api/v1"
ROUTES: tuple[Route, ...] = (
    Route("GET", f"{V1}/health", h_health, "Minimal health check (no login): {ok: true}", False),
    Route(
        "POST",
        f"{V1}/login",
        h_login,
        "Log in: {user, password}; sets the session cookie",
        False,
        "json",
    ),
    Route(
        "POST",
        f"{V1}/setup",
        h_setup,
        "Create the first owner with the logged setup code: {code, user, password}",
        False,
        "json",
    ),
    Route("GET", f"{V1}/openapi.json", h_openapi, "This schema"),
    Route("GET", f"{V1}/session", h_session, "Who is logged in, and the CSRF token for changes"),
    Route("POST", f"{V1}/logout", h_logout, "End the session"),
    Route(
        "GET", f"{V1}/people", h_people, "People, with groups, validity and last seen", query=("q",)
    ),
    Route(
        "POST",
        f"{V1}/people",
        h_enrol,
        "Enrol from photos (multipart: name, photos[], force, keep_good); a result per photo",
        body="multipart",
    ),
    Route(
        "POST",
        f"{V1}/people/capture",
        h_capture,
        "Enrol whoever stands at the door: {name, frames, force}",
        body="json",
    ),
    Route("GET", f"{V1}/people/export", h_export, "Export the gallery (names and embeddings)"),
    Route("POST", f"{V1}/people/import", h_import, "Import a gallery export", body="json"),
    Route("GET", f"{V1}/people/{{who}}", h_person, "One person by id or name"),
    Route("PATCH", f"{V1}/people/{{who}}", h_rename, "Rename: {name}", body="json"),
    Route("DELETE", f"{V1}/people/{{who}}", h_delete, "Delete a person and erase their events"),
    Route(
        "PUT",
        f"{V1}/people/{{who}}/access",
        h_access,
        "A person's groups and validity: {groups, valid_from, valid_until}",
        body="json",
    ),
    Route(
        "GET",
        f"{V1}/people/{{who}}/thumbnails/{{n}}",
        h_thumbnail,
        "A template's thumbnail (enrolment.keep_thumbnails)",
        produces="image/jpeg",
    ),
    Route(
        "GET",
        f"{V1}/events",
        h_events,
        "Decisions and door events, newest first",
        query=("person", "decision", "from", "to", "after", "limit"),
    ),
    Route(
        "GET",
        f"{V1}/events.csv",
        h_events_csv,
        "The same as CSV",
        query=("person", "decision", "from", "to", "limit"),
        produces="text/csv",
    ),
    Route(
        "GET",
        f"{V1}/events/{{event_id}}/snapshot",
        h_snapshot,
        "The face of a decision (events.snapshots)",
        produces="image/jpeg",
    ),
    Route(
        "GET",
        f"{V1}/attendance",
        h_attendance,
        "Per person and day: first in, last out, time present",
        query=("from", "to", "person"),
    ),
    Route(
        "GET",
        f"{V1}/attendance.csv",
        h_attendance_csv,
        "The same as CSV",
        query=("from", "to", "person"),
        produces="text/csv",
    ),
    Route("GET", f"{V1}/door", h_door, "Door state and mode"),
    Route("POST", f"{V1}/door/unlock", h_unlock, "Unlock: {duration_s, reason}", body="json"),
    Route(
        "PUT",
        f"{V1}/door/mode",
        h_mode,
        "Door mode: {mode: normal|passage|lockdown, group}",
        body="json",
    ),
    Route("GET", f"{V1}/rules", h_rules, "Access groups, schedules, people's rights, the mode"),
    Route(
        "PUT",
        f"{V1}/rules/groups/{{name}}",
        h_group_set,
        "Create or replace a group: {windows, holidays}",
        body="json",
    ),
    Route("DELETE", f"{V1}/rules/groups/{{name}}", h_group_delete, "Delete a group"),
    Route(
        "GET",
        f"{V1}/system/health",
        h_status,
        "Full health: fps, stage times, camera, broker, outbox, storage, versions",
    ),
    Route("GET", f"{V1}/system/settings", h_settings, "The live settings"),
    Route(
        "PATCH",
        f"{V1}/system/settings",
        h_settings_set,
        "Change live settings: {'recognition.margin': 0.06, ...}",
        body="json",
    ),
    Route("GET", f"{V1}/system/log", h_log, "The log tail (secrets blanked)", query=("n", "level")),
    Route(
        "POST",
        f"{V1}/recognize",
        h_recognize,
        "Faces of a photo: names or unknown, scores, threshold, margin "
        "(multipart 'photo' or an image/* body)",
        body="image",
    ),
    Route("GET", f"{V1}/tokens", h_tokens, "API tokens"),
    Route(
        "POST",
        f"{V1}/tokens",
        h_token_new,
        "New API token: {label}; the secret is shown once",
        body="json",
    ),
    Route("DELETE", f"{V1}/tokens/{{id}}", h_token_revoke, "Revoke an API token"),
    Route(
        "GET",
        f"{V1}/live.jpg",
        h_live,
        "The live view: the newest annotated frame (204 until there is one)",
        produces="image/jpeg",
    ),
)


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 from `ROUTES`."""
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__.removeprefix("h_"),
            "responses": {
                "200": {"description": "OK", "content": {r.produces: {}}},
                "400": {"$ref": "#/components/responses/Error"},
            },
        }
        params = [
            {"name": p.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
            for p in r.path.split("/")
            if p.startswith("{")
        ]
        params += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in r.query]
        if params:
            op["parameters"] = params
        if r.body:
            media = {
                "json": "application/json",
                "multipart": "multipart/form-data",
                "image": "multipart/form-data",
            }[r.body]
            op["requestBody"] = {"required": True, "content": {media: {}}}
        if r.auth:
            op["security"] = [{"session": [], "csrf": []}, {"token": []}]
            op["responses"]["401"] = {"$ref": "#/components/responses/Error"}
        else:
            op["security"] = []
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Face-recognition door appliance", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer"},
            },
            "responses": {
                "Error": {
                    "description": "Refused; nothing was changed",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
    }
