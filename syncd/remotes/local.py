"""A directory tree on this machine (e.g. a Nextcloud data dir ``.../data/alice/files``).

Writes go to a temp name in the target folder, are verified, then renamed into place; they
are made durable by the batch (``sync_writes``, :mod:`syncd.remotes.durability`), not one by
one. Symlinks and special files are skipped (listed in ``listing_notes``); a subfolder that
cannot be read is noted, not fatal; no operation follows a path out of the root (every parent
segment is checked not to be a symlink). Run under the pair's lock (``OpenContext.exclusive``),
a listing removes the temp files of earlier runs that were killed.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import secrets
import shutil
import stat as statmod
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from syncd.errors import (
    ChangedWhileReading,
    ContentMismatch,
    FatalError,
    ItemError,
    NotFound,
    PreconditionFailed,
    TransientError,
    UnsafePath,
)
from syncd.models import Entry
from syncd.paths import RESERVED_PREFIXES, TEMP_PREFIX, check_key
from syncd.remotes.base import CHUNK, TRASH_PREFIX, Capabilities, ListingNotes, disk_write_error
from syncd.remotes.bucket_trash import TrashedVersion, parse_moment, parse_trash_key, trash_relpath, versions_of
from syncd.remotes.durability import NO_UNNAMED_LINK, PendingSync, link_unnamed, open_unnamed, unnamed_files_possible
from syncd.remotes.nextcloud_scan import nextcloud_user, run_scans
from syncd.remotes.settings import OpenContext, RemoteSettings
from syncd.times import NS_MAX, NS_MIN, clamp_ns

new_tuple = tuple.__new__  # builds a NamedTuple from its fields in C (see LocalRemote.list)
STALE_TEMP_S = 3600.0  # a write in flight touches its temp file far more often than this


class Settings(RemoteSettings, frozen=True):
    type: Literal["local"]
    path: Path
    # Nextcloud data-dir mode: after syncd changes files here, run this command per changed
    # folder, "{path}" replaced by "<user>/files/<folder>", e.g.
    # ["sudo", "-u", "www-data", "php", "/var/www/nextcloud/occ", "files:scan", "--path={path}"]
    scan_command: list[str] | None = None
    nextcloud_user: str | None = None  # default: the folder above "files" in path

    def __post_init__(self) -> None:
        if self.scan_command is not None:
            if not self.scan_command or not any("{path}" in part for part in self.scan_command):
                raise ValueError("scan_command: must be a command whose arguments hold {path}")
            if self.nextcloud_user is None and nextcloud_user(self.path) is None:
                raise ValueError("nextcloud_user: needed when path does not end in <user>/files")


def open_remote(settings: Settings, ctx: OpenContext) -> LocalRemote:
    remote = LocalRemote(
        settings.path,
        trash_dir=ctx.state_dir / "trash-files",
        label=ctx.label,
        temp_prefix=ctx.temp_prefix,
        sweep_own_temp=ctx.exclusive,
    )
    if settings.scan_command is not None:
        user = settings.nextcloud_user or nextcloud_user(Path(settings.path))
        assert user is not None  # checked when the config was read
        remote.scan = (list(settings.scan_command), user)
    return remote


def local_etag(st: os.stat_result) -> str:
    """Fingerprint of a local file: changes with content (size/mtime) or replacement (inode)."""
    return f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"


def _entry(path: str, st: os.stat_result, content_hash: str | None = None) -> Entry:
    return Entry(
        path=path,
        size=st.st_size,
        mtime_ns=clamp_ns(st.st_mtime_ns),
        etag=local_etag(st),
        content_hash=content_hash,
        inode=st.st_ino,
    )


class _CheckedReader(io.RawIOBase):
    """A file opened for reading that, at end of data, checks it was not modified meanwhile.
    Seekable like the file it reads (a writer may rewind it to retry), so the check applies
    to whatever pass reaches the end."""

    def __init__(self, path: str, fd: int) -> None:
        super().__init__()
        self._path = path
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._before = os.fstat(fd)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        if n == 0 and len(memoryview(buffer)) > 0:
            self._check_unchanged()
        return n or 0

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n if n and n > 0 else CHUNK)
        if not data:
            self._check_unchanged()
        return data or b""

    def _check_unchanged(self) -> None:
        after = os.fstat(self._file.fileno())
        if (after.st_size, after.st_mtime_ns) != (self._before.st_size, self._before.st_mtime_ns):
            raise ChangedWhileReading(self._path)

    def close(self) -> None:
        self._file.close()
        super().close()


class LocalRemote:
    """A folder on this machine as a tree of files: key ``k`` is the file ``root / k``
    (:class:`~syncd.remotes.base.SupportsLocalPath`)."""

    root: Path

    def __init__(
        self,
        root: Path,
        *,
        trash_dir: Path,
        label: str = "local",
        temp_prefix: str = TEMP_PREFIX,
        sweep_own_temp: bool = False,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.trash_dir = trash_dir
        self.name = label
        # Temp files are named for the pair that writes them (``OpenContext.temp_prefix``), so a
        # pair tells its own from another pair's on an overlapping tree. Under the pair's lock
        # (``sweep_own_temp``) no write of the pair is in flight: each of its own was left by a
        # run that died.
        self._temp_prefix = temp_prefix
        self._sweep_own_temp = sweep_own_temp and temp_prefix != TEMP_PREFIX
        self.listing_notes = ListingNotes()
        self.pending = PendingSync(label, (str(self.root), str(trash_dir)))  # changes not yet flushed to the disk
        self._unnamed_files = unnamed_files_possible()  # see _write_unnamed
        self.scan: tuple[list[str], str] | None = None  # Nextcloud data-dir mode: (command, user)
        self.capabilities = Capabilities(
            mtime_precision_ns=1,
            conditional_writes=True,
            server_side_move=True,
            inodes=True,
            local_path=True,
            case_insensitive=False,
        )

    # -- paths -----------------------------------------------------------------------------

    def _abs(self, path: str, *, create_parents: bool = False) -> str:
        """The absolute path of ``path``, refusing anything that would leave the root."""
        check_key(path)
        parts = path.split("/")
        current = str(self.root)
        for segment in parts[:-1]:
            current = os.path.join(current, segment)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                if not create_parents:
                    raise NotFound(path) from None
                with suppress(FileExistsError):
                    os.mkdir(current)
                st = os.lstat(current)
            except NotADirectoryError:
                raise NotFound(path) from None
            if statmod.S_ISLNK(st.st_mode):
                raise UnsafePath(path, f"folder {segment!r} is a symlink; not following it")
            if not statmod.S_ISDIR(st.st_mode):
                if create_parents:
                    raise ItemError(path, f"{segment!r} is a file, cannot hold a folder")
                raise NotFound(path)
        return os.path.join(current, parts[-1])

    def _check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise FatalError(f"{self.name}: folder {self.root} does not exist (not mounted?)") from None
        except PermissionError:
            raise FatalError(f"{self.name}: no permission to read {self.root}") from None
        if not statmod.S_ISDIR(st.st_mode):
            raise FatalError(f"{self.name}: {self.root} is not a folder")

    # -- reading ---------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Every regular file under ``prefix``. A subfolder that cannot be read is noted in
        ``listing_notes.unlisted`` and the listing goes on; symlinks and special files are
        noted in ``listing_notes.skipped``.

        :raises FatalError: the root is missing or cannot be read.
        :raises TransientError: a folder vanished while it was listed.
        """
        self._check_root()
        notes = self.listing_notes = ListingNotes()
        start = self.root / prefix.rstrip("/") if prefix else self.root
        base = prefix.rstrip("/") + "/" if prefix else ""
        stack: list[tuple[str, str]] = [(str(start), base)]
        while stack:
            folder, rel = stack.pop()
            try:
                scanner = os.scandir(folder)
            except FileNotFoundError:
                if folder == str(start) and prefix:
                    return
                raise TransientError(f"{self.name}: folder {folder} vanished while listing") from None
            except PermissionError:
                if not rel:
                    raise FatalError(f"{self.name}: no permission to list {self.root}") from None
                notes.unlisted[rel.rstrip("/")] = "permission denied"
                continue
            with scanner:
                for item in scanner:
                    name = item.name
                    if name.startswith(TEMP_PREFIX):
                        self._remove_leftover(item)
                    elif item.is_file(follow_symlinks=False):  # the file type comes with the folder
                        try:
                            st = item.stat(follow_symlinks=False)  # one lstat: size, mtime, inode
                        except FileNotFoundError:
                            continue  # removed since the folder was read: simply not there now
                        mtime = st.st_mtime_ns
                        if not NS_MIN <= mtime <= NS_MAX:  # inline: this loop runs once per file
                            mtime = clamp_ns(mtime)
                        # tuple.__new__ as Entry._make does: in C, not the NamedTuple's Python __new__
                        yield new_tuple(Entry, (rel + name, st.st_size, mtime, local_etag(st), None, st.st_ino, None))
                    elif item.is_dir(follow_symlinks=False):
                        if not (rel + name + "/").startswith(RESERVED_PREFIXES):
                            stack.append((item.path, rel + name + "/"))
                    elif item.is_symlink():
                        notes.skipped[rel + name] = "a symlink (not followed)"
                    else:
                        notes.skipped[rel + name] = "a special file (FIFO, socket or device)"

    def _disk_error(self, path: str, exc: OSError) -> Exception:
        return disk_write_error(self.name, self.root, path, exc)

    def _remove_leftover(self, item: os.DirEntry[str]) -> None:
        """A temp file of syncd's is never a user's file. One of this pair's own, seen under
        its lock, was left by a run that died (kill -9, power loss): it goes now, so Nextcloud
        does not show it. Any other (another pair's, or seen without the lock) goes once it is
        clearly abandoned."""
        if self._sweep_own_temp and item.name.startswith(self._temp_prefix):
            with suppress(OSError):
                os.unlink(item.path)
        else:
            _sweep_stale_temp(item)

    def stat(self, path: str) -> Entry:
        full = self._abs(path)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None
        if not statmod.S_ISREG(st.st_mode):
            raise NotFound(path, "not a regular file")
        return _entry(path, st)

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        full = self._abs(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(path, "is a symlink; not following it") from exc
            raise ItemError(path, f"cannot open: {exc.strerror}") from exc
        reader = _CheckedReader(path, fd)
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()

    # -- writing ---------------------------------------------------------------------------

    def _check_etag(self, path: str, full: str, if_match: str | None) -> None:
        if if_match is None:
            return
        try:
            current = local_etag(os.lstat(full))
        except FileNotFoundError:
            raise PreconditionFailed(path, "vanished since it was listed") from None
        if current != if_match:
            raise PreconditionFailed(path)

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
        full = self._abs(path, create_parents=True)
        folder = os.path.dirname(full)
        digest = self._write_unnamed(path, full, data, size, mtime_ns, content_hash) if create_only else None
        if digest is None:
            tmp = os.path.join(folder, self._temp_prefix + secrets.token_hex(6))
            try:
                digest = self._write_tmp(path, tmp, data, size, content_hash)
                os.utime(tmp, ns=(mtime_ns, mtime_ns))
                self._commit(path, tmp, full, if_match=if_match, create_only=create_only)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        self.pending.wrote(full)
        return _entry(path, os.lstat(full), digest)

    def _write_unnamed(
        self, path: str, full: str, data: BinaryIO, size: int, mtime_ns: int, content_hash: str | None
    ) -> str | None:
        """Create-only with no temp name (Linux): the bytes go to an unnamed file in the target
        folder (O_TMPFILE), which one link names once they are verified: one change of the
        folder instead of three (create, link, unlink), and a write that dies leaves nothing.

        :returns: the SHA-256, or None (nothing read) where the file system has no unnamed files.
        :raises PreconditionFailed: ``full`` exists.
        """
        if not self._unnamed_files:
            return None
        try:
            fd = open_unnamed(os.path.dirname(full))
        except OSError as exc:
            raise self._disk_error(path, exc) from exc
        if fd is None:
            self._unnamed_files = False  # not on this file system: temp names from now on
            return None
        try:
            digest = self._fill(path, fd, data, size, content_hash)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
            link_unnamed(fd, full)
        except FileExistsError:
            raise PreconditionFailed(path, "already exists") from None
        except OSError as exc:
            if exc.errno not in NO_UNNAMED_LINK:
                raise self._disk_error(path, exc) from exc
            self._unnamed_files = False  # /proc hidden or links refused here: temp names from now on
            if not data.seekable():  # its bytes cannot be read again: this write fails, later ones do not
                raise self._disk_error(path, exc) from exc
            data.seek(0)
            return None
        finally:
            os.close(fd)
        return digest

    def _write_tmp(self, path: str, tmp: str, data: BinaryIO, size: int, content_hash: str | None) -> str:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise self._disk_error(path, exc) from exc
        try:
            return self._fill(path, fd, data, size, content_hash)
        finally:
            os.close(fd)

    def _fill(self, path: str, fd: int, data: BinaryIO, size: int, content_hash: str | None) -> str:
        """Write ``size`` bytes of ``data`` to ``fd`` and check them. :returns: their SHA-256."""
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb", closefd=False) as out:
            try:
                while chunk := data.read(CHUNK):
                    written += len(chunk)
                    if written > size:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()  # made durable with its batch: sync_writes
            except OSError as exc:
                raise self._disk_error(path, exc) from exc
        if written != size:
            raise ChangedWhileReading(path, f"expected {size} bytes, got {written}")
        hexdigest = digest.hexdigest()
        if content_hash is not None and hexdigest != content_hash:
            raise ContentMismatch(path)
        return hexdigest

    def _commit(self, path: str, tmp: str, full: str, *, if_match: str | None, create_only: bool) -> None:
        if create_only:
            try:
                os.link(tmp, full)  # fails if full exists: an atomic create-only commit
            except FileExistsError:
                raise PreconditionFailed(path, "already exists") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise self._disk_error(path, exc) from exc
                if os.path.lexists(full):  # no hard links here: check, then rename
                    raise PreconditionFailed(path, "already exists") from None
                os.rename(tmp, full)
                return
            os.unlink(tmp)
            return
        if os.path.isdir(full) and not os.path.islink(full):
            raise ItemError(path, "a folder of that name exists")
        self._check_etag(path, full, if_match)
        os.rename(tmp, full)

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        full = self._abs(path)
        self.stat(path)
        self._check_etag(path, full, if_match)
        os.unlink(full)
        self.pending.changed(os.path.dirname(full))
        self._prune_parents(full)

    def trash(self, path: str, *, if_match: str | None = None) -> str:
        full = self._abs(path)
        self.stat(path)
        self._check_etag(path, full, if_match)
        dest = self._trash_path(path)
        try:
            os.rename(full, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise self._disk_error(path, exc) from exc
            shutil.copy2(full, dest)  # trash on another filesystem: copy, then remove
            os.unlink(full)
        self.pending.wrote(str(dest))
        self.pending.changed(os.path.dirname(full))
        self._prune_parents(full)
        return str(dest)

    def _trash_path(self, path: str) -> Path:
        dest = self.trash_dir / trash_relpath(path, datetime.now())
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def keep_version(self, path: str, *, if_match: str | None = None) -> str:
        full = self._abs(path)
        self.stat(path)
        self._check_etag(path, full, if_match)
        dest = self._trash_path(path)
        try:
            os.link(full, dest)  # same filesystem: the old inode stays, for free
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise self._disk_error(path, exc) from exc
            shutil.copy2(full, dest)  # another filesystem, or no hard links there
        self.pending.wrote(str(dest))
        return str(dest)

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        full_src = self._abs(src)
        self.stat(src)
        self._check_etag(src, full_src, if_match)
        full_dst = self._abs(dst, create_parents=True)
        if os.path.lexists(full_dst):
            raise PreconditionFailed(dst, "already exists")
        os.rename(full_src, full_dst)
        self.pending.wrote(full_dst)
        self.pending.changed(os.path.dirname(full_src))
        self._prune_parents(full_src)
        return self.stat(dst)

    def purge_trash(self, older_than: datetime) -> int:
        purged = 0
        if not self.trash_dir.is_dir():
            return 0
        for day in sorted(self.trash_dir.iterdir()):
            for moment in sorted(day.iterdir()) if day.is_dir() else []:
                when = parse_moment(day.name, moment.name)
                if when is not None and when < older_than:
                    purged += sum(1 for p in moment.rglob("*") if p.is_file())
                    shutil.rmtree(moment)
            if day.is_dir() and not any(day.iterdir()):
                day.rmdir()
        return purged

    def trashed_versions(self, path: str | None = None) -> builtins.list[TrashedVersion]:
        """The versions kept in the trash folder under the state dir (of ``path`` when given)."""
        found: builtins.list[tuple[str, int]] = []
        if not self.trash_dir.is_dir():
            return []
        for day in self.trash_dir.iterdir():
            for moment in day.iterdir() if day.is_dir() else []:
                files = [moment / path] if path is not None else moment.rglob("*")
                for file in files:
                    with suppress(OSError):
                        st = file.lstat()
                        if statmod.S_ISREG(st.st_mode):
                            found.append((TRASH_PREFIX + file.relative_to(self.trash_dir).as_posix(), st.st_size))
        return versions_of(found, path)

    def _trashed_file(self, key: str) -> Path:
        if parse_trash_key(key) is None:
            raise NotFound(key)
        relative = key[len(TRASH_PREFIX) :]
        check_key(relative)
        return self.trash_dir / relative

    def stat_trashed(self, key: str) -> Entry:
        try:
            return _entry(key, os.stat(self._trashed_file(key)))
        except FileNotFoundError:
            raise NotFound(key) from None

    @contextmanager
    def open_trashed(self, key: str) -> Iterator[BinaryIO]:
        try:
            stream = open(self._trashed_file(key), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise NotFound(key) from None
        with stream:
            yield stream

    def _prune_parents(self, full: str) -> None:
        """Remove folders left empty by a delete or move, up to (not including) the root."""
        folder = os.path.dirname(full)
        root = str(self.root)
        while folder != root and folder.startswith(root):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)

    def after_changes(self, paths: Collection[str]) -> builtins.list[str]:
        """Nextcloud data-dir mode: make Nextcloud see what this run changed."""
        if self.scan is None or not paths:
            return []
        command, user = self.scan
        return run_scans(command, user, paths)

    def sync_writes(self) -> None:
        """Make this remote's changes so far durable (the folders they made included).
        :raises TransientError:"""
        self.pending.sync()

    def close(self) -> None:
        with suppress(TransientError):  # best effort: the engine flushed before it recorded anything
            self.sync_writes()


def _sweep_stale_temp(item: os.DirEntry[str]) -> None:
    """A temp file left by a write that was killed (kill -9, power loss) is never a user's
    file: remove it once it is clearly abandoned, so Nextcloud does not show it. Its age is
    its ctime's: every write, utime and link updates it and nothing can set it, whereas the
    mtime is the source's (write() sets it before committing), old or even in the future."""
    try:
        if time.time() - item.stat(follow_symlinks=False).st_ctime > STALE_TEMP_S:
            os.unlink(item.path)
    except OSError:
        pass  # gone already, or not ours to remove: it is skipped either way


def _unlink_quietly(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
