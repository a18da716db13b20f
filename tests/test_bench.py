"""tools/bench.py and the LFW comparison model: their JSON keeps its shape, never timings.

The pipeline smoke run is a few iterations without peers; the projection and the
accuracy lookup are arithmetic and file reading, checked on fixed inputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import bench
from tools.benchmarks import peak, prepare, projection
from tools.benchmarks.accuracy import lfw_accuracy
from tools.benchmarks.time_to_event import bench_time_to_event, compose_visits_clip

ROOT = Path(__file__).resolve().parent.parent


def _lfw_json(path: Path, **kw) -> None:
    r = {
        "embedder": "facenet",
        "precision": "int8",
        "flip": False,
        "pairs": 6000,
        "accuracy_mean": 99.0,
        "accuracy_std": 0.5,
        "tar_at_far_1e-3": 97.0,
        "eer": 1.0,
        "detection_failures": 3,
        "protocol": "LFW",
    }
    r.update(kw)
    path.write_text(json.dumps(r))


def test_accuracy_comes_from_the_matching_evaluation_file(tmp_path: Path) -> None:
    _lfw_json(tmp_path / "lfw_facenet.json")
    _lfw_json(tmp_path / "lfw_facenet_flip.json", flip=True, accuracy_mean=50.0)
    _lfw_json(tmp_path / "lfw_partial.json", pairs=600, accuracy_mean=50.0)
    _lfw_json(
        tmp_path / "lfw_fr.json", embedder="face_recognition", precision="float", accuracy_mean=98.0
    )
    ours = lfw_accuracy("appliance_int8", "facenet", tmp_path)
    assert ours["lfw"]["accuracy_mean"] == 99.0
    assert ours["source"].endswith("lfw_facenet.json")
    assert lfw_accuracy("face_recognition", "facenet", tmp_path)["lfw"]["accuracy_mean"] == 98.0
    missing = lfw_accuracy("appliance_float", "facenet", tmp_path)
    assert missing["lfw"] is None and "--float" in missing["reason"]
    assert lfw_accuracy("classic", "facenet", tmp_path)["lfw"] is None


# A host with a 100 GMAC/s int8 core, and an int8 FaceNet system timed on it: detector
# 1e8 MACs in 4 ms (a quarter of the peak), FaceNet 1e9 MACs in 20 ms (half of it).
MACS = {"detector": 10**8, "facenet": 10**9, "mobilefacenet": 2 * 10**8}
INT8_1T = {
    "stages_ms": {"detect_invoke": {"cpu_ms": 4.0}, "embed_invoke": {"cpu_ms": 20.0}},
    "outside_models_share": 20.0,
}


@pytest.fixture
def peak_100(monkeypatch) -> None:
    peak = {"ghz": 1.0, "int8_macs_per_cycle": 100, "gmacs_per_core": 100.0, "basis": "test"}
    monkeypatch.setattr(projection, "host_int8_peak", lambda flags: peak)


def test_projection_is_macs_over_peak_and_measured_share(peak_100) -> None:
    p = projection.projection(MACS, INT8_1T, "facenet", [])
    assert p["label"].startswith("PROJECTION")
    # 1e9 MACs in 20 ms = 50 GMAC/s = half of the 100 GMAC/s host peak
    assert p["efficiency"]["embedder"]["share_of_peak"] == 0.5
    assert p["efficiency"]["detector"]["share_of_peak"] == 0.25
    pi5 = p["models"]["facenet"]["pi5"]
    assert pi5["ideal_ms_1_core"] == pytest.approx(1e9 / 76.75e9 * 1e3, abs=0.01)
    assert pi5["realistic_ms_1_core"] == pytest.approx(2 * pi5["ideal_ms_1_core"], abs=0.1)
    assert p["models"]["facenet"]["pi4"]["ideal_ms_4_cores"] == pytest.approx(
        1e9 / 48e9 * 1e3, abs=0.01
    )
    frame = p["frames"]["facenet_1_face"]
    det, emb = p["models"]["detector"]["pi5"], pi5
    assert frame["pi5_ideal_fps_1_core"] == pytest.approx(
        1e3 / (det["ideal_ms_1_core"] + emb["ideal_ms_1_core"]), rel=0.01
    )
    assert next(iter(p["frames"])) == "facenet_1_face"
    assert "fused_1_face" not in p["frames"]  # no member timed alone: no fused row


def test_projection_gives_fused_members_their_own_share(peak_100) -> None:
    # MobileFaceNet alone: 2e8 MACs in 8 ms = 25 GMAC/s, a quarter of the peak (not FaceNet's half)
    p = projection.projection(MACS, INT8_1T, "facenet", [], {"facenet": 21.0, "mobilefacenet": 8.0})
    assert p["efficiency"]["mobilefacenet"]["share_of_peak"] == 0.25
    assert p["efficiency"]["embedder"]["share_of_peak"] == 0.5  # FaceNet from its own system
    mfn = p["models"]["mobilefacenet"]["pi5"]
    assert mfn["realistic_ms_1_core"] == pytest.approx(4 * mfn["ideal_ms_1_core"], abs=0.1)
    det, fn = p["models"]["detector"]["pi5"], p["models"]["facenet"]["pi5"]
    fused = p["frames"]["fused_3_faces"]
    expected_ms = det["realistic_ms_1_core"] + 3 * (
        fn["realistic_ms_1_core"] + mfn["realistic_ms_1_core"]
    )
    assert fused["pi5_realistic_fps_1_core"] == pytest.approx(1e3 / expected_ms, rel=0.01)
    assert fused["macs"] == 10**8 + 3 * (10**9 + 2 * 10**8)


def test_projection_takes_shares_against_a_measured_peak(peak_100) -> None:
    """With a measured peak in the run the shares are taken against it, and the nominal
    one stays beside it: FaceNet's 50 GMAC/s is a quarter of a measured 200."""
    measured = {"gmacs_per_core": 200.0, "basis": "measured: test"}
    p = projection.projection(MACS, INT8_1T, "facenet", [], measured_peak=measured)
    assert p["host_peak_source"] == "measured"
    assert p["efficiency"]["embedder"]["share_of_peak"] == 0.25
    assert p["host_peak_nominal"]["gmacs_per_core"] == 100.0
    assert projection.projection(MACS, INT8_1T, "facenet", [])["host_peak_source"] == "nominal"


