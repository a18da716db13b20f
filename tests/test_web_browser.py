"""The pages in a real browser: Debian's chromium, headless, driven by selenium through
/usr/bin/chromedriver, against a real daemon on the demo source. Screenshots of every
page go to docs/screenshots/ (shown in the README)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from appliance.camera import assets
from appliance.camera.demo import KNOWN_NAME
from appliance.identity.feedback import ADVICE
from tests.test_web_api import wait_empty_scene
from tests.test_web_harness import OWNER, PASSWORD, Client, WebDaemon
from tools.benchmarks.web import chromium, login, missing_browser

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
NOBODY = "nobody in view"  # the live caption with no face in the picture
XSS_NAMES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')

if missing_browser():
    pytest.skip(
        f"{missing_browser()} (make test installs them: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    w = WebDaemon(tmp_path_factory.mktemp("webb"))
    w.start()
    yield w
    assert w.stop() == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def wait(driver, cond, timeout: float = 30.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(cond)


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.4)  # let a poll fill the page
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def no_alert(driver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def fetch(driver, url: str, method: str = "GET", headers: dict | None = None) -> dict:
    """fetch() from inside the page, with its cookies: what the page's own script can do."""
    return driver.execute_async_script(
        """const [url, method, headers, done] = arguments;
        fetch(url, {method, headers, credentials: 'same-origin'})
          .then(async r => done({status: r.status,
            text: new TextDecoder('utf-8', {ignoreBOM: true}).decode(await r.arrayBuffer())}))
          .catch(e => done({status: 0, text: String(e)}));""",
        url,
        method,
        headers or {},
    )


