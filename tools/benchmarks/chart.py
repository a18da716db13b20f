"""The pipeline benchmark's PNG: per-stage latency and frames/s per system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.common import STAGES


def chart(result: dict[str, Any], path: Path) -> None:
    """Stacked per-stage latency (1 thread, 1-face frame) and a frames/s bar per system.

    Drawn with OpenCV so the product venv needs no matplotlib. Latency is on a linear
    axis (a stacked bar on a log axis distorts the stage shares); frames/s is on a log
    axis, since the systems differ by more than an order of magnitude.
    """
    import cv2

    colours = [(66, 133, 244), (52, 168, 83), (251, 188, 5), (234, 67, 53), (155, 89, 182)]
    rows = [
        (n, r["threads_1"])
        for n, r in result["systems"].items()
        if "error" not in r.get("threads_1", {"error": 1})
    ]
    w, h, left, top, bar = 1100, 140 + 60 * len(rows) * 2, 190, 60, 34
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        img,
        "per-stage latency, 1 thread, 640x480 frame with one face (ms)",
        (10, 30),
        font,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    span = w - left - 40
    hi = max(sum(r["stages_ms"][s]["median_ms"] for s in STAGES) for _, r in rows) * 1.1

    def x_of(ms: float) -> int:
        return left + int(span * ms / hi)

    for i, (name, r) in enumerate(rows):
        y = top + i * (bar + 16)
        cv2.putText(img, name, (10, y + 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        acc = 0.0
        for j, s in enumerate(STAGES):
            a = x_of(acc)
            acc += r["stages_ms"][s]["median_ms"]
            cv2.rectangle(img, (a, y), (x_of(acc), y + bar), colours[j], -1)
        cv2.putText(
            img, f"{acc:.1f} ms", (x_of(acc) + 5, y + 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    y = top + len(rows) * (bar + 16)
    for j, s in enumerate(STAGES):
        cv2.rectangle(img, (left + j * 110, y), (left + j * 110 + 14, y + 14), colours[j], -1)
        cv2.putText(img, s, (left + j * 110 + 18, y + 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    y += 50
    cv2.putText(
        img,
        "end-to-end frames/s, one face (log scale); dark = 1 thread, light = all cores",
        (10, y),
        font,
        0.6,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    top2 = y + 20
    fps_all = [
        r2["end_to_end"]["1"]["fps"]
        for n, per in result["systems"].items()
        for r2 in per.values()
        if "error" not in r2
    ]
    flo, fhi = np.log10(0.5), np.log10(max(fps_all) * 1.5)
    for i, (name, _) in enumerate(rows):
        yb = top2 + i * (bar + 16)
        cv2.putText(img, name, (10, yb + 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for k, (key, shade) in enumerate(
            (("threads_1", (120, 60, 20)), (f"threads_{os.cpu_count()}", (230, 180, 140)))
        ):
            r2 = result["systems"][name].get(key, {})
            if "error" in r2 or not r2:
                continue
            f = r2["end_to_end"]["1"]["fps"]
            x1 = left + int(span * (np.log10(max(f, 0.5)) - flo) / (fhi - flo))
            yy = yb + k * (bar // 2)
            cv2.rectangle(img, (left, yy), (x1, yy + bar // 2 - 2), shade, -1)
            cv2.putText(img, f"{f:.1f}", (x1 + 5, yy + 13), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[: top2 + len(rows) * (bar + 16) + 20])
