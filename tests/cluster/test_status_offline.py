"""`syncd status` with no daemon answering, in cluster mode: a pause is a row of the cluster's
table (no mark in the pair's state folder), so status reads the table and shows the pair paused
cluster-wide; a database it cannot reach is one line, and the rest of the status is shown."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from syncd.outcomes import ExitCode
from tests.cluster.conftest import Cluster, Member, write_cluster_config

PAIR = "alice/default"


def write_config(base: Path, url: str) -> None:
    (base / "trees" / "alice").mkdir(parents=True, exist_ok=True)
    (base / "trees" / "alice" / "a.txt").write_text("alice\n")
    (base / "trees" / "bob").mkdir(parents=True, exist_ok=True)
    write_cluster_config(base, url, {"alice": "../trees/alice", "bob": "../trees/bob"})


def rows(member: Member) -> dict[str, dict[str, object]]:
    done = member.cli("status", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    return {str(row["pair"]): row for row in json.loads(done.stdout)}


@pytest.mark.postgres
def test_status_without_a_daemon_shows_a_cluster_wide_pause(cluster: Cluster) -> None:
    write_config(cluster.base, cluster.url)
    h0 = cluster.member("h0")
    before = h0.cli("status")  # no daemon ever started: no tables yet, nothing paused, no error
    assert before.returncode == ExitCode.OK and "cannot read" not in before.stdout + before.stderr, before
    assert "paused" not in before.stdout

    cluster.start(h0)
    cluster.wait_started(h0)
    assert h0.cli("pause", PAIR).returncode == ExitCode.OK
    cluster.stop_all()
    assert h0.proc is not None and h0.proc.returncode == 0, h0.log()

    offline = rows(h0)
    alice, bob = offline[PAIR], offline["bob/default"]
    assert alice["served"] is False and alice["paused"] is True, alice
    assert alice["cluster"] == {"paused_by": "h0"} and isinstance(alice["paused_since"], float)
    assert bob["paused"] is False and bob["cluster"] is None
    text = h0.cli("status").stdout
    assert text.startswith("daemon: not running"), text
    assert "  paused cluster-wide (asked of h0) since " in text, text
    assert text.count("paused") == 1, text  # bob is not
    assert "cannot read" not in text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_says_in_one_line_when_the_cluster_database_is_unreachable(tmp_path: Path) -> None:
    where = f"127.0.0.1:{free_port()}/syncd"  # nothing listens there
    write_config(tmp_path, f"postgresql://syncd@{where}")
    (tmp_path / "run").mkdir()
    member = Member(tmp_path, "h0")
    text = member.cli("status")
    assert text.returncode == ExitCode.OK, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("daemon: not running")
    assert lines[1].startswith(f"cluster database {where}: cannot read the pauses ("), lines
    assert lines[1].endswith("a pair paused cluster-wide may show as not paused")
    assert sum("cannot read" in line for line in lines) == 1
    assert [line.split(":")[0] for line in lines[2:]] == [PAIR, "bob/default"]  # the rest is shown
    as_json = member.cli("status", "--json")
    assert as_json.returncode == ExitCode.OK
    assert [row["pair"] for row in json.loads(as_json.stdout)] == [PAIR, "bob/default"]
    (warning,) = as_json.stderr.splitlines()
    assert warning.startswith(f"cluster database {where}: cannot read the pauses (")