@pytest.mark.parametrize(("h", "w", "cin", "cout", "k"), [(6, 5, 8, 4, 3), (4, 4, 16, 8, 1)])
def test_peak_probe_is_the_int8_convolution_it_claims(tmp_path, h, w, cin, cout, k) -> None:
    """The hand-built flatbuffer runs whole in XNNPACK and computes, bit for bit, the
    int8 convolution numpy computes from the same weights: its MAC count is then true."""
    import numpy as np

    from appliance.vision.runtime import TfliteModel

    path = tmp_path / "probe.tflite"
    path.write_bytes(peak.int8_conv_model(h, w, cin, cout, k))
    model = TfliteModel(path)
    assert model.delegate_partitions() == (1, True)
    x = np.random.default_rng(3).integers(-128, 128, (1, h, w, cin), dtype=np.int8)
    got = np.round(model.run(x)["output"] / peak.OUT_SCALE).astype(np.int8)
    assert np.array_equal(got, peak.reference_conv(x, k, cout))


def test_measure_peak_shape() -> None:
    r = peak.measure_peak(repeats=2)
    assert r["gmacs_per_core"] > 0 and r["basis"].startswith("measured")
    assert set(r["probes"]) == {name for name, *_ in peak.SHAPES}
    assert all(p["xnnpack_whole_graph"] for p in r["probes"].values())


