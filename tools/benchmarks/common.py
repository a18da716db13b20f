"""What every benchmark shares: where things are, the machine it ran on, and how a
figure is timed. numpy and the standard library only: the peer worker imports this in
.venv-bench, which holds no product dependency."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# The command-line entry; the pipeline benchmark runs it again for its child processes
# (`peer-worker` in .venv-bench, `rss-probe` in a fresh interpreter).
BENCH = ROOT / "tools" / "bench.py"
DIM = 320  # the fused embedder's (the device default): FaceNet 128 + MobileFaceNet 192
STAGES = ("convert", "detect", "align", "embed", "match")


CPU_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def stats(fn: Any, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median, min and max wall ms plus median CPU ms (process_time) of `fn`.

    Warm-up first, because the first invokes pay for XNNPACK packing and cache misses
    that a running daemon never sees again. CPU time shows multi-thread spin cost.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    w = np.array(wall)
    return {
        "median_ms": round(float(np.median(w)), 3),
        "min_ms": round(float(w.min()), 3),
        "max_ms": round(float(w.max()), 3),
        "cpu_ms": round(float(np.median(cpu)), 3),
        "runs": repeats,
    }


def machine_full() -> dict[str, Any]:
    """`machine()` plus the CPU flags that decide which int8 kernels XNNPACK and dlib use,
    and the load average: the machine is shared, so a noisy run must say so."""
    out = machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    out["flags"] = [f for f in CPU_FLAGS if f in flags]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out
