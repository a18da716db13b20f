"""`appliance check-liveness`: real clips through the device's detector, mesh and
verdict; a bad file gets its own error and exit code 1, the others are still judged."""

from __future__ import annotations

import json

import pytest

from appliance.cli import main


def test_check_liveness_judges_a_real_clip_and_a_real_print_and_names_a_bad_file(
    shared, tmp_path, capsys
):
    """The Hamilton clip (a real person, turning while he talks) is judged live; the
    frames of a real NUAA print session are judged an attack, with the planarity under
    its threshold; a missing path is named on stderr without stopping the others."""
    ham = shared / "scenes" / "examples" / "short_hamilton_clip.mp4"
    prints = shared / "liveness" / "nuaa" / "ImposterRaw" / "0001"
    if not prints.is_dir():
        pytest.skip(f"the liveness data is not at {prints.parent.parent}")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({"liveness": {"mode": "planarity"}}))
    missing = tmp_path / "nothing.mp4"
    code = main(["-c", str(cfg), "check-liveness", str(ham), str(prints), str(missing), "--json"])
    out = capsys.readouterr()
    assert code == 1
    assert str(missing) in out.err
    rows = {r["file"]: r for r in json.loads(out.out)}
    assert rows[str(ham)]["verdict"] == "live", rows[str(ham)]
    assert rows[str(ham)]["decided_s"] <= 1.5
    p = rows[str(prints)]
    assert p["verdict"] == "attack", p
    plan = p["liveness"]["signals"]["planarity"]
    assert plan["score"] < plan["threshold"]
    assert "error" in rows[str(missing)]
    assert {r["configured_mode"] for r in rows.values() if "error" not in r} == {"planarity"}


def test_check_liveness_refuses_a_file_that_is_no_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    empty = tmp_path / "frames"
    empty.mkdir()
    assert main(["check-liveness", str(bad), str(empty)]) == 1
    err = capsys.readouterr().err
    assert "not a video" in err and "no .jpg" in err
