"""Folders on the server: which ones are known to exist, and creating the missing ones."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from syncd.errors import TransientError

if TYPE_CHECKING:
    from syncd.remotes._webdav_session import DavSession


class FolderCache:
    """Folders known to exist (no MKCOL before writing there), and those this remote created."""

    def __init__(self, session: DavSession) -> None:
        self._session = session
        self._known: set[str] = {""}
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def knows(self, folder: str) -> bool:
        with self._lock:
            return folder in self._known

    def saw(self, folder: str) -> None:
        """A listing showed ``folder``: it exists."""
        with self._lock:
            self._known.add(folder)

    def forget(self, folder: str) -> None:
        """``folder`` may be gone: forget it and every folder below it ("" forgets all)."""
        prefix = f"{folder}/" if folder else ""
        with self._lock:
            self._known = {k for k in self._known if k != folder and not k.startswith(prefix)} | {""}

    def created_this_run(self, folder: str) -> bool:
        with self._lock:
            return folder in self._created

    def ensure(self, folder: str) -> None:
        """MKCOL ``folder`` and its missing parents (cached: no request for known folders)."""
        if self.knows(folder):
            return
        missing = []
        current = folder
        while not self.knows(current):  # bounded by the folder's depth
            missing.append(current)
            current = current.rpartition("/")[0]
        for key in reversed(missing):
            self._make(key, folder)

    def _make(self, key: str, folder: str) -> None:
        session = self._session
        response = session.transport.request("MKCOL", session.url(key, folder=True))
        if response.status_code in (200, 201, 405):  # 405: it exists already
            response.close()
            with self._lock:
                self._known.add(key)
                if response.status_code == 201:
                    self._created.add(key)
            return
        if response.status_code == 409:
            # A parent we believed in is gone: forget the cache and start from the root.
            response.close()
            self.forget("")
            raise TransientError(f"{session.label}: a parent folder of {folder!r} vanished; will retry")
        session.raise_for(response, key, "create folder")
