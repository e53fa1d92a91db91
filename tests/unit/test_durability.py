"""Durability by the batch (syncd.remotes.durability): local writes are not fsynced one by
one; the engine makes a batch durable (one syncfs, or an fsync pass) before the index
records it, and a flush that fails keeps what it covered noted."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest

from syncd.engine.sync import RunOptions, SyncSettings, run_sync
from syncd.errors import PreconditionFailed, TransientError
from syncd.index.store import Store
from syncd.models import ConflictPolicy, Mode, Outcome, Side
from syncd.paths import Excludes
from syncd.remotes import durability
from syncd.remotes.base import Remote, SupportsSyncWrites
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.durability import PendingSync, flush, folders_up_to_tops, system_syncfs
from syncd.remotes.local import LocalRemote


class FlushLog:
    """Stands for syncfs and fsync: notes the path of every descriptor it is asked to flush."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, fd: int) -> None:
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))


def put(remote: Remote, path: str, data: bytes) -> None:
    remote.write(path, io.BytesIO(data), size=len(data), mtime_ns=1_700_000_000 * 10**9, create_only=True)


def _settings(state_dir: Path, *, transfers: int) -> SyncSettings:
    return SyncSettings(
        key="t/p",
        excludes=Excludes(()),
        policy=ConflictPolicy.KEEP_BOTH,
        mode=Mode.TWO_WAY,
        transfers=transfers,
        max_delete_ratio=0.5,
        trash_retention_days=30,
        state_dir=state_dir,
    )


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """os.fsync replaced by a counter: what a write does on its own must not flush."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    return calls


def test_folders_up_to_tops_climbs_to_the_top_and_no_further() -> None:
    found = folders_up_to_tops(["/r/a/b", "/r/a", "/t/x", "/elsewhere/y"], ["/r", "/t"])
    assert found == {"/r/a/b", "/r/a", "/r", "/t/x", "/t", "/elsewhere/y"}


def test_syncfs_once_per_file_system(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    syncfs = FlushLog()
    flush([], [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "gone")], [str(tmp_path)], syncfs=syncfs)
    assert len(syncfs.paths) == 1  # one file system: one flush, whatever the number of files
    assert syncfs.paths[0] in {str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path)}


def test_without_syncfs_every_file_then_every_folder_up_to_the_top_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_bytes(b"x")
    fsynced = FlushLog()
    monkeypatch.setattr(os, "fsync", fsynced)
    files = [str(tmp_path / "a" / "b" / "f.txt"), str(tmp_path / "a" / "renamed-since.txt")]
    flush(files, [str(tmp_path / "a" / "b")], [str(tmp_path)], syncfs=None)
    assert fsynced.paths == [files[0], str(tmp_path / "a" / "b"), str(tmp_path / "a"), str(tmp_path)]


@pytest.mark.skipif(system_syncfs() is None, reason="no syncfs(2) here")
def test_the_system_syncfs_flushes_a_folder(tmp_path: Path) -> None:
    syncfs = system_syncfs()
    assert syncfs is not None
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        syncfs(-1)


def test_a_failed_flush_keeps_its_changes_for_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pending = PendingSync("files", [str(tmp_path)])
    pending.wrote(str(tmp_path / "f.txt"))

    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durability, "system_syncfs", lambda: broken)
    with pytest.raises(TransientError, match="cannot flush writes to the disk"):
        pending.sync()
    flushed = FlushLog()
    monkeypatch.setattr(durability, "system_syncfs", lambda: flushed)
    pending.sync()
    assert flushed.paths == [str(tmp_path)]
    pending.sync()  # nothing new: no flush
    assert flushed.paths == [str(tmp_path)]


@pytest.mark.parametrize("kind", ["local", "dir"])
def test_a_write_is_not_fsynced_alone_and_sync_writes_flushes_it(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_fsync: list[int]
) -> None:
    remote: LocalRemote | DirBucket
    if kind == "local":
        remote = LocalRemote(tmp_path / "tree", trash_dir=tmp_path / "trash")
        (tmp_path / "tree").mkdir()
    else:
        remote = DirBucket(tmp_path / "bucket")
    assert isinstance(remote, SupportsSyncWrites)
    flushed = FlushLog()
    monkeypatch.setattr(durability, "system_syncfs", lambda: flushed)
    for i in range(20):
        put(remote, f"d{i % 3}/f{i}.txt", b"data %d" % i)
    remote.move("d0/f0.txt", "moved.txt")
    remote.delete("d1/f1.txt")
    assert no_fsync == [] and flushed.paths == []
    remote.sync_writes()
    assert len(flushed.paths) == 1 and no_fsync == []  # one syncfs for 20 writes, a move and a delete
    remote.sync_writes()
    remote.close()
    assert len(flushed.paths) == 1  # nothing changed since: nothing to flush


def test_without_syncfs_the_sidecars_a_move_and_a_kept_version_write_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new sidecar's bytes are flushed with the batch, not only its folder's names: where
    there is no syncfs, an fsync of the folder alone would not keep what the file holds."""
    bucket = DirBucket(tmp_path / "bucket")
    put(bucket, "a.txt", b"alpha")
    put(bucket, "b.txt", b"beta")
    bucket.sync_writes()
    fsynced = FlushLog()
    monkeypatch.setattr(os, "fsync", fsynced)
    monkeypatch.setattr(durability, "system_syncfs", lambda: None)
    bucket.move("a.txt", "moved.txt")
    kept = bucket.keep_version("b.txt")
    bucket.sync_writes()
    for key in ("moved.txt", kept):
        assert str(bucket._sidecar(bucket._id(key))) in fsynced.paths


