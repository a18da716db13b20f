"""The one console entry point: `appliance <subcommand>`; `main(argv) -> int`.

Commands that change the gallery (`enroll`, `people`, `gallery`) live in `people.py`,
those for the door's rules and the door (`group`, `access`, `door`) in `access.py`; both
go through the running daemon when there is one; `photos.py` looks at photos;
`users.py` manages the web pages' owner accounts and API tokens; `remote.py`
signs commands and reads a door's state from the broker; `liveness.py` judges recorded
visits with the liveness check.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from appliance import __version__
from appliance.cli import access, users
from appliance.cli import liveness as liveness_cli
from appliance.cli.people import cmd_enroll, cmd_gallery, cmd_people
from appliance.cli.photos import cmd_detect, cmd_identify, cmd_verify
from appliance.cli.remote import cmd_sign, cmd_status
from appliance.config.schema import Config, ConfigError, load
from appliance.transport.mqtt.topics import COMMANDS
from appliance.vision.imageio import ImageError
from appliance.vision.runtime import ModelError

log = logging.getLogger(__name__)


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    """The daemon: camera (or the demo) to decisions to MQTT events, until SIGTERM."""
    from appliance.app import App

    return App(cfg, args.config, source=args.source, max_frames=args.frames).run()


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    print(f"{args.file}: OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="appliance", description="Face-recognition door appliance")
    p.add_argument("--version", action="version", version=f"appliance {__version__}")
    p.add_argument("-c", "--config", type=Path, default=None, help="config.yaml to use")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the daemon: camera (or demo) to MQTT events")
    r.add_argument("--source", help="override camera.source")
    r.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    sg = sub.add_parser("sign", help="print a signed MQTT command payload")
    sg.add_argument("command", choices=COMMANDS)
    sg.add_argument("--args", help="the command's arguments as a JSON object")
    sg.add_argument("--image", type=Path, action="append", help="photo to enrol (repeatable)")
    sg.add_argument("--device", help="device id (default: from the config)")
    sg.add_argument("--key-file", type=Path)
    sg.add_argument("--request-id")
    st = sub.add_parser("status", help="show the running daemon's state (via the broker)")
    st.add_argument("--timeout", type=float, default=5.0)
    d = sub.add_parser("detect", help="print the faces found in images as JSON")
    d.add_argument("images", nargs="+", type=Path)
    v = sub.add_parser("verify", help="are two photos the same person?")
    v.add_argument("image1", type=Path)
    v.add_argument("image2", type=Path)
    vc = sub.add_parser("validate-config", help="check a config file; name each bad key")
    vc.add_argument("file", type=Path)
    actor = f"cli:{getpass.getuser()}"
    e = sub.add_parser("enroll", help="enrol a person from photos (or --from-dir DIR/<name>/)")
    e.add_argument("name", nargs="?")
    e.add_argument("images", nargs="*", type=Path)
    e.add_argument("--from-dir", type=Path, help="one sub-folder of photos per person")
    e.add_argument("--force", action="store_true", help="enrol even if it looks like someone")
    e.add_argument("--largest", action="store_true", help="take the largest face of a group")
    pe = sub.add_parser("people", help="list, rename or delete enrolled people")
    pa = pe.add_subparsers(dest="action", required=True)
    pl = pa.add_parser("list")
    pl.add_argument("--json", action="store_true")
    pr = pa.add_parser("rename")
    pr.add_argument("who", help="name or id")
    pr.add_argument("new_name")
    pd = pa.add_parser("delete", help="erase everything about a person")
    pd.add_argument("who", help="name or id")
    i = sub.add_parser("identify", help="name every face in photos, or unknown")
    i.add_argument("images", nargs="+", type=Path)
    i.add_argument("--json", action="store_true")
    ga = sub.add_parser("gallery", help="export or import names and embeddings")
    gaa = ga.add_subparsers(dest="action", required=True)
    for action in ("export", "import"):
        gaa.add_parser(action).add_argument("file", type=Path)
    access.add_parsers(sub)
    users.add_parsers(sub)
    liveness_cli.add_parser(sub)
    args = p.parse_args(argv)
    args.actor = actor
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.cmd == "validate-config":
            cfg = load(args.file)
        else:
            cfg = load(args.config) if args.config else Config()
        handler = {
            "run": cmd_run,
            "detect": cmd_detect,
            "verify": cmd_verify,
            "validate-config": cmd_validate,
            "enroll": cmd_enroll,
            "people": cmd_people,
            "identify": cmd_identify,
            "gallery": cmd_gallery,
            "sign": cmd_sign,
            "status": cmd_status,
            "group": access.cmd_rules,
            "access": access.cmd_rules,
            "door": access.cmd_rules,
            "user": users.cmd_user,
            "check-liveness": liveness_cli.cmd_check_liveness,
        }[args.cmd]
        return handler(args, cfg)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except (ImageError, ModelError, RuntimeError, ValueError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
