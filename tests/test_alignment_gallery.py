"""Templates remember what aligned them, and a gallery or calibration made through one
alignment is never matched against faces aligned by another: the daemon refuses to start
with a message naming detector.model and the way out, and the matcher skips them."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from appliance.config.schema import load
from appliance.identity.recogniser import Recogniser
from appliance.store.gallery import MIGRATIONS, Gallery


def config(tmp_path: Path, **sections: dict) -> Path:
    cfg = {"storage": {"state_dir": str(tmp_path / "state")}, **sections}
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_migration_marks_older_templates_as_blazeface_aligned(tmp_path):
    """A schema-3 gallery (before alignment was recorded) opens as schema 4 with every
    old template marked 'blazeface', the only alignment recognition could use then."""
    path = tmp_path / "gallery.sqlite3"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("INSERT INTO persons VALUES ('p1', 'Ann', '{}', 0, 0)")
    db.execute(
        "INSERT INTO templates (person_id, embedding, embedder, source, created) "
        "VALUES ('p1', ?, 'facenet-x', 'file', 0)",
        (b"\0" * 16,),
    )
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with Gallery(path) as g:
        assert g.db.execute("PRAGMA user_version").fetchone()[0] == 4
        assert g.alignments("facenet-x") == {"blazeface": 1}
        assert len(g.template_set("facenet-x").person_ids) == 1
        assert len(g.template_set("facenet-x", "mesh").person_ids) == 0
        (ann,) = g.persons("facenet-x", "mesh")
        assert ann.stale_templates == 1


def test_a_blazeface_gallery_is_refused_through_ssd_and_never_matched(tmp_path, shared):
    """Enrolled through BlazeFace, queried through SSD-MobileNet + mesh: the daemon
    refuses to start (detector.model named, with how to re-enrol), and the recogniser
    matches none of the other alignment's templates, even for the same photo."""
    from appliance.app import App

    photo = shared / "scenes" / "examples" / "obama.jpg"
    door = config(tmp_path, models={"embedder": "facenet", "threads": 1})
    with closing(Recogniser.open(load(door))) as r:
        r.enrol("Obama", [photo], "file", "test")
        assert r.identify(_read(photo))[0].match.name
    hall = config(
        tmp_path, models={"embedder": "facenet", "threads": 1}, detector={"model": "ssd_mobilenet"}
    )
    with pytest.raises(ValueError) as err:
        App(load(hall), hall)
    msg = str(err.value)
    assert msg.startswith("detector.model: ssd_mobilenet aligns faces by mesh")
    assert "1 aligned by blazeface" in msg and "re-enrol everyone through ssd_mobilenet" in msg
    with closing(Recogniser.open(load(hall))) as ssd:
        assert ssd.aligned_by == "mesh" and ssd.matcher.size == 0
        (found,) = ssd.identify(_read(photo))
        assert found.match.name is None
        (obama,) = ssd.gallery.persons(ssd.embedder, ssd.aligned_by)
        assert obama.stale_templates == 1
        # Re-enrolled through SSD, the gallery agrees, and FaceNet has a curve measured
        # on mesh-aligned faces (open_set_mesh): nothing left to refuse.
        ssd.delete("Obama", "test")
        ssd.enrol("Obama", [photo], "file", "test")
        assert ssd.gallery.alignments(ssd.embedder) == {"mesh": 1}
        assert ssd.calibration.aligned_by == "mesh" and ssd.alignment_problem() is None
        (found,) = ssd.identify(_read(photo))
        assert found.match.name == "Obama"
    # An embedder with no curve of mesh-aligned faces is refused, never scored with the
    # BlazeFace curve, unless a fixed threshold is set.
    mfn = config(
        tmp_path,
        models={"embedder": "mobilefacenet", "threads": 1},
        detector={"model": "ssd_mobilenet"},
    )
    with pytest.raises(ValueError) as err:
        App(load(mfn), mfn)
    assert "has none for embedder mobilefacenet: recalibrate" in str(err.value)
    assert "--detector ssd_mobilenet --pad 100 --write-calibration" in str(err.value)
    fixed = config(
        tmp_path,
        models={"embedder": "mobilefacenet", "threads": 1},
        detector={"model": "ssd_mobilenet"},
        recognition={"threshold": 0.5},
    )
    with closing(Recogniser.open(load(fixed))) as ssd:
        assert ssd.calibration is None and ssd.alignment_problem() is None
        ssd.enrol("Obama", [photo], "file", "test")
        (found,) = ssd.identify(_read(photo))
        assert found.match.name == "Obama"