def test_the_engine_flushes_each_batch_before_the_index_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant 2 with durability by the batch: every path the index records was written before
    the flush that preceded the commit; 450 copies are flushed 3 times (batches of 200). (Writes
    of the next batch may be in flight during a flush and a commit: only finished work is
    recorded, so those wait for the next flush.)"""
    (tmp_path / "files").mkdir()
    for i in range(450):
        (tmp_path / "files" / f"f{i:03d}.txt").write_bytes(b"x" * i)
    flushed = FlushLog()
    monkeypatch.setattr(durability, "system_syncfs", lambda: flushed)
    remotes: dict[Side, Any] = {
        Side.A: LocalRemote(tmp_path / "files", trash_dir=tmp_path / "trash"),
        Side.B: DirBucket(tmp_path / "bucket"),
    }
    written: set[str] = set()  # paths whose write on the bucket returned
    durable: set[str] = set()  # of those, the ones written before the latest flush began
    real_write, real_sync = remotes[Side.B].write, remotes[Side.B].sync_writes

    def noted_write(path: str, *args: Any, **kwargs: Any) -> Any:
        entry = real_write(path, *args, **kwargs)
        written.add(path)
        return entry

    def noted_sync() -> None:
        durable.update(written)
        real_sync()

    monkeypatch.setattr(remotes[Side.B], "write", noted_write)
    monkeypatch.setattr(remotes[Side.B], "sync_writes", noted_sync)
    store = Store.open(tmp_path / "index.db")
    commits: list[bool] = []
    real_commit = store.commit_actions

    def checked_commit(*args: Any, **kwargs: Any) -> None:
        commits.append(all(base.path in durable for base in kwargs["put"]))
        real_commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit_actions", checked_commit)
    settings = _settings(tmp_path, transfers=2)
    monkeypatch.setattr("syncd.engine.sync.BATCH_SECONDS", 1e9)  # batches by count only: 200, 200, 50
    try:
        report = run_sync(remotes, store, settings, RunOptions())
    finally:
        store.close()
    assert report.outcome is Outcome.OK and report.done == {"copy": 450}
    assert commits == [True, True, True]
    assert len(flushed.paths) == 3


def test_a_batch_whose_flush_fails_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_bytes(b"alpha")

    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durability, "system_syncfs", lambda: broken)
    remotes: dict[Side, Any] = {
        Side.A: LocalRemote(tmp_path / "files", trash_dir=tmp_path / "trash"),
        Side.B: DirBucket(tmp_path / "bucket"),
    }
    store = Store.open(tmp_path / "index.db")
    settings = _settings(tmp_path, transfers=1)
    try:
        report = run_sync(remotes, store, settings, RunOptions())
        assert report.outcome is Outcome.RETRY and "cannot flush writes to the disk" in report.message
        assert store.load_bases() == {}
    finally:
        store.close()


def test_a_create_only_write_names_an_unnamed_file_once_and_falls_back_to_a_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux: create-only goes through O_TMPFILE and one link (no temp name, no unlink); where
    the file system refuses unnamed files, through a temp name as before; both refuse to
    replace an existing file."""
    remote = LocalRemote(tmp_path, trash_dir=tmp_path / "trash")
    links: list[str] = []
    real_link, real_open = os.link, os.open
    monkeypatch.setattr(os, "link", lambda src, dst, **kw: (links.append(str(src)), real_link(src, dst, **kw))[1])
    put(remote, "d/a.txt", b"alpha")
    if remote._unnamed_files:
        assert len(links) == 1 and links[0].startswith("/proc/self/fd/")
    with pytest.raises(PreconditionFailed):
        put(remote, "d/a.txt", b"other")

    def no_unnamed(file: str, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "not here")
        return real_open(file, flags, mode, **kw)

    monkeypatch.setattr(os, "open", no_unnamed)
    links.clear()
    put(remote, "d/b.txt", b"beta")
    assert remote._unnamed_files is False
    assert len(links) == 1 and os.path.basename(links[0]).startswith(".syncd-tmp-")
    with pytest.raises(PreconditionFailed):
        put(remote, "d/b.txt", b"other")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "d" / "a.txt").read_bytes() == b"alpha"
    assert (tmp_path / "d" / "a.txt").stat().st_mtime_ns == 1_700_000_000 * 10**9


