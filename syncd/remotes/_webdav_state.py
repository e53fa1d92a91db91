"""Small JSON files the webdav remote keeps in the pair's state folder (ledgers, caches, markers)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

JsonObject = dict[str, object]
T = TypeVar("T")


class JsonFile:
    """A small JSON object in the pair's state folder, replaced atomically.

    Parallel writers of one remote share one instance: :meth:`update` reads, changes and
    saves under a lock, so two threads never lose each other's change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> JsonObject:
        """The object, or {} when the file is missing or unreadable (it is only a cache/ledger)."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def update(self, change: Callable[[JsonObject], T]) -> T:
        """Apply ``change`` to the object in place and save it. :returns: what ``change`` returns."""
        with self._lock:
            data = self.load()
            before = json.dumps(data, sort_keys=True)
            result = change(data)
            if json.dumps(data, sort_keys=True) != before:
                self._save(data)
            return result

    def _save(self, value: JsonObject) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(f".{threading.get_ident()}.tmp")
        temp.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")
        temp.replace(self.path)


class RefusedCredentials:
    """A marker of credentials the server refused (HTTP 401), so they are not tried again.

    Each try of a refused password is a failed login, and Nextcloud blocks the whole client
    address after about 11 of them (every user of this host would then get 429). The marker
    holds a salted, slow hash of the password, never the password, scoped to the server URL
    and user name: while the same password is configured the remote does not even connect;
    a changed password clears it.
    """

    ITERATIONS = 100_000  # PBKDF2-SHA256: a leaked marker does not reveal a weak password cheaply

    def __init__(self, state_dir: Path, url: str, username: str) -> None:
        self._file = JsonFile(state_dir / "webdav-refused-credentials.json")
        self._scope = f"{username} {url}"

    def refused_at(self, password: str) -> datetime | None:
        """When ``password`` was refused, or None if it was not. Forgets a marker left by
        another password (it was changed)."""
        item = self._file.load().get(self._scope)
        if not isinstance(item, dict):
            return None
        salt, digest, when = item.get("salt"), item.get("pbkdf2_sha256"), item.get("refused_at")
        if not (isinstance(salt, str) and isinstance(digest, str) and isinstance(when, str)):
            self.clear()
            return None
        if not hmac.compare_digest(self._hash(password, bytes.fromhex(salt)), digest):
            self.clear()
            return None
        try:
            return datetime.fromisoformat(when)
        except ValueError:
            return datetime.now()

    def record(self, password: str) -> None:
        salt = os.urandom(16)
        item = {
            "salt": salt.hex(),
            "pbkdf2_sha256": self._hash(password, salt),
            "refused_at": datetime.now().isoformat(timespec="seconds"),
        }

        def change(data: JsonObject) -> None:
            data[self._scope] = item

        self._file.update(change)

    def clear(self) -> None:
        self._file.update(lambda data: data.pop(self._scope, None))

    def _hash(self, password: str, salt: bytes) -> str:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, self.ITERATIONS).hex()
