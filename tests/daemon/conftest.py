"""Fixtures for the service tests: a two-user world in a short tmp folder, a real daemon
process, and a client. Every wait is bounded; every process started is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.control import Request, send
from syncd.errors import DaemonUnavailable
from syncd.remotes.dirbucket import DirBucket
from tests.daemons import REPO, run_cli, sha, syncd_cmd, wait_for

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def put_object(root: Path, key: str, data: bytes | None = None) -> None:
    """Write one object into a dir bucket, as another client of the bucket would."""
    import io

    body = key.encode() if data is None else data
    DirBucket(root).write(
        key, io.BytesIO(body), size=len(body), mtime_ns=1_700_000_000_000_000_000, content_hash=sha(body)
    )


@dataclass
class World:
    base: Path
    config: Path
    socket: Path
    alice: Path
    alice_bucket: Path
    bob_bucket: Path
    daemons: list[Daemon] = field(default_factory=list)

    def write_config(self, extra: str = "", *, bob_path: str = "bob-missing") -> None:
        self.config.write_text(f"""
[daemon]
state_dir = "state"
socket = "run/control.sock"
interval = "1h"
transfers = 2

[users.alice]
files  = {{ type = "local", path = "alice" }}
bucket = {{ type = "dir",   path = "bucket-alice" }}

[users.bob]                         # broken on purpose: its files folder does not exist
files  = {{ type = "local", path = "{bob_path}" }}
bucket = {{ type = "dir",   path = "bucket-bob" }}
{extra}
""")

    def daemon(self, *args: str, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(self, list(args), env or {})
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, timeout=timeout)

    def request(self, op: str, target: str | None = None, **flags: bool) -> list[dict[str, Any]]:
        return list(send(self.socket, Request(op, target, **flags), timeout=60))


class Daemon:
    def __init__(self, world: World, args: list[str], env: dict[str, str]) -> None:
        self.world = world
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = world.base / f"daemon-{len(world.daemons)}.log"

    def start(self) -> None:
        cmd = [*syncd_cmd(), "--config", str(self.world.config), "run", "--quiet-period", "0.5", *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env}
            )
        wait_for(self._answers, START_TIMEOUT_S, f"the daemon to answer on {self.world.socket}\n{self.log()}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return bool(self.world.request("status")[-1].get("ok"))
        except (DaemonUnavailable, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (bounded); SIGKILL if it does not go. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_idle(self, timeout: float = 30) -> dict[str, Any]:
        """Until every pair has finished a run and none runs: returns the status result."""

        def idle() -> dict[str, Any] | None:
            status = self.world.request("status")[-1]
            pairs = status["pairs"]
            done = all(p.get("last") and not p.get("running") and not p.get("dirty") for p in pairs)
            return status if done else None

        result: dict[str, Any] = wait_for(idle, timeout, "the daemon to be idle")
        return result


@pytest.fixture
def world() -> Iterator[World]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer
    base = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    alice = base / "alice"
    (alice / "docs").mkdir(parents=True)
    (alice / "readme.txt").write_text("hello alice\n")
    (alice / "docs" / "notes.md").write_text("# notes\n")
    w = World(
        base=base,
        config=base / "syncd.toml",
        socket=base / "run" / "control.sock",
        alice=alice,
        alice_bucket=base / "bucket-alice",
        bob_bucket=base / "bucket-bob",
    )
    w.write_config()
    try:
        yield w
    finally:
        for daemon in w.daemons:
            daemon.kill()
        shutil.rmtree(base, ignore_errors=True)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def reports(text: str) -> dict[str, dict[str, Any]]:
    """The ``report`` lines of ``syncd now --json`` output, by pair."""
    return {line["pair"]: line for line in json_lines(text) if line.get("event") == "report"}


def raw_exchange(path: Path, payload: bytes, timeout: float = 15) -> list[dict[str, Any]]:
    """Send raw bytes (maybe not a valid request) and read every reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines() if line.strip()]