def test_main_flow_in_chromium(web, browser):
    d, base = browser, web.base
    # a wrong password: refused, still on the login page
    login(d, base, OWNER, "not the password")
    wait(d, lambda d: "wrong user name or password" in d.find_element(By.ID, "login-error").text)
    shot(d, "login")
    login(d, base, OWNER, PASSWORD)
    wait(d, ec.visibility_of_element_located((By.ID, "nav")))
    assert d.find_element(By.ID, "brand").text.endswith(OWNER)

    # enrol the demo person by upload; one result per photo
    d.get(base + "/#people")
    wait(d, ec.presence_of_element_located((By.ID, "enrol-name")))
    d.find_element(By.ID, "enrol-name").send_keys(KNOWN_NAME)
    d.find_element(By.ID, "enrol-photos").send_keys(str(assets.path("astronaut.png")))
    d.find_element(By.ID, "enrol-submit").click()
    wait(d, lambda d: f"Enrolled {KNOWN_NAME}" in d.find_element(By.ID, "enrol-results").text)
    assert "accepted" in d.find_element(By.ID, "enrol-results").text
    wait(d, lambda d: KNOWN_NAME in d.find_element(By.ID, "people-rows").text)

    # names are text, never markup: no alert runs, the name shows as typed
    api = Client(base)
    assert api.login().status == 200
    photo = assets.path("astronaut.png").read_bytes()
    for i, name in enumerate(XSS_NAMES):
        r = api.upload(
            "/api/v1/people", [("photos", f"x{i}.png", photo)], {"name": name, "force": "true"}
        )
        assert r.status == 201, r.body
    d.refresh()
    wait(d, lambda d: XSS_NAMES[1] in d.find_element(By.ID, "people-rows").text)
    assert XSS_NAMES[0] in d.find_element(By.ID, "people-rows").text
    assert not d.find_elements(By.CSS_SELECTOR, "#people-rows img, #people-rows script")
    # ...and on the person view, whose templates table shows the enrolment quality
    link = next(
        a
        for a in d.find_elements(By.CSS_SELECTOR, "#people-rows a[data-person]")
        if a.text == XSS_NAMES[1]
    )
    link.click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#template-rows tr"))
    details = d.find_element(By.ID, "person-details")
    assert XSS_NAMES[1] in details.text and "http" in details.text
    assert not d.find_elements(By.CSS_SELECTOR, "#person-details script, #person-details img")
    no_alert(d)
    for name in XSS_NAMES:
        pid = next(
            p["id"]
            for p in api.request("GET", "/api/v1/people").json()["people"]
            if p["name"] == name
        )
        assert api.request("DELETE", f"/api/v1/people/{pid}").status == 200

    # a granted event appears on the events page without a reload
    d.get(base + "/#events")
    wait(d, ec.presence_of_element_located((By.ID, "event-rows")))
    marker = d.find_element(By.ID, "event-rows")
    d.execute_script("window.__same_page = true")
    wait(
        d, lambda d: d.find_elements(By.CSS_SELECTOR, '#event-rows tr[data-decision="granted"]'), 90
    )
    assert d.execute_script("return window.__same_page") is True  # no reload happened
    assert marker.is_displayed()
    shot(d, "events")

    # the attendance CSV the page links to: BOM, header, the person, ISO date
    d.get(base + "/#attendance")
    link = wait(d, ec.presence_of_element_located((By.ID, "attendance-csv")))
    wait(d, lambda d: KNOWN_NAME in d.find_element(By.ID, "attendance-rows").text)
    shot(d, "attendance")
    got = fetch(d, link.get_attribute("href"))
    assert got["status"] == 200 and got["text"].startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(got["text"].lstrip("\ufeff"))))
    assert rows and rows[0]["name"] == KNOWN_NAME and len(rows[0]["date"]) == 10

    # a POST without the CSRF header, from the logged-in page itself: refused
    r = fetch(d, base + "/api/v1/tokens", "POST", {"Content-Type": "application/json"})
    assert r["status"] == 403 and "CSRF" in r["text"]

    for page in ("live", "door", "rules", "system"):
        d.get(base + f"/#{page}")
        time.sleep(1.5 if page in ("live", "system") else 0.5)
        if page == "live":  # what the picture shows, also as text: a face, named or not
            wait(d, lambda d: d.find_element(By.ID, "live-caption").text not in ("", NOBODY))
        shot(d, page)
    assert "fps" in d.find_element(By.TAG_NAME, "main").text

    # delete the person (confirm dialog), then log out
    d.get(base + "/#people")
    btn = wait(
        d, ec.element_to_be_clickable((By.CSS_SELECTOR, f'button[data-delete="{KNOWN_NAME}"]'))
    )
    btn.click()
    wait(d, ec.alert_is_present()).accept()
    wait(d, lambda d: KNOWN_NAME not in d.find_element(By.ID, "people-rows").text)
    assert KNOWN_NAME not in [
        p["name"] for p in api.request("GET", "/api/v1/people").json()["people"]
    ]

    # enrol from the camera: live feedback while the demo person walks up, then the result
    d.find_element(By.ID, "capture-name").send_keys(KNOWN_NAME)
    wait_empty_scene(api)  # start before the demo person walks in, not while they stand
    d.find_element(By.ID, "capture-submit").click()
    sentences = set(ADVICE.values())
    said: set[str] = set()

    def feedback_then_result(d) -> str:
        # One script, so the line cannot be replaced between finding and reading it.
        text, result = d.execute_script(
            "const f = document.getElementById('capture-feedback'),"
            " r = document.getElementById('capture-result');"
            "return [f ? f.textContent : '', r ? r.textContent : ''];"
        )
        if text in sentences and not said & sentences:  # the first live sentence
            d.save_screenshot(str(SHOTS / "enrol_camera.png"))
        said.add(text)
        return result

    result = wait(d, feedback_then_result, 90)
    heard = {t for t in said if t in sentences or t.startswith(ADVICE["good"])}
    assert heard, (said, result)
    assert result.startswith("Accepted"), (said, result)
    wait(d, lambda d: KNOWN_NAME in d.find_element(By.ID, "people-rows").text)
    d.find_element(By.CSS_SELECTOR, f'#people-rows a[data-person="{KNOWN_NAME}"]').click()
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#template-rows tr")) == 3)
    assert d.find_element(By.ID, "template-rows").text.count("camera") == 3
    shot(d, "people")
    d.find_element(By.ID, "logout").click()
    wait(d, ec.presence_of_element_located((By.ID, "login-user")))
    assert fetch(d, base + "/api/v1/people")["status"] == 401
