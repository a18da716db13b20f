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
import re
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


def _folders(root: Path) -> list[tuple[str, list[Path]]]:
    """(person, photos) for each `root/<person>/` folder, photos by file name (the
    content decides the format). Files that are not named as photos, and photos lying in
    `root` itself, are said on stderr and left out; hidden files are passed over."""
    from appliance.vision.imageio import EXTENSIONS

    batches = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            print(f"skipped {entry.name}: --from-dir takes one folder per person", file=sys.stderr)
            continue
        photos = []
        for f in sorted(entry.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            if f.suffix.lower() in EXTENSIONS:
                photos.append(f)
            else:
                print(f"skipped {entry.name}/{f.name}: not named as a photo", file=sys.stderr)
        batches.append((entry.name, photos))
    return batches


def _encoded(photo: Path) -> str:
    """A photo's bytes for the daemon's enroll command; unreadable: ImageError naming it."""
    from appliance.identity.gates import photo_label
    from appliance.vision.imageio import ImageError

    try:
        return base64.b64encode(photo.read_bytes()).decode()
    except OSError as exc:
        raise ImageError(exc.strerror or str(exc), photo_label(photo, 0)) from exc


def _named(message: str, photos: list[Path]) -> str:
    """The daemon names photos by place ("image 2"); say their file names instead."""

    def name(m: re.Match[str]) -> str:
        k = int(m[1])
        return f"photo {photos[k - 1].name}:" if 0 < k <= len(photos) else m[0]

    return re.sub(r"\bimage (\d+):", name, message)


def cmd_enroll(args: argparse.Namespace, cfg: Config) -> int:
    """Enrol one person from photos, or every `DIR/<name>/` folder of photos. Each person
    is one transaction: a refused photo refuses that person's whole batch, and the
    refusal names every bad photo; the other people are still enrolled."""
    from appliance.identity.gates import EnrolmentRefused
    from appliance.vision.imageio import ImageError

    if args.from_dir:
        if not args.from_dir.is_dir():
            print(f"appliance enroll: {args.from_dir} is not a folder", file=sys.stderr)
            return 2
        batches = _folders(args.from_dir)
        if not batches:
            print(f"appliance enroll: no person folders in {args.from_dir}", file=sys.stderr)
            return 1
    else:
        if not args.name or not args.images:
            print("appliance enroll: give NAME IMAGE... or --from-dir DIR", file=sys.stderr)
            return 2
        batches = [(args.name, list(args.images))]
    svc = None
    failed = 0
    for name, images in batches:
        if not images:
            failed += 1
            print(f"refused {name}: no photos in its folder", file=sys.stderr)
            continue
        try:
            result = None
            if svc is None:
                body = {
                    "name": name,
                    "images": [_encoded(p) for p in images],
                    "force": args.force,
                    "largest": args.largest,
                }
                result = _daemon(cfg, "enroll", body)
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
        except CommandError as exc:
            failed += 1
            print(f"refused {name}: {_named(str(exc), images)}", file=sys.stderr)
        except (EnrolmentRefused, ImageError, ValueError, OSError) as exc:
            failed += 1
            print(f"refused {name}: {exc}", file=sys.stderr)
    if svc is not None:
        svc.close()
    if len(batches) > 1:
        print(f"{len(batches) - failed} of {len(batches)} people enrolled", file=sys.stderr)
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
        from appliance.vision.detectors import alignment
        from appliance.vision.pipeline import embedder_version

        emb, aligned = embedder_version(cfg.models.embedder), alignment(cfg.detector.model)
        with _offline(cfg) as g:
            people = [p.as_dict() for p in g.persons(emb, aligned)]
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
