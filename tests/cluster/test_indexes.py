"""A pair's index follows it from daemon to daemon (:mod:`syncd.cluster.indexes`), on a real
PostgreSQL server, with two daemons' state folders: a run that changed the index saves it with
the next generation, on the session holding the pair's fence; the other daemon takes it before
its next run of the pair, once; an idle run saves nothing; a daemon that lost the fence saves
nothing (its save waits for its next run); a snapshot that cannot be used leaves the local
index as it was."""

from __future__ import annotations

import logging
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd.cluster.database import TABLES
from syncd.cluster.fence import LOST_AFTER_S, PairFence
from syncd.cluster.indexes import MARK, Mark, NotNow, PairIndexes, read_mark, snapshot
from syncd.config import PairConfig, load_config
from syncd.index.store import Store
from syncd.lock import pair_lock
from syncd.models import Base, Outcome
from syncd.outcomes import RunResult

pytestmark = pytest.mark.postgres
KEY = "alice/default"
CHANGED = RunResult(KEY, Outcome.OK, done={"copy": 1})
IDLE = RunResult(KEY, Outcome.OK)


def host_pair(base: Path, host: str) -> PairConfig:
    """Pair alice/default as daemon ``host`` sees it: one config, its own state folder."""
    home = base / host
    home.mkdir(parents=True, exist_ok=True)
    (home / "syncd.toml").write_text(f"""
[daemon]
state_dir = "state"
socket = "control.sock"

[users.alice]
files  = {{ type = "local", path = "{base}/tree" }}
bucket = {{ type = "dir",   path = "{base}/bucket" }}
""")
    (pair,) = load_config(home / "syncd.toml").pairs
    return pair


def add_files(pair: PairConfig, *names: str) -> None:
    """The pair's index as after a run that copied ``names`` (bases and history)."""
    store = Store.open(pair.index_path)
    try:
        run_id = store.start_run()
        bases = [Base(name, 5, f"h-{name}", f"a-{name}", f"b-{name}", 1, 2) for name in names]
        store.commit_actions(run_id, put=bases, history=[("copy", name, "files", "new on files") for name in names])
    finally:
        store.close()


def drop_files(pair: PairConfig, *names: str) -> None:
    store = Store.open(pair.index_path)
    try:
        store.commit_actions(store.start_run(), drop=names, history=[("delete", name, "files", "") for name in names])
    finally:
        store.close()


def files(pair: PairConfig) -> set[str]:
    store = Store.open(pair.index_path)
    try:
        return set(store.load_bases())
    finally:
        store.close()


@pytest.fixture
def url(cluster_db: str) -> str:
    with psycopg.connect(cluster_db, autocommit=True) as conn:
        conn.execute(TABLES)
    return cluster_db


@pytest.fixture
def fence(url: str) -> Iterator[PairFence]:
    held = PairFence(url, KEY)
    assert held.acquire()
    try:
        yield held
    finally:
        held.release()


