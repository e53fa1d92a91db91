"""Three daemons (real processes, separate state folders, one config) share 100 pairs through
one PostgreSQL database: every pair syncs; one daemon killed with SIGKILL in the middle of
its runs has them taken over by the others within 60 s; the run log in the database shows no
pair ever synced by two daemons at once, and every file is in its bucket. A few pairs live in
a folder one daemon does not see: they run on the two others."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
from datetime import datetime
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, write_cluster_config
from tests.daemons import bucket_files, tree_files

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_PAIRS = 100
MOUNTED = 6  # pairs whose files are in mnt/: the third daemon has no mnt/
BIG = 160 * 1024  # one file per pair at bwlimit 64K: each run takes a second or more
TAKEOVER_S = 60.0


def user(i: int) -> str:
    return f"u{i:03d}"


def make_world(cluster: Cluster) -> None:
    rng = random.Random(14)
    sections: dict[str, str] = {}
    for i in range(N_PAIRS):
        mounted = i < MOUNTED
        root = cluster.base / ("mounted" if mounted else "trees") / user(i)
        (root / "docs").mkdir(parents=True)
        (root / "readme.txt").write_text(f"hello {user(i)}\n")
        (root / "docs" / "notes.md").write_text(f"# notes of {user(i)}\n")
        (root / "big.bin").write_bytes(rng.randbytes(BIG))
        sections[user(i)] = f"mnt/{user(i)}" if mounted else f"../trees/{user(i)}"
    write_cluster_config(cluster.base, cluster.url, sections, extra='bwlimit = "64K"\n')


def open_runs(cluster: Cluster, host: str) -> list[tuple[Any, ...]]:
    return cluster.rows(
        "SELECT pair, job_id FROM syncd_cluster_runs WHERE host = %s AND ended_at IS NULL AND outcome IS NULL", host
    )


def test_three_daemons_share_100_pairs_and_survive_a_kill(cluster: Cluster) -> None:
    make_world(cluster)
    h0, h1, h2 = cluster.member("h0"), cluster.member("h1"), cluster.member("h2", mounts=False)
    for member in (h0, h1, h2):
        cluster.start(member, "--first-run-within", "10")
    for member in (h0, h1, h2):
        cluster.wait_started(member)

    # kill -9 the first daemon while it runs pairs
    cluster.poll(
        "SELECT count(*) FROM syncd_cluster_runs WHERE host = 'h0' AND ended_at IS NULL",
        lambda rows: rows[0][0] >= 1,
        90,
        "h0 to run a pair",
    )
    assert h0.proc is not None
    os.kill(h0.proc.pid, signal.SIGKILL)
    h0.proc.wait(10)
    killed_at: datetime = cluster.rows("SELECT clock_timestamp()")[0][0]
    in_flight = {pair for pair, _job in open_runs(cluster, "h0")}
    assert in_flight, "h0 was killed between two runs"

    # every pair syncs, the killed daemon's runs taken over by the others
    every_pair_ok = "SELECT count(DISTINCT pair) FROM syncd_cluster_runs WHERE outcome = 'ok' AND ended_at IS NOT NULL"
    try:
        cluster.poll(every_pair_ok, lambda rows: rows[0][0] == N_PAIRS, 240, f"all {N_PAIRS} pairs to sync")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(cluster)}") from None
    # quiet: no run in flight, no job waiting, none for a few seconds (a run's writes to a dir
    # bucket are seen by the other daemons' watchers: each asks for one more, hinted, run)
    cluster.poll(
        "SELECT (SELECT count(*) FROM syncd_cluster_runs WHERE ended_at IS NULL AND outcome IS NULL)"
        " + (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')),"
        " (SELECT extract(epoch FROM clock_timestamp() - max(ended_at)) FROM syncd_cluster_runs)",
        lambda rows: rows[0][0] == 0 and rows[0][1] > 3,
        120,
        "the cluster to be quiet",
    )
    for pair in sorted(in_flight):
        taken = cluster.rows(
            "SELECT host, started_at FROM syncd_cluster_runs WHERE pair = %s AND started_at > %s AND outcome = 'ok' "
            "ORDER BY id LIMIT 1",
            pair,
            killed_at,
        )
        assert taken, f"{pair}: h0's run was never taken over"
        host, started = taken[0]
        assert host != "h0"
        waited = (started - killed_at).total_seconds()
        assert waited <= TAKEOVER_S, f"{pair}: taken over after {waited:.1f}s"
        print(f"{pair}: h0's run taken over by {host} {waited:.1f}s after the kill")
    lost = cluster.rows("SELECT pair FROM syncd_cluster_runs WHERE outcome = 'lost'")
    assert {pair for (pair,) in lost} == in_flight  # the recovery marked exactly h0's runs in flight

    assert_never_two_at_once(cluster, killed_at)

    # the work was spread; the pairs in mnt/ never ran on h2, which has no mnt/
    hosts = dict(cluster.rows("SELECT host, count(*) FROM syncd_cluster_runs WHERE outcome = 'ok' GROUP BY host"))
    assert hosts.get("h1", 0) > 0 and hosts.get("h2", 0) > 0, hosts
    mounted_hosts = cluster.rows(
        "SELECT DISTINCT host FROM syncd_cluster_runs WHERE pair = ANY(%s) AND outcome = 'ok'",
        [f"{user(i)}/default" for i in range(MOUNTED)],
    )
    assert "h2" not in {host for (host,) in mounted_hosts}

    # a pair stays on the daemon that ran it (its index there is current) while that daemon lives
    moved = [
        (pair, hosts)
        for pair, hosts in cluster.rows(
            "SELECT pair, array_agg(host ORDER BY id) FROM syncd_cluster_runs WHERE started_at < %s "
            "OR pair IN (SELECT pair FROM syncd_cluster_runs WHERE host <> 'h0') GROUP BY pair",
            killed_at,
        )
        if len(set(hosts) - {"h0"}) > 1
    ]
    assert not moved, moved

    # nothing lost: every file of every tree is in its bucket, byte for byte
    for i in range(N_PAIRS):
        root = cluster.base / ("mounted" if i < MOUNTED else "trees") / user(i)
        assert bucket_files(cluster.base / "buckets" / user(i)) == tree_files(root), user(i)

    # `syncd now` through one daemon becomes a job; status names the hosts
    target = f"{user(50)}/default"
    (cluster.base / "trees" / user(50) / "new.txt").write_text("made after the kill\n")
    now = h2.cli("now", target, "--json")
    assert now.returncode == 0, now.stdout + now.stderr
    assert "new.txt" in bucket_files(cluster.base / "buckets" / user(50))
    status = h1.cli("status", target, "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["cluster"]["last_host"] in ("h1", "h2"), row  # h0 is dead
    assert row["cluster"]["running_on"] in (None, "h1", "h2"), row  # the watchers saw new.txt too
    text = h1.cli("status", target).stdout
    assert f"last run on {row['cluster']['last_host']}" in text, text

    cluster.stop_all()
    for member in (h1, h2):
        assert member.proc is not None and member.proc.returncode == 0, member.log()


def assert_never_two_at_once(cluster: Cluster, killed_at: datetime) -> None:
    """From the run log: per pair, each run ended before the next one started. A run of the
    killed daemon has no end: it ended at the kill."""
    rows = cluster.rows("SELECT pair, host, started_at, ended_at FROM syncd_cluster_runs ORDER BY pair, started_at")
    by_pair: dict[str, list[tuple[str, datetime, datetime]]] = {}
    for pair, host, started, ended in rows:
        assert ended is not None or host == "h0", f"{pair}: a run on {host} has no end"
        by_pair.setdefault(pair, []).append((host, started, killed_at if ended is None else ended))
    overlaps = [
        f"{pair}: {a[0]} {a[1]}..{a[2]} and {b[0]} {b[1]}..{b[2]}"
        for pair, runs in by_pair.items()
        for a, b in itertools.pairwise(runs)
        if b[1] < a[2]
    ]
    assert not overlaps, "\n".join(overlaps)
    assert len(by_pair) == N_PAIRS


def diagnosis(cluster: Cluster) -> str:
    """What the database and the logs say of the pairs that did not sync."""
    done = {pair for (pair,) in cluster.rows("SELECT DISTINCT pair FROM syncd_cluster_runs WHERE outcome = 'ok'")}
    missing = sorted({f"{user(i)}/default" for i in range(N_PAIRS)} - done)
    lines = [f"not synced: {missing}"]
    for pair in missing[:5]:
        lines.append(f"{pair} runs: {cluster.rows('SELECT * FROM syncd_cluster_runs WHERE pair = %s', pair)}")
        jobs = cluster.rows(
            "SELECT id, status, attempts, args, worker_id, scheduled_at FROM procrastinate_jobs WHERE lock = %s", pair
        )
        lines.append(f"{pair} jobs: {jobs}")
        for member in cluster.members:
            lines += [f"{member.host}: {line}" for line in member.log().splitlines() if pair in line][-10:]
    for member in cluster.members:
        lines += [f"{member.host}: {line}" for line in member.log().splitlines() if "ERROR" in line or "Trace" in line]
    return "\n".join(lines)
