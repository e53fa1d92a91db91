"""The `syncd` command as an admin runs it: a real process, real files, documented exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_helpers import REPORT_KEYS, syncd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The README's embedded default, copied so the test does not touch the repository."""
    shutil.copytree(REPO / "packaging" / "examples" / "demo", tmp_path / "demo")
    shutil.copy(REPO / "packaging" / "examples" / "demo.toml", tmp_path / "demo.toml")
    return tmp_path / "demo.toml"


def test_demo_syncs_then_does_nothing(demo: Path) -> None:
    first = syncd(demo, "now")
    assert first.returncode == 0, first.stderr
    assert "demo/default: ok: 4 copy" in first.stdout
    bucket = demo.parent / "demo-bucket" / "objects"
    assert len(list(bucket.rglob("*.json"))) == 4
    second = syncd(demo, "now")
    assert second.returncode == 0 and "nothing to do" in second.stdout


def test_config_from_environment(demo: Path) -> None:
    result = syncd(None, "now", env={"SYNCD_CONFIG": str(demo)})
    assert result.returncode == 0, result.stderr


def test_dry_run_prints_the_plan_and_changes_nothing(demo: Path) -> None:
    result = syncd(demo, "now", "--dry-run")
    assert result.returncode == 0
    assert "plan (4 actions, nothing changed)" in result.stdout
    assert "copy     files -> bucket docs/notes.md" in result.stdout
    assert not (demo.parent / "demo-bucket" / "objects").exists() or not list(
        (demo.parent / "demo-bucket").rglob("*.json")
    )


def test_json_output_is_one_object_per_line(demo: Path) -> None:
    result = syncd(demo, "now", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    report = lines[-1]  # the same schema as through the daemon (tests/daemon/test_service.py)
    assert set(report) == REPORT_KEYS and report["reported"] is True and report["plan"] is None
    assert report["event"] == "report" and report["outcome"] == "ok" and report["done"] == {"copy": 4}
    assert report["error_count"] == 0 and report["skipped_count"] == 0
    assert any(line["event"] == "listed" for line in lines)
    # each action says when it starts (the bar names a file in flight), before it is done
    order = [(line["event"], line["path"]) for line in lines if line["event"] in ("start", "done")]
    for event, path in order:
        if event == "done":
            assert order.index(("start", path)) < order.index(("done", path)), order
    assert sum(event == "start" for event, _ in order) == 4


def test_json_reports_a_run_that_could_not_start(demo: Path) -> None:
    """A pair whose run is refused still gets its report line (and its one error line)."""
    state = demo.parent / "demo-state" / "demo" / "default"
    with _lock_held(state) as holder:
        result = syncd(demo, "now", "--json")
    assert result.returncode == 5
    report = json.loads(result.stdout.splitlines()[-1])
    assert set(report) == REPORT_KEYS and report["outcome"] == "locked" and report["reported"] is False
    assert result.stderr.splitlines() == [
        f"syncd: error: demo/default: another sync of this pair is running (pid {holder.pid})"
    ]


def test_status_log_conflicts_and_check(demo: Path) -> None:
    assert "never synced" in syncd(demo, "status").stdout
    syncd(demo, "now")
    (demo.parent / "demo" / "files" / "README.txt").write_text("edited on files")
    bucket_readme = demo.parent / "demo-bucket"
    import io

    from syncd.remotes.dirbucket import DirBucket

    data = b"edited in the bucket"
    DirBucket(bucket_readme).write("README.txt", io.BytesIO(data), size=len(data), mtime_ns=time.time_ns())
    assert syncd(demo, "now").returncode == 0
    status = syncd(demo, "status")
    assert "demo/default: ok" in status.stdout and "5 files in sync" in status.stdout
    log = syncd(demo, "log").stdout
    assert "copy on bucket docs/notes.md" in log
    conflicts = syncd(demo, "conflicts").stdout
    assert "README (conflicted copy" in conflicts
    check = syncd(demo, "check")
    assert check.returncode == 0 and "demo/default files: reachable" in check.stdout
    assert json.loads(syncd(demo, "status", "--json").stdout)[0]["files"] == 5


def test_exit_code_4_for_a_broken_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[users.a]\nfiles = { type = 'local', path = 'x' }\nbucket = { type = 'dri', path = 'y' }\n")
    result = syncd(config, "now")
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("syncd: error: ") and "'dri' is not a remote type" in result.stderr


def test_exit_code_3_when_a_guard_aborts(demo: Path) -> None:
    syncd(demo, "now")
    shutil.rmtree(demo.parent / "demo" / "files")
    (demo.parent / "demo" / "files").mkdir()
    result = syncd(demo, "now")
    assert result.returncode == 3
    assert "lists no files" in result.stderr


@contextlib.contextmanager
def _lock_held(state: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the pair's lock for the ``with`` body."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from syncd.lock import pair_lock\n"
            f"with pair_lock(Path({str(state)!r}), 'demo/default'):\n"
            "    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)


def test_exit_code_5_when_another_run_holds_the_lock(demo: Path) -> None:
    state = demo.parent / "demo-state" / "demo" / "default"
    with _lock_held(state) as holder:
        result = syncd(demo, "now")
    assert result.returncode == 5
    assert f"another sync of this pair is running (pid {holder.pid})" in result.stderr


def test_exit_code_2_for_usage_errors() -> None:
    assert syncd(None, "frobnicate").returncode == 2


def test_unknown_pair_is_a_clear_error(demo: Path) -> None:
    result = syncd(demo, "now", "carol")
    assert result.returncode == 4 and "no pair 'carol'" in result.stderr


def test_missing_secret_file_is_one_clear_line_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "keep.txt").write_text("untouched")
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n[users.alice]\n'
        'files = { type = "webdav", url = "http://127.0.0.1:9/remote.php/dav/files/alice/", '
        'username = "alice", password_file = "secrets/alice.webdav" }\n'
        'bucket = { type = "dir", path = "bucket" }\n'
    )
    for command in ("now", "check"):
        result = syncd(config, command)
        assert result.returncode == 4, (command, result.stderr)
        assert "secrets/alice.webdav does not exist" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "bucket" / "objects").exists() or not list((tmp_path / "bucket").rglob("*.json"))


