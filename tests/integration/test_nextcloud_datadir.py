"""Nextcloud data-dir mode: after syncd writes into <datadir>/<user>/files, the configured
scan command (occ files:scan in production; here a real script that records its calls)
runs for the changed folders, batched, and its failure is reported clearly."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.engine.sync import sync_pair
from syncd.errors import ConfigError
from syncd.models import Outcome
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.nextcloud_scan import folders_to_scan


def make_pair(tmp_path: Path, exit_code: int = 0) -> tuple[Path, Path, Path]:
    files = tmp_path / "data" / "alice" / "files"
    files.mkdir(parents=True)
    calls = tmp_path / "calls.jsonl"
    occ = tmp_path / "fake-occ"
    occ.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print('Permission denied: data dir not writable', file=sys.stderr) if {exit_code} else None\n"
        f"sys.exit({exit_code})\n"
    )
    occ.chmod(occ.stat().st_mode | stat.S_IEXEC)
    command = json.dumps([str(occ), "files:scan", "--path={path}"])
    (tmp_path / "syncd.toml").write_text(
        f'[daemon]\nstate_dir = "state"\n[users.alice]\n'
        f'files = {{ type = "local", path = "data/alice/files", scan_command = {command} }}\n'
        f'bucket = {{ type = "dir", path = "bucket" }}\n'
    )
    return tmp_path / "syncd.toml", files, calls


def put(bucket: DirBucket, key: str, data: bytes) -> None:
    bucket.write(key, io.BytesIO(data), size=len(data), mtime_ns=1_700_000_000_000_000_000)


def test_scan_runs_for_the_changed_folders_only(tmp_path: Path) -> None:
    config, files, calls = make_pair(tmp_path)
    (files / "local.txt").write_text("uploaded, not written here")
    bucket = DirBucket(tmp_path / "bucket")
    for key in ("Photos/2026/a.jpg", "Photos/2026/b.jpg", "Photos/c.jpg", "Docs/x.odt"):
        put(bucket, key, key.encode())
    report = sync_pair(load_config(config).pairs[0])
    assert report.outcome is Outcome.OK, report.errors
    ran = [json.loads(line) for line in calls.read_text().splitlines()]
    assert sorted(ran) == [
        ["files:scan", "--path=alice/files/Docs"],
        ["files:scan", "--path=alice/files/Photos"],
    ]
    calls.unlink()
    sync_pair(load_config(config).pairs[0])
    assert not calls.exists()  # nothing changed on the files side: no scan


def test_a_failed_scan_is_reported_and_the_files_are_still_synced(tmp_path: Path) -> None:
    config, files, _calls = make_pair(tmp_path, exit_code=1)
    put(DirBucket(tmp_path / "bucket"), "new.txt", b"from the bucket")
    report = sync_pair(load_config(config).pairs[0])
    assert report.outcome is Outcome.ITEM_ERRORS
    ((_, message),) = report.errors
    assert "files:scan for 'alice/files' failed (exit 1): Permission denied" in message
    assert (files / "new.txt").read_bytes() == b"from the bucket"


def test_many_folders_become_one_scan_of_the_whole_tree() -> None:
    assert folders_to_scan([f"d{i}/f.txt" for i in range(50)]) == [""]
    assert folders_to_scan(["a/b/c.txt", "a/d.txt", "e/f/g.txt"]) == ["a", "e/f"]
    assert folders_to_scan(["top.txt", "a/b.txt"]) == [""]


def test_scan_command_must_hold_the_path_placeholder(tmp_path: Path) -> None:
    (tmp_path / "syncd.toml").write_text(
        '[users.alice]\nfiles = { type = "local", path = "data/alice/files", scan_command = ["occ", "files:scan"] }\n'
        'bucket = { type = "dir", path = "bucket" }\n'
    )
    with pytest.raises(ConfigError, match=r"users.alice.files.scan_command: must be a command .*\{path\}"):
        load_config(tmp_path / "syncd.toml")
