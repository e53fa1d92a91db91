"""Single odd inputs must never stop a pair: extreme times, unreadable folders, special files,
temp files of killed runs, a bucket path that is a file. Each runs the real engine on a real
local tree and `dir` bucket (tests/integration/helpers.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import FatalError
from syncd.models import Outcome, Report
from syncd.paths import TEMP_PREFIX
from syncd.remotes import local
from syncd.remotes.dirbucket import DirBucket
from syncd.times import NS_MAX
from tests.integration.helpers import PairEnv

YEAR_2300_NS = 10_413_792_000 * 10**9  # past 2262: more than a signed 64-bit integer holds
YEAR_9999_NS = 253_402_300_799 * 10**9


@pytest.fixture
def env(tmp_path: Path) -> PairEnv:
    env = PairEnv(tmp_path)
    env.files.mkdir()
    return env


def test_a_file_dated_2300_syncs_and_the_next_run_does_nothing(env: PairEnv) -> None:
    env.write_a("future.txt", b"from the future")
    os.utime(env.files / "future.txt", ns=(YEAR_2300_NS, YEAR_2300_NS))
    env.write_a("plain.txt", b"an ordinary file")
    first = env.sync()
    assert first.outcome is Outcome.OK, first.message
    assert env.tree_b() == {"future.txt": b"from the future", "plain.txt": b"an ordinary file"}
    assert env.bucket.stat("future.txt").mtime_ns == NS_MAX  # the latest time the index can hold
    assert set(env.bases()) == {"future.txt", "plain.txt"}  # both recorded: the batch went through
    again = env.sync()
    assert again.outcome is Outcome.OK and not again.done, again.done


@pytest.mark.parametrize("mtime_ns", [0, -1_000_000_000, -86_400 * 365 * 10**9 - 1])
def test_zero_and_pre_1970_mtimes_sync_both_ways(env: PairEnv, mtime_ns: int) -> None:
    env.write_a("up.txt", b"old file")
    os.utime(env.files / "up.txt", ns=(mtime_ns, mtime_ns))
    env.write_b("down.txt", b"old object", mtime_ns=mtime_ns)
    first = env.sync()
    assert first.outcome is Outcome.OK, first.message
    assert env.bucket.stat("up.txt").mtime_ns == mtime_ns
    assert (env.files / "down.txt").stat().st_mtime_ns == mtime_ns
    again = env.sync()
    assert again.outcome is Outcome.OK and not again.done, again.done


def test_an_object_dated_9999_syncs_down_and_the_next_run_does_nothing(env: PairEnv) -> None:
    env.write_b("far.txt", b"an object whose metadata says 9999-12-31", mtime_ns=YEAR_9999_NS)
    first = env.sync()
    assert first.outcome is Outcome.OK, first.message
    assert env.read_a("far.txt") == b"an object whose metadata says 9999-12-31"
    again = env.sync()
    assert again.outcome is Outcome.OK and not again.done, again.done


@pytest.fixture
def unreadable(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A subfolder the service cannot read. Root reads every folder, so as root the refusal
    comes from os.scandir as the kernel gives it to an unprivileged service."""
    folder = env.files / "private"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0)
        yield folder
        folder.chmod(0o755)
        return
    real_scandir = os.scandir

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if os.path.abspath(path) == str(folder) and folder.stat().st_mode & 0o777 == 0:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(local.os, "scandir", scandir)
    yield folder


def test_an_unreadable_subfolder_is_an_item_error_and_the_rest_syncs(env: PairEnv, unreadable: Path) -> None:
    env.write_a("private/secret.txt", b"synced while it was readable")
    first = env.sync()
    assert first.outcome is Outcome.OK, first.message
    unreadable.chmod(0)
    env.write_a("public/new.txt", b"written while private/ is unreadable")
    blocked = env.sync()
    assert blocked.outcome is Outcome.ITEM_ERRORS, blocked.message
    assert [path for path, _ in blocked.errors] == ["private"]
    assert "cannot list this folder on files (permission denied)" in blocked.errors[0][1]
    assert env.tree_b() == {
        "private/secret.txt": b"synced while it was readable",  # not taken for a deletion
        "public/new.txt": b"written while private/ is unreadable",
    }
    unreadable.chmod(0o755)
    after = env.sync()
    assert after.outcome is Outcome.OK and not after.done, (after.message, after.done)


