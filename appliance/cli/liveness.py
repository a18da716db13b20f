"""`appliance check-liveness FILE... [--json]`: what the door's liveness check says about
recorded visits (videos, or folders of frames), with this device's `liveness` settings.

Read-only and without the daemon. When the config has `liveness.mode: off` the clips are
judged with `--mode` (default `planarity`) and the configured thresholds, and the output
says so: the command is how an owner tries the check before turning it on.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.config.schema import Config
from appliance.liveness import MODES
from appliance.liveness.check import ClipError, check_clip
from appliance.liveness.verdict import LivenessRules


def add_parser(sub: Any) -> None:
    c = sub.add_parser(
        "check-liveness", help="judge recorded visits (videos or frame folders): live or attack"
    )
    c.add_argument("files", nargs="+", help="video files or folders of frames")
    c.add_argument("--json", action="store_true")
    c.add_argument(
        "--mode",
        choices=[m for m in MODES if m != "off"],
        help="signals to require (default: the config's liveness.mode; planarity when off)",
    )
    c.add_argument("--fps", type=float, default=10.0, help="frame rate of a folder of frames")


def cmd_check_liveness(args: argparse.Namespace, cfg: Config) -> int:
    from appliance.cli.photos import pipeline

    if not args.fps > 0:
        raise ValueError(f"--fps must be above 0, not {args.fps}")
    rules = LivenessRules.from_config(cfg.liveness)
    configured = rules.mode
    if args.mode:
        rules = rules.with_mode(args.mode)
    elif not rules.on:
        rules = rules.with_mode("planarity")
    pipe = pipeline(cfg)
    _ = pipe.landmarks  # load the mesh now, so the first file's time is its own
    out: list[dict[str, Any]] = []
    failed = 0
    for f in args.files:
        try:
            row = check_clip(pipe, f, rules, args.fps).as_dict()
        except ClipError as exc:
            failed += 1
            print(f"appliance: {exc}", file=sys.stderr)
            out.append({"file": f, "error": str(exc)})
            continue
        row["configured_mode"] = configured
        out.append(row)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        if configured == "off":
            print(f"(liveness.mode is off in this config; judged with mode {rules.mode})")
        for row in out:
            if "error" in row:
                continue
            sig = ", ".join(
                f"{k} {v['score']:.3f} (needs {v['threshold']})"
                for k, v in row["liveness"].get("signals", {}).items()
            )
            when = "" if row["decided_s"] is None else f" at {row['decided_s']:.2f} s"
            print(
                f"{row['file']}: {row['verdict']}{when}; {sig or 'no face'}; "
                f"{row['faces']}/{row['frames']} frames with a face, took {row['seconds']:.2f} s"
            )
    return 1 if failed else 0