def saved(url: str) -> list[tuple[int, str]]:
    """(generation, host) of the cluster's snapshot of the pair, if any."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            (int(g), str(h))
            for g, h in conn.execute("SELECT generation, host FROM syncd_cluster_indexes WHERE pair = %s", (KEY,))
        ]


def test_the_newest_index_follows_the_pair_from_daemon_to_daemon(tmp_path: Path, url: str, fence: PairFence) -> None:
    h0, h1 = host_pair(tmp_path, "h0"), host_pair(tmp_path, "h1")
    h0_indexes, h1_indexes = PairIndexes("h0"), PairIndexes("h1")
    add_files(h1, "old.txt")  # h1 ran the pair long ago
    add_files(h0, "old.txt", "doomed.txt")
    drop_files(h0, "old.txt")
    h0_indexes.before_run(h0, fence)  # no snapshot yet: h0's index is the best there is
    h0_indexes.after_run(h0, CHANGED, fence)
    assert saved(url) == [(1, "h0")] and read_mark(h0.state_dir) == Mark(1)

    h1_indexes.before_run(h1, fence)  # the pair moves to h1: h0's index replaces h1's older one
    assert files(h1) == {"doomed.txt"} and read_mark(h1.state_dir) == Mark(1)
    store = Store.open(h1.index_path)
    try:  # `syncd log` on h1 shows what h0 did
        done = [(item.action, item.path) for item in store.history()]
        assert done == [("delete", "old.txt"), ("copy", "doomed.txt"), ("copy", "old.txt")]
    finally:
        store.close()
    drop_files(h1, "doomed.txt")
    h1_indexes.after_run(h1, RunResult(KEY, Outcome.OK, done={"delete": 1}), fence)
    assert saved(url) == [(2, "h1")] and read_mark(h1.state_dir) == Mark(2)

    h0_indexes.before_run(h0, fence)  # back on h0: generation 2 replaces its generation 1
    assert files(h0) == set() and read_mark(h0.state_dir) == Mark(2)
    add_files(h0, "mine.txt")  # an idle run's own rows: kept, nothing to take
    h0_indexes.before_run(h0, fence)
    assert files(h0) == {"mine.txt"}


def test_an_idle_run_saves_nothing(tmp_path: Path, url: str, fence: PairFence) -> None:
    h0 = host_pair(tmp_path, "h0")
    indexes = PairIndexes("h0")
    add_files(h0, "a.txt")
    indexes.before_run(h0, fence)
    indexes.after_run(h0, CHANGED, fence)
    (stamp,) = query_one(url, "SELECT saved_at FROM syncd_cluster_indexes")
    for _ in range(3):
        indexes.before_run(h0, fence)
        indexes.after_run(h0, IDLE, fence)
        indexes.after_run(h0, RunResult(KEY, Outcome.FATAL, "the bucket is gone"), fence)
    assert saved(url) == [(1, "h0")]
    assert query_one(url, "SELECT saved_at FROM syncd_cluster_indexes") == (stamp,)


def test_the_first_run_in_a_cluster_saves_the_index_even_if_idle(tmp_path: Path, url: str, fence: PairFence) -> None:
    """A pair synced before the cluster had any snapshot of it: its next host must not start empty."""
    h0 = host_pair(tmp_path, "h0")
    indexes = PairIndexes("h0")
    indexes.before_run(h0, fence)
    indexes.after_run(h0, IDLE, fence)
    assert saved(url) == []  # no index here either: nothing to save
    add_files(h0, "a.txt")
    indexes.before_run(h0, fence)
    indexes.after_run(h0, IDLE, fence)
    assert saved(url) == [(1, "h0")] and read_mark(h0.state_dir) == Mark(1)


def test_a_daemon_that_lost_the_fence_saves_nothing_until_its_next_run(tmp_path: Path, url: str) -> None:
    h0 = host_pair(tmp_path, "h0")
    indexes = PairIndexes("h0")
    add_files(h0, "a.txt")
    lost = PairFence(url, KEY)
    assert lost.acquire()
    indexes.before_run(h0, lost)
    with psycopg.connect(url, autocommit=True) as admin:  # the server ends the lock's session
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"syncd fence {KEY}",),
        )
    assert lost.lost.wait(LOST_AFTER_S + 10)
    indexes.after_run(h0, CHANGED, lost)
    lost.release()
    assert saved(url) == [] and read_mark(h0.state_dir) == Mark(0, pending=True)

    released = PairFence(url, KEY)  # held() still says yes, but its session is gone
    assert released.acquire()
    released.release()
    indexes.after_run(h0, CHANGED, released)
    assert saved(url) == [] and read_mark(h0.state_dir).pending

    fence = PairFence(url, KEY)
    assert fence.acquire()
    try:
        indexes.before_run(h0, fence)
        indexes.after_run(h0, IDLE, fence)  # idle, but the last save is pending
    finally:
        fence.release()
    assert saved(url) == [(1, "h0")] and read_mark(h0.state_dir) == Mark(1)


@pytest.mark.parametrize(
    "data",
    [
        b"not zlib at all",
        zlib.compress(b"SQLite format 3\x00" + b"\x00" * 4000),  # a database header, then nothing
        b"cut",  # replaced below by a real snapshot cut short
        b"newer",  # replaced below by a snapshot of a schema this syncd does not know
    ],
    ids=["not-zlib", "not-an-index", "cut-short", "newer-schema"],
)
def test_a_snapshot_that_cannot_be_used_leaves_the_local_index(
    tmp_path: Path, url: str, fence: PairFence, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    h0, h1 = host_pair(tmp_path, "h0"), host_pair(tmp_path, "h1")
    add_files(h0, "theirs.txt")
    PairIndexes("h0").after_run(h0, CHANGED, fence)
    if data == b"cut":
        data = snapshot(h0.index_path)[:-20]
    elif data == b"newer":
        with sqlite3.connect(h0.index_path) as db:
            db.execute("UPDATE alembic_version SET version_num = '9999'")
        data = snapshot(h0.index_path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE syncd_cluster_indexes SET data = %s", (data,))
    add_files(h1, "mine.txt")
    before = h1.index_path.read_bytes()
    indexes = PairIndexes("h1")
    indexes.before_run(h1, fence)
    assert h1.index_path.read_bytes() == before and files(h1) == {"mine.txt"}
    assert read_mark(h1.state_dir) == Mark(0, pending=True)
    assert "cannot use the cluster's generation 1 (saved by h0)" in caplog.text
    assert not [p.name for p in h1.state_dir.iterdir() if p.name.startswith("index.db.")]  # no temp file left
    indexes.after_run(h1, IDLE, fence)  # this run's index replaces the bad snapshot
    assert saved(url) == [(2, "h1")] and read_mark(h1.state_dir) == Mark(2)
    PairIndexes("h0").before_run(h0, fence)
    assert files(h0) == {"mine.txt"}


def test_a_missing_index_becomes_the_snapshot_and_stale_sidecars_go(tmp_path: Path, url: str, fence: PairFence) -> None:
    h0, h1, h2 = host_pair(tmp_path, "h0"), host_pair(tmp_path, "h1"), host_pair(tmp_path, "h2")
    add_files(h0, "a.txt", "b.txt")
    store = Store.open(h0.index_path)
    try:
        store.save_marker("bucket", "etag-of-h0s-marker")
    finally:
        store.close()
    PairIndexes("h0").after_run(h0, CHANGED, fence)

    PairIndexes("h1").before_run(h1, fence)  # h1 never ran the pair
    assert files(h1) == {"a.txt", "b.txt"}
    h1.index_path.unlink()  # lost since (its mark says generation 1 all the same)
    PairIndexes("h1").before_run(h1, fence)
    assert files(h1) == {"a.txt", "b.txt"} and read_mark(h1.state_dir) == Mark(1)
    store = Store.open(h1.index_path)
    try:  # a run of h0 that died after the snapshot may have written there: h1 lists the bucket
        assert store.side_scans()["bucket"].marker is None
    finally:
        store.close()

    add_files(h2, "old.txt")
    for suffix in ("-wal", "-shm"):  # what a crash of an older syncd could leave
        (h2.state_dir / f"index.db{suffix}").write_bytes(b"stale" * 100)
    PairIndexes("h2").before_run(h2, fence)
    assert not (h2.state_dir / "index.db-wal").exists() or (h2.state_dir / "index.db-wal").read_bytes()[:5] != b"stale"
    assert files(h2) == {"a.txt", "b.txt"}
    with sqlite3.connect(h2.index_path) as db:
        assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert (h2.state_dir / MARK).exists()


def test_an_index_the_daemon_cannot_read_or_replace_now_is_not_run_on(
    tmp_path: Path, url: str, fence: PairFence
) -> None:
    h0, h1 = host_pair(tmp_path, "h0"), host_pair(tmp_path, "h1")
    add_files(h0, "new.txt")
    PairIndexes("h0").after_run(h0, CHANGED, fence)
    add_files(h1, "old.txt")
    with pair_lock(h1.state_dir, KEY), pytest.raises(NotNow, match="another sync of this pair is running"):
        PairIndexes("h1").before_run(h1, fence)  # a dry run here holds the index
    gone = PairFence(url, "bob/default")
    assert gone.acquire()
    gone.release()
    with pytest.raises(NotNow, match="cannot read the cluster's index"):
        PairIndexes("h1").before_run(h1, gone)
    assert files(h1) == {"old.txt"} and read_mark(h1.state_dir) == Mark()


def query_one(url: str, sql: str) -> tuple[object, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def test_a_dry_run_takes_the_latest_index_and_never_waits_for_it(
    tmp_path: Path, url: str, fence: PairFence, caplog: pytest.LogCaptureFixture
) -> None:
    from psycopg_pool import ConnectionPool

    caplog.set_level(logging.INFO, logger="syncd.cluster")
    h0, h1 = host_pair(tmp_path, "h0"), host_pair(tmp_path, "h1")
    add_files(h0, "new.txt")
    PairIndexes("h0").after_run(h0, CHANGED, fence)
    add_files(h1, "old.txt")
    with ConnectionPool(url, min_size=1, max_size=1, open=True) as pool:
        with pair_lock(h1.state_dir, KEY):  # the pair runs here: its index is current, the plan is made from it
            PairIndexes("h1").before_dry_run(h1, pool)
        assert files(h1) == {"old.txt"} and "the dry run uses this host's index" in caplog.text
        PairIndexes("h1").before_dry_run(h1, pool)
    assert files(h1) == {"new.txt"} and read_mark(h1.state_dir) == Mark(1)
    assert saved(url) == [(1, "h0")]  # a dry run saves nothing