def test_pipeline_smoke_writes_macs_accuracy_and_projection(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    assert (
        bench.main(
            [
                "pipeline",
                "--no-peers",
                "--repeats",
                "2",
                "--runs",
                "2",
                "--json",
                str(out),
                "--lfw",
                str(tmp_path / "absent"),
                "--no-fetch",
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["systems_skipped"]["face_recognition"] == "--no-peers"
    assert r["systems_skipped"]["classic"] == "--no-peers"
    assert {"appliance_int8", "appliance_fused"} <= set(r["systems_run"])
    assert set(r["systems_run"]).isdisjoint(r["systems_skipped"])
    assert set(r["systems_run"]) | set(r["systems_skipped"]) == set(r["systems"])
    assert set(r["macs"]) >= {"detector", r["embedder"]}
    assert all(v > 0 for v in r["macs"].values())
    assert set(r["accuracy"]) == set(r["systems"])
    for a in r["accuracy"].values():
        assert (a["lfw"] is None and a["reason"]) or a["source"].startswith("build")
    assert r["projection"]["models"].keys() == r["macs"].keys()
    assert r["projection"]["host_peak_source"] == "measured"
    assert r["projection"]["host_peak"] == r["host_peak_measured"]
    assert "vs_face_recognition" in r["ratios_with_accuracy"]
    assert r["cpu_ratios"]["vs_face_recognition"] is None  # peers not run
    fused = r["systems"]["appliance_fused"]["threads_1"]  # the device default, both models
    assert fused["models"]["embedder"] == "facenet_int8.tflite+mobilefacenet_int8.tflite"
    assert fused["end_to_end"]["1"]["faces_found"] == 1
    assert r["runs"] == 2
    for spread in (r["ratio_spread"], r["cpu_ratio_spread"]):
        assert set(spread) == set(r["ratios"])
        for key, v in spread.items():
            assert len(v["runs"]) == 2, v
            if key != "vs_float":  # no peers: None, twice (the float models may be built)
                assert v["runs"] == [None, None] and v["median"] is None, (key, v)
    for name in ("facenet", "fused"):
        o = r["outside_models"][name]
        # Two repeats are noise (the share can even come out below 0): only its shape.
        assert isinstance(o["cpu"], float) and isinstance(o["wall"], float), o
        assert o["cpu"] < 100 and o["wall"] < 100, o
    assert (tmp_path / "pipeline.png").stat().st_size > 0


def test_prepare_says_what_it_skips_and_why(tmp_path: Path, monkeypatch, capsys) -> None:
    """A fresh checkout without the float models and with fetching off: the float system
    is skipped with the folder named, before anything is timed, and so are the peers."""
    monkeypatch.setattr(prepare, "FLOAT_DIR", tmp_path / "float-models")
    plan = prepare.prepare(peers=False, fetch=False)
    assert plan["appliance_int8"]["run"] and plan["appliance_fused"]["run"]
    assert not plan["appliance_float"]["run"]
    assert "float-models missing" in plan["appliance_float"]["reason"]
    assert plan["classic"] == {"run": False, "reason": "--no-peers"}
    said = capsys.readouterr().out
    assert "appliance_float   SKIPPED: " in said and "appliance_int8    runs" in said


def test_the_float_system_needs_only_what_float_only_builds() -> None:
    """The float system loads the default detector and FaceNet; `quantize.py --float-only`
    builds those. Asking for every model with a float original (the face mesh, SSD) made
    `make bench` skip the float system on a fresh checkout after building it."""
    names = sorted(p.name for p in prepare.float_files())
    assert names == ["blazeface_full_range_float.tflite", "facenet_float.tflite"], names


def _face_recognition_python() -> str | None:
    """An interpreter with face_recognition: this one, or the benchmark venv's."""
    if importlib.util.find_spec("face_recognition") is not None:
        return sys.executable
    py = ROOT / ".venv-bench" / "bin" / "python"
    if (
        py.exists()
        and subprocess.run(
            [str(py), "-c", "import face_recognition"], capture_output=True
        ).returncode
        == 0
    ):
        return str(py)
    return None


def test_face_recognition_lfw_runs_our_protocol(shared: Path, tmp_path: Path) -> None:
    py = _face_recognition_python()
    if py is None:
        pytest.skip("face_recognition is a benchmark extra (.venv-bench), not installed here")
    lfw = shared / "lfw" / "images"
    (tmp_path / "images").mkdir()
    pairs = [
        ("Abel_Pacheco", 1, 4),
        ("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1),
        ("Akhmed_Zakayev", 1, 3),
        ("Abdel_Madi_Shabneh", 1, "Giancarlo_Fisichella", 1),
    ]
    names = set()
    for p in pairs:
        if len(p) == 3:
            names |= {f"{p[0]}_{p[1]:04d}.jpg", f"{p[0]}_{p[2]:04d}.jpg"}
        else:
            names |= {f"{p[0]}_{p[1]:04d}.jpg", f"{p[2]}_{p[3]:04d}.jpg"}
    for n in names:
        (tmp_path / "images" / n).symlink_to(lfw / n)
    (tmp_path / "pairs.txt").write_text(
        "2\t1\n" + "".join("\t".join(map(str, p)) + "\n" for p in pairs)
    )
    out = tmp_path / "fr.json"
    r = subprocess.run(
        [
            py,
            str(ROOT / "tools" / "evaluate.py"),
            "lfw",
            "--data",
            str(tmp_path),
            "--embedder",
            "face_recognition",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["embedder"] == "face_recognition" and res["pairs"] == 4
    assert res["images"] == len(names) and res["detection_failures"] == 0
    assert len(res["fold_accuracies"]) == 2
    assert 0.3 < res["threshold"] < 0.9  # a distance, near face_recognition's 0.6


def test_time_to_event_smoke_through_the_real_daemon(shared: Path, tmp_path: Path) -> None:
    """Four LFW people walk up in the composed clip; the real daemon, a real broker and a
    subscriber measure at least one granted visit. Shape only: the latency is not judged."""
    clip = tmp_path / "visits.avi"
    enrol = compose_visits_clip(shared / "lfw" / "images", clip, people=4)
    assert len(enrol) == 4 and clip.stat().st_size > 0
    r = bench_time_to_event(clip, enrol, appearances=1)
    assert r["appearances"] >= 1, r
    assert r["enrolled"] + r["enrolment_refused"] == 4
    assert 0 < r["p50_s"] <= r["p95_s"]


def test_web_section_smoke_shape_and_the_browser_on_the_live_view(
    shared: Path, tmp_path: Path
) -> None:
    """One run without and one with the web clients, on 4 LFW visitors: the JSON keeps
    its shape, and in (b) chromium really fetched the live view and showed a picture and
    the token poller was answered. No timing is judged."""
    from tools.benchmarks.web import missing_browser

    why = missing_browser()
    if why:
        pytest.skip(why)
    out = tmp_path / "web.json"
    args = ["web", "--pairs", "1", "--visitors", "4", "--appearances", "1"]
    args += ["--lfw", str(shared / "lfw" / "images"), "--json", str(out)]
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert r["machine"]["load_average"]
    w = r["web"]
    assert w["order"] == ["a", "b"] and len(w["runs"]) == 2
    for cond in ("a", "b"):
        c = w[cond]
        assert c["runs_ok"] == 1 and c["runs_failed"] == 0
        assert c["time_to_event"]["events"] >= 1
        assert set(c["time_to_event"]) == {"events", "p50_s", "p95_s", "run_p50_s"}
        assert set(c["frames_per_s"]) == set(c["cpu_percent"]) == {"median", "min", "max", "runs"}
    assert set(w["ratios_b_over_a"]) == {"frames_per_s", "tte_p50", "tte_p95", "cpu_percent"}
    assert isinstance(w["within_10_percent"], bool)
    a, b = w["runs"]
    assert a["clients"] is None
    assert b["clients"]["page"] == "#live"
    assert b["clients"]["live_requests"] > 0 and b["clients"]["live_image_width"] > 0
    assert b["clients"]["event_polls"].get("200", 0) > 0
    assert set(b["clients"]["event_polls"]) == {"200"}
    assert all(len(run["load_average_after"]) == 3 for run in w["runs"])
