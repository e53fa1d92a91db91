"""Signals to an in-process ``syncd now``: SIGTERM ends it like Ctrl-C (the run is recorded as
interrupted, one line on stderr, exit 130), and ``status`` never calls a dead run "running"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_helpers import SYNCD_MODULE, syncd, write_local_pair

EXIT_INTERRUPTED = 130


@pytest.fixture
def big_pair(tmp_path: Path) -> Path:
    """A pair with enough files that a run is still copying when the test signals it."""
    block = os.urandom(4096)
    for i in range(3000):
        folder = tmp_path / "files" / f"d{i // 300:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}").write_bytes(block + i.to_bytes(4, "big"))
    return write_local_pair(tmp_path)


@pytest.fixture
def copying(big_pair: Path) -> Iterator[subprocess.Popen[str]]:
    """``syncd now -v`` started, returned once it has finished its first copy (an event,
    not a sleep: -v prints every action as it is done)."""
    proc = subprocess.Popen(
        [*SYNCD_MODULE, "--config", str(big_pair), "now", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded: the run ends (and the pipe closes) at the latest
            if "copy " in line:
                break
        else:
            pytest.fail(f"no action was reported (exit {proc.wait(60)})")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)


def test_sigterm_ends_now_like_ctrl_c_and_status_says_interrupted(
    big_pair: Path, copying: subprocess.Popen[str]
) -> None:
    copying.send_signal(signal.SIGTERM)
    out, err = copying.communicate(timeout=60)
    assert copying.returncode == EXIT_INTERRUPTED, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("syncd: error:")]
    assert errors == [
        "syncd: error: interrupted by SIGTERM; finished actions are recorded, the next run goes on from there"
    ], err[-2000:]
    assert "Traceback" not in err

    status = syncd(big_pair, "status")
    assert status.stdout.splitlines()[1].startswith("alice/default: interrupted, last run "), status.stdout
    assert "KeyboardInterrupt" not in status.stdout and "fatal" not in status.stdout
    row = json.loads(syncd(big_pair, "status", "--json").stdout)[0]
    assert row["state"] == "interrupted" and 0 < row["files"] < 3000, row

    again = syncd(big_pair, "now")  # the next run goes on from there
    assert again.returncode == 0, again.stderr
    assert json.loads(syncd(big_pair, "status", "--json").stdout)[0]["files"] == 3000


def test_a_killed_run_is_not_shown_as_running(big_pair: Path, copying: subprocess.Popen[str]) -> None:
    copying.kill()
    assert copying.wait(60) == -signal.SIGKILL
    status = syncd(big_pair, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].startswith("alice/default: died, last run "), status.stdout
    assert f"its process (pid {copying.pid}) ended without finishing the run" in status.stdout
    assert json.loads(syncd(big_pair, "status", "--json").stdout)[0]["state"] == "died"
