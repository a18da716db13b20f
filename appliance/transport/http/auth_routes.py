"""Logging in and out: the handlers that make or end a session (the checks themselves
are `WebServer._authenticate`). Login and setup are rate limited per client address."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from appliance import __version__
from appliance.store.users import UserError
from appliance.transport.http.api import ApiError, Principal, body_json, json_reply, problem

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer

log = logging.getLogger(__name__)


def _client(req: Request) -> str:
    return req.client.host if req.client else "?"


async def h_health(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply({"ok": True})


async def h_login(s: WebServer, req: Request, who: Principal) -> Response:
    wait = s.limit.wait(_client(req))
    if wait:
        resp = problem("rate_limited", f"too many failed logins; wait {wait:.0f} s", 429)
        resp.headers["retry-after"] = str(int(wait) + 1)
        return resp
    body = await body_json(req)
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
    resp = json_reply({"user": name, "csrf": session.csrf})
    s.cookie(resp, sid, int(w.session_hours * 3600))
    log.info("web login: %s from %s", name, _client(req))
    return resp


async def h_setup(s: WebServer, req: Request, who: Principal) -> Response:
    wait = s.limit.wait(_client(req))
    if wait:
        return problem("rate_limited", f"too many failed tries; wait {wait:.0f} s", 429)
    body = await body_json(req)
    code = body.get("code")
    if s.setup_code is None or not isinstance(code, str):
        raise ApiError("forbidden", "no setup is open (an owner exists); log in instead")
    if not hmac.compare_digest(code.encode(), s.setup_code.encode()):
        s.limit.hit(_client(req))
        raise ApiError("forbidden", "wrong setup code (it is in the daemon's log)")
    await run_in_threadpool(s.users.add, body.get("user"), body.get("password"), "web:setup", True)
    s.setup_code = None
    return json_reply({"created": body["user"]}, 201)


async def h_session(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply({"user": who.user, "csrf": who.csrf, "via": who.via, "version": __version__})


async def h_logout(s: WebServer, req: Request, who: Principal) -> Response:
    if who.sid:
        await run_in_threadpool(s.users.end_session, who.sid)
    resp = json_reply({"logged_out": who.user})
    s.forget_cookie(resp)
    return resp
