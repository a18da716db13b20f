"""`make models` must not lose the open-set calibration the daemon needs to start.

quantize.py's manifest merge, on the committed manifest, without TensorFlow: the entries
quantize.py builds carry no `open_set`, so these tests build them the same way (the
committed entry minus what other tools measured) and check what the merge keeps.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.identity.thresholds import Calibration
from tools.quantlib.manifest import merge, missing_calibration

ROOT = Path(__file__).resolve().parent.parent
FUSION = {"kind": "fusion", "members": ["facenet", "mobilefacenet"], "how": "concatenated"}


@pytest.fixture
def committed() -> dict[str, Any]:
    return json.loads((ROOT / "models" / "manifest.json").read_text())


def rebuilt(manifest: dict[str, Any], name: str, sha: str | None = None) -> dict[str, Any]:
    """What quantize.build returns for `name`: everything but the measured curve."""
    entry = copy.deepcopy(manifest["models"][name])
    entry.pop("open_set", None)
    entry["agreement"] = {"faces": 1, "cosine_min": 0.5}  # a fresh measurement
    if sha is not None:
        entry["sha256"] = sha
    return entry


def test_committed_manifest_calibrates_every_embedder(committed):
    assert missing_calibration(committed) == []


def test_unchanged_weights_keep_their_calibration(committed):
    built = {n: rebuilt(committed, n) for n in ("detector", "facenet", "mobilefacenet")}
    before = copy.deepcopy(committed)
    out, dropped = merge(committed, built, FUSION)
    assert dropped == []
    assert missing_calibration(out) == []
    for name in ("facenet", "mobilefacenet", "fused"):
        assert out["models"][name]["open_set"] == committed["models"][name]["open_set"]
        # and it is still a curve the daemon can load
        Calibration.from_manifest(out["models"][name]["open_set"]["plain"])
    assert out["models"]["facenet"]["agreement"] == {"faces": 1, "cosine_min": 0.5}
    assert out["models"]["fused"]["how"] == "concatenated"
    assert committed == before  # the input is not modified


def test_changed_weights_drop_their_calibration_and_the_fused_one(committed):
    built = {
        "facenet": rebuilt(committed, "facenet"),
        "mobilefacenet": rebuilt(committed, "mobilefacenet", sha="0" * 64),
    }
    out, dropped = merge(committed, built, FUSION)
    assert dropped == ["mobilefacenet", "fused"]
    assert missing_calibration(out) == ["mobilefacenet", "fused"]
    assert out["models"]["facenet"]["open_set"] == committed["models"]["facenet"]["open_set"]
    assert out["models"]["mobilefacenet"]["sha256"] == "0" * 64


def test_changed_detector_keeps_embedder_calibrations(committed):
    """The curve is measured on embeddings of LFW crops; only the embedders' weights
    decide it, so a rebuilt detector alone leaves every curve in place."""
    out, dropped = merge(committed, {"detector": rebuilt(committed, "detector", "1" * 64)}, FUSION)
    assert dropped == []
    assert out["models"]["detector"]["sha256"] == "1" * 64
    assert missing_calibration(out) == []


def test_new_fusion_members_drop_the_fused_calibration(committed):
    other = dict(FUSION, members=["facenet", "arcface"])
    out, dropped = merge(committed, {}, other)
    assert dropped == ["fused"]
    assert "open_set" not in out["models"]["fused"]


def test_list_uncalibrated_runs_without_tensorflow(committed, tmp_path):
    """`make models` asks the device venv (no TensorFlow) which curves to measure again."""
    del committed["models"]["mobilefacenet"]["open_set"]
    (tmp_path / "manifest.json").write_text(json.dumps(committed))
    cmd = [sys.executable, str(ROOT / "tools" / "quantize.py"), "--list-uncalibrated"]
    r = subprocess.run(
        [*cmd, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == ["mobilefacenet"]
