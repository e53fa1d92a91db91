"""The Nextcloud-protocol test server: lifecycle, test hooks, authentication and routing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

from . import bulk, files, ocs, trashbin, uploads, versions
from .auth import NO_CREDENTIALS, WRONG_CREDENTIALS, Unauthenticated, basic_login
from .capabilities import STATUS, Capabilities
from .dav import multistatus_answer
from .errors import NOT_AUTHENTICATED, NOT_FOUND, TOO_MANY_REQUESTS, HttpError
from .props import collection, d, encode_path, href_value, requested_props, response
from .store import Store
from .throttle import LoginThrottle
from .transport import HTML_CONTENT_TYPE, Handler, QuietServer, Request, Response, error_answer
from .tree import Node, split_path

if TYPE_CHECKING:
    import requests

DAV_ROOT = "/remote.php/dav/"
LEGACY_WEBDAV = "/remote.php/webdav"
FILES = "/remote.php/dav/files/"
UPLOADS = "/remote.php/dav/uploads/"
TRASHBIN = "/remote.php/dav/trashbin/"
VERSIONS = "/remote.php/dav/versions/"
DAV_COLLECTIONS = (
    "principals",
    "files",
    "calendars",
    "system-calendars",
    "public-calendars",
    "addressbooks",
    "systemtags",
    "systemtags-relations",
    "systemtags-assigned",
    "comments",
    "uploads",
    "avatars",
    "provisioning",
    "trashbin",
    "versions",
)
NOT_FOUND_PAGE = b"<!DOCTYPE html>\n<html><head><title>Nextcloud</title></head><body>Page not found</body></html>\n"


@dataclass
class Fault:
    method: str | None
    path_contains: str | None
    remaining: int
    status: int = 500
    retry_after: str | None = None
    drop: bool = False  # send the headers and half the body, then close the connection


class NextcloudServer(Store):
    """One fake Nextcloud 31: users, trees, trash bins, versions, uploads, counters, faults.

    ``clock`` (default ``time.time``) decides the seconds that ETags, mtimes and trash names
    depend on; ``capabilities`` holds the announced (and enforced) name rules and DAV features;
    ``throttle_delay_scale`` scales the brute-force delays (near zero by default);
    ``mkcol_lock_hold_s`` is how long a MKCOL holds its path locked while it creates the folder
    (concurrent MKCOLs of one new folder then see 423 or 403, as on the real server).
    Like Nextcloud 31, ``Depth: infinity`` is answered in full unless ``allow_depth_infinity`` is off.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        allow_depth_infinity: bool = True,
        clock: Callable[[], float] = time.time,
        capabilities: Capabilities | None = None,
        throttle_delay_scale: float = 0.0005,
        mkcol_lock_hold_s: float = 0.0,
    ) -> None:
        super().__init__(users, clock=clock, capabilities=capabilities)
        self.allow_depth_infinity = allow_depth_infinity
        self.throttle = LoginThrottle(delay_scale=throttle_delay_scale)
        self.mkcol_lock_hold_s = mkcol_lock_hold_s
        # Called after a MKCOL found its path free and before it locks it: a test can create the
        # folder there to get the 403 ("Could not create directory") that a lost race gives.
        self.on_mkcol_checked: Callable[[str, str], None] | None = None
        self.notifications: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._httpd: QuietServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 at a free port. :returns: the base URL."""
        handler = type("BoundHandler", (Handler,), {"state": self})
        httpd = QuietServer(("127.0.0.1", 0), handler)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def files_url(self, user: str) -> str:
        return f"{self.base_url}{FILES}{user}/"

    def move_as_client(self, http: requests.Session, user: str, src: str, dst: str) -> None:
        """A rename made by another client (the web UI, the desktop app): a WebDAV MOVE."""
        http.request(
            "MOVE", self.files_url(user) + src, headers={"Destination": self.files_url(user) + dst}, timeout=10
        ).raise_for_status()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        """``with NextcloudServer(users) as server:`` serves for the block (``start()``, then ``stop()``)."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test hooks ----------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        *,
        path_contains: str | None = None,
        status: int = 500,
        count: int = 1,
        retry_after: str | None = None,
        drop: bool = False,
    ) -> None:
        """Make the next ``count`` matching requests fail with ``status`` (or a dropped
        connection mid-body with ``drop=True``)."""
        with self.lock:
            self.faults.append(Fault(method, path_contains, count, status, retry_after, drop))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining <= 0 or fault.method not in (None, method):
                    continue
                if fault.path_contains is not None and fault.path_contains not in path:
                    continue
                fault.remaining -= 1
                return fault
        return None

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    def node(self, user: str, path: str) -> Node | None:
        """The node at ``path`` (from the user's root), for tests to inspect."""
        with self.lock:
            return self.find(user, split_path(path))

    @contextmanager
    def hold_lock(self, user: str, path: str) -> Iterator[None]:
        """Hold ``path`` locked as a write in progress would: PUT, GET, COPY, DELETE and MKCOL of it
        answer 423, MOVE 500; PROPFIND and other paths are not affected."""
        with self.file_locks.hold(user, path):
            yield

    def reset_throttle(self, ip: str | None = None) -> None:
        """``occ security:bruteforce:reset``: forget the failed logins of ``ip`` (of everyone if None)."""
        self.throttle.reset(ip)

    def set_quota(self, user: str, quota_bytes: int | None) -> None:
        """``occ user:setting <user> files quota``; None for unlimited. The trash does not count."""
        with self.lock:
            self.quotas[user] = quota_bytes

    def hold_mkcol(self) -> None:
        """The time a MKCOL keeps its path locked while Nextcloud creates the folder."""
        if self.mkcol_lock_hold_s > 0:
            time.sleep(self.mkcol_lock_hold_s)

    def add_password(self, user: str, password: str) -> None:
        """Another password that logs ``user`` in (app passwords and the login password all work)."""
        with self.lock:
            self.passwords.setdefault(user, set()).add(password)

    # -- requests ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """Answer one request; None when an injected fault swallows the answer."""
        path = unquote(request.raw_path)
        with self.lock:
            self.counts[request.method] += 1
            self.log.append((request.method, path))
        fault = self.take_fault(request.method, path)
        if fault is not None and fault.drop and request.method not in ("PROPFIND", "GET"):
            request.discard_body()  # the request arrives, the answer never does
            return None
        if fault is not None and not fault.drop:
            request.discard_body()
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return error_answer(HttpError(fault.status, f"injected {fault.status}", headers=headers))
        try:
            answer = self._route(request)
        except HttpError as err:
            request.discard_body()
            answer = error_answer(err)
        except ConnectionError:
            raise
        except Exception as exc:  # a bug in this server: answer it as PHP would, visibly
            request.discard_body()
            answer = error_answer(HttpError(500, f"{type(exc).__name__}: {exc}", type(exc).__name__))
        if request.method == "HEAD":
            answer.head = True
        if fault is not None and fault.drop:
            answer.drop = True
        return answer

    def _route(self, request: Request) -> Response:
        path = request.raw_path
        if path == "/status.php":
            return Response(200, json.dumps(STATUS).encode(), [("Content-Type", "application/json")])
        if self.throttle.blocked(request.client_ip):
            raise HttpError(429, "", TOO_MANY_REQUESTS, hint="too many requests")
        if path.startswith(("/ocs/v1.php/", "/ocs/v2.php/")):
            return ocs.handle(self, request)
        if not path.startswith(("/remote.php/dav", LEGACY_WEBDAV)):
            return Response(404, NOT_FOUND_PAGE, [("Content-type", HTML_CONTENT_TYPE)])
        try:
            request.user = self.authenticate(request)
        except Unauthenticated as exc:
            raise HttpError(
                401,
                WRONG_CREDENTIALS if exc.wrong else NO_CREDENTIALS,
                NOT_AUTHENTICATED,
                headers={"WWW-Authenticate": 'Basic realm="Nextcloud", charset="UTF-8"'},
            ) from None
        return self._route_dav(request, path)

    def _route_dav(self, request: Request, path: str) -> Response:
        if path.startswith(LEGACY_WEBDAV):
            rest = path[len(LEGACY_WEBDAV) :].lstrip("/")
            return files.handle(self, request, request.user, rest, href_root=LEGACY_WEBDAV + "/")
        rest = path[len(DAV_ROOT) :] if path.startswith(DAV_ROOT) else ""
        top, _, sub = rest.partition("/")
        if top == "":
            return self._dav_root(request)
        if top == "files":
            owner, _, inner = sub.partition("/")
            owner = unquote(owner)
            return files.handle(self, request, owner, inner, href_root=f"{FILES}{encode_path(owner)}/")
        if top == "uploads":
            return uploads.handle(self, request, sub)
        if top == "trashbin":
            return trashbin.handle(self, request, sub)
        if top == "versions":
            return versions.handle(self, request, sub)
        if top == "bulk" and request.method == "POST" and self.capabilities.bulkupload is not None:
            return bulk.handle(self, request)
        raise HttpError(404, f"File not found: {unquote(top)} in 'root'", NOT_FOUND)

    def _dav_root(self, request: Request) -> Response:
        """``PROPFIND /remote.php/dav/``: the DAV collections, and the current user's principal."""
        wanted = requested_props(request.body())
        principal = href_value(f"/remote.php/dav/principals/users/{request.user}/")
        root_values = {d("resourcetype"): collection(), d("current-user-principal"): principal}
        answers = [response(DAV_ROOT, root_values, wanted or [d("resourcetype")])]
        if (request.header("Depth") or "1") != "0":
            for name in DAV_COLLECTIONS:
                answers.append(response(f"{DAV_ROOT}{name}/", {d("resourcetype"): collection()}, [d("resourcetype")]))
        return multistatus_answer(answers)

    def authenticate(self, request: Request) -> str:
        """The user named by HTTP Basic auth. :raises Unauthenticated: see :func:`.auth.basic_login`."""
        return basic_login(self, request)
