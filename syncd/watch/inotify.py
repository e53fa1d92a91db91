"""One inotify instance and one thread for every watched folder of every pair (Linux).

watchdog gives each watched root its own emitter thread (two per pair when both sides are
local): 2,000 threads for 1,000 users. Here every folder of every root is one watch of one
inotify file descriptor, read by one thread, and each event is handed to the callback of
the root it belongs to.

What inotify does not do by itself, done here: watching a tree (a watch per folder, added as
folders appear: the files a new folder already holds are reported as created, since they may
predate its watch), following folders moved inside a tree, and saying when events were lost
(queue overflow, a root deleted or moved away) through ``on_lost``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("syncd.watch")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
# Content changes, names coming and going; not reads, not chmod/touch (they change no bytes).
MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
READ_SIZE = 1 << 16

# on_change(path, kind): kind is "created", "modified", "deleted", "moved_from" or "moved_to";
# for a folder: "folder_deleted" or "folder_moved_from" (its files went with it)
OnChange = Callable[[str, str], None]
OnLost = Callable[[str], None]  # why (the tree's events can no longer be trusted)


@dataclass(slots=True)
class _Tree:
    root: str
    on_change: OnChange
    on_lost: OnLost
    skip: Callable[[str], bool]  # folders not to watch (state, trash)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class Inotify:
    """Watch whole trees on one inotify descriptor. ``start`` the reader thread once the
    first trees are added; ``close`` ends it and every watch."""

    def __init__(self, on_overflow: OnLost) -> None:
        self.libc = _libc()
        fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self.on_overflow = on_overflow
        self.lock = threading.Lock()
        # wd -> (tree, folder path) of each tree holding the folder: one folder in two trees
        # (pairs that may overlap) is one watch, whose events go to both
        self.folders: dict[int, list[tuple[_Tree, str]]] = {}
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="watch-inotify", daemon=True)

    def add_tree(self, root: str, on_change: OnChange, on_lost: OnLost, skip: Callable[[str], bool]) -> None:
        """Watch every folder of ``root``. :raises OSError: a watch could not be added (e.g.
        ENOSPC: fs.inotify.max_user_watches reached); the tree is then not watched at all."""
        tree = _Tree(root.rstrip(os.sep) or os.sep, on_change, on_lost, skip)
        added: list[int] = []
        try:
            self._add_folders(tree, tree.root, added, report=False)
        except OSError:
            for wd in added:
                self._forget(wd, tree)
            raise

    def _add_folders(self, tree: _Tree, top: str, added: list[int], *, report: bool) -> None:
        """A watch on ``top`` and each folder below; ``report`` the files met as created."""
        todo = [top]
        while todo:
            folder = todo.pop()
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(folder), MASK)
            if wd < 0:
                err = ctypes.get_errno()
                if err in (errno.ENOENT, errno.ENOTDIR) and folder != tree.root:
                    continue  # gone again already: its parent's event says so
                raise OSError(err, os.strerror(err), folder)
            with self.lock:  # a folder walked again (moved in) takes its new path
                self.folders[wd] = [e for e in self.folders.get(wd, []) if e[0] is not tree] + [(tree, folder)]
            added.append(wd)
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if not tree.skip(entry.path):
                                todo.append(entry.path)
                        elif report:
                            tree.on_change(entry.path, "created")
            except OSError:
                continue  # unreadable or gone: nothing below to watch

    def _forget(self, wd: int, tree: _Tree) -> None:
        """``tree`` no longer watches folder ``wd``; the watch goes once no tree holds it."""
        with self.lock:
            left = [e for e in self.folders.get(wd, []) if e[0] is not tree]
            if left:
                self.folders[wd] = left
                return
            self.folders.pop(wd, None)
        self.libc.inotify_rm_watch(self.fd, wd)

    def _drop_below(self, tree: _Tree, top: str) -> None:
        """``tree`` stops watching ``top`` and every folder below it (moved away: their paths are stale)."""
        with self.lock:
            gone = [
                wd
                for wd, entries in self.folders.items()
                for t, f in entries
                if t is tree and (f == top or f.startswith(top + os.sep))
            ]
        for wd in gone:
            self._forget(wd, tree)

    def watches(self) -> int:
        with self.lock:
            return len(self.folders)

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        os.write(self.wake_w, b"x")
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        for fd in (self.fd, self.wake_r, self.wake_w):
            os.close(fd)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while not self.closed:
            poller.poll()
            if self.closed:
                return
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                continue
            try:
                self._events(data)
            except Exception:  # one bad event must not end every pair's watching
                log.exception("a file event could not be handled")

    def _events(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                self.on_overflow("the inotify queue overflowed")
                continue
            with self.lock:
                found = self.folders.pop(wd, []) if mask & IN_IGNORED else self.folders.get(wd, [])
            if mask & IN_IGNORED:  # the kernel removed the watch
                continue
            for tree, folder in found:
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    if folder == tree.root:
                        tree.on_lost(f"{folder} was deleted or moved away")
                    continue
                self._event(tree, os.path.join(folder, os.fsdecode(name)), mask)

    def _event(self, tree: _Tree, path: str, mask: int) -> None:
        if mask & IN_ISDIR:
            if mask & (IN_CREATE | IN_MOVED_TO):
                if not tree.skip(path):
                    try:  # a folder moved in is walked again: its watches get their new paths
                        self._add_folders(tree, path, [], report=True)
                    except OSError as exc:
                        tree.on_lost(f"cannot watch {path}: {exc.strerror or exc}")
            elif mask & IN_DELETE:
                tree.on_change(path, "folder_deleted")
            elif mask & IN_MOVED_FROM:
                self._drop_below(tree, path)  # moved within the tree: its IN_MOVED_TO watches it again
                tree.on_change(path, "folder_moved_from")
            return
        if mask & IN_CREATE:
            tree.on_change(path, "created")
        elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
            tree.on_change(path, "modified")
        elif mask & IN_DELETE:
            tree.on_change(path, "deleted")
        elif mask & IN_MOVED_FROM:
            tree.on_change(path, "moved_from")
        elif mask & IN_MOVED_TO:
            tree.on_change(path, "moved_to")
