"""Live settings: the part of the configuration a running door may change.

`set` changes them in memory (a restart restores config.yaml's), `reload` re-reads
them from the file. Either way the new configuration is validated by the same strict
parser as at start, then announced as `SettingsChanged`; whoever depends on it (the
recogniser's thresholds, the tracker's votes, the access policy) subscribes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from appliance.config.schema import Config, ConfigError, load, parse
from appliance.control.commands import CommandError
from appliance.control.events import DomainEvents, SettingsChanged

log = logging.getLogger(__name__)

LIVE = (
    "recognition.stranger_accept",
    "recognition.threshold",
    "recognition.margin",
    "recognition.mode",
    "decision.min_frames",
    "decision.cooldown_s",
    "decision.unknown_frames",
)
# Sections a reload takes from the file; the others need a restart (logged).
RELOADED = ("recognition", "decision", "enrolment", "commands", "outbox", "access")
# The door's pins are claimed once, at start (and a restart never pulses the relay).
RESTART = ("models", "camera", "mqtt", "storage", "door", "homeassistant")


class LiveSettings:
    def __init__(self, cfg: Config, path: Path | None, events: DomainEvents) -> None:
        self.cfg = cfg
        self.path = path
        self.events = events

    def set(self, values: dict[str, Any]) -> Config:
        if not values or set(values) - set(LIVE):
            raise CommandError("malformed", f"settable: {', '.join(sorted(LIVE))}")
        text = "\n".join(
            f"{k.split('.')[0]}:\n  {k.split('.')[1]}: {json.dumps(v)}" for k, v in values.items()
        )
        try:
            partial = parse(text, "set")
        except ConfigError as exc:
            raise CommandError("invalid", "; ".join(exc.problems)) from exc
        cfg = self.cfg
        for k in values:
            section, key = k.split(".")
            new = dataclasses.replace(
                getattr(cfg, section), **{key: getattr(getattr(partial, section), key)}
            )
            cfg = dataclasses.replace(cfg, **{section: new})
        self._apply(cfg)
        return cfg

    def reload(self) -> bool:
        """Re-read the file's live sections; False (logged) if it has errors."""
        if self.path is None:
            return True
        try:
            new = load(self.path)
        except ConfigError as exc:
            log.error("reload refused, config has errors: %s", "; ".join(exc.problems))
            return False
        for section in RESTART:
            if getattr(new, section) != getattr(self.cfg, section):
                log.warning("reload: '%s' changed; it takes effect on restart", section)
        self._apply(dataclasses.replace(self.cfg, **{s: getattr(new, s) for s in RELOADED}))
        return True

    def _apply(self, cfg: Config) -> None:
        self.cfg = cfg
        self.events.publish(SettingsChanged(cfg))
