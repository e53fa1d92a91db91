"""Making a batch of changes to a local disk durable together (I/O).

A remote kept on this machine (a local tree, a ``dir`` bucket) commits each write atomically
(a temp name then a rename, or an unnamed file then one link) but does not flush each to the
disk: an fsync per file costs
about 5 ms here, more than everything else a small file needs. It notes what it changed in a
:class:`PendingSync`, and the engine calls the remote's ``sync_writes()``
(:class:`~syncd.remotes.base.SupportsSyncWrites`) before it records a batch of finished
actions in the index. So a power loss can lose a batch's writes, never the index's record of
them: the next run finds those paths as the disk holds them, and decides again.

On Linux, one ``syncfs(2)`` per file system flushes the batch (data and names; about 30 ms
for 1,000 small files here, against 4-5 s for an fsync of each). Elsewhere each file written
is fsynced, then each folder whose names changed, and the folders above them.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterable

from syncd.errors import TransientError

SyncFs = Callable[[int], None]

O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)  # 0 where the platform has no unnamed files
# open(O_TMPFILE) refused: this file system has no unnamed files
NO_UNNAMED_FILES = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
# linkat of an unnamed file refused (no /proc, links not allowed here): fall back to a temp name
NO_UNNAMED_LINK = (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)


def unnamed_files_possible() -> bool:
    """Whether this platform can write an unnamed file (O_TMPFILE) and name it by one link
    through ``/proc/self/fd`` (:func:`link_unnamed`); a file system may still refuse either."""
    return bool(O_TMPFILE) and os.path.isdir("/proc/self/fd")


def open_unnamed(folder: str | os.PathLike[str]) -> int | None:
    """An unnamed file in ``folder`` (O_TMPFILE), open for writing, or None where its file
    system has none.

    :raises OSError: any other refusal.
    """
    try:
        return os.open(folder, os.O_WRONLY | O_TMPFILE, 0o644)
    except OSError as exc:
        if exc.errno not in NO_UNNAMED_FILES:
            raise
        return None


def link_unnamed(fd: int, dest: str | os.PathLike[str]) -> None:
    """Name the unnamed file open on ``fd`` ``dest``: linkat(AT_SYMLINK_FOLLOW), atomic.
    A dir fd makes os.link call linkat, not link(2), which would not follow /proc's link (an
    absolute source ignores it).

    :raises FileExistsError: ``dest`` exists.
    :raises OSError: refused; an errno in :data:`NO_UNNAMED_LINK` means not here (no /proc,
        links not allowed), not a failure of the disk.
    """
    os.link(f"/proc/self/fd/{fd}", dest, src_dir_fd=fd, follow_symlinks=True)


class PendingSync:
    """What a remote changed since its changes were last made durable: files written and
    folders whose names changed (a file created, renamed, linked or removed there), below
    ``tops`` (the remote's root, its trash folder). Thread-safe: writes run in a pool."""

    def __init__(self, label: str, tops: Iterable[str]) -> None:
        self.label = label
        self.tops = tuple(os.path.abspath(top) for top in tops)
        self._lock = threading.Lock()
        self._files: set[str] = set()
        self._folders: set[str] = set()

    def wrote(self, file: str) -> None:
        """``file`` (an absolute path) was created or replaced: its bytes and its name."""
        with self._lock:
            self._files.add(file)
            self._folders.add(os.path.dirname(file))

    def changed(self, *folders: str) -> None:
        """Names changed in ``folders`` (a rename, a link, an unlink, a folder made or removed)."""
        with self._lock:
            self._folders.update(folders)

    def sync(self) -> None:
        """Make every change noted so far durable. What a failed flush covered stays noted.

        :raises TransientError: the disk reported an error (its writes may be lost).
        """
        with self._lock:
            files, folders = self._files, self._folders
            self._files, self._folders = set(), set()
        if not folders:
            return
        try:
            flush(files, folders, self.tops, syncfs=system_syncfs())
        except OSError as exc:
            with self._lock:
                self._files |= files
                self._folders |= folders
            raise TransientError(f"{self.label}: cannot flush writes to the disk: {exc.strerror or exc}") from exc


def flush(files: Collection[str], folders: Collection[str], tops: Collection[str], *, syncfs: SyncFs | None) -> None:
    """Make ``files`` and the names in ``folders`` durable: one ``syncfs`` per file system
    holding them where the platform has it (``syncfs``: :func:`system_syncfs`), else (None)
    an fsync of each file, then of each folder and of every folder above it up to its top
    in ``tops``.

    :raises OSError: a flush failed.
    """
    if syncfs is not None:
        for folder in _one_folder_per_device(folders):
            _with_fd(folder, syncfs)
        return
    for file in files:
        try:
            _with_fd(file, os.fsync)
        except FileNotFoundError:
            continue  # renamed or removed since: its folder's flush covers what is left of it
    for folder in sorted(folders_up_to_tops(folders, tops), key=len, reverse=True):
        try:
            _with_fd(folder, os.fsync)
        except FileNotFoundError:
            continue  # removed since (a pruned folder): its parent is flushed too


def folders_up_to_tops(folders: Iterable[str], tops: Collection[str]) -> set[str]:
    """``folders`` and every folder above each of them, up to (and with) the top it is
    under; a folder under none of ``tops`` stands alone. Pure."""
    found: set[str] = set()
    for start in folders:
        top = next((t for t in tops if start == t or start.startswith(t.rstrip("/") + "/")), None)
        folder = start
        while folder not in found:
            found.add(folder)
            if top is None or folder == top:
                break
            folder = os.path.dirname(folder)
    return found


def _one_folder_per_device(folders: Iterable[str]) -> list[str]:
    """An existing folder on each file system that holds one of ``folders`` (a folder
    removed since, e.g. pruned after its last file went, counts by its nearest parent)."""
    devices: dict[int, str] = {}
    for folder in folders:
        existing = folder
        while True:
            try:
                device = os.stat(existing).st_dev
                break
            except FileNotFoundError:
                parent = os.path.dirname(existing)
                if parent == existing:
                    raise
                existing = parent
        devices.setdefault(device, existing)
    return list(devices.values())


def _with_fd(path: str, call: Callable[[int], None]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        call(fd)
    finally:
        os.close(fd)


@functools.cache
def system_syncfs() -> SyncFs | None:
    """``syncfs(2)`` from the C library (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only once something was written: it costs a no-change run ~2 ms

    try:
        libc_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    libc_syncfs.argtypes = [ctypes.c_int]
    libc_syncfs.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if libc_syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return syncfs
