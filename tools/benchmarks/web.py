"""web: the owner's pages must never slow the door (issue 18).

The time-to-event run (tools/benchmarks/time_to_event.py: the real daemon, a real
Mosquitto, the composed LFW visits clip at 30 fps in real time) with `web.enabled` on a
free loopback port and an owner account and API token made with the CLI before the daemon
starts, as an installer would. Each run is one of two conditions:

  a: nobody on the pages;
  b: Debian's chromium, headless (selenium through /usr/bin/chromedriver), logged in on
     the live view (it fetches live.jpg every 0.5 s and the latest events every 2 s),
     plus a script polling GET /api/v1/events with the token once a second.

Per run: frames the loop processed per second, time-to-event p50/p95 and the events they
rest on, the daemon's CPU (% of one core). Runs alternate a, b, a, b, ... so the shared
machine's load drift shows as spread within each condition rather than as a difference
between them; the load average is recorded with every run. The browser runs on the same
cores as the daemon here (at a door it runs on a phone), so (b) is the harder case.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from tools.benchmarks.common import ROOT
from tools.benchmarks.daemon import bench_daemon
from tools.benchmarks.time_to_event import TTE_CONFIG, compose_visits_clip, run_visits

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
OWNER = "bench-owner"
POLL_S = 1.0
LIMIT = 0.10  # issue 18: frames/s and time-to-event within 10 % of the figures without web


def chromium(profile: Path) -> Any:
    """Debian's chromium, headless, through chromedriver: what tests/test_web_browser.py
    drives too. `profile` is a fresh user-data directory (no cookies carried over)."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=opts)
    driver.set_script_timeout(30)
    return driver


def login(driver: Any, base: str, user: str, password: str) -> None:
    """Type `user` and `password` into the login page and submit (no wait for the result:
    the browser test also checks a wrong password's refusal)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, "login-user")))
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()


def missing_browser() -> str | None:
    """Why (b) cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        return "Debian's chromium and chromium-driver are not installed"
    return None


