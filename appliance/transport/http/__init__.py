"""The owner's web pages and REST API (/api/v1), a transport like the MQTT commands and
the local socket: it authenticates the caller (a session cookie or an API token), turns
the request into a typed command and submits it to the command bus, which the frame loop
drains. It never writes the gallery or the rules and never runs a model itself.

Only this package imports the web framework (Starlette on uvicorn): `server.py` (the
app, sessions, CSRF), `api.py` (errors, parsing, the body -> command -> reply helper),
`routes.py` (the route table and its OpenAPI schema) and the handlers by role
(`auth_routes`, `people_routes`, `history_routes`, `system_routes`). The live view, log
tail, CSV and rate limits are plain Python the tests use alone.
"""
