"""Enrolment and identification end to end: real int8 models, real photos, real SQLite,
through the service and through every `appliance` gallery command."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.config.schema import Config, StorageConfig
from appliance.identity.gates import EnrolmentRefused
from appliance.identity.recogniser import Recogniser, open_gallery
from appliance.vision.imageio import ImageError


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def service(tmp_path, pipeline):
    cfg = Config(storage=StorageConfig(str(tmp_path / "state")))
    svc = Recogniser(cfg, pipeline, open_gallery(cfg))
    yield svc
    svc.close()


def _stranger(group):
    """The largest face of the group photo, cut out so it is the only face."""
    return group[0 : group.shape[0] // 2, : group.shape[1] // 3]


def test_enrol_then_identify_and_refuse_strangers(service, astronaut, group):
    person = service.enrol("Eileen", [astronaut], "file", "test")
    assert person.templates == 1
    found = service.identify(astronaut)
    assert len(found) == 1 and found[0].match.name == "Eileen"
    d = found[0].as_dict()
    assert d["score"] > 0.9 and d["threshold"] == service.thresholds().accept
    strangers = service.identify(group)
    assert len(strangers) >= 3
    assert all(not s.match.accepted for s in strangers)  # nobody in the group is Eileen


def test_duplicate_check_names_who_it_looks_like(service, astronaut):
    service.enrol("Eileen", [astronaut], "file", "test")
    with pytest.raises(EnrolmentRefused, match="looks like Eileen"):
        service.enrol("Someone Else", [astronaut[:, ::-1].copy()], "file", "test")
    assert [p.name for p in service.gallery.persons()] == ["Eileen"]
    service.enrol("Someone Else", [astronaut], "file", "test", force=True)
    assert len(service.gallery.persons()) == 2


def test_gates_refuse_with_a_reason_and_change_nothing(service, astronaut, group):
    small = cv2.resize(astronaut, (64, 64))
    with pytest.raises(EnrolmentRefused, match="too small"):
        service.enrol("Eileen", [small], "file", "test")
    with pytest.raises(EnrolmentRefused, match="faces in the photo"):
        service.enrol("Group", [group], "file", "test")
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 6)
    with pytest.raises(EnrolmentRefused, match="blurred"):
        service.enrol("Eileen", [blurred], "file", "test")
    with pytest.raises(EnrolmentRefused, match="no face"):
        service.enrol("Eileen", [np.full((300, 300, 3), 128, np.uint8)], "file", "test")
    # a good photo followed by a bad one: the batch is all or nothing
    with pytest.raises(EnrolmentRefused):
        service.enrol("Eileen", [astronaut, small], "file", "test")
    assert service.gallery.counts() == (0, 0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8\xff\xe0\x00\x10JFIF-truncated",
        b"GIF89a",
        cv2.imencode(".png", np.zeros((20000, 20000), np.uint8))[1].tobytes(),
    ],
)
def test_bad_image_bytes_refused_gallery_unchanged(service, data):
    with pytest.raises(ImageError):
        service.enrol("Eileen", [data], "mqtt", "test")
    assert service.gallery.counts() == (0, 0)


def test_group_enrolment_with_largest_face(service, group):
    """`largest` takes the biggest face of a group, which still has to pass the gates."""
    # The largest face in this photo is turned well away (yaw about -1).
    need = (
        r"face turned away: frontal 0\.\d\d .*"
        r"enrolment needs at least 0\.3 \(enrolment\.min_frontal\)"
    )
    with pytest.raises(EnrolmentRefused, match=need) as err:
        service.enrol("Front", [group], "file", "test", largest=True)
    assert err.value.code == "not_frontal"
    assert service.gallery.counts() == (0, 0)


def test_cli_gallery_commands_end_to_end(tmp_path, capsys, astronaut, group):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  state_dir: {tmp_path / 'state'}\n")
    a = _write(tmp_path / "eileen.png", astronaut)
    g = _write(tmp_path / "group.jpg", group)
    c = ["-c", str(cfg)]
    assert main([*c, "enroll", "Eileen", str(a)]) == 0
    assert "enrolled Eileen" in capsys.readouterr().out
    assert main([*c, "enroll", "Group", str(g)]) == 1
    assert "faces in the photo" in capsys.readouterr().err
    assert main([*c, "people", "list", "--json"]) == 0
    people = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in people] == ["Eileen"] and people[0]["templates"] == 1
    assert main([*c, "identify", "--json", str(a), str(g)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["results"][0]["faces"][0]["person"] == "Eileen"
    assert all(f["person"] == "unknown" for f in res["results"][1]["faces"])
    assert main([*c, "people", "rename", "Eileen", "Eileen Collins"]) == 0
    export = tmp_path / "export.json"
    assert main([*c, "gallery", "export", str(export)]) == 0
    assert main([*c, "people", "delete", "Eileen Collins"]) == 0
    capsys.readouterr()
    assert main([*c, "people", "list"]) == 0
    assert capsys.readouterr().out == ""
    assert main([*c, "gallery", "import", str(export)]) == 0
    assert main([*c, "identify", str(a)]) == 0
    assert "Eileen Collins" in capsys.readouterr().out
    assert main([*c, "people", "delete", "Nobody"]) == 1


def test_cli_enroll_from_dir_on_shared_photos(tmp_path, capsys, shared):
    ex = shared / "scenes" / "examples"
    people = tmp_path / "people"
    for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        (people / name).mkdir(parents=True)
        shutil.copy(ex / photo, people / name / photo)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  state_dir: {tmp_path / 'state'}\n")
    assert main(["-c", str(cfg), "enroll", "--from-dir", str(people)]) == 0
    assert (
        main(
            [
                "-c",
                str(cfg),
                "identify",
                "--json",
                str(ex / "obama2.jpg"),
                str(ex / "two_people.jpg"),
                str(ex / "lin-manuel-miranda.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    res = json.loads(out[out.index("{") :])["results"]
    assert [f["person"] for f in res[0]["faces"]] == ["obama"]
    assert {f["person"] for f in res[1]["faces"]} <= {"obama", "biden", "unknown"}
    assert [f["person"] for f in res[2]["faces"]] == ["unknown"]