class Owner:
    """The owner account and an API token, made by `appliance user ...` on the daemon's
    config before it starts (the CLI writes users.sqlite3 in the state directory)."""

    def __init__(self) -> None:
        self.password = secrets.token_urlsafe(16)
        self.token = ""

    @staticmethod
    def _cli(config: Path, *args: str, stdin: str = "") -> str:
        r = subprocess.run(
            [sys.executable, "-m", "appliance", "-c", str(config), *args],
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            raise RuntimeError(f"appliance {args[0]} {args[1]} failed: {r.stderr.strip()}")
        return r.stdout

    def create(self, config: Path) -> None:
        self._cli(config, "user", "add", OWNER, "--password-stdin", stdin=self.password + "\n")
        self.token = self._cli(config, "user", "token", "create", OWNER, "bench").strip()


class Watchers:
    """Condition (b): the browser on the live view and the token poller, from `start`
    (before the clip runs) to `stop`, which says what they did."""

    def __init__(self, base: str, owner: Owner, profile: Path) -> None:
        self.base = base
        self.owner = owner
        self.profile = profile
        self.driver: Any = None
        self.polls: dict[str, int] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="events-poller", daemon=True)

    def start(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        d = self.driver = chromium(self.profile)
        login(d, self.base, OWNER, self.owner.password)
        WebDriverWait(d, 60).until(ec.presence_of_element_located((By.ID, "live-img")))
        # live.jpg twice a second would overflow the default 250 resource timings
        d.execute_script("performance.setResourceTimingBufferSize(100000)")
        self._poller.start()

    def _poll(self) -> None:
        req = urllib.request.Request(
            self.base + "/api/v1/events",
            headers={"Authorization": f"Bearer {self.owner.token}"},
        )
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    json.loads(r.read())
                    key = str(r.status)
            except urllib.error.HTTPError as exc:
                key = str(exc.code)
            except (OSError, ValueError) as exc:
                key = type(exc).__name__
            self.polls[key] = self.polls.get(key, 0) + 1
            next_at += POLL_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(35)
        out: dict[str, Any] = {"event_polls": self.polls}
        if self.driver is not None:
            try:
                out["live_requests"] = self.driver.execute_script(
                    "return performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/api/v1/live.jpg')).length"
                )
                out["live_image_width"] = self.driver.execute_script(
                    "const i = document.getElementById('live-img'); return i ? i.naturalWidth : 0"
                )
                out["page"] = self.driver.execute_script("return location.hash || '#live'")
            finally:
                self.driver.quit()
        return out


def _wait_health(base: str, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(base + "/api/v1/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def one_run(
    condition: str, clip: Path, enrol: list[tuple[str, bytes]], appearances: int, tmp: Path
) -> dict[str, Any]:
    """One daemon, one condition ("a" or "b"), the visits clip until `appearances`."""
    from tools.broker import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = {
        **TTE_CONFIG,
        "web": {"enabled": True, "listen": f"127.0.0.1:{port}"},
        "mqtt": {"state_interval_s": 1.0},  # frames/s from counters a second apart
    }
    owner = Owner()
    watchers = Watchers(base, owner, tmp / f"chromium-{port}") if condition == "b" else None
    with bench_daemon(clip.suffix, cfg, owner.create) as d:
        if not d.online.is_set() or not _wait_health(base):
            return {"condition": condition, "error": "daemon or web server not up in 60 s"}
        try:
            r = run_visits(d, clip, enrol, appearances, watchers.start if watchers else None)
        finally:
            clients = watchers.stop() if watchers else None
    r.pop("relay", None)  # the door's own figure: time-to-event's section has it
    return {
        "condition": condition,
        **r,
        "clients": clients,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _spread(xs: list[float]) -> dict[str, Any]:
    return {
        "median": round(float(np.median(xs)), 3),
        "min": round(float(min(xs)), 3),
        "max": round(float(max(xs)), 3),
        "runs": [round(float(x), 3) for x in xs],
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per condition: frames/s and CPU as median (min, max, every run), time-to-event
    p50/p95 over every run's events pooled; then b/a and the 10 % verdict."""
    out: dict[str, Any] = {}
    for cond in ("a", "b"):
        ok = [r for r in runs if r["condition"] == cond and r.get("appearances")]
        samples = [x for r in ok for x in r["samples_s"]]
        fps = [r["frames_per_s"] for r in ok if r.get("frames_per_s")]
        out[cond] = {
            "runs_ok": len(ok),
            "runs_failed": sum(r["condition"] == cond for r in runs) - len(ok),
            "frames_per_s": _spread(fps) if fps else None,
            "cpu_percent": _spread([r["cpu_percent"] for r in ok]) if ok else None,
            "time_to_event": {
                "events": len(samples),
                "p50_s": round(float(np.percentile(samples, 50)), 3),
                "p95_s": round(float(np.percentile(samples, 95)), 3),
                "run_p50_s": [r["p50_s"] for r in ok],
            }
            if samples
            else None,
        }
    a, b = out["a"], out["b"]
    if not all(x["frames_per_s"] and x["time_to_event"] for x in (a, b)):
        out["ratios_b_over_a"] = None
        out["within_10_percent"] = False
        out["verdict_reason"] = "a condition has no frames/s or no granted event"
        return out
    ratios = {
        "frames_per_s": b["frames_per_s"]["median"] / a["frames_per_s"]["median"],
        "tte_p50": b["time_to_event"]["p50_s"] / a["time_to_event"]["p50_s"],
        "tte_p95": b["time_to_event"]["p95_s"] / a["time_to_event"]["p95_s"],
        "cpu_percent": b["cpu_percent"]["median"] / a["cpu_percent"]["median"],
    }
    out["ratios_b_over_a"] = {k: round(v, 3) for k, v in ratios.items()}
    out["within_10_percent"] = bool(
        ratios["frames_per_s"] >= 1 - LIMIT
        and ratios["tte_p50"] <= 1 + LIMIT
        and ratios["tte_p95"] <= 1 + LIMIT
    )
    out["verdict_rule"] = (
        "b/a frames/s >= 0.9 and b/a time-to-event p50 and p95 <= 1.1 (CPU is reported, "
        "not judged: serving the pages costs the daemon some)"
    )
    return out


def bench_web(lfw: Path, people: int = 20, appearances: int = 20, pairs: int = 2) -> dict[str, Any]:
    """`pairs` times a then b, each a fresh daemon on the same composed visits clip."""
    if not lfw.is_dir():
        return {"error": f"no LFW images at {lfw} (the visits clip is composed from them)"}
    why = missing_browser()
    if why:
        return {"error": f"condition b needs a browser: {why}"}
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        clip = Path(tmp) / "visits.avi"
        enrol = compose_visits_clip(lfw, clip, people=people)
        for _ in range(pairs):
            for cond in ("a", "b"):
                runs.append(one_run(cond, clip, enrol, appearances, Path(tmp)))
                print("web", json.dumps({k: v for k, v in runs[-1].items() if k != "samples_s"}))
    return {
        **summarise(runs),
        "runs": runs,
        "order": [r["condition"] for r in runs],
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "source": f"{people} LFW people in turn, 1 s empty then 1.5 s of a second photo, "
        "30 fps (time-to-event's visits clip), until "
        f"{appearances} granted visits per run",
        "clients_b": "headless chromium logged in on #live (live.jpg every 0.5 s, events "
        f"every 2 s) + GET /api/v1/events with a token every {POLL_S:g} s",
    }
