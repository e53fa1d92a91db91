"""The one narrow contract every remote implements, and its capabilities as data.

A remote holds a tree of *files* addressed by relative keys such as ``"docs/a.txt"``
(``/``-separated, no leading slash). Folders are implicit: writing ``a/b/c`` creates what the
remote needs, and deleting the last file of a folder may leave the folder or not (bucket-like
remotes have none). Every remote passes ``tests/remotes/contract.py``.

Errors: remotes raise only errors from :mod:`syncd.errors`, mapped at this boundary:
``NotFound`` for a missing key, ``PreconditionFailed`` when ``if_match``/``create_only`` does
not hold, ``TransientError`` for anything worth retrying, ``FatalError`` for bad credentials
or a missing root/bucket, ``ItemError`` for a problem with one key.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from syncd.errors import ItemError, NotFound, PreconditionFailed, SyncdError, TransientError, UnsafePath
from syncd.models import Entry

CHUNK = 1 << 20  # bytes read or written at a time: bounded memory for any file size
TRASH_PREFIX = ".syncd-trash/"
SHA256 = "sha256"  # the hash the engine compares (Entry.content_hash), by its name in Capabilities.hashes


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a remote can do, as data. The engine asks these, never the remote's class."""

    # the hashes (by name: SHA256, ...) list()/stat() give for every file without reading its
    # data; the engine compares SHA-256 only (Entry.content_hash)
    hashes: frozenset[str] = frozenset()
    # ... from metadata any writer can set (not computed from the bytes): where such a hash
    # alone would let a sync skip moving a file, the engine reads the bytes to check it
    hashes_are_claims: bool = False
    mtime_precision_ns: int = 1  # mtimes written are kept to this precision
    case_insensitive: bool = False  # "A.txt" and "a.txt" are the same file
    unicode_normalizing: bool = False  # NFC and NFD spellings are the same file
    empty_dirs: bool = False  # folders exist on their own
    conditional_writes: bool = False  # write/delete honour if_match and create_only atomically
    server_side_move: bool = False  # move() (SupportsMove) does not transfer the data
    tree_etags: bool = False  # a folder's etag changes when anything below it changes
    inodes: bool = False  # entries carry a stable inode (rename detection on local trees)
    local_path: bool = False  # files live on this machine (watchable; see SupportsLocalPath)


