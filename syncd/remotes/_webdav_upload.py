"""Writing one file with one PUT: straight to its name where the server's PUT is atomic and
conditional (Nextcloud), else to a temporary name that is checked and then MOVEd in place."""

from __future__ import annotations

import logging
import uuid
from typing import BinaryIO

import requests

from syncd.errors import ChangedWhileReading, ItemError, PreconditionFailed
from syncd.models import Entry
from syncd.remotes._webdav_body import SizedBody
from syncd.remotes._webdav_http import Body
from syncd.remotes._webdav_presets import META_VERSION, join_key, parent_of
from syncd.remotes._webdav_session import DavSession, write_answer
from syncd.remotes._webdav_xml import DavResource, parse_multistatus_errors, proppatch_body

log = logging.getLogger("syncd.remotes.webdav")


class PlainUploader:
    """One PUT per file (see the module docstring)."""

    def __init__(self, session: DavSession) -> None:
        self._s = session
        self._dead_props_ok = True  # cleared when the server refuses our dead property

    def upload_headers(self, mtime_ns: int, content_hash: str | None) -> dict[str, str]:
        """X-OC-MTime (whole seconds), and Nextcloud's OC-Checksum when the hash is known.
        Nextcloud refuses an X-OC-MTime before 1970-01-01T00:00:01 (500): such a file gets
        the server's time (the listing then says so; times are only compared per side)."""
        headers = {"X-OC-MTime": str(mtime_ns // 1_000_000_000)} if mtime_ns >= 1_000_000_000 else {}
        if content_hash and self._s.preset.name == "nextcloud":
            headers["OC-Checksum"] = f"SHA256:{content_hash.lower()}"
        return headers

    def put(
        self, url: str, data: BinaryIO, size: int, headers: dict[str, str], expected: str | None
    ) -> tuple[requests.Response, str]:
        """PUT exactly ``size`` bytes. Retried only when ``data`` can be rewound.

        :returns: the response and the SHA-256 of the bytes sent.
        """
        start = data.tell() if data.seekable() else None
        sent: list[SizedBody] = []

        def body() -> Body:
            if start is not None:
                data.seek(start)
            sent.append(SizedBody(data, size, expected_sha256=expected))
            return sent[-1]

        response = self._s.transport.request("PUT", url, headers=headers, body=body, replayable=start is not None)
        return response, sent[-1].digest.hexdigest()

    def write_direct(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        conditions: dict[str, str],
    ) -> Entry | None:
        """Nextcloud: its PUT writes a .part and renames it, and honours If-Match. One request
        when the folder is known; a folder that vanished (404, or 409 elsewhere) is created
        again and the PUT sent once more, when ``data`` can be rewound.

        :returns: the new entry from the answer, or None when the answer did not tell it all.
        """
        headers = {**self.upload_headers(mtime_ns, content_hash), **conditions}
        start = data.tell() if data.seekable() else None
        folder = parent_of(path)
        for attempt in range(2):
            response, digest = self.put(self._s.url(path), data, size, headers, content_hash)
            if response.status_code in (200, 201, 204):
                response.close()
                return write_answer(self._s, path, response, size=size, mtime_ns=mtime_ns, sha256=digest)
            if response.status_code not in (404, 409):
                self._s.raise_for(response, path, "write")
            response.close()
            self._s.folders.forget(folder)
            if attempt == 1 or start is None:
                break
            self._s.folders.ensure(folder)
            data.seek(start)
        raise ItemError(path, f"its folder {folder or '/'!r} is missing on the server; will retry")

    def write_via_temp(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> Entry:
        """Generic servers: PUT a temp name in the same folder, check its size, MOVE it in place."""
        temp = join_key(parent_of(path), f"{self._s.ctx.temp_prefix}{uuid.uuid4().hex[:12]}")
        try:
            response, digest = self.put(
                self._s.url(temp), data, size, {"X-OC-MTime": str(mtime_ns // 10**9)}, content_hash
            )
            if response.status_code not in (200, 201, 204):
                self._s.raise_for(response, path, "write")
            response.close()
            uploaded = self._s.propfind_one(temp, self._s.preset.props)
            if uploaded is None or uploaded.size != size:
                got = "nothing" if uploaded is None else f"{uploaded.size} bytes"
                raise ChangedWhileReading(path, f"server holds {got} after upload, expected {size}")
            self._set_meta(temp, mtime_ns, digest, uploaded)
            if if_match is not None:
                self._check_current_etag(path, if_match)
            self._s.move_request(temp, path, overwrite=not create_only, if_match=None)
        except BaseException:
            self._s.delete_quietly(temp)
            raise
        return self._s.stat(path)

    def _set_meta(self, key: str, mtime_ns: int, content_hash: str | None, uploaded: DavResource) -> None:
        """Keep the exact mtime and the hash in a dead property, with the size and server mtime
        they describe (see :meth:`DavSession.entry`). Servers that refuse it keep X-OC-MTime at best."""
        if not (self._s.preset.dead_props and self._dead_props_ok):
            return
        meta = f"{META_VERSION} {mtime_ns} {content_hash or '-'} {uploaded.size} {uploaded.last_modified_ns or 0}"
        response = self._s.transport.request(
            "PROPPATCH",
            self._s.url(key),
            headers={"Content-Type": "application/xml"},
            body=lambda: proppatch_body(meta),
        )
        body = response.content
        if response.status_code != 207 or parse_multistatus_errors(body):
            log.info("%s: server does not keep dead properties; mtimes kept to its own precision", self._s.label)
            self._dead_props_ok = False

    def _check_current_etag(self, path: str, if_match: str) -> None:
        """Best effort on servers without an atomic conditional rename (capability says so)."""
        current = self._s.propfind_one(path, self._s.preset.props)
        if current is None or current.etag != if_match:
            raise PreconditionFailed(path)


def conditions(if_match: str | None, create_only: bool) -> dict[str, str]:
    """The conditional headers of a PUT."""
    if create_only:
        return {"If-None-Match": "*"}
    if if_match:
        return {"If-Match": if_match}
    return {}
