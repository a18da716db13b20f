"""rss-probe: the peak resident memory of a daemon-like process, in a fresh child."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from appliance.identity.matcher import Thresholds
from tools.benchmarks.common import ROOT
from tools.benchmarks.frames import compose_frames, face_patches
from tools.benchmarks.matching import random_matcher


def rss_probe(threads: int) -> dict[str, Any]:
    """Peak RSS of a daemon-like process: models loaded, 10,000 templates, frames run.

    A fresh child process, so the figure is not inflated by the other systems this
    benchmark loads.
    """
    import cv2

    from appliance.config.schema import ModelsConfig
    from appliance.vision.pipeline import FacePipeline

    # The daemon's default embedder (fused: both embedders loaded, 320-d templates).
    pipe = FacePipeline.load(embedder=ModelsConfig().embedder, threads=threads)
    m = random_matcher(10_000, pipe.embedder.spec.dim, np.random.default_rng(0))
    frames = compose_frames(face_patches(pipe, ROOT.parent / "shared/data/lfw/images"))
    th = Thresholds(0.6, 0.05)
    for _ in range(20):
        for f in frames.values():
            faces = pipe.faces(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            if faces:
                m.match(np.stack([fc.embedding for fc in faces]), th)
    return {
        "rss_mb": round(peak_rss_kb() / 1024, 1),
        "templates": m.template_count,
        "threads": threads,
        "embedder": pipe.embedder.spec.name,
    }


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    fork and exec, so a probe started by the benchmark reported the benchmark's own peak
    (369.5 MB against 187.4 MB for the same probe started alone)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
