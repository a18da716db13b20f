"""The SQLite gallery, the matcher and the threshold mapping, on real files, no models."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from appliance.identity.matcher import Matcher, Thresholds, decide
from appliance.identity.thresholds import Calibration, resolve
from appliance.store.gallery import SCHEMA_VERSION, Gallery, GalleryError, Template
from appliance.store.portable import export, import_

V = "facenet-test"


def vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def tpl(seed: int, embedder: str = V, thumb: bytes | None = None) -> Template:
    return Template(vec(seed), embedder, "file", {"score": 0.9}, thumb)


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "g.sqlite3") as g:
        yield g


def test_schema_pragmas_and_migration(tmp_path, gallery):
    db = gallery.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    gallery.enrol("Ann", [tpl(1)], "test")
    gallery.close()
    with Gallery(tmp_path / "g.sqlite3") as again:  # reopening does not migrate twice
        assert [p.name for p in again.persons()] == ["Ann"]
    raw = sqlite3.connect(tmp_path / "g.sqlite3")
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(GalleryError, match="newer than this software"):
        Gallery(tmp_path / "g.sqlite3")


def test_enrol_rename_delete_and_audit(gallery):
    p = gallery.enrol("Ann", [tpl(1), tpl(2)], "cli:me", meta={"group": "staff"})
    assert (p.name, p.templates, p.meta) == ("Ann", 2, {"group": "staff"})
    gallery.enrol("ann", [tpl(3)], "mqtt:hub")  # names are case-insensitive: same person
    assert gallery.find("ANN").templates == 3
    gallery.enrol("Bob", [tpl(4)], "t")
    with pytest.raises(GalleryError, match="taken"):
        gallery.rename("Bob", "ann", "t")
    gallery.rename("Ann", "Anna", "cli:me")
    assert gallery.find(p.id).name == "Anna"
    actions = [a["action"] for a in gallery.audit_log()]
    assert actions[:3] == ["rename", "enrol", "create"]


def test_delete_erases_everything_about_the_person(gallery):
    gallery.enrol("Zoë / Front", [tpl(1, thumb=b"jpeg-bytes"), tpl(2)], "t")
    pid = gallery.find("Zoë / Front").id
    assert gallery.thumbnails(pid) == [b"jpeg-bytes"]
    gallery.delete("Zoë / Front", "cli:me")
    assert gallery.persons() == [] and gallery.counts() == (0, 0)
    assert gallery.thumbnails(pid) == []
    log = json.dumps(gallery.audit_log())
    assert "Zo" not in log and "delete" in log
    with pytest.raises(GalleryError, match="no person"):
        gallery.delete("Zoë / Front", "t")
    files = [gallery.path, gallery.path.with_name("g.sqlite3-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    assert "Zoë".encode() not in raw and vec(1).tobytes() not in raw


def test_max_templates_drops_the_oldest(gallery):
    for i in range(5):
        gallery.enrol("Ann", [tpl(i)], "t", max_templates=3)
    ts = gallery.template_set(V)
    assert ts.matrix.shape == (3, 8)
    assert np.allclose(ts.matrix[-1], vec(4)) and not np.isclose(ts.matrix, vec(0)).all(1).any()


def test_other_embedder_versions_are_flagged_not_compared(gallery):
    gallery.enrol("Old", [tpl(1, embedder="facenet-old")], "t")
    gallery.enrol("New", [tpl(2)], "t")
    ts = gallery.template_set(V)
    assert ts.names == ["New"]
    stale = {p.name: p.stale_templates for p in gallery.persons(V)}
    assert stale == {"Old": 1, "New": 0}


def test_export_import_round_trip(tmp_path, gallery):
    gallery.enrol("Ann", [tpl(1), tpl(2)], "t", meta={"role": "owner"})
    gallery.enrol("Bob", [tpl(3)], "t")
    data = json.loads(json.dumps(export(gallery, V)))
    assert data["embedder"] == V and "thumbnail" not in json.dumps(data)
    with Gallery(tmp_path / "other.sqlite3") as g2:
        with pytest.raises(GalleryError, match="re-enrol"):
            import_(g2, data, "mobilefacenet-x", "t")
        assert g2.counts() == (0, 0)
        bad = json.loads(json.dumps(data))
        bad["people"][1]["templates"][0] = {"embedding": "nope"}
        with pytest.raises(GalleryError):
            import_(g2, bad, V, "t")
        assert g2.counts() == (0, 0)  # one transaction: Ann was not half-imported
        assert import_(g2, data, V, "t") == 2
        a, b = gallery.template_set(V), g2.template_set(V)
        assert a.names == b.names or sorted(a.names) == sorted(b.names)
        assert np.allclose(np.sort(a.matrix, 0), np.sort(b.matrix, 0), atol=1e-6)
        assert g2.find("Ann").meta == {"role": "owner"}


def test_matcher_is_one_product_and_updates_in_place(gallery):
    gallery.enrol("Ann", [tpl(1), tpl(2)], "t")
    gallery.enrol("Bob", [tpl(3)], "t")
    m = Matcher(gallery.template_set(V))
    s = m.person_scores(np.stack([vec(2), vec(3)]))
    ann, bob = m.names.index("Ann"), m.names.index("Bob")
    assert s[0, ann] == pytest.approx(1.0, abs=1e-5) and s[1, bob] == pytest.approx(1.0, abs=1e-5)
    m.set_person("cid", "Cid", np.stack([vec(9)]))
    assert m.match(vec(9)[None], Thresholds(0.9, 0.0))[0].name == "Cid"
    m.remove(m.person_ids[ann])
    assert m.names.count("Ann") == 0 and m.template_count == 2
    assert m.match(vec(1)[None], Thresholds(0.9, 0.0))[0].name is None
    m.rename("cid", "Cidney")
    assert m.match(vec(9)[None], Thresholds(0.9, 0.0))[0].name == "Cidney"


def test_open_set_rule_needs_threshold_and_margin():
    th = Thresholds(0.6, 0.05)
    ids, names = ["a", "b"], ["Ann", "Bob"]
    clear, close, low = decide(np.array([[0.8, 0.3], [0.8, 0.78], [0.55, 0.1]]), ids, names, th)
    assert clear.name == "Ann" and clear.margin == pytest.approx(0.5)
    assert close.name is None and close.candidate == "Ann"  # too close to Bob to say
    assert low.name is None and low.as_dict()["person"] == "unknown"
    assert set(low.as_dict()) >= {"score", "threshold", "margin", "margin_required"}


def test_threshold_grows_with_the_gallery_and_meets_its_target():
    rng = np.random.default_rng(0)
    impostor = np.clip(rng.normal(0.2, 0.12, 1_000_000), -1, 1)
    cal = Calibration.from_scores(impostor, 0.05, "synthetic")
    t10 = cal.for_target(0.001, 10).accept
    t1000 = cal.for_target(0.001, 1000).accept
    assert t1000 > t10
    assert cal.stranger_accept(t1000, 1000) <= 0.001
    assert cal.stranger_accept(t1000 - 0.01, 1000) > 0.001 * 0.5  # not absurdly strict
    fixed = resolve(cal, "access", 10, fixed=0.7)
    assert fixed.accept == 0.7 and "fixed" in fixed.why
    assert resolve(cal, "attendance", 10).accept < resolve(cal, "access", 10).accept


CRASH_WRITER = r"""
import sys, numpy as np
from appliance.store.gallery import Gallery, Template
g = Gallery(sys.argv[1])
i = int(sys.argv[2])
while True:
    rng = np.random.default_rng(i)
    tpls = [Template(rng.normal(size=128).astype(np.float32), "v", "file") for _ in range(5)]
    g.enrol(f"person-{i}", tpls, "crash-test")
    print(i, flush=True)
    i += 1
