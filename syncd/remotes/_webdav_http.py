"""HTTP for the webdav remote: one reused session, bounded retries, errors mapped once.

webdavclient3's :class:`webdav3.client.Client` holds the connection settings and the
``requests`` session (so connections are reused); its request helpers are not used because
they cannot send PROPFIND bodies or conditional headers per call, lose the ``Retry-After``
header of a 503, swallow truncated XML as an empty listing, and add a HEAD before most calls.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

import requests
import webdav3.client

from syncd import __version__
from syncd.errors import FatalError, TransientError
from syncd.remotes import _webdav_throttle as throttle
from syncd.remotes._webdav_xml import sabre_message

log = logging.getLogger("syncd.remotes.webdav")

# Answers worth sending the same request again after a short wait. Not 429: Nextcloud's 429
# blocks the whole host (see _webdav_throttle); not 401: each try counts as a failed login.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# Methods that change nothing (or the same thing twice): safe to resend after a lost answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS", "MKCOL", "DELETE", "PROPPATCH"})
Body = bytes | Iterable[bytes] | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    backoff_s: float = 0.5  # first wait; doubled each time, with jitter
    max_wait_s: float = 60.0  # cap for one wait, Retry-After included


class Transport:
    """Sends requests below one base URL. Never logs or shows the password."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify_tls: bool,
        timeout_s: float,
        retry: RetryPolicy,
        label: str,
    ) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.base_path = unquote(urlsplit(self.base_url).path)  # decoded, ends with "/"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.username = username
        self.label = label
        self.retry = retry
        self.timeout_s = timeout_s
        self._client = webdav3.client.Client(
            {
                "webdav_hostname": self.origin,
                "webdav_root": self.base_path,
                "webdav_login": username,
                "webdav_password": password,
                "webdav_timeout": timeout_s,
            }
        )
        self._client.verify = verify_tls
        self.session: requests.Session = self._client.session
        self.session.auth = (username, password)
        self.session.verify = verify_tls
        # requests never sends "Expect: 100-continue", which some servers never answer.
        self.session.headers.update({"User-Agent": f"syncd/{__version__}"})
        self.sleep: Callable[[float], None] = time.sleep  # tests replace it
        self.server_software = ""  # the Server header of the last answer (for quirks)
        # Called once when the server refuses the credentials (the remote keeps a marker).
        self.on_refused: Callable[[], None] = lambda: None
        self._refused: str | None = None  # the message of the 401, once there was one

    def __repr__(self) -> str:
        return f"Transport({self.base_url!r}, user={self.username!r})"

    def url(self, key: str, *, folder: bool = False) -> str:
        """The URL of ``key`` (relative to the base), each segment percent-encoded."""
        quoted = "/".join(quote(seg, safe="") for seg in key.split("/") if seg)
        if folder and quoted:
            quoted += "/"
        return str(self._client.get_url("/" + quoted))

    def absolute(self, path: str) -> str:
        """The URL of an absolute, decoded server path (e.g. an upload folder)."""
        return self.origin + quote(path, safe="/")

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Body] | None = None,
        stream: bool = False,
        replayable: bool = True,
    ) -> requests.Response:
        """Send one request, retrying 5xx and lost connections a bounded number of times.

        ``body`` is a factory so a retry can send the body again; ``replayable=False`` sends
        the request once (a streamed upload that cannot be rewound).

        :returns: the response for every status except 401, 429 and retried ones.
        :raises FatalError: 401 (credentials refused): at once, never retried, and every later
            request of this transport fails the same way without being sent.
        :raises TransientError: 429, or the host's gate is closed by an earlier 429 (nothing
            sent); still 5xx, or no answer, after the last try.
        """
        attempts = self.retry.attempts if replayable else 1
        for attempt in range(1, attempts + 1):
            self._check_may_send()
            last = attempt == attempts
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=dict(headers or {}),
                    data=body() if body is not None else None,
                    stream=stream,
                    timeout=self.timeout_s,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last or method not in IDEMPOTENT:
                    raise TransientError(
                        f"{self.label}: {method} {_show(url)}: no answer from server ({_brief(exc)})"
                    ) from exc
                self._wait(attempt, None, f"{method} {_show(url)}: {_brief(exc)}")
                continue
            self._check_answer(response, method, url)
            if response.status_code in RETRY_STATUSES and not _locked(response):
                retry_after = response.headers.get("Retry-After")
                response.close()
                if last:
                    raise TransientError(
                        f"{self.label}: {method} {_show(url)}: HTTP {response.status_code} after {attempt} tries"
                    )
                self._wait(attempt, retry_after, f"{method} {_show(url)}: HTTP {response.status_code}")
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _check_may_send(self) -> None:
        if self._refused is not None:
            raise FatalError(self._refused)
        throttle.check_open(self.origin, self.label)

    def _check_answer(self, response: requests.Response, method: str, url: str) -> None:
        """Raise for the answers that concern more than this request (401, 429)."""
        self.server_software = response.headers.get("Server", "")
        status = response.status_code
        if status == 429:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            response.close()
            raise throttle.close(self.origin, retry_after, self.label)
        throttle.passed(self.origin)
        if status == 401:
            response.close()
            self._refused = (
                f"{self.label}: the WebDAV server refused the credentials of user {self.username!r} "
                f"(HTTP 401 on {method} {_show(url)}); check the password file or app password"
            )
            self.on_refused()
            raise FatalError(self._refused)

    def _wait(self, attempt: int, retry_after: str | None, why: str) -> None:
        """Sleep before the next try: the server's Retry-After if it gave one, else backoff."""
        delay = _retry_after_seconds(retry_after)
        if delay is None:
            delay = self.retry.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        delay = min(max(delay, 0.0), self.retry.max_wait_s)
        log.info("%s: %s; retrying in %.1f s", self.label, why, delay)
        self.sleep(delay)

    def close(self) -> None:
        self.session.close()


def iter_body(response: requests.Response, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The body of a streamed response. A connection lost mid-body raises TransientError
    (urllib3 checks Content-Length / the chunked terminator), never a short body."""
    try:
        yield from response.iter_content(chunk_size=chunk)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
        raise TransientError(f"connection lost while reading {_show(response.url)}: {_brief(exc)}") from exc


def _locked(response: requests.Response) -> bool:
    """A 500 that is Nextcloud's ``OCP\\Lock\\LockedException`` (a MOVE of a file another client
    writes): not a server failure to retry at once, but a busy file (the caller's item error)."""
    if response.status_code != 500:
        return False
    try:
        body = response.content[:4096]
    except (requests.RequestException, RuntimeError):
        return False
    return sabre_message(body)[0].endswith("LockedException")


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` is seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _show(url: str) -> str:
    """A URL for messages: decoded path only (no query, never credentials)."""
    return unquote(urlsplit(url).path)


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return (text[:200] + "...") if len(text) > 200 else text or type(exc).__name__
