"""Renaming a file on one remote, whether or not the remote can move (I/O).

A remote with :class:`~syncd.remotes.base.SupportsMove` renames in place. On one without, a
move is copy-then-trash through this host: the new name is written (create-only) from a read
of the old one, the write verifies the bytes, the old name is checked not to have changed
meanwhile, and only then goes to the remote's trash like any deletion. A failure at any step
leaves the old name in place (and no copy where the failure came before the trash step).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from typing import BinaryIO

from syncd.errors import ChangedWhileReading, PreconditionFailed, SyncdError
from syncd.models import Entry
from syncd.remotes.base import CHUNK, Remote, SupportsMove


@dataclass(frozen=True, slots=True)
class Moved:
    entry: Entry  # the entry at the new name
    bytes_copied: int  # through this host: 0 for a server-side move, the file's size for copy-then-trash


def move(remote: Remote, src: str, dst: str, *, if_match: str | None = None) -> Moved:
    """Rename ``src`` to ``dst`` on ``remote`` (``dst`` must not exist).

    :returns: the entry at ``dst``, and the bytes the move copied through this host (a run
        counts them in its bytes moved like any copy's).
    :raises NotFound: ``src`` is missing. :raises PreconditionFailed: ``src`` is not the
        version ``if_match`` names, or ``dst`` exists. :raises ChangedWhileReading: ``src``
        changed while it was copied (copy-then-trash).
    """
    if isinstance(remote, SupportsMove):
        return Moved(remote.move(src, dst, if_match=if_match), 0)
    written = copy_then_trash(remote, src, dst, if_match=if_match)
    return Moved(written, bytes_a_move_copies(remote, written.size))


def bytes_a_move_copies(remote: Remote, size: int) -> int:
    """What :func:`move` of a ``size``-byte file on ``remote`` copies through this host."""
    return 0 if isinstance(remote, SupportsMove) else size


def copy_then_trash(remote: Remote, src: str, dst: str, *, if_match: str | None = None) -> Entry:
    """The move of a remote without one: write ``dst`` from a read of ``src`` (create-only,
    verified by the remote: size, and the SHA-256 of the bytes read), then trash ``src``
    provided it is still the version that was read. Where ``src`` changed meanwhile, the copy
    is removed again and ``src`` is left as it is.

    :raises NotFound: :raises PreconditionFailed: :raises ChangedWhileReading:
    """
    current = remote.stat(src)
    if if_match is not None and current.etag != if_match:
        raise PreconditionFailed(src)
    with remote.open_read(src) as stream:
        reader = _Hashing(stream)
        # the remote's own claim of the hash is not passed on: the bytes read decide
        data = io.BufferedReader(reader, buffer_size=CHUNK)
        written = remote.write(dst, data, size=current.size, mtime_ns=current.mtime_ns, create_only=True)
    try:
        if written.content_hash is not None and written.content_hash != reader.hexdigest():
            raise ChangedWhileReading(src, "the copy's SHA-256 is not that of the bytes read")
        remote.trash(src, if_match=current.etag)
    except (SyncdError, OSError):
        _remove_copy(remote, dst, written)
        raise
    return written


def _remove_copy(remote: Remote, dst: str, written: Entry) -> None:
    """Undo the copy of a move that could not finish (best effort: a copy left behind is a
    file like any other to the next run, never a loss)."""
    with contextlib.suppress(SyncdError):
        remote.delete(dst, if_match=written.etag)


class _Hashing(io.RawIOBase):
    """A read-only stream that hashes what is read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._stream.read(len(buffer))
        self._digest.update(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
