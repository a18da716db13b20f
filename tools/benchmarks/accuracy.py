"""Each benchmarked system's LFW accuracy, read from the `tools/evaluate.py lfw` JSON in
build/eval, to stand beside its speed ratio."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tools.benchmarks.common import ROOT

EVAL_DIR = ROOT / "build" / "eval"


# Which LFW evaluation belongs to which benchmarked system: (embedder, precision).
ACCURACY_OF = {
    "appliance_int8": ("default", "int8"),
    "appliance_float": ("default", "float"),
    "appliance_fused": ("fused", "int8"),
    "face_recognition": ("face_recognition", "float"),
    "classic": ("classic", "float"),
}


EVAL_COMMANDS = {
    "appliance_int8": "tools/evaluate.py lfw --data ../shared/data/lfw "
    "--json build/eval/lfw_facenet.json",
    "appliance_float": "tools/evaluate.py lfw --data ../shared/data/lfw --float "
    "--json build/eval/lfw_facenet_float.json",
    "appliance_fused": "tools/evaluate.py lfw --data ../shared/data/lfw --embedder fused "
    "--json build/eval/lfw_fused.json",
    "face_recognition": ".venv-bench/bin/python tools/evaluate.py lfw --data ../shared/data/lfw "
    "--embedder face_recognition "
    "--json build/eval/lfw_face_recognition.json",
}


def lfw_accuracy(system: str, embedder: str, eval_dir: Path = EVAL_DIR) -> dict[str, Any]:
    """A system's LFW figures from the newest matching `tools/evaluate.py lfw` JSON in
    build/eval (same embedder and precision, no flip, all 6,000 pairs), with the file as
    its source; or null and the reason. Never a number typed in here."""
    want_emb, want_prec = ACCURACY_OF.get(system, (system, "float"))
    want_emb = embedder if want_emb == "default" else want_emb
    found = []
    for path in sorted(eval_dir.glob("lfw*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(r, dict)
            and r.get("embedder") == want_emb
            and r.get("precision") == want_prec
            and not r.get("flip")
            and r.get("pairs") == 6000
            and "accuracy_mean" in r
        ):
            found.append((path.stat().st_mtime, path, r))
    if not found:
        how = EVAL_COMMANDS.get(system, "no LFW evaluation exists for this system")
        where = eval_dir
        with contextlib.suppress(ValueError):
            where = eval_dir.relative_to(ROOT)
        return {
            "lfw": None,
            "reason": f"no {where}/lfw*.json for {want_emb} {want_prec} on 6,000 pairs; {how}",
        }
    _, path, r = max(found, key=lambda x: x[0])
    keys = ("accuracy_mean", "accuracy_std", "tar_at_far_1e-3", "eer", "detection_failures")
    with contextlib.suppress(ValueError):
        path = path.relative_to(ROOT)
    return {"lfw": {k: r.get(k) for k in keys}, "source": str(path), "protocol": r.get("protocol")}
