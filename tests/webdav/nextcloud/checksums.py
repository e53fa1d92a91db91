"""``PATCH`` with ``X-Recalculate-Hash``: Nextcloud's checksum update (``ChecksumUpdatePlugin``).

Nextcloud stores a checksum exactly as the uploader sent it, a wrong one included [02:12-14], so a
client can download a file whose content does not match its ``OC-Checksum``. The desktop client then
sends ``PATCH`` with ``X-Recalculate-Hash: SHA1``; the server hashes the stored content with PHP's
``hash_file``, stores ``SHA1:<hex>`` and answers ``204`` with that ``OC-Checksum``. The DAV header
announces the feature (``nextcloud-checksum-update`` [11d:25]) and a file's ``Allow`` lists PATCH
[11d:26]; without the header ``hash_file`` gets an empty algorithm name and PHP answers ``500``
ValueError [11d:29].
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

from .errors import HttpError

BAD_ALGORITHM = "hash_file(): Argument #1 ($algo) must be a valid hashing algorithm"


def _hashlib(name: str) -> Callable[[bytes], str]:
    def digest(data: bytes) -> str:
        return hashlib.new(name, data).hexdigest()

    return digest


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def _crc32b(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


# The algorithms a sync client asks for (PHP knows more; these are the ones worth answering).
HASHES: dict[str, Callable[[bytes], str]] = {
    "md5": _hashlib("md5"),
    "sha1": _hashlib("sha1"),
    "sha256": _hashlib("sha256"),
    "sha512": _hashlib("sha512"),
    "adler32": _adler32,
    "crc32b": _crc32b,
}


def recalculated(data: bytes, algorithm: str | None) -> str:
    """The checksum Nextcloud stores for ``data``: ``<ALGO>:<hex>``, the name upper-cased as sent.

    :raises HttpError: 500 ValueError when PHP's ``hash_file`` would not know the algorithm (an
        absent header is the empty name).
    """
    name = (algorithm or "").strip().lower()
    digest = HASHES.get(name)
    if digest is None:
        raise HttpError(500, BAD_ALGORITHM, "ValueError")
    return f"{name.upper()}:{digest(data)}"
