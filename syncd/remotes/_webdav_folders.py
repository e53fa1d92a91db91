"""Folders on the server: which ones are known to exist, and creating the missing ones.

Parallel writers share one :class:`FolderCache`: a folder is MKCOLed by one thread while the
others wait for it, never twice at once. Nextcloud answers concurrent MKCOLs of one folder
(ours or another client's) with ``423 Locked`` or ``403 Could not create directory``; either
is no error when the folder exists by then (a Depth 0 PROPFIND says), and a 423 is tried
again a few times with a short backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

from syncd.errors import ItemError, UnsafePath
from syncd.remotes._webdav_errors import NAME_EXCEPTIONS, ServerLocked, answer_detail

if TYPE_CHECKING:
    from syncd.remotes._webdav_session import DavSession

log = logging.getLogger("syncd.remotes.webdav")

MKCOL_TRIES = 4  # MKCOLs of one folder answered 423 (locked by a concurrent MKCOL) while it does not exist
FORBIDDEN_TRIES = 2  # a 403 that is not a lost race is the account's permissions: do not insist
MKCOL_BACKOFF_S = 0.2  # the first wait between them; doubled each time
LOCK_STRIPES = 64  # folders map onto this many locks: bounded memory for any tree


class _ParentVanished(Exception):
    """MKCOL answered 409: a parent believed to exist is gone."""


class FolderCache:
    """Folders known to exist (no MKCOL before writing there), and those this remote created."""

    def __init__(self, session: DavSession) -> None:
        self._session = session
        self._known: set[str] = {""}
        self._created: set[str] = set()
        self._refused: dict[str, str] = {}  # folder -> why: 403s of this run, not asked again
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]

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
        """Whether this remote created ``folder`` (MKCOL answered 201) since it was opened."""
        with self._lock:
            return folder in self._created

    def prepare(self, folders: Collection[str]) -> None:
        """Create each of ``folders`` and its missing parents, parents first, one at a time.
        A folder that cannot be created is logged and left: the writes into it fail later,
        as item errors. :raises FatalError: :raises TransientError: the server is gone."""
        for folder in sorted(set(folders), key=lambda f: (f.count("/"), f)):
            try:
                self.ensure(folder)
            except ItemError as exc:
                log.info("%s: cannot create folder %r: %s", self._session.label, folder, exc.message)

    def ensure(self, folder: str) -> None:
        """Make sure ``folder`` exists: MKCOL it and its missing parents (no request for a
        folder known to exist). :raises ItemError: it cannot be created (a lock held too
        long, no permission, a refused name). :raises TransientError: :raises FatalError:"""
        if self.knows(folder):
            return
        try:
            self._ensure_chain(folder)
        except _ParentVanished:
            self.forget("")  # our picture of the tree is stale: start again from the root
            try:
                self._ensure_chain(folder)
            except _ParentVanished as exc:
                raise ItemError(folder, "a parent folder keeps vanishing on the server; will retry") from exc

    def _ensure_chain(self, folder: str) -> None:
        for key in _missing_first_parent(folder, self.knows):
            with self._stripes[hash(key) % LOCK_STRIPES]:
                if self.knows(key):  # another writer made it while we waited
                    continue
                with self._lock:
                    refused = self._refused.get(key)
                if refused is not None:
                    raise ItemError(key, refused)
                self._make(key)

    def _make(self, key: str) -> None:
        """MKCOL one folder whose parent exists."""
        session = self._session
        status, detail = 0, ""
        for attempt in range(MKCOL_TRIES):
            response = session.transport.request("MKCOL", session.url(key, folder=True))
            status = response.status_code
            if status in (200, 201, 405):  # 405: it exists already (or a file does: the write says)
                response.close()
                self._known_now(key, created=status != 405)
                return
            if status == 409:
                response.close()
                raise _ParentVanished(key)
            if status not in (403, 423):
                session.raise_for(response, key, "create folder")
            exception, detail = answer_detail(response)
            if status == 403 and exception.endswith(NAME_EXCEPTIONS):
                raise UnsafePath(key, f"the server refuses this folder name ({detail})")
            if self._exists(key):  # another MKCOL of it won the race
                self._known_now(key, created=False)
                return
            if attempt + 1 >= (MKCOL_TRIES if status == 423 else FORBIDDEN_TRIES):
                break
            session.transport.sleep(MKCOL_BACKOFF_S * 2**attempt)
        if status == 423:
            raise ServerLocked(key, detail)
        refused = f"the server forbids creating this folder ({detail}); check the account's permissions"
        with self._lock:
            self._refused[key] = refused
        raise ItemError(key, refused)

    def _exists(self, key: str) -> bool:
        resource = self._session.propfind_one(key, ("d:resourcetype",), folder=True)
        return resource is not None and resource.is_dir

    def _known_now(self, key: str, *, created: bool) -> None:
        with self._lock:
            self._known.add(key)
            if created:
                self._created.add(key)


def _missing_first_parent(folder: str, knows: Callable[[str], bool]) -> Iterator[str]:
    """The folders from the first unknown ancestor of ``folder`` down to ``folder``."""
    missing = []
    current = folder
    while not knows(current):  # bounded by the folder's depth; "" is always known
        missing.append(current)
        current = current.rpartition("/")[0]
    return reversed(missing)
