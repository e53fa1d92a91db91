"""Names a pair cannot sync are reported once, kept in the index and counted by ``status``;
they are not repeated on stderr by every run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from syncd.remotes.dirbucket import DirBucket
from tests.integration.cli_helpers import put_named, syncd, write_local_pair

UNSAFE = "bad\x01name.txt"  # a control character: skipped on every run until it is renamed


def skipped_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if ": skipped " in line]


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "fine.txt").write_text("fine\n")
    config = write_local_pair(tmp_path)
    put_named(tmp_path / "bucket", UNSAFE)
    return config


def test_a_skipped_name_is_reported_once_and_counted(pair: Path) -> None:
    shown = "alice/default: skipped bad\\x01name.txt: unsafe name on bucket"
    dry = skipped_lines(syncd(pair, "now", "--dry-run"))
    assert len(dry) == 1 and dry[0].startswith(shown)  # a dry run records nothing...
    first = syncd(pair, "now")
    assert [line for line in skipped_lines(first) if line.startswith(shown)] == skipped_lines(first)
    assert len(skipped_lines(first)) == 1  # ...so the first real run reports it
    assert "1 name(s) skipped" in first.stdout
    assert skipped_lines(syncd(pair, "now")) == []  # known: not repeated
    assert len(skipped_lines(syncd(pair, "now", "-v"))) == 1  # -v lists every skipped name

    status = syncd(pair, "status")
    assert "; 1 skipped name(s)" in status.stdout and "syncd status -v lists" in status.stdout
    assert "skipped bad" not in status.stdout
    verbose = syncd(pair, "status", "-v")
    assert "  skipped bad\\x01name.txt: unsafe name on bucket" in verbose.stdout
    row = json.loads(syncd(pair, "status", "--json").stdout)[0]
    assert row["skipped"] == 1 and "skipped_names" not in row

    put_named(pair.parent / "bucket", "another\x02.txt")
    newly = skipped_lines(syncd(pair, "now"))
    assert len(newly) == 1 and "another\\x02.txt" in newly[0]

    bucket = DirBucket(pair.parent / "bucket")
    for key in (UNSAFE, "another\x02.txt"):
        bucket.delete(key)
    assert syncd(pair, "now").returncode == 0
    assert json.loads(syncd(pair, "status", "--json").stdout)[0]["skipped"] == 0


def test_a_run_that_stops_before_its_plan_keeps_the_skipped_names(pair: Path) -> None:
    assert syncd(pair, "now").returncode == 0
    config = pair.read_text().replace('path = "files"', 'path = "gone"')
    pair.write_text(config)  # a missing root: the run stops before it plans anything
    assert syncd(pair, "now").returncode != 0
    assert json.loads(syncd(pair, "status", "--json").stdout)[0]["skipped"] == 1
