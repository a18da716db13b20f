#!/usr/bin/env python3
"""Benchmarks that write JSON (never timed assertions in tests).

    tools/bench.py matching [--json build/bench/matching.json]

matching: one query against 100 ... 100,000 templates through the device's Matcher
(median and p99 over repeated runs after a warm-up), and the time to open a SQLite
gallery of 10,000 people and load its matrix, as the daemon does at start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from appliance.gallery import Gallery, Template, TemplateSet  # noqa: E402
from appliance.matcher import Matcher, Thresholds  # noqa: E402
from appliance.service import COMBINE  # noqa: E402

DIM = 128


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}


def unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(fn: Any, repeats: int) -> dict[str, float]:
    for _ in range(max(3, repeats // 10)):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    a = np.array(ts)
    return {"median_ms": round(float(np.median(a)), 4), "p99_ms": round(float(np.percentile(a,
            99)), 4), "min_ms": round(float(a.min()), 4), "max_ms": round(float(a.max()), 4),
            "runs": repeats}


def bench_matching() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    th = Thresholds(0.6, 0.05)
    out: dict[str, Any] = {"combine": COMBINE, "templates_per_person": 2, "sizes": {}}
    q = unit_rows(1, rng)
    for n in (100, 1_000, 10_000, 100_000):
        people = n // 2
        owner = np.repeat(np.arange(people, dtype=np.int32), 2)
        ids = [f"p{i}" for i in range(people)]
        m = Matcher(TemplateSet(ids, ids, owner, unit_rows(n, rng)), COMBINE)
        best = Matcher(TemplateSet(ids, ids, owner, m.matrix), "best")
        out["sizes"][str(n)] = {"centroid": timed(lambda m=m: m.match(q, th), 200),
                                "best_of": timed(lambda b=best: b.match(q, th), 200)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.sqlite3"
        with Gallery(path) as g:
            vecs = unit_rows(10_000, rng)
            g.db.execute("BEGIN")
            for i in range(10_000):  # one bulk transaction; enrol() per person is slower
                g.db.execute("INSERT INTO persons (id, name, meta, created, updated) "
                             "VALUES (?,?,?,?,?)", (f"id{i}", f"person {i}", "{}", 0, 0))
                g.db.execute("INSERT INTO templates (person_id, embedding, embedder, source, "
                             "created) VALUES (?,?,?,?,?)", (f"id{i}", vecs[i].tobytes(),
                                                              "v", "bench", 0))
            g.db.execute("COMMIT")
        t0 = time.perf_counter()
        with Gallery(path) as g:
            m = Matcher(g.template_set("v"), COMBINE)
        out["gallery_load_10000_people_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        assert m.size == 10_000
        with Gallery(path) as g:
            t0 = time.perf_counter()
            g.enrol("new person", [Template(vecs[0], "v", "bench")], "bench")
            out["enrol_one_into_10000_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("section", choices=("matching",))
    p.add_argument("--json", type=Path, default=ROOT / "build" / "bench" / "matching.json")
    args = p.parse_args(argv)
    result = {"machine": machine(), "matching": bench_matching()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'templates':>10} {'centroid median/p99 ms':>24} {'best-of median/p99 ms':>24}")
    for n, r in result["matching"]["sizes"].items():
        c, b = r["centroid"], r["best_of"]
        print(f"{n:>10} {c['median_ms']:>11.3f} / {c['p99_ms']:<10.3f} "
              f"{b['median_ms']:>11.3f} / {b['p99_ms']:<10.3f}")
    print(f"gallery load, 10,000 people: {result['matching']['gallery_load_10000_people_ms']} ms")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
