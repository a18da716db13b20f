"""MQTT commands: a signed envelope -> a typed command on the bus -> a reply.

Runs in paho's network thread and never touches models or the gallery: it checks the
signature, freshness and nonce, builds the typed command, submits it and replies when
its future completes (at once for most, later for a camera capture). Every refusal
(`CommandRejected` from the signature check, `CommandError` from the arguments or the
service, `busy` from the bus) is answered on the reply topic with the request id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from appliance.control.bus import CommandBus
from appliance.control.commands import CommandError, from_args
from appliance.transport.mqtt.link import Incoming
from appliance.transport.mqtt.signing import CommandRejected, verify
from appliance.transport.mqtt.topics import COMMANDS, Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verifier:
    """What a command must prove: signed with `key` for this device, fresh, not replayed."""

    device: str
    key: bytes | None
    required: bool
    max_age_s: float
    nonce_seen: Callable[[str, float], bool]


class MqttCommands:
    def __init__(
        self,
        topics: Topics,
        bus: CommandBus,
        verifier: Callable[[], Verifier],
        publish: Callable[..., Any],
    ) -> None:
        self.topics = topics
        self.bus = bus
        self.verifier = verifier  # a callable: `reload` may change commands.max_age_s
        self.publish = publish
        self.refused = 0

    def on_message(self, msg: Incoming) -> None:
        name = self.topics.command_name(msg.topic) or ""
        rid = None
        try:
            if name not in COMMANDS:
                rid = peek_request_id(msg.payload)
                raise CommandRejected("unknown_command", f"unknown command {name!r}", rid)
            v = self.verifier()
            req = verify(msg.payload, name, v.device, v.key, v.required, v.max_age_s, v.nonce_seen)
            rid = req["request_id"]
            fut = self.bus.submit(from_args(name, req["args"]), f"mqtt:{rid}")
        except CommandRejected as exc:
            self.refused += 1
            log.warning("command %s refused: %s", name or msg.topic, exc.reason)
            self.reply(msg, name or "unknown", exc.request_id or rid, error=(exc.code, exc.reason))
            return
        except CommandError as exc:
            self.refused += 1
            self.reply(msg, name, rid, error=(exc.code, exc.message))
            return
        except Exception:  # the last net: a hostile payload must never break the link
            self.refused += 1
            log.exception("command %s failed", name)
            rid = rid or peek_request_id(msg.payload)
            self.reply(msg, name or "unknown", rid, error=("internal", "internal error"))
            return
        fut.add_done_callback(lambda f: self._done(f, msg, name, rid))

    def _done(self, fut: Future[Any], msg: Incoming, name: str, rid: str | None) -> None:
        exc = fut.exception()
        if exc is None:
            self.reply(msg, name, rid, fut.result())
        elif isinstance(exc, CommandError):
            self.reply(msg, name, rid, error=(exc.code, exc.message))
        else:
            self.reply(msg, name, rid, error=("internal", "internal error; nothing was changed"))

    def reply(
        self,
        msg: Incoming,
        name: str,
        rid: str | None,
        result: Any = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {"request_id": rid, "command": name, "ok": error is None}
        if error:
            body["error"] = {"code": error[0], "message": error[1]}
        else:
            body["result"] = result
        topic = msg.response_topic or self.topics.reply(name)
        self.publish(topic, json.dumps(body), qos=1, response=msg)


def peek_request_id(payload: bytes) -> str | None:
    try:
        obj = json.loads(payload)
        if isinstance(obj, dict) and isinstance(obj.get("body"), str):
            obj = json.loads(obj["body"])
        rid = obj.get("request_id") if isinstance(obj, dict) else None
        return rid if isinstance(rid, str) else None
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return None
