"""The server's state and the tree operations every endpoint shares.

All state lives behind one re-entrant lock (``Store.lock``); request bodies are read outside it,
so that one slow upload never stalls the others. What a file keeps on a write follows the corpus:
an overwrite keeps the fileid, and keeps the ETag when it lands in the same clock second as the
previous write with an unchanged mtime; every ancestor folder up to the root gets one new shared
ETag and the current time on any change below it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .capabilities import Capabilities
from .locks import PathLocks
from .names import nfc
from .tree import Ids, Node, TrashItem, Upload, Version


@dataclass(frozen=True)
class FileWrite:
    """What one content write stores: the bytes and the metadata the request carried."""

    data: bytes
    mtime: int | None = None  # X-OC-MTime; None: the current time
    checksum: str | None = None
    ctime: int | None = None
    upload_time: bool = True  # False when Nextcloud failed after writing (nc:upload_time stays 0)


class Store:
    def __init__(
        self,
        users: Mapping[str, str],
        *,
        clock: Callable[[], float],
        capabilities: Capabilities | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.capabilities = capabilities if capabilities is not None else Capabilities()
        self.ids = Ids(clock)
        self.users = dict(users)
        self.passwords: dict[str, set[str]] = {user: {password} for user, password in users.items()}
        self.roots: dict[str, Node] = {user: self.new_folder() for user in users}
        self.trash: dict[str, list[TrashItem]] = {user: [] for user in users}
        self.uploads: dict[tuple[str, str], Upload] = {}
        self.quotas: dict[str, int | None] = {user: None for user in users}
        self.file_locks = PathLocks()
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []

    def now(self) -> int:
        return int(self.clock())

    # -- nodes -----------------------------------------------------------------------------

    def new_folder(self) -> Node:
        now = self.now()
        return Node(fileid=self.ids.fileid(), is_dir=True, etag=self.ids.folder_etag(), mtime=now, written_at=now)

    def find(self, user: str, parts: list[str]) -> Node | None:
        node: Node | None = self.roots.get(user)
        for part in parts:
            if node is None or not node.is_dir:
                return None
            node = node.children.get(nfc(part))
        return node

    def propagate(self, user: str, parts: list[str]) -> None:
        """A change at ``parts`` gives every folder above it one new ETag and the current time."""
        etag = self.ids.folder_etag()
        now = self.now()
        node = self.roots[user]
        chain = [node]
        for part in parts[:-1]:
            child = node.children.get(nfc(part))
            if child is None or not child.is_dir:
                break
            node = child
            chain.append(node)
        for folder in chain:
            folder.etag = etag
            folder.mtime = now

    def write_file(self, user: str, parts: list[str], write: FileWrite) -> tuple[Node, bool]:
        """Store a file's new content at ``parts`` (its parent exists). :returns: (node, created)."""
        parent = self.find(user, parts[:-1])
        assert parent is not None and parent.is_dir
        name = nfc(parts[-1])
        existing = parent.children.get(name)
        assert existing is None or not existing.is_dir, "callers refuse to write a file over a folder"
        now = self.now()
        mtime = write.mtime if write.mtime is not None else now
        if existing is None:
            node = Node(fileid=self.ids.fileid(), is_dir=False, etag=self.ids.file_etag(), mtime=mtime)
        else:
            node = existing
            if not (node.written_at == now and node.mtime == mtime):
                node.etag = self.ids.file_etag()
        node.data = write.data
        node.mtime = mtime
        node.written_at = now
        node.checksum = write.checksum
        node.upload_time = now if write.upload_time else 0
        if write.ctime is not None:
            node.ctime = write.ctime
        node.versions[mtime] = Version(write.data, mtime)
        parent.children[name] = node
        self.propagate(user, parts)
        return node, existing is None

    def touch(self, user: str, parts: list[str], node: Node, mtime: int) -> None:
        """A new mtime without new content (PROPPATCH lastmodified): a new ETag too."""
        node.mtime = mtime
        node.etag = self.ids.folder_etag() if node.is_dir else self.ids.file_etag()
        self.propagate(user, parts)

    def detach(self, user: str, parts: list[str]) -> Node:
        parent = self.find(user, parts[:-1])
        assert parent is not None
        node = parent.children.pop(nfc(parts[-1]))
        self.propagate(user, parts)
        return node

    def attach(self, user: str, parts: list[str], node: Node) -> None:
        parent = self.find(user, parts[:-1])
        assert parent is not None and parent.is_dir
        parent.children[nfc(parts[-1])] = node
        self.propagate(user, parts)

    def clone(self, node: Node) -> Node:
        """A COPY: new fileids; ETags, mtimes and content as the source's (as Nextcloud copies them)."""
        copy = Node(
            fileid=self.ids.fileid(),
            is_dir=node.is_dir,
            etag=node.etag,
            mtime=node.mtime,
            data=node.data,
            checksum=node.checksum,
            written_at=node.written_at,
            ctime=node.ctime,
            upload_time=node.upload_time,
        )
        copy.children = {name: self.clone(child) for name, child in node.children.items()}
        return copy

    # -- trash bin, quota ------------------------------------------------------------------

    def to_trash(self, user: str, location: list[str], node: Node) -> None:
        """Keep a deleted node; a second deletion of one path in the same second replaces the first."""
        now = self.now()
        name = f"{nfc(location[-1])}.d{now}"
        items = [item for item in self.trash[user] if item.name != name]
        items.append(TrashItem(name, "/".join(nfc(p) for p in location), now, node))
        self.trash[user] = items

    def used_bytes(self, user: str) -> int:
        return self.roots[user].total_size()

    def free_bytes(self, user: str) -> int | None:
        """Free space under the user's quota; None when the quota is unlimited."""
        quota = self.quotas.get(user)
        if quota is None:
            return None
        return max(0, quota - self.used_bytes(user))
