"""tools/presentation_attack.py: its frames are reproducible and it runs end to end.

SECURITY.md quotes its numbers, so a rerun with the same seed must give the same
frames, and the tool must keep working against the real pipeline.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location(
        "presentation_attack", ROOT / "tools" / "presentation_attack.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["presentation_attack"] = mod
    spec.loader.exec_module(mod)
    return mod


pa = _tool()


@pytest.fixture(scope="module")
def photo(astronaut: np.ndarray) -> np.ndarray:
    return cv2.resize(astronaut[20:260, 120:340], (150, 150))


@pytest.mark.parametrize("cond", pa.CONDITIONS)
def test_frames_are_a_function_of_the_seed(photo: np.ndarray, cond: str) -> None:
    scene = pa.wall_scene()
    p = pa.placement(np.random.default_rng([0, 1]), [(scene, (320, 240))])
    a = pa.RENDER[cond](photo, scene, p, np.random.default_rng([0, 1, 2]))
    b = pa.RENDER[cond](photo, scene, p, np.random.default_rng([0, 1, 2]))
    c = pa.RENDER[cond](photo, scene, p, np.random.default_rng([0, 1, 3]))
    assert a.shape == (pa.H, pa.W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_border_cue_sees_a_print_edge_and_not_a_plain_wall(photo: np.ndarray) -> None:
    scene = pa.wall_scene()
    p = pa.Placement(0, 250.0, 220.0, 60.0, 1.0, 0.0)
    box = np.array([250 - 90, 220 - 90, 250 + 90, 220 + 90], np.float32)
    printed = pa.render_print(photo, scene, p, np.random.default_rng(0))
    assert pa.border_cue(printed, box) >= 2
    assert pa.border_cue(scene, box) == 0


def test_runs_end_to_end(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "pa.json"
    rc = pa.main(
        [
            "--data",
            str(shared),
            "--people",
            "3",
            "--queries",
            "1",
            "--strangers",
            "2",
            "--out",
            str(out),
            "--examples",
            str(tmp_path / "ex"),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["people"] == 3
    for cond in (*pa.CONDITIONS, "stranger_genuine", "stranger_print"):
        s = res["summary"][cond]
        assert s["n"] > 0
        total = (
            s["accepted_true"] + s["accepted_other"] + s["unknown"] + s["gated"] + s["not_detected"]
        )
        assert abs(total - 100) < 0.5
    assert list((tmp_path / "ex").glob("*.png"))
