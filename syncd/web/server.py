"""The dashboard's HTTP server: stdlib ``ThreadingHTTPServer`` on its own threads in the
daemon, a Jinja2 template (autoescape on), one small script that polls a JSON endpoint.

Routes::

    GET  /                 the page (``/?token=T`` once: opens a session, then redirects to /)
    GET  /api/status       live state for the page's script: each pair's key and progress
    GET  /static/NAME      dashboard.js, dashboard.css
    POST /action           op=now|pause|resume, target=USER[/PAIR] (empty: every pair), csrf=...

Every request needs the session cookie or ``Authorization: Bearer TOKEN`` (401 without).
A POST with the cookie also needs the session's CSRF token and an ``Origin`` (or
``Referer``) of this server (403 otherwise); a Bearer request needs neither (no browser
sends that header by itself). On a loopback address a ``Host`` that is not a loopback name
is refused (400): another site's name resolved to 127.0.0.1 cannot reach the page.
Every answer carries ``Content-Security-Policy: default-src 'self'``, ``X-Frame-Options:
DENY``, ``nosniff``, ``Referrer-Policy: same-origin`` and ``no-store``. A failure inside a request is a 500
for that request and a log line: it never reaches the daemon.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncd.config import DaemonSection, PairConfig, parse_web_address
from syncd.control import Emit, Request
from syncd.display import printable
from syncd.errors import FatalError, ProtocolError
from syncd.web import plots
from syncd.web.access import COOKIE, Session, Sessions, load_token
from syncd.web.dashboard import DayBooks, build_page, live_json

log = logging.getLogger("syncd.web")

Handler = Callable[[Request, Emit], dict[str, Any]]
OPS = ("now", "pause", "resume")
MAX_BODY = 4096
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Dashboard:
    """What the routes need from the daemon: its request handler (the control socket's) and
    its current pairs; and the sessions. Built by :class:`WebServer`."""

    def __init__(self, handler: Handler, pairs: Callable[[], Sequence[PairConfig]], sessions: Sessions) -> None:
        self.handler = handler
        self.pairs = pairs
        self.sessions = sessions
        self.books = DayBooks()
        self._templates: Any = None
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return self.handler(Request("status"), _ignore)

    def render(self, session: Session | None) -> str:
        page = build_page(self.status(), self.pairs(), self.books)
        flash: list[str] = []
        if session is not None:
            flash, session.flash[:] = list(session.flash), []
        return str(
            self.templates()
            .get_template("dashboard.html")
            .render(page=page, csrf=session.csrf if session else "", flash=flash)
        )

    def templates(self) -> Any:
        with self._lock:
            if self._templates is None:
                import jinja2

                env = jinja2.Environment(
                    loader=jinja2.PackageLoader("syncd.web", "templates"),
                    autoescape=True,  # every {{ }} is HTML-escaped; no template marks anything safe but the SVG
                    undefined=jinja2.StrictUndefined,
                )
                env.filters.update(name=printable, when=_when, ago=_ago, size=plots.size, seconds=plots.seconds)
                self._templates = env
            return self._templates

    def act(self, op: str, target: str | None) -> str:
        """Run one button's request; the message to show. ``now`` runs on a thread of its
        own (the handler waits for the runs), the page follows it by polling."""
        if op == "now":
            threading.Thread(target=self._now, args=(target,), name="web-now", daemon=True).start()
            return f"sync requested: {target or 'every pair'}"
        try:
            result = self.handler(Request(op, target), _ignore)
        except ProtocolError as exc:
            return str(exc)
        done = "paused" if op == "pause" else "resumed"
        return f"{done}: {', '.join(result.get('pairs', [])) or 'nothing'}"

    def _now(self, target: str | None) -> None:
        try:
            self.handler(Request("now", target), _ignore)
        except ProtocolError as exc:
            log.warning("web: now %s: %s", target or "*", exc)
        except Exception:  # a bug here must not reach the daemon
            log.exception("web: now %s failed", target or "*")


def _ignore(_message: dict[str, Any]) -> None:
    """The page follows runs by polling ``status``, not by events."""


class _Requests(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "syncd"
    sys_version = ""
    timeout = 30  # seconds a client may take to send its request: a stalled one frees its thread

    # -- plumbing ------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line may hold ?token=: never logged; errors are logged where they happen

    def _send(
        self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8", **headers: str
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")  # no-referrer would make Origin "null"
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str, **headers: str) -> None:
        self._send(status, (text + "\n").encode(), **headers)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _safely(self, route: Callable[[], None]) -> None:
        try:
            if not self._host_ok():
                self._text(HTTPStatus.BAD_REQUEST, "bad Host header")
                return
            route()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # one request fails, the dashboard and the daemon go on
            log.exception("web: %s %s failed", self.command, urlsplit(self.path).path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (the daemon's log says more)")

    def do_GET(self) -> None:
        self._safely(self._get)

    def do_POST(self) -> None:
        self._safely(self._post)

    # -- checks --------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rpartition("]")[0].lstrip("[") if host.startswith("[") else host.partition(":")[0]
        return name.lower() in LOOPBACK_NAMES or name == self.server.host

    def _bearer(self) -> bool:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and self.server.app.sessions.token_ok(token.strip())

    def _session(self) -> Session | None:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = cookie.get(COOKIE)
        return self.server.app.sessions.get(morsel.value if morsel else None)

    def _same_origin(self) -> bool:
        """The browser says the form came from this server: ``Origin`` (every current browser
        sends it on a POST), else ``Referer``; neither is refused."""
        here = f"http://{self.headers.get('Host', '')}"
        origin = self.headers.get("Origin")
        if origin is not None:
            return origin == here
        referer = self.headers.get("Referer")
        return referer is not None and (referer == here or referer.startswith(here + "/"))

    def _refuse(self) -> None:
        self._text(
            HTTPStatus.UNAUTHORIZED,
            "syncd dashboard: a token is needed. Open this address with ?token=TOKEN once "
            "(the token is in the daemon's web_token_file, by default STATE_DIR/web-token), "
            "or send Authorization: Bearer TOKEN.",
            WWW_Authenticate='Bearer realm="syncd"',
        )

    # -- routes --------------------------------------------------------------------------

    def _get(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/static/"):
            self._static(url.path.removeprefix("/static/"))
            return
        if url.path not in ("/", "/api/status"):
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        query = parse_qs(url.query)
        if url.path == "/" and "token" in query:
            self._login(query["token"][0])
            return
        session = self._session()
        if session is None and not self._bearer():
            self._refuse()
            return
        if url.path == "/api/status":
            self._json(HTTPStatus.OK, live_json(self.server.app.status()))
        else:
            self._send(HTTPStatus.OK, self.server.app.render(session).encode(), "text/html; charset=utf-8")

    def _login(self, token: str) -> None:
        if not self.server.app.sessions.token_ok(token):
            log.warning("web: a wrong token from %s", self.client_address[0])
            self._refuse()
            return
        session = self.server.app.sessions.open()
        cookie = f"{COOKIE}={session.id}; Path=/; HttpOnly; SameSite=Strict"
        self._send(HTTPStatus.SEE_OTHER, b"", Location="/", Set_Cookie=cookie)  # the token leaves the address bar

    def _static(self, name: str) -> None:
        if name not in STATIC:
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        body = resources.files("syncd.web").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, body, STATIC[name])

    def _post(self) -> None:
        if urlsplit(self.path).path != "/action":
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
            return
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        bearer, session = self._bearer(), self._session()
        if not bearer and session is None:
            self._refuse()
            return
        if not bearer:
            assert session is not None
            if not (Sessions.csrf_ok(session, form.get("csrf", [None])[0]) and self._same_origin()):
                log.warning("web: a POST without a valid CSRF token or origin from %s", self.client_address[0])
                self._text(HTTPStatus.FORBIDDEN, "refused: the form's CSRF token or origin is not this page's")
                return
        op, target = form.get("op", [""])[0], form.get("target", [""])[0] or None
        if op not in OPS:
            self._text(HTTPStatus.BAD_REQUEST, f"unknown op (one of: {', '.join(OPS)})")
            return
        log.info("web: %s %s", op, target or "*")
        message = self.server.app.act(op, target)
        if bearer:
            self._json(HTTPStatus.ACCEPTED, {"ok": True, "op": op, "message": message})
            return
        assert session is not None
        session.flash.append(message)
        self._send(HTTPStatus.SEE_OTHER, b"", Location="/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Dashboard
    loopback: bool
    host: str


class WebServer:
    """The dashboard on ``address`` (``HOST:PORT``), started and stopped with the daemon."""

    def __init__(self, address: str, app: Dashboard) -> None:
        self.host, self.port = parse_web_address(address)
        self.app = app
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve on a thread. :raises FatalError: the address cannot be bound."""
        family = _Server.address_family
        if ipaddress.ip_address(self.host).version == 6:
            import socket

            family = socket.AF_INET6
        server_class = type("_Bound", (_Server,), {"address_family": family})
        try:
            server = server_class((self.host, self.port), _Requests)
        except OSError as exc:
            raise FatalError(f"web: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        server.app, server.loopback, server.host = self.app, ipaddress.ip_address(self.host).is_loopback, self.host
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="web")
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _ago(stamp: float | None, now: float | None = None) -> str:
    """``3 min ago``, ``in 4 min``: how far ``stamp`` is from now."""
    if not stamp:
        return "-"
    delta = stamp - (time.time() if now is None else now)
    span = abs(delta)
    text = f"{span:.0f} s" if span < 90 else f"{span / 60:.0f} min" if span < 5400 else f"{span / 3600:.1f} h"
    return f"in {text}" if delta > 0 else f"{text} ago"


def start_dashboard(
    daemon: DaemonSection, handler: Handler, pairs: Callable[[], Sequence[PairConfig]], *, only: str | None = None
) -> WebServer | None:
    """Start the dashboard ``[daemon] web`` asks for; None (and a log line saying why) when it
    cannot start: a dashboard that fails never stops syncing. An instance serving one user
    (``--only``, the ``syncd@USER`` units) serves none: the instances share the config, so
    they would all ask for the one port."""
    if daemon.web is None:
        return None
    if only is not None:
        log.info("web dashboard: not served by an --only instance (the daemon of every user serves it)")
        return None
    token_file = daemon.web_token_file or daemon.state_dir / "web-token"
    try:
        token = load_token(token_file, create=daemon.web_token_file is None)
        server = WebServer(daemon.web, Dashboard(handler, pairs, Sessions(token)))
        server.start()
    except (FatalError, ValueError) as exc:
        log.error("web dashboard not started: %s", exc)
        return None
    log.info("web dashboard on %s (open it once with ?token=, the token is in %s)", server.url, token_file)
    return server
