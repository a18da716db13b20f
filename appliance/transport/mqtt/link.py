"""The MQTT adapter: the only module that imports paho.

It owns the connection (MQTT 3.1.1 or 5, TLS, credentials, the `offline` will, backoff),
hands command messages to a callback, and delivers the outbox in order: each event is
published with QoS 1 and removed from the outbox only after the broker's PUBACK.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.config.schema import MqttConfig
from appliance.store.outbox import Outbox
from appliance.transport.mqtt.signing import read_secret
from appliance.transport.mqtt.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    protocol: str  # "3.1.1" | "5"
    client_id: str
    username: str | None
    password: bytes | None
    tls: bool
    ca_file: str
    cert_file: str
    key_file: str
    tls_insecure: bool
    keepalive: int
    reconnect_max_s: float

    @classmethod
    def from_config(cls, m: MqttConfig, client_id: str) -> Settings:
        password = read_secret(m.password_file, "mqtt-password")
        return cls(
            m.host,
            m.port,
            m.protocol,
            client_id,
            m.username or None,
            password or None,
            m.tls,
            m.ca_file,
            m.cert_file,
            m.key_file,
            m.tls_insecure,
            m.keepalive,
            m.reconnect_max_s,
        )


def _client(s: Settings) -> paho.Client:
    """A paho client with the credentials and TLS of `s` (the daemon's and the CLI's)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=paho.MQTTv5 if s.protocol == "5" else paho.MQTTv311,
    )
    if s.username:
        client.username_pw_set(s.username, s.password.decode() if s.password else None)
    if s.tls:
        client.tls_set(
            ca_certs=s.ca_file or None,
            certfile=s.cert_file or None,
            keyfile=s.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(s.tls_insecure)
    return client


def read_retained(s: Settings, topics: list[str], timeout: float) -> dict[str, bytes]:
    """The retained messages on `topics` (those that arrive within `timeout`); for
    `appliance status`, which needs no key: it only reads what the daemon publishes."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = _client(s)

    def on_message(c: Any, u: Any, msg: paho.MQTTMessage) -> None:
        got[msg.topic] = bytes(msg.payload)
        if all(t in got for t in topics):
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 0) for t in topics])
    client.connect(s.host, s.port)  # OSError when the broker is not there
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    return got


class MqttLink:
    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        on_command: Callable[[Incoming], None],
        subscriptions: tuple[str, ...] = (),
        on_other: Callable[[Incoming], None] | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.s = settings
        self.topics = topics
        self.on_command = on_command
        self.subscriptions = subscriptions  # beyond commands, e.g. homeassistant/status
        self.on_other = on_other
        self.on_connected = on_connected
        self.v5 = settings.protocol == "5"
        self.client = _client(settings)
        self.client.will_set(topics.status, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, max(1, int(settings.reconnect_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.connected_since = 0.0
        self.state = "connecting"
        self.last_error: str | None = None
        self.connects = 0

    # --- connection ------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "MQTT: connecting to %s:%d (MQTT %s%s) as %s",
            self.s.host,
            self.s.port,
            self.s.protocol,
            ", TLS" if self.s.tls else "",
            self.s.client_id,
        )
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.state = "stopping"
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, "offline", qos=1, retain=True)
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.state = "refused"
            err = f"broker refused the connection: {reason}"
            if err != self.last_error:  # once per reason, not once per retry
                log.error("MQTT: %s; retrying with backoff", err)
            self.last_error = err
            return
        self.connects += 1
        self.state = "connected"
        self.last_error = None
        self.connected_since = time.time()
        # Subscribe before announcing `online`: the broker handles one connection's packets
        # in order, so a controller that waits for `online` and then sends a command
        # cannot send it before the subscription exists (it would be lost).
        client.subscribe([(self.topics.command_filter, 1)] + [(t, 1) for t in self.subscriptions])
        client.publish(self.topics.status, "online", qos=1, retain=True)
        self.connected.set()
        if self.on_connected:
            self.on_connected()
        log.info("MQTT: connected (%d connection(s) so far)", self.connects)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        """paho retries silently; say why, once per distinct reason (no log flood)."""
        reason = self._probe()
        if reason != self.last_error:
            log.error(
                "MQTT: cannot connect to %s:%d: %s; retrying with backoff up to %.0f s",
                self.s.host,
                self.s.port,
                reason,
                self.s.reconnect_max_s,
            )
        self.last_error = reason
        self.state = "unreachable"

    def _probe(self) -> str:
        """Reproduce the failing step (TCP, then TLS with the same settings) to name it."""
        try:
            with socket.create_connection((self.s.host, self.s.port), 5) as sock:
                if not self.s.tls:
                    return "TCP connects, but the MQTT handshake failed"
                ctx = ssl.create_default_context(cafile=self.s.ca_file or None)
                if self.s.cert_file:
                    ctx.load_cert_chain(self.s.cert_file, self.s.key_file or None)
                if self.s.tls_insecure:
                    ctx.check_hostname = False
                with ctx.wrap_socket(sock, server_hostname=self.s.host):
                    return "TLS works, but the MQTT handshake failed"
        except (OSError, ssl.SSLError) as exc:
            return str(exc) or type(exc).__name__

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self.connected.clear()
        if self.state == "stopping":
            return
        if self.state == "connected":
            log.warning("MQTT: disconnected (%s); reconnecting with backoff", reason)
        self.state = "disconnected" if self.state != "refused" else self.state

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        rt = getattr(props, "ResponseTopic", None) if props else None
        cd = getattr(props, "CorrelationData", None) if props else None
        handler = self.on_command
        if self.topics.command_name(msg.topic) is None and self.on_other:
            handler = self.on_other
        try:
            handler(Incoming(msg.topic, bytes(msg.payload), rt, cd))
        except Exception:
            log.exception("MQTT: command handler failed on %s", msg.topic)

    def fetch(self, topic: str, once: bool = True) -> None:
        """Have the broker send `topic`'s retained messages again (replication's
        anti-entropy): a SUBSCRIBE to a filter, even one already held, makes the broker
        resend what it retains for it. `once`: unsubscribe right after (a single record
        topic, which the site's filter covers anyway; packets are handled in order)."""
        self.client.subscribe(topic, 1)
        if once:
            self.client.unsubscribe(topic)

    # --- publishing ------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        qos: int = 0,
        retain: bool = False,
        response: Incoming | None = None,
    ) -> paho.MQTTMessageInfo:
        props = None
        if response is not None and self.v5 and response.correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = response.correlation
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def deliver(self, outbox: Outbox, stop: threading.Event, timeout: float = 10.0) -> None:
        """Publish the outbox in order until `stop`; runs in its own thread.

        One event in flight at a time: the order the door decided is the order the
        consumer sees, and an event leaves the outbox only after its PUBACK. If the
        connection drops before the PUBACK, the event is sent again (QoS 1: consumers
        de-duplicate by event id) and marked `replayed`.
        """
        failures = 0
        while not stop.is_set():
            try:
                self._deliver_some(outbox, stop, timeout)
                failures = 0
            except Exception as exc:  # a full disk must not end delivery for good
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.error(
                        "outbox delivery failed (%d time(s) in a row): %s; retrying", failures, exc
                    )
                stop.wait(min(30.0, 0.5 * failures))

    def _deliver_some(self, outbox: Outbox, stop: threading.Event, timeout: float) -> None:
        import json

        if not self.connected.wait(0.5):
            return
        batch = outbox.pending(50)
        if not batch:
            outbox.wake.wait(0.5)
            outbox.wake.clear()
            return
        for item in batch:
            if stop.is_set() or not self.connected.is_set():
                return
            payload = dict(item.payload)
            # Late: it waited through an outage or a restart, or was sent before.
            if item.attempts or item.created < self.connected_since:
                payload["replayed"] = True
            outbox.attempted(item.seq)
            info = self.client.publish(item.topic, json.dumps(payload), qos=1)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.debug("MQTT: publish of %s not sent: %s", item.event_id, exc)
            if not info.is_published():
                return  # not acknowledged: wait for the reconnect, then resend in order
            outbox.acknowledged(item.seq)


def client_id(device: str) -> str:
    return f"appliance-{device}-{uuid.uuid4().hex[:8]}"
