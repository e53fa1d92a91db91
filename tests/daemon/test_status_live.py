"""`syncd status` shows what is live (paused, running, next run), from the daemon when it is
up; a pause outlives a restart of the daemon. Real daemon processes, real socket."""

from __future__ import annotations

import json
import time

from syncd.cli_status import duration, status_lines
from tests.daemon.conftest import World
from tests.daemons import bucket_files, wait_for

WATCH_TIMEOUT_S = 20.0
SKIP_TIMEOUT_S = 60.0  # the watcher's quiet period (0.5 s) on a busy 2-core machine


def test_status_shows_the_daemon_the_next_run_and_a_pause_that_outlives_a_restart(world: World) -> None:
    down = world.cli("status", "alice")
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("daemon: not running (no answer on ")
    assert "next run" not in down.stdout

    daemon = world.daemon("--first-run-within", "0")
    daemon.wait_idle()
    up = world.cli("status", "alice")
    assert f"daemon: pid {daemon.proc.pid if daemon.proc else '?'} " in up.stdout, up.stdout
    assert "alice/default: ok, last run" in up.stdout and "  next run: " in up.stdout and "(every 1h)" in up.stdout
    row = json.loads(world.cli("status", "alice", "--json").stdout)[0]
    assert row["served"] is True and row["paused"] is False and row["next_run"] > time.time()

    assert world.cli("pause", "alice").returncode == 0
    paused = world.cli("status", "alice")
    assert "  paused since " in paused.stdout and "`syncd resume alice/default` resumes" in paused.stdout
    assert "next run" not in paused.stdout

    assert daemon.stop() == 0
    offline = json.loads(world.cli("status", "alice", "--json").stdout)[0]
    assert offline["served"] is False and offline["paused"] is True and offline["paused_since"] is not None
    assert "  paused since " in world.cli("status", "alice").stdout  # read from the pause mark

    again = world.daemon("--first-run-within", "0")
    wait_for(lambda: again.lines("serving"), WATCH_TIMEOUT_S, "the daemon to watch its trees (its 'serving' line)")
    row = json.loads(world.cli("status", "alice", "--json").stdout)[0]
    assert row["served"] is True and row["paused"] is True, again.log()
    assert row["paused_since"] == offline["paused_since"]
    refused = world.cli("now", "alice")
    assert refused.returncode == 5 and "paused" in refused.stderr
    (world.alice / "while-paused.txt").write_text("later\n")
    # the watcher's hint reaches the daemon, which skips the run: the event that a run did not happen
    wait_for(lambda: again.lines("alice/default: skipped, paused"), SKIP_TIMEOUT_S, f"the skip\n{again.log()}")
    assert "while-paused.txt" not in bucket_files(world.alice_bucket)

    assert world.cli("resume", "alice").returncode == 0
    wait_for(lambda: "while-paused.txt" in bucket_files(world.alice_bucket), WATCH_TIMEOUT_S, "resume to sync")
    assert json.loads(world.cli("status", "alice", "--json").stdout)[0]["paused"] is False
    assert again.stop() == 0
    assert json.loads(world.cli("status", "alice", "--json").stdout)[0]["paused"] is False  # the mark is gone


def test_a_running_pair_is_shown_with_its_progress() -> None:
    row = {
        "pair": "alice/default",
        "state": "never synced",
        "paused": False,
        "running": {"phase": "done", "reason": "now", "actions": 10, "done": 3, "started_at": 1_700_000_000.0},
        "queued": 1,
        "next_run": None,
    }
    lines = status_lines(row, verbose=False)
    assert lines[0] == "alice/default: never synced"
    assert lines[1].startswith("  running now: applying, 3/10 actions (asked by now, since ")
    assert lines[2] == "  1 more run(s) queued"
    assert [duration(s) for s in (45, 300, 330, 7500, 3 * 86400 + 4 * 3600)] == ["45s", "5m", "5m30s", "2h05m", "3d4h"]
