"""Access groups, who is in them, validity dates and the door mode, in the gallery's file.

They live beside the people they govern so that one transaction and one audit log cover
both, a delete cascades to a person's rights, and the daemon notices a change made by
another process by the same `data_version` it watches for the gallery. Values are
stored as the owner gave them (schedule texts, ISO dates) and parsed on load with the
door's time zone, so changing `access.timezone` moves every rule with it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from appliance.access.schedule import DoorMode, Group, ScheduleError, Validity
from appliance.store.gallery import Gallery, GalleryError

UNSET: Any = object()  # "leave as it is" for set_person


@dataclass(frozen=True)
class PersonRights:
    groups: tuple[str, ...] = ()
    valid_from: str | None = None
    valid_until: str | None = None

    def validity(self, tz: tzinfo) -> Validity:
        return Validity.parse(self.valid_from, self.valid_until, tz)

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
        }


class AccessStore:
    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.db = gallery.db

    # --- reading ---------------------------------------------------------------------

    def groups(self) -> dict[str, Group]:
        rows = self.db.execute("SELECT name, spec FROM access_groups ORDER BY name").fetchall()
        return {name: Group.from_dict(name, json.loads(spec)) for name, spec in rows}

    def rights(self) -> dict[str, PersonRights]:
        rows = self.db.execute(
            "SELECT person_id, groups, valid_from, valid_until FROM person_access"
        ).fetchall()
        return {r[0]: PersonRights(tuple(json.loads(r[1])), r[2], r[3]) for r in rows}

    def door_mode(self) -> dict[str, Any]:
        row = self.db.execute("SELECT value FROM door_settings WHERE key = 'mode'").fetchone()
        return json.loads(row[0]) if row else {"mode": "normal", "group": None}

    # --- changing (each method is one transaction with its audit entry) --------------

    def set_group(self, group: Group, actor: str) -> bool:
        """Create or replace a group; True when it is new."""
        spec = json.dumps(group.to_dict(), sort_keys=True)
        with self.gallery.transaction() as db:
            old = db.execute(
                "SELECT name FROM access_groups WHERE name = ?", (group.name,)
            ).fetchone()
            db.execute(
                "INSERT INTO access_groups (name, spec, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                (group.name, spec, time.time()),
            )
            self.gallery.audit(
                db, actor, "group_set", None, {"group": group.name, **group.to_dict()}
            )
        return old is None

    def delete_group(self, name: str, actor: str) -> int:
        """Delete a group and take everyone out of it; the number of people it had."""
        with self.gallery.transaction() as db:
            row = db.execute("SELECT name FROM access_groups WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise GalleryError(f"no access group called {name!r}")
            stored = row[0]
            members = 0
            for pid, groups in db.execute("SELECT person_id, groups FROM person_access").fetchall():
                kept = [g for g in json.loads(groups) if g.casefold() != stored.casefold()]
                if len(kept) != len(json.loads(groups)):
                    members += 1
                    db.execute(
                        "UPDATE person_access SET groups = ? WHERE person_id = ?",
                        (json.dumps(kept), pid),
                    )
            db.execute("DELETE FROM access_groups WHERE name = ?", (stored,))
            mode = self.door_mode()
            if mode.get("group") and mode["group"].casefold() == stored.casefold():
                db.execute("DELETE FROM door_settings WHERE key = 'mode'")
            self.gallery.audit(
                db, actor, "group_delete", None, {"group": stored, "members": members}
            )
        return members

    def set_person(
        self,
        who: str,
        actor: str,
        tz: tzinfo,
        groups: Any = UNSET,
        valid_from: Any = UNSET,
        valid_until: Any = UNSET,
    ) -> tuple[str, PersonRights]:
        """Change a person's groups and/or validity (UNSET: keep); (person id, result)."""
        person = self.gallery.find(who)
        with self.gallery.transaction() as db:
            known = {n.casefold(): n for (n,) in db.execute("SELECT name FROM access_groups")}
            old = self.rights().get(person.id, PersonRights())
            if groups is not UNSET:
                missing = [g for g in groups if g.casefold() not in known]
                if missing:
                    raise GalleryError(
                        f"no access group called {missing[0]!r} "
                        f"(create it first: known {', '.join(sorted(known.values())) or 'none'})"
                    )
                groups = tuple(dict.fromkeys(known[g.casefold()] for g in groups))
            new = PersonRights(
                old.groups if groups is UNSET else groups,
                old.valid_from if valid_from is UNSET else valid_from,
                old.valid_until if valid_until is UNSET else valid_until,
            )
            new.validity(tz)  # ScheduleError before anything is written
            db.execute(
                "INSERT INTO person_access (person_id, groups, valid_from, valid_until) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
                "groups = excluded.groups, valid_from = excluded.valid_from, "
                "valid_until = excluded.valid_until",
                (person.id, json.dumps(list(new.groups)), new.valid_from, new.valid_until),
            )
            self.gallery.audit(db, actor, "access_set", person.id, new.as_dict())
        return person.id, new

    def set_door_mode(self, mode: DoorMode, actor: str) -> None:
        value = {"mode": mode.mode, "group": mode.group}
        with self.gallery.transaction() as db:
            db.execute(
                "INSERT INTO door_settings (key, value) VALUES ('mode', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (json.dumps(value),),
            )
            self.gallery.audit(db, actor, "door_mode", None, value)


__all__ = ["UNSET", "AccessStore", "PersonRights", "ScheduleError"]
