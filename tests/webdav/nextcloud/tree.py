"""The in-memory file tree of each user: nodes, trash bin entries, versions, upload folders."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

INSTANCE_ID = "ocsyncdtest1"  # Nextcloud's instance ids are "oc" + 10 lower-case letters and digits


@dataclass
class Version:
    """One entry of a file's version list; its id is the mtime it had."""

    data: bytes
    mtime: int
    label: str | None = None


@dataclass
class Node:
    """A file or a folder. A folder's ``etag`` changes whenever anything below it changes."""

    fileid: int
    is_dir: bool
    etag: str
    mtime: int
    data: bytes = b""
    checksum: str | None = None  # OC-Checksum as the uploader sent it (one or more "ALGO:hex")
    children: dict[str, Node] = field(default_factory=dict)
    written_at: int = 0  # the clock second of the last content write: decides whether the ETag stays
    ctime: int = 0  # X-OC-CTime
    upload_time: int = 0
    versions: dict[int, Version] = field(default_factory=dict)

    def total_size(self) -> int:
        if not self.is_dir:
            return len(self.data)
        return sum(child.total_size() for child in self.children.values())

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every node below this one (depth first, by name), with its path relative to this one."""
        for name in sorted(self.children):
            child = self.children[name]
            path = f"{prefix}{name}"
            yield path, child
            if child.is_dir:
                yield from child.walk(path + "/")


@dataclass
class TrashItem:
    name: str  # "<name>.d<deletion time>", as Nextcloud names trash bin entries
    original_location: str  # from the user's root, e.g. "dir/a.txt"
    deletion_time: int
    node: Node

    @property
    def original_name(self) -> str:
        return self.original_location.rsplit("/", 1)[-1]


@dataclass
class Chunk:
    data: bytes
    etag: str
    mtime: int


@dataclass
class Upload:
    """An upload folder of chunked upload v2: its chunks and the folder's own etag."""

    destination: str
    etag: str = ""
    mtime: int = 0
    chunks: dict[str, Chunk] = field(default_factory=dict)

    def assembled(self) -> bytes:
        """The chunks joined in name order, as Nextcloud's ``.file`` answers them."""
        return b"".join(self.chunks[name].data for name in sorted(self.chunks))

    def size(self) -> int:
        return sum(len(chunk.data) for chunk in self.chunks.values())


class Ids:
    """Fileids and ETags: unique per server, folder ETags 13 hex digits, file ETags 32 (as Nextcloud)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._fileids = itertools.count(100)
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def fileid(self) -> int:
        with self._lock:
            return next(self._fileids)

    def file_etag(self) -> str:
        with self._lock:
            serial = next(self._etags)
        return hashlib.md5(f"{INSTANCE_ID}-file-{serial}".encode()).hexdigest()

    def folder_etag(self) -> str:
        """Like PHP's uniqid(): 8 hex digits of seconds, then 5 more that never repeat here."""
        with self._lock:
            serial = next(self._etags)
        return f"{int(self._clock()) & 0xFFFFFFFF:08x}{serial & 0xFFFFF:05x}"


def oc_id(fileid: int) -> str:
    """The ``oc:id`` / ``OC-FileId`` form of a fileid."""
    return f"{fileid:08d}{INSTANCE_ID}"


def split_path(path: str) -> list[str]:
    return [part for part in path.split("/") if part]
