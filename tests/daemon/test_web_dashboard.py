"""The web dashboard in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (.ci/web.sh installs both), against a real daemon serving two users.

Selenium rather than Playwright: Playwright drives the browser build it downloads from its
own CDN, which this machine (and CI) cannot reach; Debian's chromium and chromium-driver come
from one source package, so the driver always matches the browser. Screenshots (PNG) go to
pytest's tmp folder and their paths are printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon.conftest import World, put_object
from tests.daemons import bucket_files, wait_for

try:  # a test extra: CI (which installs it) must not skip for want of it
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    if os.environ.get("CI") or os.environ.get("SYNCD_REQUIRE_SERVERS"):
        raise
    pytest.skip("pip install selenium (the test extra)", allow_module_level=True)

WAIT_S = 60.0  # a busy 2-core CI machine: generous, and every wait ends as soon as it can
BOB_BWLIMIT = "32K"
BIG_FILES, BIG_SIZE = 4, 48 * 1024  # 192 KiB at 32 KiB/s: a run of about 6 s
CONFLICTED = "<i>both sides<i>.txt"  # new on both sides with different bytes: a conflict
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">\x01.txt"  # skipped: a control character


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "chromium and chromedriver are needed (bash .ci/web.sh installs them)"
    if os.environ.get("CI") or os.environ.get("SYNCD_REQUIRE_SERVERS"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1600",
    ):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(WAIT_S)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def shots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[webdriver.Chrome, str], Path]:
    def shot(chrome: webdriver.Chrome, name: str) -> Path:
        path = tmp_path / f"dashboard-{name}.png"
        chrome.get_screenshot_as_file(str(path))
        with capsys.disabled():
            print(f"\nscreenshot: {path}")
        return path

    return shot


def two_users(world: World, port: int) -> None:
    (world.base / "bob").mkdir()
    (world.base / "bob" / "bob.txt").write_text("hello bob\n")
    world.config.write_text(f"""
[daemon]
state_dir = "state"
socket = "run/control.sock"
interval = "1h"
web = "127.0.0.1:{port}"

[users.alice]
files  = {{ type = "local", path = "alice" }}
bucket = {{ type = "dir",   path = "bucket-alice" }}

