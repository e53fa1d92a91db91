"""Nextcloud chunked upload v2 for big files: resumable, verified, conditional.

``MKCOL /uploads/<user>/<id>``, one ``PUT /uploads/<user>/<id>/<n>`` per chunk, then
``MOVE /uploads/<user>/<id>/.file`` onto the destination: the file appears whole, at once.

Nextcloud checks If-Match / If-None-Match on that MOVE against the upload's ``.file``, never
the destination (a real server answers 412 to both, every time). What it does honour:
``Overwrite: F`` (412 only when the destination exists) for a new file, and
``If: <destination URL> (["<etag>"])`` (412 on a stale etag, 404 when the destination is
gone) for an overwrite, so a concurrent edit is never clobbered. ``OC-Total-Length`` and
``OC-Checksum`` (the SHA-256 of the bytes sent) make the server check what it assembled.

Every upload folder is noted in a ledger in the pair's state folder *before* it is created.
A failed upload that can be resumed (a lost connection, a lock, a precondition) keeps its
folder, and the next upload of the same content to the same path continues from the chunks
the server holds; one that cannot is DELETEd at once; and any upload left in the ledger for
longer than :data:`UPLOAD_KEEP_S` is DELETEd by :meth:`ChunkedUploader.sweep`, so none leaks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import requests

from syncd.errors import (
    ChangedWhileReading,
    ContentMismatch,
    FatalError,
    ItemError,
    PreconditionFailed,
    TransientError,
)
from syncd.models import Entry
from syncd.remotes._webdav_body import HashMismatch, ShortData, SizedBody, consume
from syncd.remotes._webdav_errors import ServerLocked
from syncd.remotes._webdav_http import Body, iter_body
from syncd.remotes._webdav_presets import parent_of
from syncd.remotes._webdav_session import DavSession, write_answer
from syncd.remotes._webdav_state import JsonFile, JsonObject
from syncd.remotes._webdav_upload import PlainUploader
from syncd.remotes._webdav_xml import IncompleteMultistatus, parse_multistatus, propfind_body

log = logging.getLogger("syncd.remotes.webdav")

# Nextcloud's own background job removes upload folders a day old: ours go no later.
UPLOAD_KEEP_S = 24 * 3600.0
clock: Callable[[], float] = time.time  # tests replace it

# Failures after which the upload folder is kept for the next try of the same content.
RESUMABLE = (TransientError, PreconditionFailed, ServerLocked, FatalError)


class UploadGone(ItemError):
    """The server no longer has our upload folder (it expires them): the next try starts anew."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "the server dropped the chunked upload; it starts again on the next try")


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload folder of ours: ``id`` below ``/uploads/<user>/``."""

    id: str
    path: str  # the destination key
    key: str | None  # what it uploads (remote|path|size|sha256); None: no hash, cannot resume


class UploadLedger(JsonFile):
    """Our upload folders: ``{id: {"remote", "path", "key", "started"}}``."""

    def __init__(self, session: DavSession) -> None:
        super().__init__(session.ctx.state_dir / "webdav-uploads.json")
        self._remote = session.settings.url

    def add(self, upload: Upload) -> None:
        def change(data: JsonObject) -> None:
            data[upload.id] = {"remote": self._remote, "path": upload.path, "key": upload.key, "started": clock()}

        self.update(change)

    def drop(self, upload_id: str) -> None:
        self.update(lambda data: data.pop(upload_id, None))

    def uploads(self) -> list[tuple[Upload, float]]:
        """This remote's uploads, with when each was started."""
        found = []
        for upload_id, item in self.load().items():
            if not isinstance(item, dict) or item.get("remote") != self._remote:
                continue  # another remote's, or left by an older syncd (the server expires those)
            key, path, started = item.get("key"), item.get("path"), item.get("started")
            if isinstance(path, str) and isinstance(started, (int, float)):
                found.append((Upload(upload_id, path, key if isinstance(key, str) else None), float(started)))
        return found


