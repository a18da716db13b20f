"""The owner's web pages and REST API (/api/v1), a transport like the MQTT commands and
the local socket: it authenticates the caller (a session cookie or an API token), turns
the request into a typed command and submits it to the command bus, which the frame loop
drains. It never writes the gallery or the rules and never runs a model itself.

Only `server.py` imports the web framework (Starlette on uvicorn); the other modules
(live view, log tail, CSV, OpenAPI, rate limits) are plain Python the tests use alone.
"""