def _read(path: Path):
    from appliance.vision.imageio import read_image

    return read_image(path)


def test_an_export_is_imported_only_by_a_device_aligning_the_same_way(tmp_path):
    """A mesh-aligned export is refused by a BlazeFace device (nothing written) and taken
    by a mesh device; an export from before alignment was recorded counts as BlazeFace."""
    import numpy as np

    from appliance.store import portable
    from appliance.store.gallery import GalleryError, Template

    vec = np.ones(8, np.float32) / np.sqrt(8)
    with Gallery(tmp_path / "a.sqlite3") as a:
        a.enrol("Ann", [Template(vec, "facenet-x", "file", aligned_by="mesh")], "test")
        data = portable.export(a, "facenet-x", "mesh")
    assert data["aligned_by"] == "mesh" and len(data["people"]) == 1
    with Gallery(tmp_path / "b.sqlite3") as b:
        with pytest.raises(GalleryError, match=r"aligned by 'mesh'.*detector\.model"):
            portable.import_(b, data, "facenet-x", "test")
        assert b.counts() == (0, 0)
        assert portable.import_(b, data, "facenet-x", "test", aligned_by="mesh") == 1
        assert b.alignments("facenet-x") == {"mesh": 1}
        old = {k: v for k, v in data.items() if k != "aligned_by"}
        with pytest.raises(GalleryError, match="aligned by 'blazeface'"):
            portable.import_(b, old, "facenet-x", "test", aligned_by="mesh")


def test_tiles_follow_the_mode_unless_set(tmp_path):
    """detector.tiles auto: the whole frame at a door, 3x3 tiles in a hall (README,
    Detectors); a set value wins; a bad one names the key and its line."""
    from appliance.config.schema import ConfigError, parse

    assert parse("").detector.grid("access") is None
    hall = parse("recognition:\n  mode: attendance\n")
    assert hall.detector.grid(hall.recognition.mode) == (3, 3)
    assert parse("detector:\n  tiles: none\n").detector.grid("attendance") is None
    assert parse("detector:\n  tiles: 2x3\n").detector.grid("access") == (2, 3)
    with pytest.raises(ConfigError, match=r"line 3: 'detector.tiles': 'x3' is not auto"):
        parse("detector:\n  model: blazeface\n  tiles: x3\n")


def test_the_frame_loop_runs_a_box_only_detector_through_the_mesh(tmp_path, shared):
    """The daemon's frame loop with detector.model ssd_mobilenet: frames of an enrolled
    person are detected, aligned by the mesh, embedded and decided (one access event),
    on a gallery enrolled through the same alignment."""
    import time

    from appliance.app import App
    from appliance.camera.grabber import Frame
    from appliance.vision.imageio import read_image

    photo = shared / "scenes" / "examples" / "obama.jpg"
    cfg = config(
        tmp_path,
        models={"embedder": "facenet", "threads": 1},
        detector={"model": "ssd_mobilenet"},
        recognition={"threshold": 0.6},
    )
    with closing(Recogniser.open(load(cfg))) as r:
        r.enrol("Obama", [photo], "file", "test")
    door = App(load(cfg), cfg)
    try:
        assert door.recogniser.pipeline.aligned_by == "mesh"
        img = read_image(photo)
        base = time.monotonic()
        for i in range(8):
            door.loop.process(Frame(i, base + i / 10, img))
        (track,) = door.tracker.tracks
        assert track.decided
        assert door.stats["events"] == 1
    finally:
        door.outbox.close()
        door.recogniser.close()
