"""Bad input is refused with a reason; config errors name key and line; the CLI works."""

import json

import cv2
import numpy as np
import pytest

from appliance.cli import main
from appliance.config.schema import ConfigError, parse
from appliance.vision.imageio import ImageError, decode_image


def _png(h, w):
    return cv2.imencode(".png", np.zeros((h, w, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"%PDF-1.7\n....", "not an image this appliance reads; accepted: JPEG, PNG, WebP"),
        (b"GIF89a", "truncated GIF header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated JPEG"),
    ],
)
def test_bad_bytes_refused(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_decompression_bomb_refused_before_decode():
    bomb = cv2.imencode(".png", np.zeros((20000, 20000), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="20000x20000"):
        decode_image(bomb)


def test_truncated_png_refused():
    data = _png(64, 64)
    with pytest.raises(ImageError):
        decode_image(data[: len(data) // 2])


def test_good_png_decodes_to_rgb():
    img = np.zeros((10, 12, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    out = decode_image(cv2.imencode(".png", img)[1].tobytes())
    assert out.shape == (10, 12, 3) and out[0, 0].tolist() == [255, 0, 0]


def test_config_errors_name_key_and_line():
    text = "camera:\n  source: demo\nmodels:\n  threads: many\n  embeder: facenet\nextra: 1\n"
    with pytest.raises(ConfigError) as err:
        parse(text)
    msgs = "\n".join(err.value.problems)
    assert "line 4: 'models.threads': expected a int" in msgs
    assert "line 5: 'models.embeder': unknown key" in msgs
    assert "line 6: 'extra': unknown key" in msgs


def test_config_yaml_of_the_repo_is_valid(capsys):
    assert main(["validate-config", "config.yaml"]) == 0


def test_validate_config_fails_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("detector:\n  score_threshold: 2\n")
    assert main(["validate-config", str(bad)]) == 2
    assert "line 2: 'detector.score_threshold': 2.0 is outside" in capsys.readouterr().err


def test_cli_detect_and_verify(tmp_path, capsys, astronaut):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert main(["detect", str(p)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out[0]["faces"]) == 1
    assert main(["verify", str(p), str(p)]) == 0
    v = json.loads(capsys.readouterr().out)
    assert v["verdict"] == "same person" and v["cosine"] > 0.99


def test_cli_refuses_a_corrupt_image(tmp_path, capsys):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0garbage")
    assert main(["detect", str(p)]) == 1
    assert "broken.jpg" in capsys.readouterr().err


def test_config_refuses_numbers_too_large_for_a_float():
    """Found by the command fuzz: `set` with a 400-digit margin raised OverflowError."""
    with pytest.raises(ConfigError, match=r"recognition\.margin'.*too large"):
        parse("recognition:\n  margin: " + "9" * 400 + "\n")


def test_missing_secret_files_fail_at_start_naming_key_and_line(tmp_path, capsys):
    """A named but missing secret or certificate is a start-up error (exit 2), not a
    daemon that later refuses every command or cannot reach its broker."""
    key = tmp_path / "command-key"
    key.write_text("ab" * 32)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"commands:\n  key_file: {key}\nmqtt:\n  tls: true\n"
        f"  ca_file: {tmp_path / 'no-ca.pem'}\n"
        f"  password_file: {tmp_path / 'no-password'}\n"
    )
    for argv in (["validate-config", str(cfg)], ["-c", str(cfg), "run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "line 5: 'mqtt.ca_file': cannot read the file" in err
        assert "line 6: 'mqtt.password_file': cannot read the file" in err
        assert "commands.key_file" not in err  # that one exists