def test_the_pairs_own_temp_files_are_swept_by_its_next_run(env: PairEnv) -> None:
    env.write_a("docs/kept.txt", b"a user's file")
    assert env.sync().outcome is Outcome.OK
    own = next(iter(_temp_names_written(env)))  # the prefix this pair's writes use
    left = env.files / "docs" / f"{own}0123456789ab"
    left.write_bytes(b"the first half of a download killed by kill -9")
    foreign = env.files / "docs" / f"{TEMP_PREFIX}ba9876543210"  # another pair's, maybe in flight
    foreign.write_bytes(b"another writer's temp file")
    report = env.sync()
    assert report.outcome is Outcome.OK and not report.done, (report.message, report.done)
    assert not left.exists(), "a temp file of this pair's killed run is still in the user's tree"
    assert foreign.exists(), "a fresh temp file that is not this pair's was removed"
    assert env.tree_b().keys() == {"docs/kept.txt", "docs/probe.txt"}  # no temp file was synced


def _temp_names_written(env: PairEnv) -> set[str]:
    """The temp-name prefix of this pair, as a download that replaces a file of its tree uses
    it (a new file may need no temp name: an unnamed file, named by one link)."""
    seen: set[str] = set()
    real_open = local.os.open

    def spy(path: str, flags: int, mode: int = 0o777) -> int:
        name = os.path.basename(path)
        if name.startswith(TEMP_PREFIX):
            seen.add(name[: -len("0123456789ab")])
        return real_open(path, flags, mode)

    env.write_b("docs/probe.txt", b"downloaded once")
    assert env.sync().outcome is Outcome.OK
    env.write_b("docs/probe.txt", b"downloaded again, over the first, to learn the temp name")
    local.os.open = spy  # type: ignore[assignment]
    try:
        assert env.sync().outcome is Outcome.OK
    finally:
        local.os.open = real_open  # type: ignore[assignment]
    assert seen and all(prefix != TEMP_PREFIX for prefix in seen), seen
    return seen


def test_symlinks_and_fifos_are_skipped_with_a_reason(env: PairEnv, tmp_path: Path) -> None:
    env.write_a("real.txt", b"a file")
    (tmp_path / "outside.txt").write_text("outside the tree")
    (env.files / "link.txt").symlink_to(tmp_path / "outside.txt")
    os.mkfifo(env.files / "pipe")
    report = env.sync()
    assert report.outcome is Outcome.OK, report.message
    assert env.tree_b() == {"real.txt": b"a file"}
    assert dict(report.skipped) == {
        "link.txt": "not synced on files: a symlink (not followed)",
        "pipe": "not synced on files: a special file (FIFO, socket or device)",
    }


def test_a_bucket_path_that_is_a_file_is_one_fatal_line(tmp_path: Path) -> None:
    blocker = tmp_path / "bucket"
    blocker.write_text("not a folder")
    with pytest.raises(FatalError, match=r"bucket folder .*bucket is not a folder \(a file is in the way\)"):
        DirBucket(blocker)


def test_a_foreign_sidecar_time_past_2262_is_clamped(tmp_path: Path) -> None:
    bucket = DirBucket(tmp_path / "bucket")
    env = PairEnv(tmp_path)
    env.write_b("x.txt", b"x", mtime_ns=5)
    sidecars = list((tmp_path / "bucket").rglob("*.json"))
    meta = json.loads(sidecars[0].read_text())
    meta["mtime_ns"] = YEAR_9999_NS
    sidecars[0].write_text(json.dumps(meta))
    assert bucket.stat("x.txt").mtime_ns == NS_MAX


def _plant_lying_object(env: PairEnv, key: str, data: bytes, claimed_sha256: str) -> None:
    """An object put by another writer whose metadata claims a SHA-256 its bytes do not have."""
    env.write_b(key, data)
    for sidecar in env.bucket_dir.rglob("*.json"):
        meta = json.loads(sidecar.read_text())
        if meta.get("key") == key:
            meta["sha256"] = claimed_sha256
            sidecar.write_text(json.dumps(meta))
            return
    raise AssertionError(f"no sidecar for {key}")


