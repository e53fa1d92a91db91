"""The dashboard's HTTP server on its own, with a stand-in for the daemon's handler: the access
rules, the headers, the escaping and the buttons' requests, without a browser or a daemon."""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.config import load_config
from syncd.control import Emit, Request
from syncd.errors import ProtocolError
from syncd.web.access import Sessions
from syncd.web.server import Dashboard, WebServer

TOKEN = "a-test-token-0123456789"


class FakeDaemon:
    """Answers ``status``, ``now``, ``pause``, ``resume`` as the daemon's handler does."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.paused: set[str] = set()

    def handle(self, request: Request, _emit: Emit) -> dict[str, Any]:
        self.requests.append(request)
        if request.target not in (None, "alice", "alice/default"):
            raise ProtocolError(f"no pair {request.target!r} is served by this daemon")
        if request.op == "pause":
            self.paused.add("alice/default")
            return {"ok": True, "op": "pause", "pairs": ["alice/default"]}
        if request.op == "resume":
            self.paused.discard("alice/default")
            return {"ok": True, "op": "resume", "pairs": ["alice/default"]}
        row = {"pair": "alice/default", "paused": "alice/default" in self.paused, "next_run": time.time() + 60}
        return {"ok": True, "daemon": {"pid": 1, "version": "t", "running": []}, "pairs": [row], "results": []}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeDaemon]]:
    """The dashboard of alice's pair, served on 127.0.0.1 with :class:`FakeDaemon` behind it."""
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n[users.alice]\n'
        'files = { type = "local", path = "files" }\nbucket = { type = "dir", path = "bucket" }\n'
    )
    pairs = load_config(config).pairs
    fake = FakeDaemon()
    with socket.socket() as probe:  # a free port (the config takes 1-65535 only)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = WebServer(f"127.0.0.1:{port}", Dashboard(fake.handle, lambda: pairs, Sessions(TOKEN)))
    server.start()
    try:
        yield server.url.rstrip("/"), fake
    finally:
        server.close()


def log_in(base: str) -> tuple[requests.Session, str]:
    browser = requests.Session()
    first = browser.get(f"{base}/?token={TOKEN}", allow_redirects=False, timeout=10)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    assert "HttpOnly" in first.headers["Set-Cookie"] and "SameSite=Strict" in first.headers["Set-Cookie"]
    page = browser.get(base + "/", timeout=10)
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return browser, found.group(1)


def test_everything_needs_the_token(served: tuple[str, FakeDaemon]) -> None:
    base, fake = served
    for path in ("/", "/api/status"):
        answer = requests.get(base + path, timeout=10)
        assert answer.status_code == 401 and "token is needed" in answer.text
    assert requests.get(base + "/?token=wrong-token-0123456789", timeout=10).status_code == 401
    assert requests.get(base + "/", cookies={"syncd_session": "forged"}, timeout=10).status_code == 401
    assert requests.post(base + "/action", data={"op": "pause"}, timeout=10).status_code == 401
    assert requests.get(base + "/nothing", timeout=10).status_code == 404
    assert not [r for r in fake.requests if r.op != "status"]


def test_the_page_and_its_headers(served: tuple[str, FakeDaemon]) -> None:
    base, _fake = served
    browser, csrf = log_in(base)
    page = browser.get(base + "/", timeout=10)
    assert "alice/default" in page.text and "never synced" in page.text and TOKEN not in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the CSP to forbid
    for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "css")):
        static = browser.get(f"{base}/static/{name}", timeout=10)
        assert static.status_code == 200 and kind in static.headers["Content-Type"]
    assert browser.get(base + "/static/../server.py", timeout=10).status_code == 404
    live = browser.get(base + "/api/status", timeout=10).json()
    assert live["pairs"][0]["pair"] == "alice/default" and live["pairs"][0]["running"] is None
    assert browser.get(base + "/", headers={"Host": "attacker.example:80"}, timeout=10).status_code == 400
    assert csrf