[users.bob]
files  = {{ type = "local", path = "bob" }}
bucket = {{ type = "dir",   path = "bucket-bob" }}
bwlimit = "{BOB_BWLIMIT}"                   # slow enough to watch a run's progress,
transfers = 1                               # one file after the other
""")


def settled(read: Callable[[], Any]) -> Any:
    """``read()``, again when the page reloaded under it (it does when a run starts or ends)."""
    try:
        return read()
    except StaleElementReferenceException:
        return None


def until(chrome: webdriver.Chrome, check: Callable[[], Any], what: str) -> None:
    """Wait (bounded) for ``check()`` on the page; a failure says what the page showed."""
    try:
        wait_for(lambda: settled(check), WAIT_S, what, every=0.25)
    except AssertionError as exc:
        shown = settled(lambda: chrome.find_element(By.TAG_NAME, "body").text)
        raise AssertionError(f"{exc}; the page shows:\n{shown}") from None


def health_of(chrome: webdriver.Chrome) -> dict[str, str]:
    rows = chrome.find_elements(By.CSS_SELECTOR, "#pairs tr[data-pair]")
    return {str(row.get_attribute("data-pair")): row.find_element(By.CSS_SELECTOR, ".health").text for row in rows}


def row_button(chrome: webdriver.Chrome, pair: str, css: str) -> Any:
    for row in chrome.find_elements(By.CSS_SELECTOR, "#pairs tr[data-pair]"):
        if row.get_attribute("data-pair") == pair:
            return row.find_element(By.CSS_SELECTOR, css)
    raise AssertionError(f"no row for {pair}")


def recent_runs(chrome: webdriver.Chrome) -> int:
    return len(chrome.find_elements(By.CSS_SELECTOR, "#recent-runs tr.run"))


def daemon_paused(world: World, pair: str) -> bool:
    """What ``syncd status --json`` says (it asks the running daemon)."""
    out = world.cli("status", "--json", pair)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["served"], row  # the daemon answered: this is its live state
    return bool(row["paused"])


def health(chrome: webdriver.Chrome, pair: str) -> str:
    return health_of(chrome).get(pair, "")


def test_the_dashboard_in_a_browser(world: World, browser: webdriver.Chrome, shots: Any) -> None:
    port = free_port()
    two_users(world, port)
    put_object(world.alice_bucket, HOSTILE)
    (world.alice / CONFLICTED).write_text("the files side\n")
    put_object(world.alice_bucket, CONFLICTED, b"the bucket side\n")
    daemon = world.daemon("--first-run-within", "0")
    daemon.wait_idle(WAIT_S)
    base = f"http://127.0.0.1:{port}"
    token = (world.base / "state" / "web-token").read_text().strip()
    assert "web dashboard on" in daemon.log() and token not in daemon.log()

    refused_without_the_token(browser, base, shots)
    cookie = log_in(browser, base, token)
    until(browser, lambda: health_of(browser) == {"alice/default": "ok", "bob/default": "ok"}, "both pairs ok")
    shots(browser, "both-ok")
    hostile_name_is_text(browser)
    conflicts_listed(browser)
    now_runs_and_the_history_grows(world, browser, shots)
    pause_and_resume(world, browser, shots)
    live_progress(world, browser, shots)
    forged_posts_are_refused(world, browser, base, cookie["value"])
    headers_and_bearer(base, cookie["value"], token)

    assert daemon.stop() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/", timeout=5)  # stopped with the daemon


def refused_without_the_token(browser: webdriver.Chrome, base: str, shots: Any) -> None:
    browser.get(base + "/")
    assert "a token is needed" in browser.find_element(By.TAG_NAME, "body").text
    shots(browser, "refused")
    for path in ("/", "/api/status"):
        assert requests.get(base + path, timeout=30).status_code == 401
    assert requests.get(base + "/?token=" + "x" * 40, timeout=30).status_code == 401


def log_in(browser: webdriver.Chrome, base: str, token: str) -> dict[str, Any]:
    """The token once: a session cookie, and the token leaves the address bar."""
    browser.get(f"{base}/?token={token}")
    assert browser.current_url == base + "/"
    cookie = browser.get_cookie("syncd_session")
    assert cookie is not None and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"
    return dict(cookie)


def hostile_name_is_text(browser: webdriver.Chrome) -> None:
    """Shown as text, escaped like every name syncd prints: no element made of it, no script run."""
    skipped = browser.find_element(By.CSS_SELECTOR, ".pair-problems .skipped").text
    assert "<img src=x onerror=\"document.title='pwned'\">\\x01.txt" in skipped
    assert browser.title == "syncd dashboard"
    assert not browser.find_elements(By.CSS_SELECTOR, "#problems img")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (reading it is the check)


def conflicts_listed(browser: webdriver.Chrome) -> None:
    """The conflict of the first run is listed, its name as text, and counted on its pair's row."""
    listed = browser.find_element(By.CSS_SELECTOR, "#conflicts").text
    assert CONFLICTED in listed and "conflicted copy" in listed, listed
    assert not browser.find_elements(By.CSS_SELECTOR, "#conflicts i")
    row = row_button(browser, "alice/default", "td:nth-child(7)")
    assert row.text == "1"


def now_runs_and_the_history_grows(world: World, browser: webdriver.Chrome, shots: Any) -> None:
    before = recent_runs(browser)
    (world.alice / "from-the-web.txt").write_text("clicked\n")
    row_button(browser, "alice/default", "button.now").click()
    wait_for(lambda: "from-the-web.txt" in bucket_files(world.alice_bucket), WAIT_S, "the click to sync alice")
    until(browser, lambda: recent_runs(browser) > before, "the history to grow")
    until(browser, lambda: health(browser, "alice/default") == "ok", "alice ok again")
    shots(browser, "after-now")


def pause_and_resume(world: World, browser: webdriver.Chrome, shots: Any) -> None:
    """One pair paused and resumed from the page; the daemon agrees."""
    row_button(browser, "alice/default", "button.pause").click()
    until(browser, lambda: health(browser, "alice/default") == "paused", "alice paused")
    assert daemon_paused(world, "alice") and not daemon_paused(world, "bob")
    shots(browser, "paused")
    row_button(browser, "alice/default", "button.resume").click()
    until(browser, lambda: health(browser, "alice/default") in ("ok", "running", "queued"), "alice resumed")
    assert not daemon_paused(world, "alice")
    browser.find_element(By.ID, "all-pause").click()  # the buttons for every pair
    until(browser, lambda: set(health_of(browser).values()) == {"paused"}, "every pair paused")
    assert daemon_paused(world, "alice") and daemon_paused(world, "bob")
    browser.find_element(By.ID, "all-resume").click()
    until(browser, lambda: "paused" not in health_of(browser).values(), "every pair resumed")
    assert not daemon_paused(world, "alice") and not daemon_paused(world, "bob")
    until(browser, lambda: set(health_of(browser).values()) == {"ok"}, "the resumed pairs' runs to end")