def test_a_foreign_object_of_the_same_size_whose_hash_lies_is_not_taken_as_in_sync(env: PairEnv) -> None:
    local, foreign = b"the local version", b"another writer's!"
    assert len(local) == len(foreign)
    env.write_a("doc.txt", local)
    _plant_lying_object(env, "doc.txt", foreign, hashlib.sha256(local).hexdigest())
    report = env.sync()
    assert report.outcome is Outcome.OK, (report.message, report.errors)
    assert report.done == {"conflict": 1}, report.done  # both new, different bytes: keep both
    files, bucket = env.tree_a(), env.tree_b()
    assert files == bucket, "the two sides differ after the run"
    assert sorted(files.values()) == sorted([local, foreign]), "a version was lost"
    again = env.sync()
    assert again.outcome is Outcome.OK and not again.done, again.done


def test_a_foreign_object_whose_hash_lies_is_downloaded_by_its_bytes(env: PairEnv) -> None:
    _plant_lying_object(env, "new.txt", b"bytes that are not what the metadata says", "0" * 64)
    env.write_a("mine.txt", b"mine, longer than the other side's")
    _plant_lying_object(env, "mine.txt", b"theirs", hashlib.sha256(b"something else").hexdigest())
    report = env.sync()
    assert report.outcome is Outcome.OK, (report.message, report.errors)
    files = env.tree_a()
    assert files["new.txt"] == b"bytes that are not what the metadata says"
    assert sorted(v for k, v in files.items() if k.startswith("mine")) == [
        b"mine, longer than the other side's",
        b"theirs",
    ]
    assert env.tree_a() == env.tree_b()
    again = env.sync()
    assert again.outcome is Outcome.OK and not again.done, (again.done, again.errors)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 1 MiB (a tmpfs: needs root, as CI runs), unmounted afterwards."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _full_disk_error(report: Report) -> str:
    assert report.outcome is Outcome.ITEM_ERRORS, report.message
    [(path, message)] = report.errors
    assert path == "big.bin"
    return message


def test_a_full_disk_reads_the_same_on_both_sides(tmp_path: Path, small_disk: Path) -> None:
    big = os.urandom(3 << 20)
    (small_disk / "files").mkdir()
    down = PairEnv(tmp_path / "down")
    down.root.mkdir()
    down.files.symlink_to(small_disk / "files")  # the files tree on the small disk
    down.write_b("big.bin", big)
    (small_disk / "bucket").mkdir()
    up = PairEnv(tmp_path / "up")
    up.root.mkdir()
    up.bucket_dir.symlink_to(small_disk / "bucket")  # the bucket folder on the small disk
    up.write_a("big.bin", big)

    on_files, on_bucket = _full_disk_error(down.sync()), _full_disk_error(up.sync())
    assert on_files.startswith(f"t/default files: the disk holding {down.files.resolve()} is full")
    assert on_bucket.startswith(f"t/default bucket: the disk holding {up.bucket_dir.resolve()} is full")
    assert on_files.split(" is full", 1)[1] == on_bucket.split(" is full", 1)[1]
    assert "\n" not in on_files + on_bucket
    leftovers = [p for p in small_disk.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert leftovers == [], f"half-written files left on the full disk: {leftovers}"


def test_identical_bytes_under_a_lying_hash_are_never_a_conflict(env: PairEnv) -> None:
    """Both sides new with the same bytes, the bucket's metadata claiming another hash: the
    claim is checked against the bytes, which are the same: recorded, not a conflict."""
    env.write_a("same.txt", b"the same bytes")
    _plant_lying_object(env, "same.txt", b"the same bytes", hashlib.sha256(b"something else").hexdigest())
    report = env.sync()
    assert report.outcome is Outcome.OK and report.done == {"record": 1}, (report.done, report.errors)
    assert env.tree_a() == env.tree_b() == {"same.txt": b"the same bytes"}
