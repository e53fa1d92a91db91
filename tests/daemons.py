"""Helpers for the tests that run real daemon processes (tests/daemon, tests/cluster): the
``syncd`` command (and a run of it), a bounded wait for an event, and the content of a tree or a dir bucket."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.remotes.dirbucket import DirBucket

REPO = Path(__file__).resolve().parents[1]  # daemons run from the checkout, never from a test's folder


def syncd_cmd() -> list[str]:
    """The ``syncd`` command as a module of this interpreter."""
    return [sys.executable, "-m", "syncd"]


def run_cli(config: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``syncd --config CONFIG ARGS`` run to its end (at most ``timeout`` s) from the checkout, output captured."""
    return subprocess.run(
        [*syncd_cmd(), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """``condition()``'s first true value, polled every ``every`` s; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_files(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file below ``root``."""
    return {p.relative_to(root).as_posix(): sha(p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def bucket_files(root: Path) -> dict[str, str]:
    """key -> sha256 of every object in a dir bucket (its trash left out), read through the remote."""
    bucket = DirBucket(root, create=False)
    out = {}
    for entry in bucket.list():
        if not entry.path.startswith(".syncd-trash/"):
            with bucket.open_read(entry.path) as stream:
                out[entry.path] = sha(stream.read())
    return out
