"""matching: one query against 100 ... 100,000 templates through the device's Matcher
(median and p99 over repeated runs after a warm-up), and the time to open a SQLite
gallery of 10,000 people and load its matrix, as the daemon does at start."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.identity.matcher import Matcher, Thresholds
from appliance.identity.recogniser import COMBINE
from appliance.store.gallery import Gallery, Template, TemplateSet
from tools.benchmarks.common import DIM


def unit_rows(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
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
    return {
        "median_ms": round(float(np.median(a)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "min_ms": round(float(a.min()), 4),
        "max_ms": round(float(a.max()), 4),
        "runs": repeats,
    }


def bench_matching(dim: int = DIM) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    th = Thresholds(0.6, 0.05)
    out: dict[str, Any] = {"combine": COMBINE, "templates_per_person": 2, "dim": dim, "sizes": {}}
    q = unit_rows(1, rng, dim)
    for n in (100, 1_000, 10_000, 100_000):
        people = n // 2
        owner = np.repeat(np.arange(people, dtype=np.int32), 2)
        ids = [f"p{i}" for i in range(people)]
        m = Matcher(TemplateSet(ids, ids, owner, unit_rows(n, rng, dim)), COMBINE)
        best = Matcher(TemplateSet(ids, ids, owner, m.matrix), "best")
        out["sizes"][str(n)] = {
            "centroid": timed(lambda m=m: m.match(q, th), 200),
            "best_of": timed(lambda b=best: b.match(q, th), 200),
        }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.sqlite3"
        with Gallery(path) as g:
            vecs = unit_rows(10_000, rng, dim)
            g.db.execute("BEGIN")
            for i in range(10_000):  # one bulk transaction; enrol() per person is slower
                g.db.execute(
                    "INSERT INTO persons (id, name, meta, created, updated) VALUES (?,?,?,?,?)",
                    (f"id{i}", f"person {i}", "{}", 0, 0),
                )
                g.db.execute(
                    "INSERT INTO templates (person_id, embedding, embedder, source, "
                    "created) VALUES (?,?,?,?,?)",
                    (f"id{i}", vecs[i].tobytes(), "v", "bench", 0),
                )
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


def random_matcher(n: int, dim: int, rng: np.random.Generator) -> Any:
    """A gallery of n templates (two per person) of unit vectors, as the daemon holds."""
    people = n // 2
    owner = np.repeat(np.arange(people, dtype=np.int32), 2)
    ids = [f"p{i}" for i in range(people)]
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Matcher(TemplateSet(ids, ids, owner, v), COMBINE)


def lines(result: dict[str, Any]) -> list[str]:
    """The matching figures as the command line prints them."""
    out = [f"{'templates':>10} {'centroid median/p99 ms':>24} {'best-of median/p99 ms':>24}"]
    for n, r in result["sizes"].items():
        c, b = r["centroid"], r["best_of"]
        out.append(
            f"{n:>10} {c['median_ms']:>11.3f} / {c['p99_ms']:<10.3f} "
            f"{b['median_ms']:>11.3f} / {b['p99_ms']:<10.3f}"
        )
    out.append(f"gallery load, 10,000 people: {result['gallery_load_10000_people_ms']} ms")
    return out
