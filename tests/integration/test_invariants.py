"""DESIGN.md's 19 invariants, one named test each, against the real engine with a real
`local` tree, a real `dir` bucket and a real SQLite index. A few inject a fault (a remote
method that fails once, a file changed mid-read) by wrapping a real remote."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from syncd.engine.sync import sync_pair
from syncd.errors import LockedError, TransientError
from syncd.lock import pair_lock
from syncd.models import Outcome
from syncd.remotes import dirbucket, local
from tests.integration.helpers import PairEnv, all_versions


@pytest.fixture
def env(tmp_path: Path) -> PairEnv:
    e = PairEnv(tmp_path)
    e.files.mkdir()
    return e


def synced(env: PairEnv, files: dict[str, bytes]) -> None:
    """Start from a tree that is in sync on both sides."""
    for path, data in files.items():
        env.write_a(path, data)
    report = env.sync()
    assert report.outcome is Outcome.OK, report.message
    assert env.tree_b() == files


# 1 ---------------------------------------------------------------------------------------------


def test_inv01_never_half_written(env: PairEnv) -> None:
    """A download whose bytes do not match the object's size/hash is never committed."""
    synced(env, {"doc.txt": b"good version"})
    env.write_b("doc.txt", b"new version from the bucket")
    obj = env.bucket._id("doc.txt")
    meta_etag = env.bucket.stat("doc.txt").etag
    data_file = obj.with_name(f"{obj.name}.{meta_etag}")
    data_file.write_bytes(b"new version fr")  # the stored bytes are cut short
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    assert env.read_a("doc.txt") == b"good version"
    assert env.temp_leftovers() == []


# 2 ---------------------------------------------------------------------------------------------


def test_inv02_index_records_only_finished_work(env: PairEnv) -> None:
    """After a run where some actions fail, every base in the index is true on both sides."""
    for i in range(5):
        env.write_a(f"ok{i}.txt", b"x" * i)
    env.write_b("blocked/f.txt", b"cannot land")
    env.write_a("blocked", b"a file where the bucket has a folder")  # makes blocked/f.txt fail on A
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    bases = env.bases()
    assert "blocked/f.txt" not in bases
    tree_a, tree_b = env.tree_a(), env.tree_b()
    for path, base in bases.items():
        assert path in tree_a and path in tree_b
        assert len(tree_a[path]) == base.size == len(tree_b[path])


# 3 ---------------------------------------------------------------------------------------------


def test_inv03_identical_content_is_never_a_conflict(env: PairEnv) -> None:
    env.write_a("same.txt", b"identical", mtime_s=1_000_000)
    env.write_b("same.txt", b"identical", mtime_ns=2_000_000_000_000_000_000)
    report = env.sync()
    assert dict(report.done) == {"record": 1}
    assert set(env.tree_a()) == set(env.tree_b()) == {"same.txt"}


# 4 ---------------------------------------------------------------------------------------------


def test_inv04_conflicts_never_lose_a_version(env: PairEnv) -> None:
    synced(env, {"c.txt": b"v0"})
    env.write_a("c.txt", b"files edit")
    env.write_b("c.txt", b"bucket edit")
    report = env.sync()
    assert report.done["conflict"] == 1
    tree_a, tree_b = env.tree_a(), env.tree_b()
    assert tree_a == tree_b
    assert tree_a["c.txt"] == b"files edit"
    copies = [p for p in tree_a if "conflicted copy" in p]
    assert len(copies) == 1 and tree_a[copies[0]] == b"bucket edit"
    assert env.sync().done == {}


# 5 ---------------------------------------------------------------------------------------------


def test_inv05_modify_beats_delete(env: PairEnv) -> None:
    synced(env, {"m.txt": b"v0", "n.txt": b"v0"})
    (env.files / "m.txt").unlink()
    env.write_b("m.txt", b"edited in the bucket")
    env.write_a("n.txt", b"edited in files")
    env.bucket.delete("n.txt")
    report = env.sync()
    assert report.outcome is Outcome.OK
    assert env.read_a("m.txt") == b"edited in the bucket"
    assert env.read_b("n.txt") == b"edited in files"


