"""The HTTP server: Starlette on uvicorn in its own thread; the only web framework import.

Every endpoint is one row of `routes.ROUTES`, which also yields the OpenAPI schema the
server publishes (/api/v1/openapi.json), so the documentation cannot drift from the routes.
The handlers live by role: auth_routes, people_routes, history_routes, system_routes;
what they share (errors, request parsing, the body -> command -> reply path) is api.py.
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
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route as StarletteRoute

from appliance.config.schema import Config
from appliance.control import commands as c
from appliance.control.bus import CommandBus
from appliance.control.commands import CommandError
from appliance.store.users import UserError, Users
from appliance.transport.http.address import page_url
from appliance.transport.http.api import (
    COOKIE,
    STATUS,
    ApiError,
    Principal,
    Route,
    error_status,
    problem,
)
from appliance.transport.http.limits import RateLimit
from appliance.transport.http.live import LiveView
from appliance.transport.http.logtail import LogTail
from appliance.transport.http.routes import ROUTES, openapi

__all__ = ["ROUTES", "WebServer", "openapi"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
REPLY_TIMEOUT_S = 180.0  # a camera enrolment may take its whole capture timeout
MAX_BODY = c.MAX_IMAGES * c.MAX_IMAGE_BYTES + (1 << 20)
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
                await problem("length_required", "send a Content-Length", 411)(scope, receive, send)
                return
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await problem("too_large", f"body larger than {MAX_BODY} bytes", 413)(
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
                return problem(exc.code, exc.message, exc.status)
            except CommandError as exc:
                return problem(exc.code, exc.message, error_status(exc))
            except UserError as exc:
                return problem(exc.code, exc.message, STATUS.get(exc.code, 400))
            except ValueError as exc:
                return problem("malformed", str(exc), 400)

        return endpoint

    async def _page(self, req: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def _static(self, req: Request) -> Response:
        name = req.path_params["name"]
        allowed = {p.name for p in STATIC.iterdir() if p.name != "index.html"}
        if name not in allowed:
            return problem("not_found", "no such file", 404)
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

    def forget_cookie(self, resp: Response) -> None:
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.tls)
