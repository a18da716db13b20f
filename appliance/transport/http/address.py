"""The address of the owner's pages, without the web framework: the MQTT side needs it
(Home Assistant's device page links to it, `configuration_url`) before the server is
built, and on a door whose pages are off nothing of Starlette is imported."""

from __future__ import annotations

import socket

from appliance.config.schema import WebConfig


def page_url(web: WebConfig) -> str:
    """`web.url` when set, else http(s)://<host>:<port>/ of `web.listen`, the machine's
    host name standing in for an any-address bind (0.0.0.0 is no address to browse to)."""
    if web.url:
        return web.url
    host, _, port = web.listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
    return f"{'https' if web.tls_cert_file else 'http'}://{host}:{port}/"