def test_buttons_send_the_daemons_requests(served: tuple[str, FakeDaemon]) -> None:
    base, fake = served
    browser, csrf = log_in(base)
    here = {"Origin": base}
    answer = browser.post(
        base + "/action", data={"op": "pause", "target": "alice", "csrf": csrf}, headers=here, timeout=10
    )
    assert answer.status_code == 200 and "paused: alice/default" in answer.text  # 303 to the page, which says so
    assert fake.paused == {"alice/default"}
    browser.post(base + "/action", data={"op": "resume", "target": "", "csrf": csrf}, headers=here, timeout=10)
    assert fake.paused == set() and fake.requests[-2] == Request("resume", None)
    unknown = browser.post(base + "/action", data={"op": "pause", "target": "carol", "csrf": csrf}, headers=here)
    assert "no pair &#39;carol&#39;" in unknown.text  # the daemon's refusal, shown (escaped)
    browser.post(
        base + "/action", data={"op": "now", "target": "alice/default", "csrf": csrf}, headers=here, timeout=10
    )
    deadline = time.monotonic() + 10
    while Request("now", "alice/default") not in fake.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Request("now", "alice/default") in fake.requests
    bad_op = browser.post(base + "/action", data={"op": "reload", "csrf": csrf}, headers=here, timeout=10)
    assert bad_op.status_code == 400  # only now, pause, resume: nothing else of the control socket


def test_a_post_needs_the_csrf_token_and_this_origin(served: tuple[str, FakeDaemon]) -> None:
    base, fake = served
    browser, csrf = log_in(base)
    for form, headers in (
        ({"op": "pause"}, {"Origin": base}),
        ({"op": "pause", "csrf": csrf + "x"}, {"Origin": base}),
        ({"op": "pause", "csrf": csrf}, {"Origin": "http://attacker.example"}),
        ({"op": "pause", "csrf": csrf}, {"Origin": "null"}),
        ({"op": "pause", "csrf": csrf}, {}),
        ({"op": "pause", "csrf": csrf}, {"Referer": "http://attacker.example/" + base}),
    ):
        assert browser.post(base + "/action", data=form, headers=headers, timeout=10).status_code == 403, headers
    assert fake.paused == set()
    ok = browser.post(base + "/action", data={"op": "pause", "csrf": csrf}, headers={"Referer": base + "/"}, timeout=10)
    assert ok.status_code == 200 and fake.paused == {"alice/default"}  # no Origin, but a Referer of this page


def test_a_script_uses_the_token_as_a_bearer(served: tuple[str, FakeDaemon]) -> None:
    base, fake = served
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(base + "/api/status", headers=bearer, timeout=10).status_code == 200
    answer = requests.post(base + "/action", data={"op": "pause", "target": "alice"}, headers=bearer, timeout=10)
    assert answer.status_code == 202 and answer.json()["op"] == "pause" and fake.paused == {"alice/default"}
    wrong = {"Authorization": "Bearer nope-0123456789abcdef"}
    assert requests.post(base + "/action", data={"op": "resume"}, headers=wrong, timeout=10).status_code == 401
    assert fake.paused == {"alice/default"}


def test_the_page_never_creates_or_migrates_an_index(served: tuple[str, FakeDaemon], tmp_path: Path) -> None:
    """An index the daemon has not prepared yet (no schema) is shown as such and left alone:
    migrating is the daemon's job, under the pair's lock."""
    base, _fake = served
    index = tmp_path / "state" / "alice" / "default" / "index.db"
    index.parent.mkdir(parents=True)
    sqlite3.connect(index).close()  # an empty database: no schema yet
    browser, _csrf = log_in(base)
    page = browser.get(base + "/", timeout=10)
    assert page.status_code == 200 and "being created or upgraded" in page.text
    with sqlite3.connect(index) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
