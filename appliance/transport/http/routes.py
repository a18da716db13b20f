"""The route table: every endpoint is one row, and the OpenAPI schema the server
publishes (/api/v1/openapi.json) is generated from the same rows, so the documentation
cannot drift from what the server runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from appliance import __version__
from appliance.transport.http.api import COOKIE, Principal, Route, json_reply
from appliance.transport.http.auth_routes import h_health, h_login, h_logout, h_session, h_setup
from appliance.transport.http.history_routes import (
    h_attendance,
    h_attendance_csv,
    h_events,
    h_events_csv,
    h_snapshot,
)
from appliance.transport.http.people_routes import (
    h_access,
    h_capture,
    h_capture_status,
    h_delete,
    h_enrol,
    h_export,
    h_import,
    h_people,
    h_person,
    h_rename,
    h_thumbnail,
)
from appliance.transport.http.system_routes import (
    h_door,
    h_group_delete,
    h_group_set,
    h_live,
    h_live_caption,
    h_log,
    h_mode,
    h_recognize,
    h_rules,
    h_settings,
    h_settings_set,
    h_status,
    h_token_new,
    h_token_revoke,
    h_tokens,
    h_unlock,
)

if TYPE_CHECKING:
    from appliance.transport.http.server import WebServer


async def h_openapi(s: WebServer, req: Request, who: Principal) -> Response:
    return json_reply(openapi())


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
    Route(
        "GET",
        f"{V1}/enrol/capture",
        h_capture_status,
        "The camera enrolment under way: live feedback for the person at the door "
        "(code, sentence, what was measured), frames collected of those asked; "
        "when none runs, how the last one ended (result)",
    ),
    Route("GET", f"{V1}/people/export", h_export, "Export the gallery (names and embeddings)"),
    Route("POST", f"{V1}/people/import", h_import, "Import a gallery export", body="json"),
    Route(
        "GET",
        f"{V1}/people/{{who}}",
        h_person,
        "One person by id or name, with their templates: the quality each was enrolled "
        "with (score, eye distance, sharpness, frontal), embedder, source, when added",
    ),
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
    Route(
        "GET",
        f"{V1}/live.json",
        h_live_caption,
        "What the newest live frame shows, as data: each face's box and name or "
        "unknown, the decision on top",
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
