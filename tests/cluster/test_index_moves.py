"""A pair's index follows it to the daemon that takes it over (real daemons, one PostgreSQL).

h1 runs the pair first, then stops; h0 takes it, syncs a new file and an edit, and is killed
(SIGKILL). Then, with no daemon running, the user deletes the new file and edits the other one
on the files side. h1 takes the pair back: with its own index (as old as its last run) the
deleted file would come back from the bucket and the edit would be a conflict (both sides
changed since h1's base). With h0's index, taken from the cluster, the deletion goes to the
bucket and the edit is copied, no conflict copy anywhere."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.cluster.conftest import Cluster, Member, write_cluster_config
from tests.daemons import bucket_files, sha, tree_files

pytestmark = pytest.mark.postgres
KEY = "alice/default"


def make_world(cluster: Cluster) -> None:
    tree = cluster.base / "trees" / "alice"
    tree.mkdir(parents=True)
    (tree / "keep.txt").write_text("v1\n")
    write_cluster_config(cluster.base, cluster.url, {"alice": "../trees/alice"})


def sync_now(member: Member) -> str:
    done = member.cli("now", KEY, timeout=180)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{member.log()}"
    return done.stdout + done.stderr


def quiet(cluster: Cluster) -> None:
    """No run in flight, no job waiting (a daemon's watcher sees its own writes to the dir
    bucket: one more, hinted, run)."""
    cluster.poll(
        "SELECT (SELECT count(*) FROM syncd_cluster_runs WHERE ended_at IS NULL AND outcome IS NULL)"
        " + (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))",
        lambda rows: rows[0][0] == 0,
        60,
        "the cluster to be quiet",
    )


def test_a_pair_taken_over_runs_on_the_index_of_the_daemon_that_ran_it_last(cluster: Cluster) -> None:
    make_world(cluster)
    tree, bucket = cluster.base / "trees" / "alice", cluster.base / "buckets" / "alice"
    h0, h1 = cluster.member("h0"), cluster.member("h1")

    cluster.start(h1)  # h1's index of the pair: keep.txt v1
    cluster.wait_started(h1)
    sync_now(h1)
    quiet(cluster)
    assert h1.proc is not None
    h1.proc.send_signal(signal.SIGTERM)
    assert h1.proc.wait(60) == 0, h1.log()

    cluster.start(h0)  # h0 runs the pair: a new file, an edit
    cluster.wait_started(h0)
    (tree / "doomed.txt").write_text("made on h0's watch\n")
    (tree / "keep.txt").write_text("v2\n")
    sync_now(h0)
    assert bucket_files(bucket) == tree_files(tree) and "doomed.txt" in tree_files(tree)
    quiet(cluster)
    cluster.poll(  # h0 saved its index after the run that changed it
        "SELECT host FROM syncd_cluster_indexes WHERE pair = 'alice/default'",
        lambda rows: rows == [("h0",)],
        60,
        "h0's index in the cluster",
    )
    assert h0.proc is not None
    os.kill(h0.proc.pid, signal.SIGKILL)
    h0.proc.wait(10)

    # the user, while no daemon runs: deletes the new file, edits the other one
    (tree / "doomed.txt").unlink()
    (tree / "keep.txt").write_text("v3\n")

    # h0 seems alive a while longer: the pair's jobs wait in its line, h1 only shows its plan
    cluster.rows("UPDATE syncd_cluster_hosts SET seen_at = now() + interval '1 hour' WHERE host = 'h0' RETURNING 1")
    h1_log_before = len(h1.log())
    cluster.start(h1)
    cluster.wait_started(h1)
    dry = h1.cli("now", KEY, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    plan = dry.stdout + dry.stderr
    assert re.search(r"delete\s+on bucket doomed\.txt", plan) and "conflict" not in plan, plan
    assert re.search(r"copy\s+files -> bucket keep\.txt", plan), plan

    cluster.rows("UPDATE syncd_cluster_hosts SET seen_at = now() - interval '1 hour' WHERE host = 'h0' RETURNING 1")
    sync_now(h1)  # h1 takes the pair back
    quiet(cluster)
    took = h1.log()[h1_log_before:]
    expected = {"keep.txt": sha(b"v3\n")}
    assert tree_files(tree) == expected, (tree_files(tree), took)  # doomed.txt did not come back
    assert bucket_files(bucket) == expected, bucket_files(bucket)  # ...and is gone there; no conflict copy
    assert "index: took generation" in took and "saved by h0" in took, took

    history = h1.cli("log", KEY)
    assert history.returncode == 0, history.stderr
    text = history.stdout
    assert "doomed.txt" in text and "delete" in text, text  # h0's copy and h1's delete, in one history
    assert not [line for line in text.splitlines() if "conflict" in line], text