"""


def test_kill_during_enrolment_leaves_gallery_consistent(tmp_path):
    """SIGKILL a writer mid-batch 25 times: every person has all 5 templates or is absent,
    and everything acknowledged is there."""
    path = tmp_path / "g.sqlite3"
    acked: set[int] = set()
    rng = np.random.default_rng(1)
    start = 0
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[1])}
    for _ in range(25):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        first = proc.stdout.readline()  # wait until it is writing
        acked.add(int(first))
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked |= {int(x) for x in out.split()}
        start = max(acked) + 100
    with Gallery(path) as g:
        assert g.integrity() == "ok"
        people = g.persons()
        assert all(p.templates == 5 for p in people)  # no half-enrolled person
        names = {p.name for p in people}
        assert {f"person-{i}" for i in acked} <= names  # nothing acknowledged was lost
        assert len(names) <= len(acked) + 25  # at most one unacknowledged commit per kill


def test_outbox_redacts_a_deleted_person_from_undelivered_events(tmp_path):
    from appliance.store.outbox import Outbox

    box = Outbox(tmp_path / "outbox.sqlite3")
    box.add("e1", "t", {"person_id": "p1", "name": "Annabelle Quux", "candidate": None}, "b")
    box.add("e2", "t", {"person_id": None, "name": None, "candidate": "Annabelle Quux"}, "b")
    box.add("e3", "t", {"person_id": "p2", "name": "Bob", "candidate": "Bob"}, "b")
    assert box.redact_person("p1", "Annabelle Quux") == 2
    got = {p.event_id: p.payload for p in box.pending()}
    assert got["e1"] == {"person_id": "p1", "name": None, "candidate": None}  # still delivered
    assert got["e2"]["candidate"] is None and got["e3"]["name"] == "Bob"
    box.close()
    for f in tmp_path.iterdir():  # not in the file, the write-ahead log or free pages
        assert b"Annabelle Quux" not in f.read_bytes(), f
