"""Who may use the dashboard: one token, then a session per browser.

The token is the secret an admin holds (``web_token_file``, or ``<state_dir>/web-token``,
made with mode 0600 on first start: whoever can read the daemon's state may use its
dashboard, as whoever may use its control socket may pause it). A browser shows it once,
``/?token=...``, and gets a session: a random id in an ``HttpOnly; SameSite=Strict`` cookie
(scripts on the page cannot read it, other sites cannot send it), which holds a random
CSRF token that every button's form carries back. Scripts may instead send
``Authorization: Bearer TOKEN`` on each request. Sessions live in memory: a daemon restart
asks for the token again.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from syncd.errors import FatalError

TOKEN_MIN_CHARS = 16
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 256  # the oldest goes first: a flood of logins cannot grow memory
COOKIE = "syncd_session"


def load_token(path: Path, *, create: bool) -> str:
    """The token in ``path`` (its first line, stripped). ``create``: a missing file is made,
    mode 0600, holding a new random token. :raises FatalError: unreadable, or too short."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by another start meanwhile: read it
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise FatalError(f"web_token_file {path}: cannot read a token: {exc}") from None
    if len(token) < TOKEN_MIN_CHARS:
        raise FatalError(f"web_token_file {path}: the token must be at least {TOKEN_MIN_CHARS} characters")
    return token


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires: float
    flash: list[str] = field(default_factory=list)  # messages shown once, on the next page


class Sessions:
    """The token check and the sessions it opens; safe to use from many threads."""

    def __init__(self, token: str, ttl_s: float = SESSION_TTL_S) -> None:
        self._token = token.encode()
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def open(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic() + self._ttl_s)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id; None for an unknown or expired one."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires < time.monotonic():
                del self._sessions[session_id]
                return None
            return session

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
