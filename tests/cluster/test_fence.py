"""Fencing and the cluster-wide pause, on a real PostgreSQL server: a pair's run holds the
pair's session advisory lock (:mod:`syncd.cluster.fence`); a second holder is refused while
the first holds it; a lock whose connection the server kills is lost within seconds, and a
daemon's run holding it stops before its next action and runs again (here or on another
daemon) with no two runs of the pair overlapping. ``syncd pause`` asked of one daemon holds
for the others."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from procrastinate import App, SyncPsycopgConnector
from procrastinate.schema import SchemaManager

from syncd.cluster.database import ClusterDatabase
from syncd.cluster.fence import LOST_AFTER_S, PairFence, pair_lock_id
from syncd.control import PAUSED_FILE
from tests.cluster.conftest import Cluster, Member, write_cluster_config
from tests.daemons import bucket_files, tree_files, wait_for

pytestmark = pytest.mark.postgres
KEY = "alice/default"


@pytest.fixture
def fence(cluster_db: str) -> Iterator[PairFence]:
    held = PairFence(cluster_db, KEY)
    assert held.acquire()
    try:
        yield held
    finally:
        held.release()


def test_a_second_fence_cannot_take_a_pair_while_the_first_holds_it(cluster_db: str, fence: PairFence) -> None:
    second = PairFence(cluster_db, KEY)
    assert not second.acquire()
    other_pair = PairFence(cluster_db, "bob/default")
    assert other_pair.acquire()  # one lock per pair
    other_pair.release()
    fence.release()
    assert second.acquire()  # released: the next run may start
    assert second.held()
    second.release()


def test_a_fence_whose_connection_the_server_kills_is_lost_and_the_pair_free(cluster_db: str, fence: PairFence) -> None:
    assert fence.held()
    with psycopg.connect(cluster_db, autocommit=True) as admin:
        (pid,) = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"syncd fence {KEY}",)
        ).fetchone() or (None,)
        assert pid is not None
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert fence.lost.wait(LOST_AFTER_S + 10), "the keep-alive did not see its connection end"
    assert not fence.held()
    after = PairFence(cluster_db, KEY)
    assert after.acquire()
    after.release()


def test_a_cluster_wide_pause_is_one_row_per_pair(cluster_db: str) -> None:
    app = App(connector=SyncPsycopgConnector(conninfo=cluster_db, min_size=1, max_size=2))
    app.open()
    try:
        db = ClusterDatabase(app.connector.pool)  # type: ignore[attr-defined]
        db.create_schema(SchemaManager.get_schema())
        db.pause([KEY, "bob/default"], "h1")
        db.pause([KEY], "h2")  # already paused: the first daemon asked stays
        assert db.paused_by(KEY) == "h1" and set(db.paused()) == {KEY, "bob/default"}
        db.resume([KEY])
        assert db.paused_by(KEY) is None and set(db.paused()) == {"bob/default"}
    finally:
        app.close()


N_FILES = 40
SIZE = 32 * 1024  # at bwlimit 64K: half a second a file, 20 s a run


def make_world(cluster: Cluster) -> None:
    root = cluster.base / "trees" / "alice"
    root.mkdir(parents=True)
    for i in range(N_FILES):
        (root / f"f{i:02d}.bin").write_bytes(bytes([i]) * SIZE)
    write_cluster_config(cluster.base, cluster.url, {"alice": "../trees/alice"}, extra='bwlimit = "64K"\n')


@pytest.mark.slow
def test_a_daemon_runs_a_pair_only_holding_its_lock_and_stops_when_it_loses_it(cluster: Cluster) -> None:
    make_world(cluster)
    lock_id = pair_lock_id(KEY)
    with psycopg.connect(cluster.url, autocommit=True) as holder:  # another daemon's run, out of touch
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        h0, h1 = cluster.member("h0"), cluster.member("h1")
        for member in (h0, h1):
            cluster.start(member, "--first-run-within", "1")
        for member in (h0, h1):
            cluster.wait_started(member)
        cluster.poll(  # the job is taken and put back in line, again and again: it never runs
            "SELECT coalesce(max(attempts), 0) FROM procrastinate_jobs WHERE lock = 'alice/default'",
            lambda rows: rows[0][0] >= 2,
            60,
            "the job to be refused twice",
        )
        assert cluster.rows("SELECT count(*) FROM syncd_cluster_runs")[0][0] == 0
    # the lock is free: a daemon runs the pair; kill its lock's session from the server
    cluster.poll(
        "SELECT count(*) FROM syncd_cluster_runs WHERE ended_at IS NULL", lambda rows: rows[0][0] == 1, 60, "a run"
    )
    wait_for(lambda: len(bucket_files(cluster.base / "buckets" / "alice")) >= 2, 60, "two files in the bucket")
    (pid,) = cluster.rows("SELECT pid FROM pg_stat_activity WHERE application_name = %s", f"syncd fence {KEY}")[0]
    (killed_at,) = cluster.rows("SELECT clock_timestamp() FROM pg_terminate_backend(%s)", pid)[0]
    interrupted = cluster.poll(
        "SELECT host, result->>'message', ended_at FROM syncd_cluster_runs WHERE outcome = 'interrupted'",
        lambda rows: len(rows) == 1,
        LOST_AFTER_S + 20,
        "the run to stop",
    )
    assert "lost the pair's cluster lock" in interrupted[0][1], interrupted
    print(f"run stopped {(interrupted[0][2] - killed_at).total_seconds():.1f}s after its lock's session was killed")
    # ...and runs again, to the end, never two at once
    try:
        cluster.poll(
            "SELECT count(*) FROM syncd_cluster_runs WHERE outcome = 'ok'", lambda rows: rows[0][0] >= 1, 120, "a rerun"
        )
    except AssertionError as exc:
        jobs = cluster.rows("SELECT id, status, attempts, queue_name, scheduled_at FROM procrastinate_jobs")
        runs = cluster.rows("SELECT host, job_id, outcome, started_at, ended_at FROM syncd_cluster_runs")
        logs = "\n".join(f"{m.host}: {line}" for m in cluster.members for line in m.log().splitlines()[-30:])
        raise AssertionError(f"{exc}\njobs: {jobs}\nruns: {runs}\n{logs}") from None
    assert bucket_files(cluster.base / "buckets" / "alice") == tree_files(cluster.base / "trees" / "alice")
    runs = cluster.rows("SELECT started_at, ended_at FROM syncd_cluster_runs WHERE ended_at IS NOT NULL ORDER BY id")
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(runs)), runs

    # a pause asked of h1 holds on h0, and status there says so; a resume on h0 ends it everywhere
    assert h1.cli("pause", KEY).returncode == 0

    def status_row(member: Member) -> dict[str, Any]:
        (row,) = json.loads(member.cli("status", KEY, "--json").stdout)
        return dict(row)

    wait_for(lambda: status_row(h0)["cluster"]["paused_by"] == "h1", 30, "h0 to see h1's pause")  # read every 2 s
    assert status_row(h0)["paused"]
    now = h0.cli("now", KEY, "--json")
    assert '"outcome": "paused"' in now.stdout, now.stdout + now.stderr  # h0 holds h1's pause
    assert h0.cli("resume", KEY).returncode == 0
    wait_for(lambda: not status_row(h1)["paused"], 30, "h1 to see h0's resume")
    assert status_row(h1)["cluster"]["paused_by"] is None
    # the pause lived in the cluster's table only: no daemon keeps a mark that would pause the
    # pair again at its next start (h1 was asked to pause, h0 to resume)
    assert not list(cluster.base.rglob(PAUSED_FILE)), list(cluster.base.rglob(PAUSED_FILE))
