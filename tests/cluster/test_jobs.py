"""The cluster's pure parts: a run request as a job and back, which requests fold into one
job, the slot of a scheduled firing, whether this host can run a pair; the config keys; and
a daemon without ``cluster`` never importing procrastinate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncd.cluster.database import psycopg_url
from syncd.cluster.jobs import (
    host_name,
    job_args,
    merged_args,
    period_slot,
    queueing_lock,
    request_of,
    unreachable,
)
from syncd.config import DaemonSection, load_config
from syncd.engine.scans import phase
from syncd.errors import ConfigError
from syncd.models import Side
from syncd.scheduler import RunRequest

KEY = "alice/default"


def test_a_request_round_trips_through_the_job_args() -> None:
    for request in (
        RunRequest("schedule"),
        RunRequest("watch", hints=frozenset({"b/x.txt", "a.txt"})),
        RunRequest("now", force=True),
    ):
        args = job_args(KEY, request)
        assert args["pair"] == KEY
        assert request_of(args) == (KEY, request)


def test_the_args_are_plain_json_with_hints_sorted() -> None:
    args = job_args(KEY, RunRequest("watch", hints=frozenset({"z", "a"})))
    assert args == {"pair": KEY, "reason": "watch", "hints": ["a", "z"], "force": False}


def test_a_scheduled_run_lists_both_sides_in_a_cluster() -> None:
    """A watcher on one host does not see another host's writes: no side is taken as unchanged."""
    args = job_args(KEY, RunRequest("schedule", unchanged=frozenset({Side.A})))
    assert request_of(args)[1].full


def test_args_that_no_syncd_job_has_are_refused() -> None:
    with pytest.raises(ValueError):
        request_of({"reason": "now"})
    with pytest.raises(ValueError):
        request_of({"pair": KEY, "hints": "a.txt"})


def test_hinted_requests_fold_into_one_job_with_both_hints() -> None:
    waiting = job_args(KEY, RunRequest("watch", hints=frozenset({"a"})))
    new = job_args(KEY, RunRequest("watch", hints=frozenset({"b"})))
    assert merged_args(waiting, new) == {"pair": KEY, "reason": "watch", "hints": ["a", "b"], "force": False}


def test_a_full_request_folded_with_a_hinted_one_stays_full() -> None:
    waiting = job_args(KEY, RunRequest("watch", hints=frozenset({"a"})))
    merged = merged_args(waiting, job_args(KEY, RunRequest("schedule")))
    assert merged is not None
    assert merged["hints"] is None and merged["reason"] == "watch+schedule"


def test_requests_that_cannot_share_a_run_do_not_fold() -> None:
    plain = job_args(KEY, RunRequest("now"))
    assert merged_args(plain, job_args(KEY, RunRequest("now", force=True))) is None
    assert merged_args(plain, job_args("bob/default", RunRequest("now"))) is None


def test_a_forced_run_waits_under_its_own_queueing_lock() -> None:
    assert queueing_lock(KEY, RunRequest("now")) == KEY
    assert queueing_lock(KEY, RunRequest("now", force=True)) == f"{KEY}#force"


def test_daemons_firing_a_pair_at_once_name_the_same_slot() -> None:
    interval = 300.0
    firing = 1_800_000_000 // 300 * 300 + phase(KEY, interval)
    slots = {period_slot(KEY, interval, firing + skew) for skew in (-20.0, -0.01, 0.0, 0.02, 3.0, 100.0)}
    assert len(slots) == 1
    assert period_slot(KEY, interval, firing + interval) == next(iter(slots)) + 300


def test_pairs_fire_at_their_own_phase() -> None:
    now = 1_800_000_000.0
    assert period_slot(KEY, 300, now) % 300 != period_slot("bob/default", 300, now) % 300


def test_a_pair_whose_local_folder_is_missing_here_is_unreachable(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    config = tmp_path / "syncd.toml"
    config.write_text("""
[users.alice]
files  = { type = "local", path = "files" }
bucket = { type = "dir",   path = "bucket" }
""")
    (pair,) = load_config(config).pairs
    message = unreachable(pair)
    assert message is not None and "bucket folder" in message and "missing on this host" in message
    (tmp_path / "bucket").mkdir()
    assert unreachable(pair) is None


def test_the_host_name_comes_from_the_config_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_HOST_NAME", "pod-7")
    assert host_name(DaemonSection()) == "pod-7"
    assert host_name(DaemonSection(host_name="db1")) == "db1"
    monkeypatch.delenv("SYNCD_HOST_NAME")
    assert host_name(DaemonSection())


def test_the_index_url_spelling_is_accepted() -> None:
    assert psycopg_url("postgresql+psycopg://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"
    assert psycopg_url("postgresql://h/db") == "postgresql://h/db"


def config_with(tmp_path: Path, daemon: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f"[daemon]\n{daemon}\n")
    return path


def test_cluster_keys(tmp_path: Path) -> None:
    assert not load_config(config_with(tmp_path, "")).daemon.clustered
    daemon = load_config(config_with(tmp_path, 'cluster = "postgresql://syncd@db/syncd"\nhost_name = "a"')).daemon
    assert daemon.clustered and daemon.host_name == "a"
    daemon = load_config(config_with(tmp_path, 'cluster_url_file = "cluster.url"')).daemon
    assert daemon.clustered and daemon.cluster_url_file == tmp_path / "cluster.url"


@pytest.mark.parametrize(
    ("daemon", "message"),
    [
        ('cluster = "mysql://secret@db/x"', "daemon.cluster: not a postgresql:// URL"),
        ('cluster = "postgresql://db/x"\ncluster_url_file = "u"', "set cluster or cluster_url_file, not both"),
    ],
)
def test_bad_cluster_keys_are_one_line_errors(tmp_path: Path, daemon: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, daemon))
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)  # the URL may hold a password: never echoed


def test_a_daemon_without_cluster_never_imports_procrastinate() -> None:
    code = (
        "import sys, syncd.daemon, syncd.cli, syncd.cli_status\n"
        "assert not [m for m in sys.modules if m.startswith(('procrastinate', 'syncd.cluster'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
