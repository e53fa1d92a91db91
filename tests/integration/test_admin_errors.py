"""An admin's mistakes get one line and a documented exit code (4), never "internal error"
(exit 70): a folder given as the config, an unreadable config, a read-only state folder.
``syncd check`` finds a state folder syncd cannot write before a run does."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration import cli_helpers

EXIT_FATAL = 4


def unprivileged() -> list[str]:
    """A command prefix under which file modes apply: root's CAP_DAC_OVERRIDE would write a
    read-only folder and read a 000 file anyway, hiding the very mistakes tested here."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes would not apply")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def syncd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_helpers.syncd(config, *args, command=[*unprivileged(), *cli_helpers.SYNCD_MODULE])


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("syncd: error: "), lines
    assert "internal error" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    return cli_helpers.write_local_pair(tmp_path)


@pytest.mark.parametrize("command", ["now", "status", "check"])
def test_a_folder_given_as_the_config(tmp_path: Path, command: str) -> None:
    assert_one_line(syncd(tmp_path, command), EXIT_FATAL, f"{tmp_path}: is a folder, not a config file")


def test_an_unreadable_config(pair: Path) -> None:
    pair.chmod(0)
    assert_one_line(syncd(pair, "now"), EXIT_FATAL, "no permission to read the config file")


def test_a_read_only_state_folder_before_the_first_run(pair: Path) -> None:
    state = pair.parent / "state"
    state.mkdir(mode=0o555)
    assert_one_line(syncd(pair, "now"), EXIT_FATAL, "alice/default: cannot use the state folder", "Permission denied")
    check = syncd(pair, "check")
    assert check.returncode == EXIT_FATAL, check.stderr
    assert f"state: cannot write {state}: Permission denied" in check.stderr
    assert "alice/default files: reachable" in check.stdout  # the remotes are still probed


def test_a_state_folder_made_read_only_after_runs(pair: Path) -> None:
    assert syncd(pair, "now").returncode == 0
    state = pair.parent / "state"
    for folder in (state, *(p for p in state.rglob("*") if p.is_dir())):
        folder.chmod(0o555)
    for path in (p for p in state.rglob("*") if p.is_file()):
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    assert_one_line(syncd(pair, "now"), EXIT_FATAL, "cannot use the state folder")
    check = syncd(pair, "check")
    assert check.returncode == EXIT_FATAL
    assert "alice/default state: cannot write" in check.stderr


def test_check_says_the_state_folders_are_writable(pair: Path) -> None:
    check = syncd(pair, "check")
    assert check.returncode == 0, check.stderr
    assert f"state: writable ({pair.parent / 'state'})" in check.stdout
    assert "alice/default state: writable" in check.stdout
    assert not (pair.parent / "state").exists()  # checking creates nothing