@pytest.mark.parametrize(
    "args",
    [
        ("--config", "{config}", "now", "demo"),
        ("now", "--config", "{config}", "demo"),
        ("now", "demo", "--config", "{config}"),
        ("--config", "/nonexistent.toml", "now", "--config", "{config}"),  # the later one wins
    ],
)
def test_global_options_go_before_or_after_the_command(demo: Path, args: tuple[str, ...]) -> None:
    result = syncd(None, *(arg.format(config=demo) for arg in args))
    assert result.returncode == 0, result.stderr
    assert "demo/default: ok: 4 copy" in result.stdout


def test_every_command_takes_the_global_options() -> None:
    from syncd.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"now", "status", "log", "conflicts", "check", "run", "pause", "resume", "reload"} <= set(commands)
    for name, command in commands.items():  # those other modules register too
        assert "--config" in command._option_string_actions, name
    for name in ("now", "status", "log", "conflicts", "check", "run", "pause", "resume", "reload"):
        assert parser.parse_args([name, "--config", "x"]).config == "x", name
    assert parser.parse_args(["--config", "before", "status"]).config == "before"
    assert parser.parse_args(["status", "--config", "after"]).config == "after"
    assert parser.parse_args(["status"]).config is None


def test_conflicts_with_none_says_so(demo: Path) -> None:
    result = syncd(demo, "conflicts")
    assert result.returncode == 0 and result.stdout == "no conflicts: no conflict copy was made\n"
    assert syncd(demo, "conflicts", "--json").stdout == ""


def test_check_json(demo: Path) -> None:
    result = syncd(demo, "check", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["pairs"] == 1
    seen = {(c["pair"], c["what"]): c for c in report["checks"]}
    assert set(seen) == {
        (None, "config"),
        (None, "state"),
        ("demo/default", "state"),
        ("demo/default", "files"),
        ("demo/default", "bucket"),
    }
    assert all(c["ok"] for c in report["checks"])
    shutil.rmtree(demo.parent / "demo" / "files")
    broken = syncd(demo, "check", "--json")
    assert broken.returncode == 4
    files = next(c for c in json.loads(broken.stdout)["checks"] if c["what"] in ("files", "open"))
    assert files["ok"] is False and "files" in files["detail"]
    bad = demo.parent / "bad.toml"
    bad.write_text("[users.a]\nfiles = 3\n")
    config_error = syncd(bad, "check", "--json")
    assert config_error.returncode == 4
    assert json.loads(config_error.stdout)["checks"][0]["what"] == "config"


def _conflict_on_readme(demo: Path, bucket_mtime_ns: int) -> None:
    """README.txt edited on both sides since the last sync."""
    import io

    from syncd.remotes.dirbucket import DirBucket

    (demo.parent / "demo" / "files" / "README.txt").write_text("edited on files")
    data = b"edited in the bucket"
    DirBucket(demo.parent / "demo-bucket").write(
        "README.txt", io.BytesIO(data), size=len(data), mtime_ns=bucket_mtime_ns
    )


def test_dry_run_shows_the_conflict_copy_name_the_real_run_then_uses(demo: Path) -> None:
    assert syncd(demo, "now").returncode == 0
    _conflict_on_readme(demo, time.time_ns() - 3 * 86400 * 10**9)
    dry = syncd(demo, "now", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout.splitlines()[-1])["plan"]
    conflict = next(line for line in plan if line.startswith("conflict"))
    copy = conflict.split(" -> ", 1)[1].split("  (", 1)[0]
    assert copy.startswith("README (conflicted copy ") and copy.endswith(").txt")
    time.sleep(1.1)  # a name from the clock would differ by now
    assert syncd(demo, "now").returncode == 0
    files = demo.parent / "demo" / "files"
    assert (files / copy).read_bytes() == b"edited in the bucket"
    assert (files / "README.txt").read_text() == "edited on files"
    assert f"the bucket version is now '{copy}'" in syncd(demo, "conflicts").stdout


def test_dry_run_shows_the_plan_a_guard_would_abort_and_says_which_guard(demo: Path) -> None:
    assert syncd(demo, "now").returncode == 0
    files = demo.parent / "demo" / "files"
    shutil.rmtree(files)
    files.mkdir()
    dry = syncd(demo, "now", "--dry-run")
    assert dry.returncode == 3
    assert "plan (4 actions, nothing changed):" in dry.stdout
    assert "delete   on bucket docs/notes.md" in dry.stdout
    assert "dry run, aborted: 4 action(s) planned, nothing changed" in dry.stdout
    assert "the empty-side guard would abort the real run: the files side lists no files" in dry.stderr
    assert "the mass-delete guard would abort the real run: the plan deletes 4 of 4 files" in dry.stderr
    assert len(list((demo.parent / "demo-bucket").rglob("*.json"))) == 4  # nothing changed
    report = json.loads(syncd(demo, "now", "--dry-run", "--json").stdout.splitlines()[-1])
    assert report["outcome"] == "aborted" and len(report["plan"]) == 4 and "empty-side guard" in report["message"]
    real = syncd(demo, "now")
    assert real.returncode == 3 and "lists no files" in real.stderr and "plan (" not in real.stdout
