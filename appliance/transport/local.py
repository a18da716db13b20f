"""The local control socket: the CLI talks to the running daemon through it.

Why a socket and not the CLI writing the gallery file itself: the daemon's command
service is the one write path, so a CLI delete revokes at once (the same command an
MQTT delete runs), its side effects (Home Assistant, retained topics, undelivered
events) follow from the same domain events, and enrolment runs the duplicate check
against the gallery the door is using. With no daemon listening, the CLI works on the
file as before, and the daemon, when it runs, notices such changes by SQLite's
`data_version` (see the recogniser).

Who may use it: whoever can open the socket file, which is created 0600 in the state
directory (the service user, and root). The actor recorded in the audit log is the
peer's user, from the kernel (`SO_PEERCRED`), not from anything the client says.
Requests and replies are one JSON line each: {"command": "delete", "args": {...}}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from appliance.config.schema import Config
from appliance.control.bus import CommandBus
from appliance.control.commands import CommandError, from_args

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST = 128 * 1024 * 1024  # ten photos as base64, with room to spare
REPLY_TIMEOUT_S = 180.0  # a camera enrolment may take its whole capture timeout


def socket_path(cfg: Config) -> Path:
    return cfg.storage.path() / SOCKET_NAME


def _peer(conn: socket.socket) -> str:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except (OSError, KeyError):
        return "cli:unknown"


def _read_line(f: Any, limit: int) -> bytes:
    line = f.readline(limit + 1)
    if len(line) > limit:
        raise CommandError("too_large", f"request larger than {limit} bytes")
    return line


class LocalServer:
    def __init__(self, path: Path, bus: CommandBus) -> None:
        self.path = path
        self.bus = bus
        self.sock: socket.socket | None = None

    def start(self) -> None:
        if len(os.fsencode(self.path)) >= 104:  # sun_path is 104-108 bytes
            log.warning("control socket path too long (%s): the CLI will edit files", self.path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a daemon that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        self.sock = sock
        threading.Thread(target=self._accept, name="control-socket", daemon=True).start()
        log.info("control socket at %s", self.path)

    def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.sock = None

    def _accept(self) -> None:
        sock = self.sock
        while sock is not None and sock is self.sock:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="control", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rf:
            try:
                req = json.loads(_read_line(rf, MAX_REQUEST))
                if not isinstance(req, dict) or not isinstance(req.get("command"), str):
                    raise CommandError("malformed", "a request is {'command': ..., 'args': {...}}")
                args = req.get("args") or {}
                if not isinstance(args, dict):
                    raise CommandError("malformed", "'args' must be an object")
                cmd = from_args(req["command"], args, source="file")
                result = self.bus.submit(cmd, _peer(conn)).result(REPLY_TIMEOUT_S)
                reply: dict[str, Any] = {"ok": True, "result": result}
            except CommandError as exc:
                reply = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                reply = {"ok": False, "error": {"code": "malformed", "message": str(exc)}}
            except TimeoutError:
                reply = {"ok": False, "error": {"code": "timeout", "message": "no answer"}}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")


class NoDaemon(Exception):
    """Nothing listens on the control socket: the caller works on the files itself."""


def request(path: Path, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send one command to the running daemon; its reply, or NoDaemon."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, OSError) as exc:
            raise NoDaemon(str(exc)) from exc
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        with sock.makefile("rb") as rf:
            line = rf.readline()
        if not line:
            raise CommandError("internal", "the daemon closed the connection without an answer")
        return json.loads(line)
    finally:
        sock.close()