@runtime_checkable
class Remote(Protocol):
    name: str
    capabilities: Capabilities

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Yield every file under ``prefix``, recursively, in no particular order; the
        listing streams (memory does not grow with the tree). Keys that are not safe
        (see :func:`syncd.paths.check_key`) are still yielded, so the engine can report them.

        :raises FatalError: the root/bucket does not exist or credentials are refused.
        :raises TransientError: the listing could not be completed; a partial listing is
            never returned as if it were complete.
        """
        ...

    def stat(self, path: str) -> Entry:
        """:raises NotFound: no file at ``path``."""
        ...

    def open_read(self, path: str) -> AbstractContextManager[BinaryIO]:
        """A stream of the file's bytes. :raises NotFound:"""
        ...

    def write(
        self,
        path: str,
        data: BinaryIO,
        *,
        size: int,
        mtime_ns: int,
        content_hash: str | None = None,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> Entry:
        """Store ``size`` bytes read from ``data`` at ``path``, atomically: readers see the old
        file or the new one, never a part. Keeps ``mtime_ns`` (to the remote's precision)
        and, where the remote has metadata, ``content_hash``. Verifies that exactly ``size``
        bytes arrived (and the hash when given) before committing.

        :raises PreconditionFailed: ``if_match`` is given and the current etag differs, or
            ``create_only`` and the path exists.
        :raises ChangedWhileReading: ``data`` did not yield ``size`` bytes / the given hash.
        :returns: the new entry (its etag is what a later listing will show).
        """
        ...

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        """Remove ``path`` for good. :raises NotFound: :raises PreconditionFailed:"""
        ...

    def trash(self, path: str, *, if_match: str | None = None) -> str:
        """Remove ``path`` from the tree but keep the version recoverable (the remote's trash).

        :returns: where the version went (a key under the trash, or a description).
        :raises NotFound: :raises PreconditionFailed:
        """
        ...

    def keep_version(self, path: str, *, if_match: str | None = None) -> str:
        """Copy the current version of ``path`` into the trash, leaving it in place: called
        before an overwrite, so the version is kept even though the overwrite itself is
        atomic and verified (remotes that version overwrites themselves may return at once).

        :returns: where the copy went. :raises NotFound: :raises PreconditionFailed:
        """
        ...

    def purge_trash(self, older_than: datetime) -> int:
        """Delete trashed versions trashed before ``older_than``. :returns: how many."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class SupportsMove(Protocol):
    """Optional: rename in place (``capabilities.server_side_move`` says whether the data
    moves too). Where a remote has no move, the engine copies the file to the new name and
    trashes the old one (:func:`syncd.engine.moves.move`)."""

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Rename ``src`` to ``dst`` (``dst`` must not exist).

        :raises NotFound: ``src`` is missing. :raises PreconditionFailed: ``src`` changed
            (``if_match``) or ``dst`` exists.
        """
        ...


@dataclass(slots=True)
class TreeListing:
    """The result of ``list_changed`` on a remote with tree etags (``capabilities.tree_etags``).

    ``entries`` streams the files directly inside every folder that was (re-)listed.
    Once it is exhausted, ``folder_etags`` holds the etag of every folder (key "" is the
    root, others like "a/b"), ``listed`` the folders whose direct files were all yielded,
    and ``unchanged`` the folders whose whole subtree was skipped because their etag matched:
    every file below an unchanged folder is exactly as the caller last saw it.
    A file below a listed folder that was not yielded is gone.
    """

    entries: Iterator[Entry]
    folder_etags: dict[str, str] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@runtime_checkable
class SupportsTreeListing(Protocol):
    """Optional: re-list only the folders whose etag changed since ``known_folder_etags``."""

    def list_changed(self, known_folder_etags: Mapping[str, str]) -> TreeListing: ...


@runtime_checkable
class SupportsFolderTotals(Protocol):
    """Optional, with tree etags: read folders' etags after a run's own writes changed them,
    with the bytes below each, so the engine can check that a folder holds exactly what it
    expects before it keeps the etag (the next run then skips it: no re-listing of what the
    run itself wrote)."""

    def folder_totals(self, folders: Collection[str]) -> dict[str, tuple[str, int]]:
        """``{folder: (etag, bytes of every file below it)}`` for each of ``folders`` that
        exists (the root is ""), in as few requests as the server allows.

        :raises TransientError: :raises FatalError:
        """
        ...


@runtime_checkable
class SupportsAfterChanges(Protocol):
    """Optional: told which paths a run changed on this remote, once the run's actions are
    done (e.g. a Nextcloud data dir runs ``occ files:scan`` for them).

    :returns: one message per failure, for the run's report (never raises for them)."""

    def after_changes(self, paths: Collection[str]) -> list[str]: ...


@runtime_checkable
class SupportsLocalPath(Protocol):
    """Optional: the remote keeps its files in a folder on this machine (``root``, absolute),
    so they can be watched, and a local tree's key ``k`` is the file ``root / k`` (a bucket
    kept in a folder lays its objects out its own way below ``root``). Only meaningful with
    ``capabilities.local_path``: read it through :func:`local_root`."""

    root: Path


def local_root(remote: Remote) -> Path | None:
    """The folder holding ``remote``'s files on this machine, or None when they live
    elsewhere (a server, a bucket) or the remote does not say where."""
    if remote.capabilities.local_path and isinstance(remote, SupportsLocalPath):
        return remote.root
    return None


@dataclass(slots=True)
class ListingNotes:
    """What a listing could not cover: folders it could not read, and names it passed over."""

    unlisted: dict[str, str] = field(default_factory=dict)  # folder -> why it could not be read
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it is not synced


@runtime_checkable
class SupportsListingNotes(Protocol):
    """Optional: a listing that goes on past a folder it cannot read (a local tree with one
    unreadable subfolder). ``listing_notes`` describes the last ``list()`` once it is
    exhausted; the engine keeps the index's files for an unlisted folder (never deletions)
    and reports the folder as an item error."""

    listing_notes: ListingNotes


@runtime_checkable
class SupportsNameRules(Protocol):
    """Optional: names this remote refuses to store (e.g. Nextcloud's forbidden names, read
    from its capabilities). The planner turns a copy, move or conflict copy that would create
    such a name here into a SKIP with the reason, instead of an item error on every run."""

    def name_problem(self, path: str) -> str | None:
        """Why ``path`` cannot be stored here (one line), or None. Pure: no request."""
        ...


@runtime_checkable
class SupportsPrepareFolders(Protocol):
    """Optional: create the folders a run's writes need, once, before the parallel writes
    start (parallel writers racing to create one folder is what a server sees otherwise)."""

    def prepare_folders(self, folders: Collection[str]) -> None:
        """Create each of ``folders`` (keys like "a/b") and its missing parents, parents
        first. Never raises for one folder: a folder that could not be created fails the
        writes into it later, as item errors.

        :raises FatalError: credentials refused. :raises TransientError: the server is gone.
        """
        ...


@runtime_checkable
class SupportsSyncWrites(Protocol):
    """Optional: a remote on this machine's disk whose changes (write, move, delete, trash,
    keep_version) are atomic at once but durable only once ``sync_writes`` returns (one flush
    for a batch, not an fsync per file; see :mod:`syncd.remotes.durability`). The engine
    calls it before it records a batch of finished actions in the index; ``close`` calls it."""

    def sync_writes(self) -> None:
        """Make every change made so far durable.

        :raises TransientError: the disk reported an error (the changes may be lost).
        """
        ...


@dataclass(frozen=True, slots=True)
class NewFile:
    """One small new file for :meth:`SupportsBatchCreate.create_batch`: its bytes were read
    whole and checked (size, and the listing's hash when it had one) by the caller."""

    path: str
    data: bytes
    mtime_ns: int
    content_hash: str  # SHA-256 (hex) of data


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_files: int  # files in one batch
    max_file_bytes: int  # a bigger file is written alone
    max_batch_bytes: int  # bytes of all files of one batch


@runtime_checkable
class SupportsBatchCreate(Protocol):
    """Optional: create many small new files in one request (Nextcloud's bulk upload)."""

    def batch_limits(self) -> BatchLimits | None:
        """The limits of a batch, or None when this remote cannot batch (now)."""
        ...

    def accepts_in_batch(self, path: str, size: int) -> bool:
        """Whether ``path`` may be created by a batch. A batch cannot be create-only, so a
        remote accepts only paths where no other client can have created a file since the
        listing (e.g. a folder this run created)."""
        ...

    def create_batch(self, files: Sequence[NewFile]) -> list[Entry | ItemError]:
        """Create ``files`` in one request: ``result[i]`` is the new entry of ``files[i]``
        (as a later listing shows it), or the item error that file got (the caller retries it
        alone).

        :raises FatalError: credentials refused. :raises TransientError: the request failed
            as a whole (nothing in the answer can be trusted: the caller retries each alone).
        """
        ...


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hash a stream in bounded memory. :returns: (hex digest, bytes read)."""
    digest = hashlib.sha256()
    total = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def check_precondition(remote: Remote, path: str, *, if_match: str | None, create_only: bool) -> Entry | None:
    """For remotes without conditional writes: stat ``path`` and check ``if_match`` /
    ``create_only`` against it (called right before a commit; narrows the race, cannot close it).

    :returns: the current entry, or None if there is none (or nothing to check).
    :raises PreconditionFailed:
    """
    if if_match is None and not create_only:
        return None
    try:
        current: Entry | None = remote.stat(path)
    except NotFound:
        current = None
    if create_only and current is not None:
        raise PreconditionFailed(path, "already exists")
    if if_match is not None and (current is None or current.etag != if_match):
        raise PreconditionFailed(path)
    return current


def disk_write_error(label: str, folder: Path, path: str, exc: OSError) -> SyncdError:
    """A write to a local disk that failed, mapped the same way for a tree and a bucket kept
    in a folder: a full disk is one line naming the side (``label``) and the folder, worth a
    retry once there is room; a name too long for the file system is an unsafe name."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransientError(f"{label}: the disk holding {folder} is full ({exc.strerror}); {path!r} not written")
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafePath(path, "name too long for this file system")
    return ItemError(path, exc.strerror or str(exc))


def known_or_read_hash(remote: Remote, path: str) -> str:
    """The SHA-256 (hex) of the file at ``path``: the one the remote keeps (metadata) where it
    may keep one (``SHA256`` in its ``hashes``, or hashes it holds as claims), else that of
    its bytes, read. Works on any remote through the contract (``stat``, ``open_read``).

    :raises NotFound: :raises ItemError: the file could not be read.
    """
    caps = remote.capabilities
    if SHA256 in caps.hashes or caps.hashes_are_claims:
        known = remote.stat(path).content_hash
        if known is not None:
            return known
    with remote.open_read(path) as stream:
        return sha256_stream(stream)[0]
