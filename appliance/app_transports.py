"""How the App builds and wires its transports: MQTT (the link, Home Assistant, the
retained state, signed commands, the health state), replication and the web pages.

A part of the composition root (`appliance.app.App` inherits it), kept apart so each
file reads in one sitting; it constructs adapters for App and nothing else does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from appliance.config.schema import Config
from appliance.health import Health
from appliance.replication.crypto import SiteKey
from appliance.replication.store import Applied
from appliance.replication.sync import Replicator
from appliance.transport.http.address import page_url
from appliance.transport.mqtt.commands import MqttCommands, Verifier
from appliance.transport.mqtt.discovery import DoorEntities
from appliance.transport.mqtt.homeassistant import HomeAssistantBridge
from appliance.transport.mqtt.link import MqttLink, Settings, client_id
from appliance.transport.mqtt.signing import read_secret
from appliance.transport.mqtt.state import RetainedState

log = logging.getLogger(__name__)


class Transports:
    """App's transport wiring; every attribute it reads is made in App.__init__."""

    # Set by App.__init__ before these run; declared for the reader.
    cfg: Config
    device: str

    def _build_replication(self, cfg: Config) -> Replicator | None:
        r = cfg.replication
        if not r.enabled:
            return None
        secret = read_secret(r.key_file, "replication-key")
        if secret is None:
            raise ValueError(
                "replication.enabled, but no site key: set replication.key_file or the "
                "systemd credential 'replication-key' (the same secret on every door)"
            )
        log.info("replication: site %r, this door is %s", r.site, self.device)
        return Replicator(
            r,
            SiteKey(secret, r.site),
            self.device,
            cfg.mqtt.prefix,
            self.recogniser.gallery,
            self.bus,
            self.jobs,
            lambda *a, **kw: self._publish(*a, **kw),
            lambda topic, once: self.link.fetch(topic, once),
            lambda: self.link.connected.is_set(),
            self._replicated,
            self.recogniser.embedder,
        )

    def _replicated(self, actor: str, res: Applied) -> None:
        """Records from other doors were stored: the matcher and the rules follow, and
        the domain events go out (Home Assistant, retained topics, the outbox's erasure)
        as for a change made here."""
        self.recogniser.refresh(force=True, actor=actor)
        self.rules.replicated(actor)

    def _on_other(self, m: Any) -> None:
        if self.replication is not None and self.replication.owns(m.topic):
            self.replication.on_message(m.topic, m.payload)
        else:
            self.ha.on_message(m)

    def _build_mqtt(self, cfg: Config, state: Path) -> None:
        self.link_settings = Settings.from_config(cfg.mqtt, client_id(self.device))
        publish = self._publish
        self.ha = HomeAssistantBridge(
            cfg.homeassistant,
            self.topics,
            publish,
            self.jobs,
            self.bus,
            lambda: [(p.id, p.name) for p in self.recogniser.gallery.persons()],
            state,
            snapshots=cfg.decision.snapshot,
            # Home Assistant's device page links to the owner's pages when they are on.
            configuration_url=page_url(cfg.web) if cfg.web.enabled else None,
            door=(
                DoorEntities(cfg.door.contact_pin is not None, cfg.homeassistant.allow_unlock)
                if self.door is not None
                else None
            ),
            unlock_s=cfg.door.unlock_s,
        )
        self.retained = RetainedState(
            self.topics,
            publish,
            self.jobs,
            snapshots=cfg.decision.snapshot,
            last_seen_clear_delay_s=5.0 if cfg.homeassistant.discovery else 0.0,
            # At once, on the thread that made the change (a delete): queued to the link
            # before the command's reply, so nobody who saw the reply still finds the
            # person in the retained state (a job could run after the reply).
            on_change=self.publish_state,
        )
        self.mqtt_commands = MqttCommands(self.topics, self.bus, self._verifier, publish)
        self.link = MqttLink(
            self.link_settings,
            self.topics,
            self.mqtt_commands.on_message,
            subscriptions=self.ha.subscriptions()
            + (self.replication.subscriptions() if self.replication else ()),
            on_other=self._on_other,
            on_connected=lambda: self.jobs.call_soon(self._on_connected),
        )
        self.health = Health(
            device=self.device,
            boot=self.boot,
            mode=lambda: self.cfg.recognition.mode,
            meter=self.meter,
            parts={
                "camera": self.camera.status,
                "mqtt": lambda: self.link.state,
                "outbox": lambda: {
                    "depth": self.outbox.depth(),
                    **self.outbox.counters(),
                    "error": self.outbox.last_error,
                },
                "gallery": lambda: {
                    "people": self.recogniser.matcher.size,
                    "templates": self.recogniser.matcher.template_count,
                },
                "thresholds": lambda: self.recogniser.thresholds().as_dict(),
                "last_person": lambda: self.retained.last_person,
                "door": lambda: self.door.state() if self.door is not None else None,
                "access": lambda: {"mode": self.rules.mode.mode, "group": self.rules.mode.group},
                **({"replication": self.replication.status} if self.replication else {}),
            },
            counters=self._counters,
            free_bytes=self.outbox.free_bytes,
            min_free_bytes=lambda: self.cfg.outbox.min_free_mb * 1e6,
            state_dir=str(state),
        )

    def _build_web(self, cfg: Config, state: Path) -> Any:
        """The pages and API (imported only when enabled: the framework stays unloaded)."""
        from appliance.access.schedule import zone
        from appliance.store.users import USERS_FILE, Users
        from appliance.transport.http.logtail import LogTail
        from appliance.transport.http.server import WebServer

        self.logtail = LogTail()
        logging.getLogger().addHandler(self.logtail)
        return WebServer(
            lambda: self.cfg,
            self.bus,
            Users(state / USERS_FILE),
            self.live,
            self.logtail,
            lambda: zone(self.cfg.access.timezone or None),
        )

    def _publish(self, topic: str, payload: Any, **kw: Any) -> Any:
        """The link's publish, late-bound: the parts built before the link hold this."""
        return self.link.publish(topic, payload, **kw)

    def _verifier(self) -> Verifier:
        c = self.cfg.commands
        return Verifier(self.device, self.key, c.require_signature, c.max_age_s, self.nonces.seen)

    def _on_connected(self) -> None:
        self.retained.on_connected()
        self.ha.publish_all()
        if self.replication is not None:
            self.replication.on_connected()