class ChunkedUploader:
    """Chunked upload v2 (see the module docstring)."""

    def __init__(self, session: DavSession, plain: PlainUploader) -> None:
        self._s = session
        self._plain = plain
        self._ledger = UploadLedger(session)
        self._swept = False

    def write(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> Entry | None:
        """Upload ``size`` bytes of ``data`` to ``path``; resumes an earlier upload of the same
        content. :returns: the new entry, or None when the answer did not tell it all.

        :raises PreconditionFailed: ``create_only`` and the path exists, or ``if_match`` is
            stale or the file is gone. :raises ChangedWhileReading: ``data`` was short or had
            another hash. :raises ServerLocked: :raises QuotaExceeded: :raises TransientError:
        """
        if not self._swept:
            self._swept = True
            self.sweep()
        key = f"{self._s.settings.url}|{path}|{size}|{content_hash}" if content_hash else None
        upload, have = self._start(path, key)
        try:
            digest = self._send_chunks(upload, data, size, have, content_hash)
            response = self._finish(upload, size, mtime_ns, digest, if_match=if_match, create_only=create_only)
        except (ShortData, HashMismatch) as exc:
            self._abandon(upload)
            mismatch = ContentMismatch if isinstance(exc, HashMismatch) else ChangedWhileReading
            raise mismatch(path, str(exc)) from exc
        except BaseException as exc:
            self._after_failure(upload, exc)
            raise
        self._ledger.drop(upload.id)  # the server removed the folder with the MOVE
        return write_answer(self._s, path, response, size=size, mtime_ns=mtime_ns, sha256=digest)

    def sweep(self) -> int:
        """DELETE our upload folders older than :data:`UPLOAD_KEEP_S`. :returns: how many."""
        swept = 0
        for upload, started in self._ledger.uploads():
            if clock() - started > UPLOAD_KEEP_S:
                swept += self._abandon(upload)
        return swept

    # -- steps ---------------------------------------------------------------------------

    def _start(self, path: str, key: str | None) -> tuple[Upload, dict[str, int]]:
        """The upload folder to use, and the chunks it holds: an earlier one of the same
        content if the server still has it, else a new one. Earlier uploads to ``path`` of
        other content will never be resumed: they are removed."""
        resumed: tuple[Upload, dict[str, int]] | None = None
        for upload, _ in self._ledger.uploads():
            if upload.path != path:
                continue
            chunks = self._chunks(upload) if key is not None and upload.key == key and resumed is None else None
            if chunks is None:
                self._abandon(upload)
            else:
                resumed = upload, chunks
        if resumed is not None:
            self._ledger.add(resumed[0])  # started again: the sweep measures from now
            return resumed
        return self._create(path, key), {}

    def _create(self, path: str, key: str | None) -> Upload:
        upload = Upload(f"syncd-{uuid.uuid4().hex}", path, key)
        self._ledger.add(upload)  # before the MKCOL: a crash right after it leaks nothing
        response = self._s.transport.request("MKCOL", self._url(upload), headers={"Destination": self._s.url(path)})
        if response.status_code not in (200, 201):
            self._ledger.drop(upload.id)
            self._s.raise_for(response, path, "start chunked upload")
        response.close()
        return upload

    def _send_chunks(
        self, upload: Upload, data: BinaryIO, size: int, have: dict[str, int], content_hash: str | None
    ) -> str:
        """PUT each chunk the server does not hold yet. :returns: the SHA-256 of all the bytes."""
        chunk_size = min(self._s.settings.chunk_size, self._s.server.max_chunk_size or self._s.settings.chunk_size)
        headers = {"Destination": self._s.url(upload.path), "OC-Total-Length": str(size)}
        digest = hashlib.sha256()
        count = max(1, (size + chunk_size - 1) // chunk_size)
        for number in range(1, count + 1):
            length = min(chunk_size, size - (number - 1) * chunk_size)
            name = f"{number:05d}"
            last = number == count
            if have.get(name) == length and not last:
                consume(data, length, digest)  # sent by an earlier, interrupted try
                continue
            body = SizedBody(data, length, digest=digest, expected_sha256=content_hash if last else None)
            url = f"{self._url(upload)}/{name}"
            response = self._s.transport.request(
                "PUT", url, headers=headers, body=functools.partial(_same, body), replayable=False
            )
            if response.status_code not in (200, 201, 204):
                self._chunk_failed(upload, response, number)
            response.close()
        return digest.hexdigest()

    def _chunk_failed(self, upload: Upload, response: requests.Response, number: int) -> None:
        if response.status_code == 404:  # the server expired or lost our upload folder
            response.close()
            self._ledger.drop(upload.id)
            raise UploadGone(upload.path)
        self._s.raise_for(response, upload.path, f"upload chunk {number}")

    def _finish(
        self, upload: Upload, size: int, mtime_ns: int, digest: str, *, if_match: str | None, create_only: bool
    ) -> requests.Response:
        """MOVE ``.file`` onto the destination, with the conditions Nextcloud honours there."""
        destination = self._s.url(upload.path)
        headers = {
            "Destination": destination,
            "OC-Total-Length": str(size),
            **self._plain.upload_headers(mtime_ns, digest),
        }
        if if_match is not None:
            headers["If"] = f"<{destination}> ([{if_match}])"
        else:
            headers["Overwrite"] = "F" if create_only else "T"
        for attempt in range(2):  # a second try only after re-creating a vanished parent
            response = self._s.transport.request("MOVE", f"{self._url(upload)}/.file", headers=headers)
            if response.status_code in (200, 201, 204):
                response.close()
                return response
            if response.status_code == 409 and attempt == 0:
                response.close()
                self._s.folders.forget(parent_of(upload.path))
                self._s.folders.ensure(parent_of(upload.path))
                continue
            self._final_move_failed(upload, response)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _final_move_failed(self, upload: Upload, response: requests.Response) -> None:
        if response.status_code == 412:
            response.close()
            raise PreconditionFailed(upload.path)
        if response.status_code == 404:
            response.close()
            # With an If header, 404 means the destination is gone; else our upload folder is.
            if self._chunks(upload) is not None:
                raise PreconditionFailed(upload.path, "deleted since it was listed")
            self._ledger.drop(upload.id)
            raise UploadGone(upload.path)
        self._s.raise_for(response, upload.path, "finish chunked upload")

    # -- failures ------------------------------------------------------------------------

    def _after_failure(self, upload: Upload, exc: BaseException) -> None:
        """Keep a resumable upload for the next try; remove one that cannot resume."""
        if not isinstance(exc, Exception) or isinstance(exc, UploadGone):
            return  # gone already, or interrupted: no request now; the ledger lets a later run resume or sweep it
        if upload.key is not None and isinstance(exc, RESUMABLE):
            log.info("%s: chunked upload of %s kept to resume (%s)", self._s.label, upload.path, exc)
            return
        self._abandon(upload)

    def _abandon(self, upload: Upload) -> int:
        """DELETE an upload folder of ours. :returns: 1 when it is gone now, else 0 (it stays
        in the ledger for a later sweep)."""
        with contextlib.suppress(TransientError, FatalError):
            response = self._s.transport.request("DELETE", self._url(upload))
            response.close()
            if response.status_code in (200, 204, 404):
                self._ledger.drop(upload.id)
                return 1
        return 0

    def _chunks(self, upload: Upload) -> dict[str, int] | None:
        """The chunks the server holds in an upload folder (name -> size), or None if it has none."""
        response = self._s.transport.request(
            "PROPFIND",
            self._url(upload) + "/",
            headers={"Depth": "1", "Content-Type": "application/xml"},
            body=lambda: propfind_body(("d:getcontentlength", "d:resourcetype")),
            stream=True,
        )
        if response.status_code != 207:
            response.close()
            return None
        chunks: dict[str, int] = {}
        try:
            for resource in parse_multistatus(iter_body(response)):
                if not resource.is_dir and resource.size is not None:
                    chunks[posixpath.basename(resource.path)] = resource.size
        except IncompleteMultistatus:
            return None
        finally:
            response.close()
        return chunks

    def _url(self, upload: Upload) -> str:
        user_root = self._s.user_root
        assert user_root is not None  # the remote chunks only below /remote.php/dav/files/<user>/
        return self._s.transport.absolute(user_root.dav_path(f"uploads/{user_root.user}/{upload.id}"))


def _same(body: SizedBody) -> Body:
    """A body factory for a request sent once (a chunk cannot be re-read from a stream)."""
    return body
