"""The one console entry point: `appliance <subcommand>`; `main(argv) -> int`."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path

from appliance import __version__
from appliance.config.schema import Config, ConfigError, load
from appliance.vision.imageio import ImageError, read_image
from appliance.vision.runtime import ModelError

log = logging.getLogger(__name__)


def _pipeline(cfg: Config):
    from appliance.vision.pipeline import FacePipeline

    return FacePipeline.load(
        embedder=cfg.models.embedder,
        threads=cfg.models.threads,
        flip=cfg.models.flip,
        score_threshold=cfg.detector.score_threshold,
    )


def _thresholds(cfg: Config, people: int):
    """Thresholds for a gallery of `people` (1 for a photo-to-photo verify)."""
    from appliance.identity.thresholds import load_calibration, resolve

    r = cfg.recognition
    cal = load_calibration(cfg.models.embedder, cfg.models.flip)
    return resolve(cal, r.mode, people, r.stranger_accept, r.threshold, r.margin)


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    """The daemon: camera (or the demo) to decisions to MQTT events, until SIGTERM."""
    from appliance.daemon import Daemon

    return Daemon(cfg, args.config, source=args.source, max_frames=args.frames).run()


def cmd_sign(args: argparse.Namespace, cfg: Config) -> int:
    """Print a signed command payload (for mosquitto_pub, scripts, Home Assistant)."""
    import base64

    from appliance.daemon import device_id
    from appliance.transport.mqtt.signing import read_secret, sign

    key = read_secret(str(args.key_file or cfg.commands.key_file), "command-key")
    if key is None:
        print(
            "appliance sign: no command key (commands.key_file, --key-file or "
            "$CREDENTIALS_DIRECTORY/command-key)",
            file=sys.stderr,
        )
        return 2
    cmd_args = json.loads(args.args) if args.args else {}
    if args.image:
        cmd_args["images"] = [base64.b64encode(p.read_bytes()).decode() for p in args.image]
    payload = sign(key, args.command, args.device or device_id(cfg), cmd_args, args.request_id)
    sys.stdout.write(payload.decode() + "\n")
    return 0


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    """Read the daemon's retained state from the broker (read-only, no key needed)."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from appliance.daemon import device_id
    from appliance.transport.mqtt.signing import read_secret
    from appliance.transport.mqtt.topics import Topics

    topics = Topics(cfg.mqtt.prefix, device_id(cfg))
    got: dict[str, str] = {}
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    if cfg.mqtt.username:
        pw = read_secret(cfg.mqtt.password_file, "mqtt-password")
        client.username_pw_set(cfg.mqtt.username, pw.decode() if pw else None)
    if cfg.mqtt.tls:
        client.tls_set(
            ca_certs=cfg.mqtt.ca_file or None,
            certfile=cfg.mqtt.cert_file or None,
            keyfile=cfg.mqtt.key_file or None,
        )

    def on_message(c, u, msg):
        got[msg.topic] = msg.payload.decode(errors="replace")
        if topics.state in got and topics.status in got:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, r, p: c.subscribe([(topics.state, 0), (topics.status, 0)])
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port)
    except OSError as exc:
        print(f"appliance status: broker {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    done.wait(args.timeout)
    client.loop_stop()
    if topics.state not in got:
        print(
            f"appliance status: no state on {topics.state} (is the daemon running?)",
            file=sys.stderr,
        )
        return 1
    state = json.loads(got[topics.state])
    state["availability"] = got.get(topics.status, "unknown")
    print(json.dumps(state, indent=2))
    return 0


def cmd_detect(args: argparse.Namespace, cfg: Config) -> int:
    pipe = _pipeline(cfg)
    out = []
    for p in args.images:
        faces = pipe.faces(read_image(p), embed=False)
        out.append({"image": str(p), "faces": [f.as_dict() for f in faces]})
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.vision.similarity import cosine

    pipe = _pipeline(cfg)
    vecs = []
    for p in (args.image1, args.image2):
        faces = pipe.faces(read_image(p))
        if not faces:
            print(f"{p}: no face found", file=sys.stderr)
            return 1
        vecs.append(faces[0].embedding)
    s = cosine(vecs[0], vecs[1])
    th = _thresholds(cfg, people=1)
    verdict = "same person" if s >= th.accept else "different people"
    print(
        json.dumps(
            {
                "cosine": round(s, 4),
                "threshold": round(th.accept, 4),
                "why": th.why,
                "verdict": verdict,
            }
        )
    )
    return 0


def _service(cfg: Config):
    from appliance.identity.recogniser import FaceService

    return FaceService.open(cfg, _pipeline(cfg))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )


