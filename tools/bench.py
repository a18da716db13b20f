#!/usr/bin/env python3
"""Benchmarks that write JSON (never timed assertions in tests).

    tools/bench.py matching [--json build/bench/matching.json]
    tools/bench.py prepare [--no-peers] [--no-fetch]
    tools/bench.py pipeline [--no-peers] [--no-fetch] [--repeats N] [--runs 3] [--json OUT.json]
    tools/bench.py summary [--json build/bench/pipeline.json]
    tools/bench.py idle [--window S] [--json build/bench/idle.json]
    tools/bench.py web [--pairs 2] [--json build/bench/web.json]
    tools/bench.py time-to-event --clip ../shared/data/scenes/examples/short_hamilton_clip.mp4 \
        --enrol "Lin-Manuel Miranda=../shared/data/scenes/examples/lin-manuel-miranda.png"

matching: one query against 100 ... 100,000 templates through the device's Matcher
(median and p99 over repeated runs after a warm-up), and the time to open a SQLite
gallery of 10,000 people and load its matrix, as the daemon does at start.

pipeline: every system (ours int8 and float, face_recognition, MTCNN + Keras FaceNet) on
the same 640x480 frames; per-stage and end-to-end timings, speed ratios with each
system's LFW accuracy beside them (from build/eval/lfw*.json, written by
tools/evaluate.py), model MAC counts and a Raspberry Pi 4/5 PROJECTION from them.
prepare (also the first thing pipeline does): fetch or build what each system needs (the
float models, FaceNet's h5 for the classic peer) and say which systems will run and which
are skipped and why; pipeline.json records the same as systems_run / systems_skipped.
summary: recompute accuracy and projection in an existing pipeline.json, no timing.
idle: idle_cpu_percent, the real daemon's CPU (% of one core, /proc/<pid>/stat) on a 30 fps
file showing an empty scene, the state of nearly every hour at a door.
web [--pairs N] [--visitors N] [--appearances N]: time-to-event's visits with the web
pages on, (a) nobody on them and (b) headless chromium on the live view plus a script
polling the events each second, alternated a, b, a, b: frames/s, time-to-event, CPU, b/a.

Each benchmark is a module of tools/benchmarks/; this file is only the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Each benchmark lives in tools/benchmarks/ and is imported only when its section runs:
# the peer worker runs inside .venv-bench, which holds no product dependencies (no yaml,
# no litert), so nothing here imports the appliance before the section is known.
from tools.benchmarks.common import DIM, machine, machine_full  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peer-worker"]:
        from tools.benchmarks.peers import peer_worker

        return peer_worker(argv[1:])
    if argv[:1] == ["rss-probe"]:
        from tools.benchmarks.rss import rss_probe

        print(json.dumps(rss_probe(1)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "section",
        choices=(
            "matching",
            "time-to-event",
            "idle",
            "pipeline",
            "summary",
            "prepare",
            "replication",
            "web",
        ),
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--clip", type=Path)
    p.add_argument("--enrol", help="NAME=PHOTO of the person who appears in the clip")
    p.add_argument("--appearances", type=int, default=20)
    p.add_argument(
        "--empty-s",
        type=float,
        default=1.0,
        help="time-to-event: empty scene before each LFW visit (over 2 s: from idle)",
    )
    p.add_argument("--window", type=float, default=30.0, help="idle: seconds measured")
    p.add_argument("--dim", type=int, default=DIM, help="matching: embedding size")
    p.add_argument("--repeats", type=int, default=50, help="pipeline: timed runs per figure")
    p.add_argument("--peer-repeats", type=int, default=15, help="pipeline: runs per peer figure")
    p.add_argument(
        "--runs", type=int, default=3, help="pipeline: whole runs, for the ratios' spread"
    )
    p.add_argument("--no-peers", action="store_true", help="pipeline: appliance only")
    p.add_argument(
        "--no-fetch",
        action="store_true",
        help="prepare, pipeline: skip a system whose models are missing instead of "
        "downloading or building them",
    )
    p.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw" / "images")
    p.add_argument("--chart", type=Path, help="pipeline: PNG (default beside the JSON)")
    p.add_argument("--people", type=int, default=1000, help="replication: the site's size")
    p.add_argument("--visitors", type=int, default=20, help="web: LFW people in the clip")
    p.add_argument("--pairs", type=int, default=2, help="web: runs of a (no client), then b")
    args = p.parse_args(argv)
    out = args.json or ROOT / "build" / "bench" / f"{args.section}.json"
    if args.section == "prepare":  # what `pipeline` will run, fetched or built first
        from tools.benchmarks.prepare import prepare

        prepare(not args.no_peers, not args.no_fetch)
        return 0
    if args.section == "summary":  # accuracy and projection again, timings untouched
        from tools.benchmarks.summary import annotate, table

        path = args.json or ROOT / "build" / "bench" / "pipeline.json"
        result = annotate(json.loads(path.read_text()))
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        print(f"updated {path}")
        return 0
    if args.section == "pipeline":
        from tools.benchmarks.chart import chart
        from tools.benchmarks.pipeline import bench_pipeline
        from tools.benchmarks.prepare import prepare
        from tools.benchmarks.summary import table

        plan = prepare(not args.no_peers, not args.no_fetch)
        result = bench_pipeline(
            args.repeats,
            args.peer_repeats,
            plan,
            args.lfw if args.lfw.is_dir() else None,
            max(1, args.runs),
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        png = args.chart or out.with_suffix(".png")
        chart(result, png)
        print(table(result))
        print(f"wrote {out} and {png}")
        return 0
    if args.section == "time-to-event":
        from tools.benchmarks.time_to_event import measure

        tte = measure(args.lfw, args.clip, args.enrol, args.appearances, args.empty_s)
        if not tte:
            p.error("time-to-event needs --lfw DIR and/or --clip with --enrol")
        result: dict[str, Any] = {"machine": machine_full(), "time_to_event": tte}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.section == "replication":
        from tools.benchmarks.replication import bench_replication

        result = {
            "machine": machine(),
            "replication": bench_replication(args.appearances, args.people),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["replication"], indent=2))
        print(f"wrote {out}")
        return 0
    if args.section == "web":
        from tools.benchmarks.web import bench_web

        web = bench_web(args.lfw, args.visitors, args.appearances, args.pairs)
        result = {"machine": machine_full(), "web": web}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in web.items() if k != "runs"}, indent=2))
        print(f"wrote {out}")
        return 0 if "error" not in web else 1
    if args.section == "idle":
        from tools.benchmarks.idle import bench_idle

        idle = bench_idle(args.window)
        result = {"machine": machine_full(), "idle": idle}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(idle))
        print(f"wrote {out}")
        return 0 if "error" not in idle else 1
    from tools.benchmarks.matching import bench_matching, lines

    result = {"machine": machine(), "matching": bench_matching(args.dim)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines(result["matching"])))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
