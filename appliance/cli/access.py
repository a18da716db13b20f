"""CLI commands for the door's rules and the door itself: group, access, door.

Like `people.py`: with a daemon running, each is the same typed command over the local
socket (run by the frame loop, audited as `cli:<user>`); with none, the CLI opens the
gallery file and changes it through the same `RuleBook` methods, and the daemon picks the
change up by `data_version` when it runs. Unlocking needs the daemon: it owns the relay.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.cli.people import _daemon
from appliance.config.schema import Config
from appliance.control.commands import CommandError, from_args


def add_parsers(sub: Any) -> None:
    g = sub.add_parser("group", help="access groups: weekly windows and holidays")
    ga = g.add_subparsers(dest="action", required=True)
    gs = ga.add_parser("set", help="create or replace a group")
    gs.add_argument("name")
    gs.add_argument(
        "--window",
        action="append",
        default=[],
        help='a weekly window, e.g. "mon-fri 08:00-18:00" or "sat 22:00-02:00" (repeatable)',
    )
    gs.add_argument("--holiday", action="append", default=[], help="YYYY-MM-DD (repeatable)")
    gd = ga.add_parser("delete", help="delete a group (its members leave it)")
    gd.add_argument("name")
    gl = ga.add_parser("list", help="groups, people's rights and the door mode")
    gl.add_argument("--json", action="store_true")

    a = sub.add_parser("access", help="a person's groups and validity dates")
    a.add_argument("who", help="name or id")
    a.add_argument("--groups", help="comma-separated groups (empty string: none)")
    a.add_argument("--valid-from", help="ISO date or date-time, local time")
    a.add_argument("--valid-until", help="ISO date (through that day) or date-time")
    a.add_argument("--no-validity", action="store_true", help="valid always (clears both)")

    d = sub.add_parser("door", help="the door: mode, unlock, state")
    da = d.add_subparsers(dest="action", required=True)
    dm = da.add_parser("mode", help="normal, passage (unlocked in a schedule) or lockdown")
    dm.add_argument("mode", choices=("normal", "passage", "lockdown"))
    dm.add_argument("--group", help="passage: whose schedule; lockdown: who may still enter")
    du = da.add_parser("unlock", help="unlock now (the daemon must run)")
    du.add_argument("--duration", type=float, default=5.0, help="seconds")
    du.add_argument("--reason", default="cli")
    da.add_parser("status", help="relay, contact, alarm and mode")


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.cmd == "group":
        if args.action == "set":
            return "group_set", {
                "name": args.name,
                "windows": args.window,
                "holidays": args.holiday,
            }
        if args.action == "delete":
            return "group_delete", {"name": args.name}
        return "rules", {}
    if args.cmd == "access":
        body: dict[str, Any] = {"name": args.who}
        if args.groups is not None:
            body["groups"] = [g.strip() for g in args.groups.split(",") if g.strip()]
        if args.no_validity:
            body["valid_from"] = body["valid_until"] = None
        if args.valid_from is not None:
            body["valid_from"] = args.valid_from
        if args.valid_until is not None:
            body["valid_until"] = args.valid_until
        return "access", body
    if args.action == "mode":
        return "door_mode", {"mode": args.mode, "group": args.group}
    if args.action == "unlock":
        return "unlock", {"duration_s": args.duration, "reason": args.reason}
    return "door", {}


def _offline(cfg: Config, name: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
    """No daemon: the same command, through the same RuleBook, on the gallery file."""
    from appliance.access.rulebook import RuleBook
    from appliance.control import commands as c
    from appliance.control.events import DomainEvents
    from appliance.identity.recogniser import open_gallery

    cmd = from_args(name, body, source="file")
    if isinstance(cmd, c.Unlock | c.DoorStatus):
        raise CommandError("no_daemon", "the daemon is not running: it owns the door's relay")
    with open_gallery(cfg) as gallery:
        rules = RuleBook(gallery, cfg, DomainEvents())
        if isinstance(cmd, c.SetGroup):
            return rules.set_group(cmd.name, cmd.spec, actor)
        if isinstance(cmd, c.DeleteGroup):
            return rules.delete_group(cmd.name, actor)
        if isinstance(cmd, c.SetAccess):
            return rules.set_person(cmd.who, cmd.changes, actor)
        if isinstance(cmd, c.SetDoorMode):
            return rules.set_mode(cmd.mode, cmd.group, actor)
        return rules.snapshot()


def _print(name: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json or name in ("door", "unlock"):
        print(json.dumps(result, indent=2))
    elif name == "rules":
        m = result["mode"]
        print(f"door mode: {m['mode']}" + (f" (group {m['group']})" if m["group"] else ""))
        print(f"time zone: {result['timezone']}")
        for gname, spec in result["groups"].items():
            hol = f"; holidays {', '.join(spec['holidays'])}" if spec["holidays"] else ""
            print(f"group {gname}: {', '.join(spec['windows']) or 'no windows'}{hol}")
        for pid, r in result["people"].items():
            valid = f" valid {r['valid_from'] or '...'} to {r['valid_until'] or '...'}"
            print(f"person {pid}: groups {', '.join(r['groups']) or '-'}{valid}")
    elif name == "group_set":
        print(f"{'created' if result['created'] else 'changed'} group {result['group']}")
    elif name == "group_delete":
        print(f"deleted group {result['deleted']} ({result['members']} member(s) left it)")
    elif name == "access":
        print(
            f"person {result['person_id']}: groups {', '.join(result['groups']) or '-'}, "
            f"valid {result['valid_from'] or '...'} to {result['valid_until'] or '...'}"
        )
    elif name == "door_mode":
        print(f"door mode {result['mode']}" + (f" ({result['group']})" if result["group"] else ""))


def cmd_rules(args: argparse.Namespace, cfg: Config) -> int:
    """group / access / door: through the daemon when it runs, else on the file."""
    from appliance.store.gallery import GalleryError

    name, body = _request(args)
    try:
        result = _daemon(cfg, name, body)
        if result is None:
            result = _offline(cfg, name, body, args.actor)
    except (CommandError, GalleryError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    _print(name, result, getattr(args, "json", False))
    return 0