def cmd_enroll(args: argparse.Namespace, cfg: Config) -> int:
    """Enrol one person from photos, or every `DIR/<name>/*.jpg` folder. Each person is
    one transaction: a refused photo refuses that person's whole batch, with the reason."""
    from appliance.identity.gates import EnrolmentRefused

    svc = _service(cfg)
    if args.from_dir:
        batches = [(d.name, _images_in(d)) for d in sorted(args.from_dir.iterdir()) if d.is_dir()]
    else:
        if not args.name or not args.images:
            print("appliance enroll: give NAME IMAGE... or --from-dir DIR", file=sys.stderr)
            return 2
        batches = [(args.name, args.images)]
    failed = 0
    for name, images in batches:
        try:
            person = svc.enrol(
                name, list(images), "file", args.actor, force=args.force, largest=args.largest
            )
            print(
                f"enrolled {person.name}: {len(images)} photo(s), "
                f"{person.templates} template(s) in total"
            )
        except (EnrolmentRefused, ImageError) as exc:
            failed += 1
            print(f"refused {name}: {exc}", file=sys.stderr)
    svc.close()
    return 1 if failed else 0


def cmd_people(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.identity.recogniser import open_gallery
    from appliance.store.gallery import GalleryError

    if args.action == "list":
        from appliance.vision.pipeline import embedder_version

        version = embedder_version(cfg.models.embedder)
        with open_gallery(cfg) as g:
            people = g.persons(version)
        if args.json:
            print(json.dumps([p.as_dict() for p in people], indent=2))
        for p in [] if args.json else people:
            stale = f", {p.stale_templates} stale: re-enrol" if p.stale_templates else ""
            print(f"{p.name}\t{p.templates} template(s){stale}\tid {p.id}")
        return 0
    try:
        if args.action == "rename":
            with open_gallery(cfg) as g:
                person = g.rename(args.who, args.new_name, args.actor)
            print(f"renamed to {person.name}")
        else:
            with open_gallery(cfg) as g:
                person = g.delete(args.who, args.actor)
            print(f"deleted {person.name}: {person.templates} template(s) erased")
    except GalleryError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_identify(args: argparse.Namespace, cfg: Config) -> int:
    svc = _service(cfg)
    th = svc.thresholds()
    results = []
    for p in args.images:
        found = svc.identify(read_image(p))
        results.append({"image": str(p), "faces": [i.as_dict() for i in found]})
    svc.close()
    if args.json:
        print(json.dumps({"thresholds": th.as_dict(), "results": results}, indent=2))
        return 0
    print(f"accept at cosine >= {th.accept:.3f} and margin >= {th.margin:.3f} ({th.why})")
    for r in results:
        if not r["faces"]:
            print(f"{r['image']}: no face")
        for f in r["faces"]:
            print(
                f"{r['image']}: {f['person']:<20} cosine {f['score']:.3f} "
                f"(best {f['candidate']}), margin {f['margin']:.3f}, box {f['box']}"
            )
    return 0


def cmd_gallery(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.store.gallery import GalleryError

    svc = _service(cfg)
    try:
        if args.action == "export":
            data = svc.gallery.export(svc.embedder)
            args.file.write_text(json.dumps(data))
            print(f"exported {len(data['people'])} people to {args.file}")
        else:
            try:
                data = json.loads(args.file.read_bytes())
            except (OSError, ValueError) as exc:
                raise GalleryError(f"{args.file}: not a readable export: {exc}") from exc
            n = svc.gallery.import_(data, svc.embedder, args.actor, cfg.enrolment.max_templates)
            print(f"imported {n} people from {args.file}")
    except GalleryError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 1
    finally:
        svc.close()
    return 0


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
    sg.add_argument(
        "command", choices=("enroll", "delete", "rename", "list", "set", "reload", "status")
    )
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
