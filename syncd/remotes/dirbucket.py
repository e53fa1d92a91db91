"""A bucket kept in a local folder: the embedded default, for demos and tests.

It behaves like an object store, not like a second local tree:

* keys are flat strings (``a/b`` and ``a`` may both exist; there are no folders);
* each object is two files in a shard folder named from the SHA-256 of its key:
  ``<id>.<etag>`` holds the bytes and ``<id>.json`` (the sidecar) holds the key, size,
  mtime, content hash and current etag. Renaming the sidecar into place commits a put, so
  puts are atomic; a failed put leaves the old object or the new one whole, never neither;
  a data file no sidecar points to (its removal failed) is garbage that nothing reads;
* etags are random (opaque, new on every put); mtimes are metadata, like ``rclone:mtime``;
* conditional writes hold a lock on the bucket, so ``if_match`` is honoured atomically.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Literal

from syncd.errors import ChangedWhileReading, ContentMismatch, FatalError, NotFound, PreconditionFailed, TransientError
from syncd.models import Entry
from syncd.remotes.base import CHUNK, SHA256, TRASH_PREFIX, Capabilities, disk_write_error
from syncd.remotes.bucket_trash import BucketTrash
from syncd.remotes.durability import NO_UNNAMED_LINK, PendingSync, link_unnamed, open_unnamed, unnamed_files_possible
from syncd.remotes.settings import OpenContext, RemoteSettings
from syncd.times import clamp_ns

SHARDS = "objects"


class Settings(RemoteSettings, frozen=True):
    type: Literal["dir"]
    path: Path
    create: bool = True  # make the bucket folder on first use (a real bucket would be made by the admin)


def open_remote(settings: Settings, ctx: OpenContext) -> DirBucket:
    return DirBucket(settings.path, create=settings.create, label=ctx.label)


class DirBucket(BucketTrash):
    """A bucket kept in a folder on this machine (``root``,
    :class:`~syncd.remotes.base.SupportsLocalPath`): objects sharded by their key's hash,
    metadata in a sidecar, no empty folders."""

    root: Path

    def __init__(self, root: Path, *, create: bool = True, label: str = "dir") -> None:
        self.root = Path(os.path.abspath(root))
        self.name = label
        self.pending = PendingSync(label, (str(self.root),))  # puts not yet flushed to the disk
        self._unnamed_files = unnamed_files_possible()  # see _unnamed_sidecar
        self.capabilities = Capabilities(
            hashes=frozenset({SHA256}),
            hashes_are_claims=True,  # a stand-in for S3/Storj: its sidecars are metadata too
            mtime_precision_ns=1,
            conditional_writes=True,
            server_side_move=True,
            local_path=True,
        )
        if create:
            try:
                (self.root / SHARDS).mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise FatalError(f"{label}: bucket folder {self.root} is not a folder (a file is in the way)") from None
            except OSError as exc:
                raise FatalError(f"{label}: cannot create bucket folder {self.root}: {exc.strerror}") from exc

    # -- layout ----------------------------------------------------------------------------

    def _id(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.root / SHARDS / digest[:2] / digest[2:34]

    @staticmethod
    def _sidecar(obj: Path) -> Path:
        return obj.with_name(obj.name + ".json")

    @staticmethod
    def _data(obj: Path, etag: str) -> Path:
        return obj.with_name(f"{obj.name}.{etag}")

    def _shards(self) -> Path:
        shards = self.root / SHARDS
        if not shards.is_dir():
            raise FatalError(f"{self.name}: bucket folder {self.root} does not exist")
        return shards

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes: makes if_match checks atomic."""
        with open(self._shards() / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- metadata --------------------------------------------------------------------------

    @staticmethod
    def _entry(meta: dict[str, Any]) -> Entry:
        return Entry(
            path=meta["key"],
            size=meta["size"],
            mtime_ns=clamp_ns(meta["mtime_ns"]),
            etag=meta["etag"],
            content_hash=meta["sha256"],
        )

    def _meta(self, key: str) -> dict[str, Any]:
        try:
            raw = self._sidecar(self._id(key)).read_bytes()
        except FileNotFoundError:
            self._shards()
            raise NotFound(key) from None
        meta: dict[str, Any] = json.loads(raw)
        return meta

    def list(self, prefix: str = "") -> Iterator[Entry]:
        shards = self._shards()
        try:
            shard_names = os.listdir(shards)
        except OSError as exc:
            raise TransientError(f"{self.name}: cannot list {shards}: {exc.strerror}") from exc
        for shard in shard_names:
            folder = shards / shard
            if not folder.is_dir():
                continue
            for name in os.listdir(folder):
                if not name.endswith(".json"):
                    continue
                try:
                    meta = json.loads((folder / name).read_bytes())
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                key: str = meta["key"]
                if key.startswith(prefix) and not key.startswith(TRASH_PREFIX):
                    yield self._entry(meta)

    def stat(self, path: str) -> Entry:
        return self._entry(self._meta(path))

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        for _ in range(3):  # a concurrent put may replace the data file between the two reads
            meta = self._meta(path)
            try:
                stream = open(self._data(self._id(path), meta["etag"]), "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with stream:
                yield stream
            return
        raise TransientError(f"{path}: object kept changing while being opened")

    # -- writing ---------------------------------------------------------------------------

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
        if not path:
            raise PreconditionFailed(path, "empty key")
        obj = self._id(path)
        etag = secrets.token_hex(8)
        data_file = self._data(obj, etag)
        try:
            obj.parent.mkdir(exist_ok=True)
            digest = self._receive(path, data_file, data, size, content_hash)
            meta = {"key": path, "size": size, "mtime_ns": mtime_ns, "sha256": digest, "etag": etag}
            old = self._commit(path, obj, meta, if_match=if_match, create_only=create_only)
        except OSError as exc:
            self._drop_unless_committed(obj, etag)
            raise disk_write_error(self.name, self.root, path, exc) from exc
        except BaseException:
            self._drop_unless_committed(obj, etag)
            raise
        # committed: the new object is whole, and nothing below may undo it
        self.pending.wrote(str(data_file))
        self.pending.wrote(str(self._sidecar(obj)))
        if old is not None:
            self._drop_data(obj, old)
        return self._entry(meta)

    def _drop_unless_committed(self, obj: Path, etag: str) -> None:
        """After a put that failed: remove its data file, unless its sidecar was committed
        (the failure came later) and the data file is now the object's bytes. When the sidecar
        cannot be read the data file stays: garbage is harmless, a sidecar pointing at nothing
        is a lost version."""
        try:
            committed = self._current_etag(self._sidecar(obj)) == etag
        except (OSError, ValueError, KeyError):
            return
        if not committed:
            self._drop_data(obj, etag)

    def _drop_data(self, obj: Path, etag: str) -> None:
        """Remove a data file no sidecar points to (any more). Best effort: the change it
        belongs to is committed or undone already, and a data file left behind is garbage
        that nothing reads (its name is never reused: etags are random)."""
        with suppress(OSError):
            self._data(obj, etag).unlink(missing_ok=True)

    @staticmethod
    def _receive(path: str, target: Path, data: BinaryIO, size: int, content_hash: str | None) -> str:
        digest = hashlib.sha256()
        written = 0
        with open(target, "xb") as out:
            while chunk := data.read(CHUNK):
                written += len(chunk)
                if written > size:
                    break
                digest.update(chunk)
                out.write(chunk)
        if written != size:
            raise ChangedWhileReading(path, f"expected {size} bytes, got {written}")
        if content_hash is not None and digest.hexdigest() != content_hash:
            raise ContentMismatch(path)
        return digest.hexdigest()

    def _commit(
        self,
        path: str,
        obj: Path,
        meta: dict[str, Any],
        *,
        if_match: str | None,
        create_only: bool,
    ) -> str | None:
        """Commit ``meta`` as the sidecar of ``obj``: the put is done once this returns (or
        once the rename inside ran, even if an error follows it). :returns: the etag of the
        version it replaced (its data file is for the caller to remove), or None."""
        sidecar = self._sidecar(obj)
        if create_only and self._unnamed_sidecar(path, sidecar, meta):
            return None
        tmp = sidecar.with_name(f"{sidecar.name}.tmp-{secrets.token_hex(4)}")
        with open(tmp, "x", encoding="utf-8") as out:
            json.dump(meta, out)  # made durable with its batch (sync_writes), before the index records it
        try:
            with self._locked():
                old = self._current_etag(sidecar)
                if create_only and old is not None:
                    raise PreconditionFailed(path, "already exists")
                if if_match is not None and old != if_match:
                    raise PreconditionFailed(path)
                os.replace(tmp, sidecar)
        except BaseException:
            with suppress(OSError):  # the error that matters is the one being raised
                tmp.unlink(missing_ok=True)
            raise
        return old

    def _unnamed_sidecar(self, path: str, sidecar: Path, meta: dict[str, Any]) -> bool:
        """Commit a create-only put with one linkat (Linux): the sidecar is written to an
        unnamed file (O_TMPFILE) that the link names only if no sidecar exists, atomically, so
        no lock, temp name or rename is needed. :returns: False (nothing done) where the file
        system has no unnamed files. :raises PreconditionFailed: the key exists."""
        if not self._unnamed_files:
            return False
        fd = open_unnamed(sidecar.parent)
        if fd is None:
            self._unnamed_files = False
            return False
        try:
            raw = json.dumps(meta).encode()
            if os.write(fd, raw) != len(raw):  # a sidecar is a few hundred bytes: one write
                raise OSError(errno.EIO, "short write")
            link_unnamed(fd, sidecar)
        except FileExistsError:
            raise PreconditionFailed(path, "already exists") from None
        except OSError as exc:
            if exc.errno not in NO_UNNAMED_LINK:
                raise
            self._unnamed_files = False  # /proc hidden or links refused here: the locked path from now on
            return False
        finally:
            os.close(fd)
        return True

    def _put_sidecar(self, obj: Path, meta: dict[str, Any]) -> None:
        """Commit ``meta`` as the object's sidecar (a rename: atomic). Caller holds the lock."""
        sidecar = self._sidecar(obj)
        tmp = sidecar.with_name(f"{sidecar.name}.tmp-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, sidecar)

    @staticmethod
    def _current_etag(sidecar: Path) -> str | None:
        try:
            etag: str = json.loads(sidecar.read_bytes())["etag"]
        except FileNotFoundError:
            return None
        return etag

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        obj = self._id(path)
        with self._locked():
            etag = self._current_etag(self._sidecar(obj))
            if etag is None:
                raise NotFound(path)
            if if_match is not None and etag != if_match:
                raise PreconditionFailed(path)
            self._sidecar(obj).unlink()
        self._drop_data(obj, etag)
        self.pending.changed(str(obj.parent))

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Server-side: the bytes stay; the new key points at them under a new sidecar."""
        src_obj, dst_obj = self._id(src), self._id(dst)
        dst_obj.parent.mkdir(exist_ok=True)
        with self._locked():
            meta = self._meta(src)
            if if_match is not None and meta["etag"] != if_match:
                raise PreconditionFailed(src)
            if self._sidecar(dst_obj).exists():
                raise PreconditionFailed(dst, "already exists")
            new = dict(meta, key=dst, etag=secrets.token_hex(8))
            os.link(self._data(src_obj, meta["etag"]), self._data(dst_obj, new["etag"]))
            self._put_sidecar(dst_obj, new)
            self._sidecar(src_obj).unlink()
        self._drop_data(src_obj, meta["etag"])
        self.pending.wrote(str(self._sidecar(dst_obj)))  # its bytes too: fsynced where there is no syncfs
        self.pending.changed(str(src_obj.parent))
        return self._entry(new)

    def copy_object(self, src: str, dst: str, *, if_match: str | None) -> None:
        """A server-side copy (into the trash): the bytes are hard-linked, not copied."""
        src_obj, dst_obj = self._id(src), self._id(dst)
        dst_obj.parent.mkdir(exist_ok=True)
        with self._locked():
            meta = self._meta(src)
            if if_match is not None and meta["etag"] != if_match:
                raise PreconditionFailed(src)
            copy = dict(meta, key=dst, etag=secrets.token_hex(8))
            os.link(self._data(src_obj, meta["etag"]), self._data(dst_obj, copy["etag"]))
            self._put_sidecar(dst_obj, copy)
        self.pending.wrote(str(self._sidecar(dst_obj)))  # its bytes too: fsynced where there is no syncfs

    def trashed(self) -> Iterator[Entry]:
        """Every version in the bucket's trash."""
        for shard in os.listdir(self._shards()):
            folder = self._shards() / shard
            if folder.is_dir():
                for name in os.listdir(folder):
                    if name.endswith(".json"):
                        try:
                            meta = json.loads((folder / name).read_bytes())
                        except FileNotFoundError:
                            continue  # deleted since the folder was read
                        if meta["key"].startswith(TRASH_PREFIX):
                            yield self._entry(meta)

    def trash_objects(self) -> Iterator[tuple[str, int]]:
        for entry in self.trashed():
            yield entry.path, entry.size

    def sync_writes(self) -> None:
        """Make the puts, moves and deletes so far durable. :raises TransientError:"""
        self.pending.sync()

    def close(self) -> None:
        with suppress(TransientError):  # best effort: the engine flushed before it recorded anything
            self.sync_writes()
