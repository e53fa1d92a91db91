"""syncd's own trash: one layout for every remote that keeps one, and the trash methods of
the bucket remotes (``dir``, ``s3``, ``storj``) written once.

Layout: a version trashed at local time ``when`` from ``path`` is kept at
``.syncd-trash/<YYYY-MM-DD>/<HHMMSSffffff>/<path>``: in a bucket (and on a WebDAV server
without a trash bin of its own) as that key, in a local tree's trash folder under the state
dir as the file ``<trash folder>/<YYYY-MM-DD>/<HHMMSSffffff>/<path>``. The moment in the name
is what purging by retention and ``syncd restore --at`` read; nothing else is stored.

:class:`BucketTrash` gives a bucket remote ``trash``, ``keep_version``, ``purge_trash`` and
the restore side (``trashed_versions``, ``stat_trashed``, ``open_trashed``) from four
primitives it has anyway: ``move``, ``delete``, ``stat``/``open_read`` and two small ones,
``copy_object`` (a server-side copy) and ``trash_objects`` (a raw listing of the trash).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from syncd.errors import NotFound
from syncd.models import Entry
from syncd.remotes.base import TRASH_PREFIX

_MOMENT_FORMAT = "%Y-%m-%d %H%M%S%f"


@dataclass(frozen=True, slots=True)
class TrashedVersion:
    """One version in syncd's trash: what ``syncd restore`` lists and brings back."""

    path: str  # where it was (its key in the tree)
    key: str  # where it is kept: ``.syncd-trash/<date>/<time>/<path>``
    trashed_at: datetime  # local time, naive (as in the key)
    size: int


def trash_relpath(path: str, when: datetime) -> str:
    """``<date>/<time>/<path>``: where ``path`` trashed at ``when`` goes inside a trash."""
    return f"{when:%Y-%m-%d}/{when:%H%M%S%f}/{path}"


def trash_key(path: str, when: datetime) -> str:
    """The key of ``path`` trashed at ``when``: ``.syncd-trash/<date>/<time>/<path>``."""
    return TRASH_PREFIX + trash_relpath(path, when)


def parse_trash_key(key: str) -> tuple[datetime, str] | None:
    """(when it was trashed, its original path) of a key made by :func:`trash_key`, or None
    when ``key`` is not one (a foreign object under the prefix is never purged or restored)."""
    if not key.startswith(TRASH_PREFIX):
        return None
    parts = key[len(TRASH_PREFIX) :].split("/", 2)
    if len(parts) < 3 or not parts[2]:
        return None
    when = parse_moment(parts[0], parts[1])
    return (when, parts[2]) if when is not None else None


def parse_moment(day: str, moment: str) -> datetime | None:
    """The moment named by the folders ``<YYYY-MM-DD>/<HHMMSSffffff>`` of a trash, or None."""
    try:
        return datetime.strptime(f"{day} {moment}", _MOMENT_FORMAT)
    except ValueError:
        return None


def trash_date(key: str) -> datetime | None:
    """The moment a key made by :func:`trash_key` was trashed, or None if it is not one."""
    parsed = parse_trash_key(key)
    return parsed[0] if parsed is not None else None


def moment_folder(key: str) -> str:
    """``.syncd-trash/<date>/<time>``: the folder holding every version trashed at one moment."""
    return "/".join(key.split("/")[:3])


def due_for_purge(keys: Iterable[str], older_than: datetime) -> list[str]:
    """The keys of ``keys`` trashed before ``older_than`` (others, and foreign keys, stay)."""
    due = []
    for key in keys:
        when = trash_date(key)
        if when is not None and when < older_than:
            due.append(key)
    return due


def versions_of(objects: Iterable[tuple[str, int]], path: str | None = None) -> list[TrashedVersion]:
    """The trashed versions among ``objects`` (key, size), of ``path`` only when given,
    oldest first."""
    found = []
    for key, size in objects:
        parsed = parse_trash_key(key)
        if parsed is not None and (path is None or parsed[1] == path):
            found.append(TrashedVersion(path=parsed[1], key=key, trashed_at=parsed[0], size=size))
    found.sort(key=lambda v: (v.trashed_at, v.key))
    return found


@runtime_checkable
class SupportsTrashVersions(Protocol):
    """Optional: a remote whose syncd trash can be listed and read back (``syncd restore``)."""

    def trashed_versions(self, path: str | None = None) -> list[TrashedVersion]:
        """Every version in syncd's trash (of ``path`` only, when given), oldest first."""
        ...

    def stat_trashed(self, key: str) -> Entry:
        """The kept version's entry (size, mtime, hash when known). :raises NotFound:"""
        ...

    def open_trashed(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Its bytes. :raises NotFound:"""
        ...


class _BucketPrimitives(Protocol):
    """What :class:`BucketTrash` builds on: the remote's own operations."""

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry: ...

    def delete(self, path: str, *, if_match: str | None = None) -> None: ...

    def stat(self, path: str) -> Entry: ...

    def open_read(self, path: str) -> AbstractContextManager[BinaryIO]: ...

    def copy_object(self, src: str, dst: str, *, if_match: str | None) -> None:
        """Copy ``src`` to the new key ``dst`` on the server, metadata included.
        :raises NotFound: :raises PreconditionFailed: ``src``'s etag is not ``if_match``."""
        ...

    def trash_objects(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``.syncd-trash/`` (keys relative to the root)."""
        ...

    def delete_trashed(self, key: str) -> None: ...


class BucketTrash:
    """The trash methods of a bucket remote (a mixin): the remote gives the primitives of
    :class:`_BucketPrimitives`."""

    def trash(self: _BucketPrimitives, path: str, *, if_match: str | None = None) -> str:
        """Move ``path`` into the trash. :returns: its trash key."""
        dest = trash_key(path, datetime.now())
        self.move(path, dest, if_match=if_match)
        return dest

    def keep_version(self: _BucketPrimitives, path: str, *, if_match: str | None = None) -> str:
        """A server-side copy into the trash (no data transfer), metadata included."""
        dest = trash_key(path, datetime.now())
        self.copy_object(path, dest, if_match=if_match)
        return dest

    def purge_trash(self: _BucketPrimitives, older_than: datetime) -> int:
        """Delete the versions trashed before ``older_than``. :returns: how many."""
        # Collect first: deleting while a listing streams could disturb its cursor.
        purged = 0
        for key in due_for_purge([key for key, _ in self.trash_objects()], older_than):
            with contextlib.suppress(NotFound):
                self.delete_trashed(key)
                purged += 1
        return purged

    def delete_trashed(self: _BucketPrimitives, key: str) -> None:
        """Delete one trashed version for good (a remote may do it in fewer requests)."""
        self.delete(key)

    def trashed_versions(self: _BucketPrimitives, path: str | None = None) -> list[TrashedVersion]:
        return versions_of(self.trash_objects(), path)

    def stat_trashed(self: _BucketPrimitives, key: str) -> Entry:
        return self.stat(key)

    def open_trashed(self: _BucketPrimitives, key: str) -> AbstractContextManager[BinaryIO]:
        return self.open_read(key)
