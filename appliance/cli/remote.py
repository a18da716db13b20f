"""CLI commands for a door elsewhere: sign a command, read its state from the broker."""

from __future__ import annotations

import argparse
import base64
import json
import sys

from appliance.config.schema import Config
from appliance.transport.mqtt.signing import read_secret, sign
from appliance.transport.mqtt.topics import Topics, device_id


def cmd_sign(args: argparse.Namespace, cfg: Config) -> int:
    """Print a signed command payload (for mosquitto_pub, scripts, Home Assistant)."""
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
    device = args.device or device_id(cfg.mqtt.device_id)
    payload = sign(key, args.command, device, cmd_args, args.request_id)
    sys.stdout.write(payload.decode() + "\n")
    return 0


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    """Read the daemon's retained state from the broker (read-only, no key needed)."""
    from appliance.transport.mqtt.link import Settings, client_id, read_retained

    device = device_id(cfg.mqtt.device_id)
    topics = Topics(cfg.mqtt.prefix, device)
    settings = Settings.from_config(cfg.mqtt, client_id(f"{device}-status"))
    try:
        got = read_retained(settings, [topics.state, topics.status], args.timeout)
    except OSError as exc:
        print(f"appliance status: broker {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}", file=sys.stderr)
        return 1
    if topics.state not in got:
        print(
            f"appliance status: no state on {topics.state} (is the daemon running?)",
            file=sys.stderr,
        )
        return 1
    state = json.loads(got[topics.state])
    state["availability"] = got.get(topics.status, b"unknown").decode(errors="replace")
    print(json.dumps(state, indent=2))
    return 0
