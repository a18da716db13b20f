"""The door, the access rules, the system (health, live settings, log tail), photo
recognition, API tokens and the live view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from appliance.config.schema import Config
from appliance.control import commands as c
from appliance.control.settings import LIVE
from appliance.transport.http.api import (
    ApiError,
    Principal,
    body_json,
    command,
    jpeg,
    json_reply,
    query,
    query_int,
    reply,
    uploads,
)

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer


async def h_door(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.DoorStatus())


async def h_unlock(s: WebServer, req: Request, who: Principal) -> Response:
    return await command(s, req, who, "unlock", lambda b: {"reason": f"web:{who.user}", **b})


async def h_mode(s: WebServer, req: Request, who: Principal) -> Response:
    return await command(s, req, who, "door_mode")


async def h_rules(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.ListRules())


async def h_group_set(s: WebServer, req: Request, who: Principal) -> Response:
    name = req.path_params["name"]
    return await command(s, req, who, "group_set", lambda b: {**b, "name": name})


async def h_group_delete(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.from_args("group_delete", {"name": req.path_params["name"]}))


async def h_status(s: WebServer, req: Request, who: Principal) -> Response:
    return await reply(s, who, c.Status())


def _live_values(cfg: Config) -> dict[str, Any]:
    return {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in LIVE}


async def h_settings(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply({"settings": _live_values(s.cfg()), "settable": list(LIVE)})


async def h_settings_set(s: WebServer, req: Request, who: Principal) -> Response:
    result = await s.run(c.SetLive(await body_json(req)), who)
    return json_reply({**result, "settings": _live_values(s.cfg())})


async def h_log(s: WebServer, req: Request, who: Principal) -> Response:
    level = query(req, "level")
    if level is not None and level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ApiError("malformed", "'level' is one of info, warning, error")
    return json_reply({"lines": s.logtail.tail(query_int(req, "n", 1, 500, 200) or 200, level)})


async def h_recognize(s: WebServer, req: Request, who: Principal) -> Response:
    ctype = req.headers.get("content-type", "")
    if ctype.startswith("image/"):
        data = await req.body()
        photos = [("image 1", data)]
    else:
        photos, _ = await uploads(req, "photo")
    if len(photos) != 1:
        raise ApiError("malformed", "send exactly one 'photo'")
    c.photos(photos)
    return await reply(s, who, c.Recognize(photos[0][1]))


async def h_tokens(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply({"tokens": await run_in_threadpool(s.users.tokens)})


async def h_token_new(s: WebServer, req: Request, who: Principal) -> Response:
    body = await body_json(req)
    t = await run_in_threadpool(s.users.new_token, who.user, body.get("label"), who.actor)
    return json_reply(t, 201)


async def h_token_revoke(s: WebServer, req: Request, who: Principal) -> Response:
    await run_in_threadpool(s.users.revoke_token, req.path_params["id"], who.actor)
    return json_reply({"revoked": req.path_params["id"]})


async def h_live(s: WebServer, req: Request, who: Principal) -> Response:
    frame = s.live.touch()
    if frame is None:
        return Response(status_code=204, headers={"cache-control": "no-store", "retry-after": "1"})
    return jpeg(frame)


async def h_live_caption(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply(s.live.caption())
