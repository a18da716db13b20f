"""CLI commands that change who is enrolled: enroll, people, gallery.

While the daemon runs, each is sent to it over the local control socket, so it runs as
the same typed command as an MQTT or web request, through the one write path, and the
door decides differently at once. With no daemon, the CLI opens the gallery itself
(the daemon notices such changes by `data_version` when it runs).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from appliance.config.schema import Config
from appliance.control.commands import CommandError
from appliance.transport.local import NoDaemon, request, socket_path


def _daemon(cfg: Config, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The running daemon's reply, or None when no daemon listens."""
    try:
        reply = request(socket_path(cfg), command, args)
    except NoDaemon:
        return None
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise CommandError(str(err.get("code", "error")), str(err.get("message", reply)))
    return reply["result"]


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )


def cmd_enroll(args: argparse.Namespace, cfg: Config) -> int:
    """Enrol one person from photos, or every `DIR/<name>/*.jpg` folder. Each person is
    one transaction: a refused photo refuses that person's whole batch, with the reason."""
    from appliance.identity.gates import EnrolmentRefused
    from appliance.vision.imageio import ImageError

    if args.from_dir:
        batches = [(d.name, _images_in(d)) for d in sorted(args.from_dir.iterdir()) if d.is_dir()]
    else:
        if not args.name or not args.images:
            print("appliance enroll: give NAME IMAGE... or --from-dir DIR", file=sys.stderr)
            return 2
        batches = [(args.name, args.images)]
    svc = None
    failed = 0
    for name, images in batches:
        try:
            body = {
                "name": name,
                "images": [base64.b64encode(Path(p).read_bytes()).decode() for p in images],
                "force": args.force,
                "largest": args.largest,
            }
            result = _daemon(cfg, "enroll", body) if svc is None else None
            if result is not None:
                templates = result["person"]["templates"]
                person_name = result["person"]["name"]
            else:
                if svc is None:
                    from appliance.cli.photos import recogniser

                    svc = recogniser(cfg)
                person = svc.enrol(
                    name, list(images), "file", args.actor, force=args.force, largest=args.largest
                )
                templates, person_name = person.templates, person.name
            print(
                f"enrolled {person_name}: {len(images)} photo(s), {templates} template(s) in total"
            )
        except (EnrolmentRefused, ImageError, CommandError, OSError) as exc:
            failed += 1
            print(f"refused {name}: {exc}", file=sys.stderr)
    if svc is not None:
        svc.close()
    return 1 if failed else 0


def _offline(cfg: Config) -> Any:
    from appliance.identity.recogniser import open_gallery

    return open_gallery(cfg)


def cmd_people(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.store.gallery import GalleryError

    try:
        if args.action == "list":
            return _list(args, cfg)
        if args.action == "rename":
            result = _daemon(cfg, "rename", {"name": args.who, "new_name": args.new_name})
            if result is None:
                with _offline(cfg) as g:
                    person = g.rename(args.who, args.new_name, args.actor)
                new = person.name
            else:
                new = result["person"]["name"]
            print(f"renamed to {new}")
            return 0
        with _offline(cfg) as g:  # the name and template count to report
            person = g.find(args.who)
        result = _daemon(cfg, "delete", {"name": args.who})
        if result is None:
            with _offline(cfg) as g:
                person = g.delete(args.who, args.actor)
        print(f"deleted {person.name}: {person.templates} template(s) erased")
    except (GalleryError, CommandError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace, cfg: Config) -> int:
    result = _daemon(cfg, "list", {})
    if result is not None:
        people = result["people"]
    else:
        from appliance.vision.pipeline import embedder_version

        with _offline(cfg) as g:
            people = [p.as_dict() for p in g.persons(embedder_version(cfg.models.embedder))]
    if args.json:
        print(json.dumps(people, indent=2))
        return 0
    for p in people:
        stale = f", {p['stale_templates']} stale: re-enrol" if p["stale_templates"] else ""
        print(f"{p['name']}\t{p['templates']} template(s){stale}\tid {p['id']}")
    return 0


def cmd_gallery(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.store.gallery import GalleryError

    try:
        if args.action == "export":
            data = _daemon(cfg, "export", {})
            if data is None:
                from appliance.cli.photos import recogniser

                svc = recogniser(cfg)
                data = svc.export()
                svc.close()
            args.file.write_text(json.dumps(data))
            print(f"exported {len(data['people'])} people to {args.file}")
            return 0
        try:
            data = json.loads(args.file.read_bytes())
        except (OSError, ValueError) as exc:
            raise GalleryError(f"{args.file}: not a readable export: {exc}") from exc
        result = _daemon(cfg, "import", {"data": data})
        if result is not None:
            n = result["imported"]
        else:
            from appliance.cli.photos import recogniser

            svc = recogniser(cfg)
            try:
                n = svc.import_(data, args.actor)
            finally:
                svc.close()
        print(f"imported {n} people from {args.file}")
    except (GalleryError, CommandError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    return 0
