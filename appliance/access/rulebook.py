"""The door's access rules in memory: groups, people's rights, the door mode.

A decision per face must not query SQLite, and a change by any route (a command here,
the CLI writing the file while no daemon ran, later replication) must be seen at once;
so the rules are loaded once, reloaded when the file's `data_version` moves, and every
change made through this object reloads them and publishes `RulesChanged`. The rules
themselves are `access.schedule`'s pure functions.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from appliance.access import schedule
from appliance.access.schedule import DoorMode, Group, ScheduleError, Validity
from appliance.config.schema import Config
from appliance.control.events import DomainEvents, RulesChanged
from appliance.store.access_rules import UNSET, AccessStore, PersonRights
from appliance.store.gallery import Gallery

log = logging.getLogger(__name__)

# A stored validity that no longer parses (it cannot, unless the file was edited by
# hand) must not let its person in: it becomes "until the beginning of time".
_FAIL_CLOSED = Validity(valid_until=datetime(1970, 1, 1, tzinfo=timezone.utc))


class RuleBook:
    def __init__(self, gallery: Gallery, cfg: Config, events: DomainEvents) -> None:
        self.store = AccessStore(gallery)
        self.gallery = gallery
        self.events = events
        self.configure(cfg)
        self._version = -1
        self.load()

    def configure(self, cfg: Config) -> None:
        self.tz = schedule.zone(cfg.access.timezone)
        self.allowed = {g.casefold() for g in cfg.decision.allowed_groups}

    def load(self) -> None:
        self._version = self.gallery.data_version()
        self.groups: dict[str, Group] = self.store.groups()
        self.rights: dict[str, PersonRights] = self.store.rights()
        self.validity: dict[str, Validity] = {}
        for pid, r in self.rights.items():
            try:
                self.validity[pid] = r.validity(self.tz)
            except ScheduleError as exc:
                log.error("person %s: stored validity refused (%s): denied until fixed", pid, exc)
                self.validity[pid] = _FAIL_CLOSED
        m = self.store.door_mode()
        try:
            self.mode = DoorMode.parse(m.get("mode", "normal"), m.get("group"), self.groups)
        except ScheduleError as exc:
            log.error("stored door mode refused (%s): lockdown until it is set again", exc)
            self.mode = DoorMode("lockdown", None)

    def refresh(self) -> bool:
        """Reload if another process changed the file (one PRAGMA when nothing did)."""
        if self.gallery.data_version() == self._version:
            return False
        self.load()
        self.events.publish(RulesChanged("file", "file"))
        return True

    # --- deciding --------------------------------------------------------------------

    def check(self, person_id: str, now: float) -> tuple[str, str | None]:
        """("granted", None) or ("denied", reason) for a recognised person, now."""
        r = self.rights.get(person_id, PersonRights())
        if self.allowed and not {g.casefold() for g in r.groups} & self.allowed:
            return "denied", "not_in_group"
        validity = self.validity.get(person_id, Validity())
        return schedule.check(r.groups, validity, self.groups, self.mode, now, self.tz)

    def passage_open(self, now: float) -> bool:
        return schedule.passage_open(self.mode, self.groups, now, self.tz)

    def snapshot(self) -> dict[str, Any]:
        return {
            "timezone": str(self.tz),
            "mode": {"mode": self.mode.mode, "group": self.mode.group},
            "groups": {name: g.to_dict() for name, g in self.groups.items()},
            "people": {pid: r.as_dict() for pid, r in self.rights.items()},
        }

    # --- changing (the command service's only way to the rules) ----------------------

    def _changed(self, what: str, actor: str) -> None:
        self.load()
        log.info("access rules changed (%s, by %s)", what, actor)
        self.events.publish(RulesChanged(what, actor))

    def replicated(self, actor: str) -> None:
        """Records from other doors changed the stored rules (appliance/replication)."""
        self._changed("replication", actor)

    def set_group(self, name: str, spec: dict[str, Any], actor: str) -> dict[str, Any]:
        group = Group.from_dict(name, spec)
        existing = next((n for n in self.groups if n.casefold() == name.casefold()), None)
        if existing is not None and existing != group.name:
            group = Group.from_dict(existing, spec)  # the name keeps its first spelling
        created = self.store.set_group(group, actor)
        self._changed("group_set", actor)
        return {"group": group.name, "created": created, **group.to_dict()}

    def delete_group(self, name: str, actor: str) -> dict[str, Any]:
        members = self.store.delete_group(name, actor)
        self._changed("group_delete", actor)
        return {"deleted": name, "members": members}

    def set_person(self, who: str, changes: dict[str, Any], actor: str) -> dict[str, Any]:
        pid, rights = self.store.set_person(
            who,
            actor,
            self.tz,
            groups=changes.get("groups", UNSET),
            valid_from=changes.get("valid_from", UNSET),
            valid_until=changes.get("valid_until", UNSET),
        )
        self._changed("access_set", actor)
        return {"person_id": pid, **rights.as_dict()}

    def set_mode(self, mode: str, group: str | None, actor: str) -> dict[str, Any]:
        m = DoorMode.parse(mode, group, self.groups)
        self.store.set_door_mode(m, actor)
        self._changed("door_mode", actor)
        return {"mode": m.mode, "group": m.group}
