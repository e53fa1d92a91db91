"""Upload and download bodies for the webdav remote: exact sizes, hashes checked in flight."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import requests

from syncd.errors import TransientError
from syncd.remotes._webdav_http import iter_body

PIECE = 1 << 16  # bytes per read/send: bounded memory for any file size


class ShortData(Exception):
    """The source stream ended before the promised size. Not an OSError, so urllib3 lets it
    through untouched (and closes the connection, so the server never commits the upload)."""


class HashMismatch(Exception):
    """The bytes read do not have the promised SHA-256."""


class SizedBody:
    """Exactly ``size`` bytes of ``source`` as an upload body.

    ``__len__`` makes requests send a ``Content-Length`` instead of chunked encoding.
    When ``expected_sha256`` is given, the last piece is held back until the hash is checked,
    so a wrong hash aborts the request before the server has the whole body.
    ``digest`` may be shared by several bodies (the chunks of one file).
    """

    def __init__(
        self,
        source: BinaryIO,
        size: int,
        *,
        digest: Any = None,
        expected_sha256: str | None = None,
    ) -> None:
        self.source = source
        self.size = size
        self.digest = digest if digest is not None else hashlib.sha256()
        self.expected = expected_sha256.lower() if expected_sha256 else None
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        remaining = self.size
        if remaining == 0:
            self._check_hash()
        while remaining > 0:
            piece = self.source.read(min(PIECE, remaining))
            if not piece:
                raise ShortData(f"source ended after {self.size - remaining} of {self.size} bytes")
            remaining -= len(piece)
            self.digest.update(piece)
            if remaining == 0:
                self._check_hash()
            self.sent += len(piece)
            yield piece

    def _check_hash(self) -> None:
        if self.expected is not None and self.digest.hexdigest() != self.expected:
            raise HashMismatch("content does not match the expected SHA-256")


def consume(source: BinaryIO, size: int, digest: Any) -> None:
    """Read ``size`` bytes into ``digest`` without sending them (a chunk already uploaded)."""
    remaining = size
    while remaining > 0:
        piece = source.read(min(PIECE, remaining))
        if not piece:
            raise ShortData(f"source ended {remaining} bytes early")
        digest.update(piece)
        remaining -= len(piece)


class ResponseReader(io.RawIOBase):
    """A streamed GET body as a file. Raises TransientError if the connection is lost, and
    checks the byte count against Content-Length, so a cut download is never short data."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self._pieces = iter_body(response)
        self._buffer = b""
        self._read = 0
        length = response.headers.get("Content-Length")
        self._expected = int(length) if length and length.isdigit() else None
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buffer and not self._done:
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                self._done = True
                self._check_complete()
        count = min(len(view), len(self._buffer))
        view[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        self._read += count
        return count

    def _check_complete(self) -> None:
        if self._expected is not None and self._read + len(self._buffer) != self._expected:
            raise TransientError(
                f"download cut short: {self._read} of {self._expected} bytes from {self._response.url}"
            )

    def close(self) -> None:
        self._response.close()
        super().close()
