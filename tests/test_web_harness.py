"""Not tests: a real daemon on the demo source with the web server on, and an HTTP client.

One daemon per test module (model loading is the slow part); the owner account is made
by the real CLI (`appliance user add --password-stdin`) before the daemon starts.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.daemon_harness import ROOT, DaemonProcess
from tools.broker import Broker, free_port

OWNER, PASSWORD = "owner", "correct horse battery staple"


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """urllib with a cookie jar: a browser's session without the browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        csrf: bool = True,
    ) -> Reply:
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if csrf and self.csrf and method != "GET":
            h.setdefault("X-CSRF-Token", self.csrf)
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(req, timeout=120) as r:
                return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.headers, exc.read())

    def login(self, user: str = OWNER, password: str = PASSWORD) -> Reply:
        r = self.request("POST", "/api/v1/login", {"user": user, "password": password})
        if r.status == 200:
            self.csrf = r.json()["csrf"]
        return r

    def upload(
        self, path: str, files: list[tuple[str, str, bytes]], fields: dict[str, str]
    ) -> Reply:
        data, ctype = multipart(files, fields)
        return self.request("POST", path, raw=data, headers={"Content-Type": ctype})


def multipart(files: list[tuple[str, str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    """(field, filename, bytes) files and text fields as multipart/form-data."""
    b = uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, name, blob in files:
        out.append(
            f'--{b}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + blob
            + b"\r\n"
        )
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={b}"


class WebDaemon:
    def __init__(self, tmp: Path, settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.broker = Broker(tmp / "broker")
        self.port = free_port()
        web = {"enabled": True, "listen": f"127.0.0.1:{self.port}", "lockout_s": 5.0}
        cfg = {"web": web, "decision": {"cooldown_s": 2.0}}
        for k, v in (settings or {}).items():
            cfg.setdefault(k, {}).update(v)
        self.tmp = tmp
        self.settings = cfg
        self.daemon: DaemonProcess | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        assert self.daemon is not None
        return subprocess.run(
            [sys.executable, "-m", "appliance", "-c", str(self.daemon.config), *args],
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, owner: bool = True) -> None:
        self.broker.start()
        self.daemon = DaemonProcess(self.tmp / "d", self.broker.port, "demo", self.settings)
        if owner:
            r = self.cli("user", "add", OWNER, "--password-stdin", stdin=PASSWORD + "\n")
            assert r.returncode == 0, r.stderr
        self.daemon.start()
        DaemonProcess.alive.remove(self.daemon)  # ours lives for the module, not one test
        end = time.time() + 120
        while time.time() < end:
            try:
                with urllib.request.urlopen(self.base + "/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert self.daemon.proc is not None and self.daemon.proc.poll() is None, (
                self.daemon.log_text()[-3000:]
            )
            time.sleep(0.3)
        raise TimeoutError(self.daemon.log_text()[-3000:])

    def stop(self) -> int:
        rc = self.daemon.stop() if self.daemon else 0
        self.broker.stop()
        return rc