# 6 ---------------------------------------------------------------------------------------------


def test_inv06_a_side_that_lists_empty_aborts_with_zero_changes(env: PairEnv) -> None:
    synced(env, {"a.txt": b"1", "b/c.txt": b"2"})
    for p in list(env.files.rglob("*.txt")):
        p.unlink()
    report = env.sync()
    assert report.outcome is Outcome.ABORTED
    assert "lists no files" in report.message
    assert set(env.tree_b()) == {"a.txt", "b/c.txt"} and env.trash_b() == []


def test_inv06_a_missing_root_aborts_with_zero_changes(env: PairEnv) -> None:
    synced(env, {"a.txt": b"1"})
    env.files.rename(env.root / "unmounted")
    report = env.sync()
    assert report.outcome is Outcome.FATAL
    assert "does not exist" in report.message
    assert set(env.tree_b()) == {"a.txt"}


# 7 ---------------------------------------------------------------------------------------------


def test_inv07_transport_errors_are_never_deletions(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    synced(env, {f"f{i}.txt": b"x" for i in range(10)})

    original = dirbucket.DirBucket.list

    def broken_list(self: dirbucket.DirBucket, prefix: str = "") -> Iterator[Any]:
        yield from list(original(self, prefix))[:3]  # a listing cut short by the network
        raise TransientError("bucket: connection reset while listing")

    monkeypatch.setattr(dirbucket.DirBucket, "list", broken_list)
    report = env.sync()
    assert report.outcome is Outcome.RETRY
    monkeypatch.undo()
    assert len(env.tree_a()) == 10 and len(env.tree_b()) == 10
    assert env.sync().done == {}


def test_inv07_a_server_gone_mid_run_stops_the_run_and_delays_nothing(
    env: PairEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads start failing with transport errors part-way (the server died): the run stops
    with RETRY after a few failures in a row instead of failing, and recording a backoff
    for, every remaining item; once the server is back the daemon's next run does it all."""
    for i in range(40):
        env.write_a(f"f{i:02d}.txt", bytes([i]) * 100)
    original = dirbucket.DirBucket.write
    calls = {"n": 0}

    def dying_write(self: dirbucket.DirBucket, path: str, data: BinaryIO, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:
            raise TransientError("bucket: connection refused")
        return original(self, path, data, **kw)

    monkeypatch.setattr(dirbucket.DirBucket, "write", dying_write)
    report = env.sync()
    assert report.outcome is Outcome.RETRY, report.message
    assert "in a row" in report.message
    assert calls["n"] < 40  # it did not try every remaining item
    assert len(env.tree_b()) == 5 and len(env.tree_a()) == 40
    monkeypatch.undo()
    later = env.sync(respect_backoff=True)  # the daemon's way: items in backoff wait
    assert later.outcome is Outcome.OK and later.deferred == 0, later
    assert env.tree_b() == env.tree_a()


# 8 ---------------------------------------------------------------------------------------------


def test_inv08_mass_delete_guard_stops_before_any_change(env: PairEnv) -> None:
    synced(env, {f"f{i}.txt": bytes([i]) * 10 for i in range(10)})
    for i in range(6):
        (env.files / f"f{i}.txt").unlink()
    report = env.sync()
    assert report.outcome is Outcome.ABORTED and "deletes 6 of 10" in report.message
    assert len(env.tree_b()) == 10
    forced = env.sync(force=True)
    assert forced.done["delete"] == 6
    assert len(env.tree_b()) == 4 and len(env.trash_b()) == 6


def test_inv08_renames_do_not_count_as_deletes(env: PairEnv) -> None:
    synced(env, {f"old/f{i}.txt": bytes([i]) * (10 + i) for i in range(10)})
    (env.files / "old").rename(env.files / "new")
    report = env.sync()
    assert report.outcome is Outcome.OK, report.message
    assert dict(report.done) == {"move": 10}
    assert set(env.tree_b()) == {f"new/f{i}.txt" for i in range(10)}


# 9 ---------------------------------------------------------------------------------------------


def test_inv09_changing_excludes_is_not_a_deletion(env: PairEnv) -> None:
    synced(env, {"keep.txt": b"k", "cache/a.bin": b"1", "cache/b.bin": b"2"})
    env.extra = 'exclude = ["cache"]\n'
    assert env.sync().done == {}
    assert set(env.tree_b()) == {"keep.txt", "cache/a.bin", "cache/b.bin"}
    env.extra = ""
    assert env.sync().done == {}
    assert set(env.tree_a()) == {"keep.txt", "cache/a.bin", "cache/b.bin"}


# 10 --------------------------------------------------------------------------------------------


def test_inv10_a_second_run_does_nothing(env: PairEnv) -> None:
    env.write_a("a.txt", b"a")
    env.write_b("b.txt", b"b")
    env.write_a("c.txt", b"both")
    env.write_b("c.txt", b"differ")
    env.sync()
    second = env.sync()
    assert second.done == {} and second.outcome is Outcome.OK


# 11 --------------------------------------------------------------------------------------------


def test_inv11_syncd_own_writes_are_not_new_changes(env: PairEnv) -> None:
    env.write_b("down.txt", b"downloaded")
    assert env.sync().done["copy"] == 1
    assert env.read_a("down.txt") == b"downloaded"
    report = env.sync()
    assert report.done == {}
    assert not any(name == "hashing" for name, _ in env.events[-5:])


# 12 --------------------------------------------------------------------------------------------


def test_inv12_a_concurrent_change_becomes_a_conflict_not_an_overwrite(env: PairEnv) -> None:
    synced(env, {"race.txt": b"v0"})
    env.write_b("race.txt", b"bucket v1")
    pair = env.pair()

    def edit_files_while_planning(name: str, _data: dict[str, object]) -> None:
        if name == "applying":  # after listing, before the copy to files runs
            env.write_a("race.txt", b"files edit made during the sync")

    report = sync_pair(pair, progress=edit_files_while_planning)
    assert report.outcome is Outcome.ITEM_ERRORS
    assert env.read_a("race.txt") == b"files edit made during the sync"
    env.sync()
    versions = set(env.tree_a().values())
    assert {b"files edit made during the sync", b"bucket v1"} <= versions


# 13 --------------------------------------------------------------------------------------------


def test_inv13_mtime_only_change_moves_no_bytes(env: PairEnv) -> None:
    synced(env, {"t.txt": b"same bytes"})
    etag_before = env.bucket.stat("t.txt").etag
    os.utime(env.files / "t.txt", (2_000_000_000, 2_000_000_000))
    report = env.sync()
    assert dict(report.done) == {"record": 1} and report.bytes_moved == 0
    assert env.bucket.stat("t.txt").etag == etag_before
    assert env.sync().done == {}


# 14 --------------------------------------------------------------------------------------------


def test_inv14_clock_skew_changes_nothing(env: PairEnv) -> None:
    future = int((time.time() + 10 * 365 * 86400) * 1e9)
    env.write_b("skew.txt", b"from a machine whose clock is 10 years ahead", mtime_ns=future)
    env.sync()
    env.write_a("skew.txt", b"edited now, with an older mtime than the bucket's")
    report = env.sync()
    assert dict(report.done) == {"copy": 1}
    assert env.read_b("skew.txt") == b"edited now, with an older mtime than the bucket's"


# 15 --------------------------------------------------------------------------------------------


def test_inv15_downloads_are_verified_before_they_replace_anything(
    env: PairEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that differ from one read to the next (a damaged transfer) never replace a file."""
    synced(env, {"v.txt": b"local good"})
    env.write_b("v.txt", b"remote version")
    reads = iter(range(1000))
    real_open = dirbucket.DirBucket.open_read

    @contextmanager
    def damaged_reads(self: dirbucket.DirBucket, path: str) -> Iterator[BinaryIO]:
        with real_open(self, path) as stream:
            data = stream.read()
        yield io.BytesIO(data[:-1] + bytes([next(reads) % 251]))  # same size, other bytes each time

    monkeypatch.setattr(dirbucket.DirBucket, "open_read", damaged_reads)
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    assert "hash" in report.errors[0][1]
    assert env.read_a("v.txt") == b"local good"


def test_inv15_stable_bytes_against_a_claimed_hash_win_and_the_replaced_version_is_kept(env: PairEnv) -> None:
    """A bucket's hash is metadata (a claim): bytes that read the same twice but contradict it
    are the truth (another writer's metadata lied, or the store lost the bytes); they replace
    the file, whose version goes to the trash as with any overwrite."""
    synced(env, {"v.txt": b"local good"})
    env.write_b("v.txt", b"remote version")
    meta = env.bucket.stat("v.txt")
    obj = env.bucket._id("v.txt")
    obj.with_name(f"{obj.name}.{meta.etag}").write_bytes(b"remote versiXn")  # same size, other bytes
    report = env.sync()
    assert report.outcome is Outcome.OK, (report.message, report.errors)
    assert env.read_a("v.txt") == b"remote versiXn"
    assert b"local good" in env.trash_a()
    assert not env.sync().done


# 16 --------------------------------------------------------------------------------------------


def test_inv16_a_file_changing_while_read_fails_that_item(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env.write_a("growing.log", b"x" * 3_000_000)
    env.write_a("other.txt", b"fine")
    real_open = local.LocalRemote.open_read

    @contextmanager
    def open_and_append(self: local.LocalRemote, path: str) -> Iterator[BinaryIO]:
        with real_open(self, path) as stream:
            if path == "growing.log":
                with open(env.files / path, "ab") as writer:  # someone appends while we read
                    writer.write(b"more")
            yield stream

    monkeypatch.setattr(local.LocalRemote, "open_read", open_and_append)
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    assert [p for p, _ in report.errors] == ["growing.log"]
    assert set(env.tree_b()) == {"other.txt"}
    monkeypatch.undo()
    env.sync()
    assert env.read_b("growing.log") == env.read_a("growing.log")


# 17 --------------------------------------------------------------------------------------------


def test_inv17_one_run_per_pair_at_a_time(env: PairEnv) -> None:
    pair = env.pair()
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with pair_lock(pair.state_dir, pair.key):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            sync_pair(pair)
    finally:
        release.set()
        thread.join(10)
    assert sync_pair(pair).outcome is Outcome.OK


# 18 --------------------------------------------------------------------------------------------


def test_inv18_names_differing_by_case_or_unicode_form_never_overwrite_each_other(env: PairEnv) -> None:
    names = {"Report.txt": b"upper", "report.txt": b"lower", "caf\u00e9.txt": b"nfc", "cafe\u0301.txt": b"nfd"}
    for name, data in names.items():
        env.write_b(name, data)
    env.sync()
    assert env.tree_a() == names
    assert env.sync().done == {}


# 19 --------------------------------------------------------------------------------------------


def test_inv19_no_remote_key_escapes_the_root(env: PairEnv) -> None:
    hostile = [
        "../escape.txt",
        "/etc/evil.txt",
        "a/../../up.txt",
        "nul\x00byte.txt",
        "x" * 300 + ".txt",
        "bad-\udcff-utf8.txt",
        "back\\slash.txt",
        "./dot.txt",
    ]
    for key in hostile:
        env.write_b(key, b"hostile")
    env.write_b("fine/ok.txt", b"ok")
    report = env.sync()
    assert env.tree_a() == {"fine/ok.txt": b"ok"}
    assert len(report.skipped) == len(hostile)
    assert not (env.root / "escape.txt").exists() and not (env.root.parent / "up.txt").exists()
    assert all("unsafe name" in reason for _, reason in report.skipped)
    assert set(all_versions(env)) >= {b"hostile", b"ok"}
