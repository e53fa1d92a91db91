"""Nextcloud chunked upload v2 for big files, resumable across runs.

``MKCOL /uploads/<user>/<id>``, one ``PUT /uploads/<user>/<id>/<n>`` per chunk, then
``MOVE /uploads/<user>/<id>/.file`` onto the destination: the file appears whole, at once.
An interrupted upload of the same content resumes from the chunks the server still holds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import posixpath
import uuid
from typing import BinaryIO

from syncd.errors import FatalError, ItemError, TransientError
from syncd.remotes._webdav_body import HashMismatch, ShortData, SizedBody, consume
from syncd.remotes._webdav_http import Body, iter_body
from syncd.remotes._webdav_session import DavSession
from syncd.remotes._webdav_state import JsonFile, JsonObject
from syncd.remotes._webdav_upload import PlainUploader, conditions
from syncd.remotes._webdav_xml import IncompleteMultistatus, parse_multistatus, propfind_body


class UploadLedger(JsonFile):
    """Chunked uploads in progress, so an interrupted one resumes: key -> upload id."""

    def get(self, key: str | None) -> str | None:
        value = self.load().get(key or "")
        return value if isinstance(value, str) else None

    def put(self, key: str, upload_id: str) -> None:
        def change(data: JsonObject) -> None:
            data[key] = upload_id

        self.update(change)

    def drop(self, key: str) -> None:
        self.update(lambda data: data.pop(key, None))


class ChunkedUploader:
    """Chunked upload v2 (see the module docstring)."""

    def __init__(self, session: DavSession, plain: PlainUploader) -> None:
        self._s = session
        self._plain = plain
        self._ledger = UploadLedger(session.ctx.state_dir / "webdav-uploads.json")

    def write(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> None:
        """Upload ``size`` bytes of ``data`` to ``path``; resumes an interrupted upload of the
        same content."""
        user_root = self._s.user_root
        assert user_root is not None
        chunk_size = self._s.settings.chunk_size
        resume_key = f"{self._s.settings.url}|{path}|{size}|{content_hash}" if content_hash else None
        upload_id = self._ledger.get(resume_key) if resume_key else None
        folder = user_root.dav_path(f"uploads/{user_root.user}/")
        dest = {"Destination": self._s.url(path), "OC-Total-Length": str(size)}
        have = self._existing_chunks(folder, upload_id) if upload_id else None
        if have is None:
            upload_id = f"syncd-{uuid.uuid4().hex}"
            response = self._s.transport.request("MKCOL", self._s.transport.absolute(folder + upload_id), headers=dest)
            if response.status_code not in (200, 201):
                self._s.raise_for(response, path, "start chunked upload")
            response.close()
            have = {}
        assert upload_id is not None
        if resume_key:
            self._ledger.put(resume_key, upload_id)
        upload_url = self._s.transport.absolute(folder + upload_id)
        digest = hashlib.sha256()
        count = (size + chunk_size - 1) // chunk_size
        try:
            for number in range(1, count + 1):
                length = min(chunk_size, size - (number - 1) * chunk_size)
                name = f"{number:05d}"
                last = number == count
                if have.get(name) == length and not last:
                    consume(data, length, digest)  # sent by an earlier, interrupted try
                    continue
                body = SizedBody(data, length, digest=digest, expected_sha256=content_hash if last else None)
                response = self._s.transport.request(
                    "PUT", f"{upload_url}/{name}", headers=dest, body=functools.partial(_same, body), replayable=False
                )
                if response.status_code not in (200, 201, 204):
                    self._s.raise_for(response, path, f"upload chunk {number}")
                response.close()
            headers = {
                **dest,
                **self._plain.upload_headers(mtime_ns, content_hash),
                **conditions(if_match, create_only),
            }
            response = self._s.transport.request("MOVE", f"{upload_url}/.file", headers=headers)
            if response.status_code not in (200, 201, 204):
                self._s.raise_for(response, path, "finish chunked upload")
            response.close()
        except (ShortData, HashMismatch, ItemError, FatalError):
            self._abandon(upload_url, resume_key)
            raise
        if resume_key:
            self._ledger.drop(resume_key)

    def _existing_chunks(self, folder: str, upload_id: str) -> dict[str, int] | None:
        """Chunks of an earlier try that the server still holds, or None if it has none."""
        response = self._s.transport.request(
            "PROPFIND",
            self._s.transport.absolute(folder + upload_id + "/"),
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

    def _abandon(self, upload_url: str, resume_key: str | None) -> None:
        if resume_key:
            self._ledger.drop(resume_key)
        with contextlib.suppress(TransientError, FatalError):
            self._s.transport.request("DELETE", upload_url).close()


def _same(body: SizedBody) -> Body:
    """A body factory for a request sent once (a chunk cannot be re-read from a stream)."""
    return body
