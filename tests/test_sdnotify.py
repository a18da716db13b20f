"""sd_notify helper: the exact datagrams a real AF_UNIX socket receives."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in tmp_path standing in for systemd, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    if len(os.fsencode(path)) >= 108:  # sun_path limit
        pytest.skip(f"tmp_path too long for an AF_UNIX address: {path}")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def _received(s: socket.socket) -> bytes:
    return s.recv(4096)


def test_ready_with_status(listener: socket.socket) -> None:
    n = Notifier()
    assert n.enabled
    assert n.ready("3 people enrolled")
    assert _received(listener) == b"READY=1\nSTATUS=3 people enrolled"


def test_ready_without_status(listener: socket.socket) -> None:
    assert Notifier().ready()
    assert _received(listener) == b"READY=1"


def test_status_is_one_line(listener: socket.socket) -> None:
    n = Notifier()
    assert n.status("camera ok")
    assert _received(listener) == b"STATUS=camera ok"
    assert n.status("two\nlines")
    assert _received(listener) == b"STATUS=two lines"


def test_watchdog_and_stopping(listener: socket.socket) -> None:
    n = Notifier()
    assert n.watchdog()
    assert _received(listener) == b"WATCHDOG=1"
    assert n.stopping()
    assert _received(listener) == b"STOPPING=1"


def test_reloading_sends_monotonic_usec(listener: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _received(listener).split(b"\n")
    assert first == b"RELOADING=1"
    name, value = second.split(b"=")
    assert name == b"MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_notify_joins_fields(listener: socket.socket) -> None:
    assert Notifier().notify("A=1", "B=2")
    assert _received(listener) == b"A=1\nB=2"


def test_explicit_path_overrides_environment(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.environ["NOTIFY_SOCKET"]
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().enabled
    assert Notifier(path).watchdog()
    assert _received(listener) == b"WATCHDOG=1"


def test_no_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.notify("READY=1") is False
    assert n.ready("x") is False
    assert n.watchdog() is False


def test_relative_path_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
    assert not Notifier().enabled


def test_send_failure_returns_false(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.enabled
    assert n.notify("READY=1") is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux")
def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier().ready("up")
        assert s.recv(4096) == b"READY=1\nSTATUS=up"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("30000000", "junk", None),
        (None, None, None),
        ("0", None, None),
        ("junk", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for var, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(var, value)
    assert Notifier().watchdog_interval() == expected