def test_a_dir_bucket_commits_a_new_key_with_one_link_and_still_refuses_an_existing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = DirBucket(tmp_path / "bucket")
    links: list[str] = []
    real_link = os.link
    monkeypatch.setattr(os, "link", lambda src, dst, **kw: (links.append(str(src)), real_link(src, dst, **kw))[1])
    put(bucket, "a/x.txt", b"first")
    if bucket._unnamed_files:
        assert len(links) == 1 and links[0].startswith("/proc/self/fd/")
    with pytest.raises(PreconditionFailed):
        put(bucket, "a/x.txt", b"second")
    with bucket.open_read("a/x.txt") as stream:
        assert stream.read() == b"first"
    entry = bucket.stat("a/x.txt")
    replaced = bucket.write("a/x.txt", io.BytesIO(b"third"), size=5, mtime_ns=1, if_match=entry.etag)
    assert [e.path for e in bucket.list()] == ["a/x.txt"] and bucket.stat("a/x.txt") == replaced
    leftovers = [p.name for p in (tmp_path / "bucket").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_a_refused_link_of_an_unnamed_file_falls_back_to_a_temp_name_for_that_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /proc (or links refused): the bytes are read again from the start and written
    through a temp name; later writes go that way at once."""
    remote = LocalRemote(tmp_path, trash_dir=tmp_path / "trash")
    real_link = os.link

    def no_proc(src: str, dst: str, **kw: Any) -> None:
        if str(src).startswith("/proc/"):
            raise FileNotFoundError(errno.ENOENT, "no /proc here")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", no_proc)
    put(remote, "a.txt", b"alpha")
    put(remote, "b.txt", b"beta")
    assert remote._unnamed_files is False
    assert (tmp_path / "a.txt").read_bytes() == b"alpha" and (tmp_path / "b.txt").read_bytes() == b"beta"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_refused_link_with_a_source_that_cannot_be_read_again_fails_that_write_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that cannot seek (a download) cannot be written again through a temp name:
    that write fails, and the next goes through a temp name at once (not a failure per file)."""
    remote = LocalRemote(tmp_path, trash_dir=tmp_path / "trash")
    if not remote._unnamed_files:
        pytest.skip("no unnamed files on this platform")
    real_link = os.link

    def no_proc(src: str, dst: str, **kw: Any) -> None:
        if str(src).startswith("/proc/"):
            raise FileNotFoundError(errno.ENOENT, "no /proc here")
        real_link(src, dst, **kw)

    class OneWay(io.BytesIO):
        def seekable(self) -> bool:
            return False

    monkeypatch.setattr(os, "link", no_proc)
    with pytest.raises(Exception, match="no /proc here"):
        remote.write("a.txt", OneWay(b"alpha"), size=5, mtime_ns=1, create_only=True)
    remote.write("b.txt", OneWay(b"beta"), size=4, mtime_ns=1, create_only=True)
    assert remote._unnamed_files is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
    assert (tmp_path / "b.txt").read_bytes() == b"beta"


def test_a_dir_bucket_whose_link_is_refused_commits_through_the_locked_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = DirBucket(tmp_path / "bucket")
    real_link = os.link

    def no_proc(src: str, dst: str, **kw: Any) -> None:
        if str(src).startswith("/proc/"):
            raise PermissionError(errno.EPERM, "links refused")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", no_proc)
    put(bucket, "x.txt", b"first")
    assert bucket._unnamed_files is False
    with pytest.raises(PreconditionFailed):
        put(bucket, "x.txt", b"second")
    with bucket.open_read("x.txt") as stream:
        assert stream.read() == b"first"
