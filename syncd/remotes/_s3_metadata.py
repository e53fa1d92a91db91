"""What the S3 remote (:mod:`syncd.remotes.s3`) keeps of an object besides its bytes: the user
metadata keys it writes (rclone's), their times, and the local cache of that metadata.

ListObjectsV2 pages carry no user metadata, so mtime and hash come from a metadata cache
(SQLite in the pair's state dir) keyed by the object's listed fingerprint (S3 ETag, size):
only objects new or changed since the cache saw them need a HEAD.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from syncd.times import clamp_ns

MTIME_KEY = "mtime"  # X-Amz-Meta-Mtime, as rclone's s3 backend
SHA256_KEY = "sha256"  # X-Amz-Meta-Sha256
MD5_KEY = "md5chksum"  # X-Amz-Meta-Md5chksum: rclone's MD5 of multipart objects


def format_mtime(mtime_ns: int) -> str:
    """Seconds since the epoch with a 9-digit fraction (exact; rclone parses it). Before 1970
    the sign covers the fraction too: -0.5 s is "-0.500000000", not "-1.500000000"."""
    seconds, nanos = divmod(abs(mtime_ns), 1_000_000_000)
    return f"{'-' if mtime_ns < 0 else ''}{seconds}.{nanos:09d}"


def parse_mtime(text: str) -> int | None:
    """Nanoseconds from rclone's float seconds (``1700000000.5``, ``-0.25``), or None; a time
    past what the index can hold is clamped (see :mod:`syncd.times`)."""
    match = re.fullmatch(r"\s*(-?)(\d{1,15})(?:\.(\d{1,9})\d*)?\s*", text)
    if not match:
        return None
    sign, seconds, fraction = match.groups()
    ns = int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    return clamp_ns(-ns if sign else ns)


# --------------------------------------------------------------------------- metadata cache


@dataclass(frozen=True, slots=True)
class Listed:
    """What a listing (or HEAD) shows of an object without its user metadata."""

    key: str
    size: int
    s3_etag: str
    modified: int  # LastModified, whole seconds: the mtime of objects without ours

    @property
    def fingerprint(self) -> str:
        # Not LastModified: servers disagree between list and HEAD (``rclone serve s3``
        # lists the file's mtime but HEADs the upload time; listings carry ms, HEAD s).
        return f"{self.s3_etag}|{self.size}"


class MetaCache:
    """key -> (fingerprint, mtime_ns, sha256): user metadata of objects as last seen.

    An entry is used only while the object's listed fingerprint is unchanged, so a stale
    or lost cache costs HEAD requests, never wrong data.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        target = ":memory:"
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                target = str(path)
            except OSError:
                target = ":memory:"
        try:
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._init()
        except sqlite3.Error:  # a broken cache file: start afresh in memory
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._init()

    def _init(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # a cache: losing it costs HEADs only
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, fp TEXT NOT NULL, mtime_ns INTEGER, sha256 TEXT)"
        )

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, int | None, str | None]]:
        out: dict[str, tuple[str, int | None, str | None]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                for key, fp, mtime_ns, sha in self._db.execute(
                    f"SELECT key, fp, mtime_ns, sha256 FROM meta WHERE key IN ({marks})", batch
                ):
                    out[key] = (fp, mtime_ns, sha)
        return out

    def put_many(self, rows: list[tuple[str, str, int | None, str | None]]) -> None:
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:  # a cache: a failed write costs HEADs later, nothing else
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def drop(self, key: str) -> None:
        with self._lock, suppress(sqlite3.Error):
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def claimed_sha256(meta: Mapping[str, str]) -> str | None:
    """The SHA-256 an object's metadata claims (any writer may set it), or None."""
    value = meta.get(SHA256_KEY, "").strip().lower()
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None