def phase_of(chrome: webdriver.Chrome, pair: str) -> str:
    return str(row_button(chrome, pair, ".live .phase").text)


def live_progress(world: World, browser: webdriver.Chrome, shots: Any) -> None:
    """A running sync's progress moves on the page without a reload (the page's script polls)."""
    for i in range(BIG_FILES):
        (world.base / "bob" / f"big-{i}.bin").write_bytes(os.urandom(BIG_SIZE))
    row_button(browser, "bob/default", "button.now").click()
    until(browser, lambda: health(browser, "bob/default") == "running", "bob's run to start")
    browser.execute_script("window.syncdMark = 'same page'")  # gone if the page reloads
    pattern = re.compile(rf"\b([1-9]\d*)/{BIG_FILES}\b")

    def moved() -> bool:
        found = pattern.search(phase_of(browser, "bob/default"))
        return found is not None and browser.execute_script("return window.syncdMark") == "same page"

    until(browser, moved, "bob's progress to move in place")
    bar = row_button(browser, "bob/default", ".live progress")
    assert bar.is_displayed() and float(bar.get_attribute("value") or 0) >= 1
    shots(browser, "progress")
    until(browser, lambda: health(browser, "bob/default") == "ok", "bob's run to end")
    assert {f"big-{i}.bin" for i in range(BIG_FILES)} <= set(bucket_files(world.bob_bucket))


def forged_posts_are_refused(world: World, browser: webdriver.Chrome, base: str, session: str) -> None:
    """A POST without the session's CSRF token, or from another origin, is refused (403) and
    changes nothing; without a session it is refused as the page is (401)."""
    csrf = browser.find_element(By.CSS_SELECTOR, "form.all input[name=csrf]").get_attribute("value")
    here = {"Origin": base}
    for form, headers in (
        ({"op": "pause", "target": "alice"}, here),
        ({"op": "pause", "target": "alice", "csrf": "forged"}, here),
        ({"op": "pause", "target": "alice", "csrf": csrf}, {"Origin": "http://evil.example"}),
        ({"op": "pause", "target": "alice", "csrf": csrf}, {}),
    ):
        answer = requests.post(
            base + "/action",
            data=form,
            cookies={"syncd_session": session},
            headers=headers,
            timeout=30,
            allow_redirects=False,
        )
        assert answer.status_code == 403, (form, headers, answer.status_code)
    assert requests.post(base + "/action", data={"op": "pause", "csrf": csrf}, timeout=30).status_code == 401
    assert not daemon_paused(world, "alice")


def headers_and_bearer(base: str, session: str, token: str) -> None:
    jar = {"syncd_session": session}
    page = requests.get(base + "/", cookies=jar, timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    assert token not in page.text  # no secret on the page
    assert requests.get(base + "/", cookies=jar, headers={"Host": "evil.example"}, timeout=30).status_code == 400
    # a script may send the token as a Bearer header instead of holding a session
    live = requests.get(base + "/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert {p["pair"] for p in live["pairs"]} == {"alice/default", "bob/default"}


def test_a_dashboard_that_cannot_start_never_stops_syncing(world: World) -> None:
    with socket.socket() as taken:  # another program holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        two_users(world, taken.getsockname()[1])
        daemon = world.daemon("--first-run-within", "0")
        status = daemon.wait_idle(WAIT_S)
    assert {row["last"]["outcome"] for row in status["pairs"]} == {"ok"}, daemon.log()
    assert "web dashboard not started: web: cannot listen on 127.0.0.1:" in daemon.log()
    assert daemon.stop() == 0


def test_a_one_user_instance_leaves_the_dashboard_to_the_main_daemon(world: World) -> None:
    """syncd@USER instances share the config: none of them takes the dashboard's port."""
    port = free_port()
    two_users(world, port)
    daemon = world.daemon("--only", "alice", "--socket", str(world.socket), "--first-run-within", "3600")
    # the socket answers before the dashboard is decided on; the 'serving' line comes after it
    wait_for(lambda: daemon.lines(" serving "), WAIT_S, "the daemon's 'serving' line")
    assert "web dashboard: not served by an --only instance" in daemon.log()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert daemon.stop() == 0
