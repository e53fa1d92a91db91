"""Names from a remote reach the terminal escaped: a key holding a newline forges no report
line, ``ESC[2J`` never clears the admin's screen, bidi overrides never disguise a name.
``--json`` keeps the exact names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.cli_helpers import put_named, syncd, write_local_pair

FORGED = "a\nsyncd: error: forged line.txt"  # unsafe (a control character): skipped, reported
CLEAR = "clear\x1b[2J.txt"  # unsafe: skipped, reported
SYNCED = ("evil\u202etxt.exe", "csi\x9b2J.txt", "para\u2028graph.txt")  # safe names: synced, logged
RAW = ("\x1b", "\x9b", "\u202e", "\u2028")


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A pair whose bucket holds hostile keys."""
    (tmp_path / "files").mkdir()
    config = write_local_pair(tmp_path)
    for key in (FORGED, CLEAR, *SYNCED):
        put_named(tmp_path / "bucket", key)
    return config


def assert_escaped(result: subprocess.CompletedProcess[str], *, must_show: tuple[str, ...]) -> str:
    """Nothing raw reached the terminal; every line is syncd's own; ``must_show`` appear escaped."""
    out = result.stdout + result.stderr
    for char in RAW:
        assert char not in out, f"{char!r} reached the terminal:\n{out}"
    forged = [line for line in out.splitlines() if line.startswith("syncd: error: forged")]
    assert not forged, out
    for name in must_show:
        assert name in out, f"{name!r} not shown:\n{out}"
    return out


def test_dry_run_plan_shows_names_escaped(hostile: Path) -> None:
    result = syncd(hostile, "now", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert_escaped(
        result,
        must_show=(
            "a\\nsyncd: error: forged line.txt",
            "clear\\x1b[2J.txt",
            "evil\\u202etxt.exe",
            "csi\\x9b2J.txt",
            "para\\u2028graph.txt",
        ),
    )


def test_now_verbose_status_and_log_show_names_escaped(hostile: Path) -> None:
    first = syncd(hostile, "now", "-v")
    assert first.returncode == 0, first.stderr
    assert_escaped(
        first,
        must_show=(
            "skipped a\\nsyncd: error: forged line.txt",
            "skipped clear\\x1b[2J.txt",
            "evil\\u202etxt.exe",
            "csi\\x9b2J.txt",
        ),
    )
    status = syncd(hostile, "status", "-v")
    assert status.returncode == 0, status.stderr
    assert_escaped(status, must_show=("2 skipped name(s)", "skipped clear\\x1b[2J.txt"))
    log = syncd(hostile, "log")
    assert_escaped(log, must_show=("evil\\u202etxt.exe", "csi\\x9b2J.txt", "para\\u2028graph.txt"))
    assert len(log.stdout.splitlines()) == 3


def test_json_keeps_the_exact_names(hostile: Path) -> None:
    result = syncd(hostile, "now", "--json", "-v")
    assert result.returncode == 0, result.stderr
    report = [json.loads(line) for line in result.stdout.splitlines()][-1]
    assert {path for path, _ in report["skipped"]} == {FORGED, CLEAR}
    status = json.loads(syncd(hostile, "status", "--json", "-v").stdout)
    assert {path for path, _ in status[0]["skipped_names"]} == {FORGED, CLEAR}
    logged = {json.loads(line)["path"] for line in syncd(hostile, "log", "--json").stdout.splitlines()}
    assert logged == set(SYNCED)
