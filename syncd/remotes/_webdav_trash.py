"""Keeping versions before they are deleted or overwritten, and purging them later.

Nextcloud keeps them itself (its trash bin and file versions): syncd notes the file ids it
sent to the trash bin, so a purge deletes only those, never the user's own deletions.
Other servers get a ``.syncd-trash/<date>/<time>/<path>`` copy, purged by its date.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

import requests

from syncd.errors import NotFound, PreconditionFailed, TransientError
from syncd.remotes._webdav_http import iter_body
from syncd.remotes._webdav_listing import DavLister
from syncd.remotes._webdav_presets import parent_of
from syncd.remotes._webdav_session import DavSession
from syncd.remotes._webdav_state import JsonFile, JsonObject
from syncd.remotes._webdav_xml import DavResource, IncompleteMultistatus, parse_multistatus, propfind_body
from syncd.remotes.base import TRASH_PREFIX
from syncd.remotes.bucket_trash import (
    TrashedVersion,
    due_for_purge,
    moment_folder,
    parse_trash_key,
    trash_key,
    versions_of,
)


class TrashLedger(JsonFile):
    """Nextcloud file ids syncd moved to the server trash bin, with when (local clock)."""

    def add(self, fileid: str, when: datetime) -> None:
        def change(data: JsonObject) -> None:
            data[fileid] = when.isoformat()

        self.update(change)

    def older_than(self, when: datetime) -> set[str]:
        due = set()
        for fileid, stamp in self.load().items():
            try:
                if isinstance(stamp, str) and datetime.fromisoformat(stamp) < when:
                    due.add(fileid)
            except ValueError:
                continue
        return due

    def remove(self, fileid: str) -> None:
        self.update(lambda data: data.pop(fileid, None))

    def forget_missing(self, present: set[str], due: set[str]) -> None:
        """Due items no longer in the trash bin (restored or purged by the server) are forgotten."""

        def change(data: JsonObject) -> None:
            for fileid in due - present:
                data.pop(fileid, None)

        self.update(change)


class DavTrash:
    """trash / keep_version / purge_trash of the webdav remote."""

    def __init__(self, session: DavSession, lister: DavLister) -> None:
        self._s = session
        self._lister = lister
        self._ledger = TrashLedger(session.ctx.state_dir / "webdav-trash.json")

    def trash(self, path: str, if_match: str | None) -> str:
        """Nextcloud: DELETE (the server's trash bin keeps it). Others: MOVE into ``.syncd-trash/``."""
        if self._s.preset.server_trash:
            fileid = self._s.stat(path).remote_id
            self._s.delete(path, if_match=if_match)
            if fileid:
                self._ledger.add(fileid, datetime.now())
            return f"Nextcloud trash bin: {path}"
        key = trash_key(path, datetime.now())
        self._s.folders.ensure(parent_of(key))
        self._s.move_request(path, key, overwrite=False, if_match=if_match)
        return key

    def keep_version(self, path: str, if_match: str | None) -> str:
        """Keep the current version before an overwrite. Nextcloud versions overwrites itself
        (files_versions), unless ``nextcloud_versions = false``; elsewhere COPY into ``.syncd-trash/``.

        :raises NotFound: :raises PreconditionFailed:
        """
        current = self._s.stat(path)
        if if_match is not None and current.etag != if_match:
            raise PreconditionFailed(path)
        if self._s.preset.server_trash and self._s.settings.nextcloud_versions:
            return f"Nextcloud file versions: {path}"
        key = trash_key(path, datetime.now())
        self._s.folders.ensure(parent_of(key))
        headers = {"Destination": self._s.url(key), "Overwrite": "F", "Depth": "0"}
        headers.update(self._s.source_condition(path, if_match))
        response = self._s.transport.request("COPY", self._s.url(path), headers=headers)
        if response.status_code not in (200, 201, 204):
            self._s.raise_for(response, path, "keep a version")
        response.close()
        return key

    def versions(self, path: str | None) -> list[TrashedVersion]:
        """The versions syncd keeps in ``.syncd-trash/`` (of ``path`` when given): every one on
        other servers; on Nextcloud only those kept with ``nextcloud_versions = false`` (its own
        trash bin and file versions keep the rest, restored in Nextcloud)."""
        keys = []
        for key in self._lister.list_internal(TRASH_PREFIX.rstrip("/")):
            parsed = parse_trash_key(key)
            if parsed is not None and (path is None or parsed[1] == path):
                keys.append(key)
        return versions_of((key, self._s.stat(key).size) for key in keys)

    def purge(self, older_than: datetime) -> int:
        """Delete versions syncd trashed before ``older_than``. On Nextcloud only trash bin items
        syncd itself put there are touched (by file id), never the user's own deletions."""
        if self._s.preset.server_trash:
            return self._purge_nextcloud_trash(older_than)
        return self._purge_own_trash(older_than)

    def _purge_own_trash(self, older_than: datetime) -> int:
        files_by_folder: dict[str, int] = {}  # one DELETE per moment's folder
        for key in due_for_purge(self._lister.list_internal(TRASH_PREFIX.rstrip("/")), older_than):
            folder = moment_folder(key)
            files_by_folder[folder] = files_by_folder.get(folder, 0) + 1
        for folder in files_by_folder:
            with contextlib.suppress(NotFound):
                self._s.delete(folder + "/", if_match=None)
        return sum(files_by_folder.values())

    def _purge_nextcloud_trash(self, older_than: datetime) -> int:
        user_root = self._s.user_root
        if user_root is None:
            return 0
        due = self._ledger.older_than(older_than)
        if not due:
            return 0
        trash_url = self._s.transport.absolute(user_root.dav_path(f"trashbin/{user_root.user}/trash/"))
        response = self._s.transport.request(
            "PROPFIND",
            trash_url,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            body=lambda: propfind_body(("d:resourcetype", "oc:fileid")),
            stream=True,
        )
        if response.status_code != 207:
            self._s.raise_for(response, "(trash bin)", "list trash bin")
        purged = 0
        items = [r for r in self._trash_items(response) if r.fileid in due]
        for item in items:
            answer = self._s.transport.request("DELETE", self._s.transport.absolute(item.path))
            if answer.status_code in (200, 204, 404):
                purged += answer.status_code != 404
                self._ledger.remove(item.fileid or "")
            answer.close()
        self._ledger.forget_missing({r.fileid for r in items if r.fileid}, due)
        return purged

    def _trash_items(self, response: requests.Response) -> Iterator[DavResource]:
        try:
            yield from parse_multistatus(iter_body(response))
        except IncompleteMultistatus as exc:
            raise TransientError(f"{self._s.label}: trash bin listing was cut short ({exc})") from exc
        finally:
            response.close()
