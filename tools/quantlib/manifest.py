"""Merging freshly built model entries into models/manifest.json without losing what
other tools measured there.

quantize.py writes a model's whole entry (file, sha256, source, calibration photos,
agreement). The open-set curve (`open_set`, written by `tools/evaluate.py identify
--write-calibration`) is measured on the int8 embedder's outputs, so it belongs to one
exact file: it is carried over while the embedder's sha256 is unchanged and dropped when
it changed, because a curve measured on other weights would put the accept threshold in
the wrong place. A dropped curve is listed, so `make models` can measure it again
(the daemon refuses to start without one). The fused embedder has no file of its own; its
curve is measured on its members' outputs and is kept only while none of them changed.

Standard library only: tested without TensorFlow, and `--stale-calibration` runs in the
device venv.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys of a model entry that other tools write and quantize.py never produces.
# `open_set_mesh`: the curve of faces aligned by the face mesh (box-only detectors).
MEASURED_KEYS = ("open_set", "open_set_mesh")


def merge(
    manifest: dict[str, Any], built: dict[str, dict[str, Any]], fusion: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The manifest with `built` entries in place and the fused entry refreshed.

    Returns (new manifest, names whose measured keys were dropped because the weights
    they were measured on changed). `manifest` is not modified.
    """
    out = copy.deepcopy(manifest)
    models = out.setdefault("models", {})
    changed: set[str] = set()
    dropped: list[str] = []
    for name, entry in built.items():
        old = models.get(name, {})
        new = copy.deepcopy(entry)
        same = old.get("sha256") == new.get("sha256")
        if not same:
            changed.add(name)
        for key in MEASURED_KEYS:
            if key not in old or key in new:
                continue
            if same:
                new[key] = copy.deepcopy(old[key])
            elif name not in dropped:
                dropped.append(name)
        models[name] = new
    fused = models.setdefault("fused", {})
    members = fusion.get("members", [])
    stale = bool(changed & set(members)) or fused.get("members", members) != members
    fused.update(copy.deepcopy(fusion))
    if stale:
        for key in MEASURED_KEYS:
            if fused.pop(key, None) is not None and "fused" not in dropped:
                dropped.append("fused")
    return out, dropped


def missing_calibration(manifest: dict[str, Any]) -> list[str]:
    """Embedders (and the fused one) with no open-set curve: the daemon would refuse to
    start on any of them without `recognition.threshold` set."""
    return [
        name
        for name, e in manifest.get("models", {}).items()
        if e.get("kind") in ("embedder", "fusion") and not e.get("open_set")
    ]
