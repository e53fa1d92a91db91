"""Fixtures for the cluster tests: a fresh PostgreSQL database per test (on the server named
by SYNCD_TEST_POSTGRES, as tests/index does) and a world of pairs served by several daemons,
each a real process with its own state folder, all reading one config file.

One config, several state folders on one machine: each daemon reads the config through a
symlink in its own folder (``h0/syncd.toml -> ../syncd.toml``); relative paths in a config
are relative to the folder it is read from, so ``state_dir = "state"`` is each daemon's own
while the trees and buckets (``../trees/...``) are shared, as they are on hosts mounting one
storage. A folder that only some hosts mount is a symlink present in some ``hN`` only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.cluster.database import psycopg_url
from tests.daemons import REPO, run_cli, syncd_cmd, wait_for

START_TIMEOUT_S = 60.0


@pytest.fixture
def cluster_db() -> Iterator[str]:
    """The libpq URL of a fresh database, dropped after the test."""
    server = os.environ.get("SYNCD_TEST_POSTGRES")
    if not server:
        if os.environ.get("SYNCD_REQUIRE_POSTGRES") == "1":
            pytest.fail("SYNCD_REQUIRE_POSTGRES=1 but SYNCD_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server: set SYNCD_TEST_POSTGRES=postgresql+psycopg://user:pw@127.0.0.1/db")
    admin_url = psycopg_url(server)
    name = f"syncd_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())


@dataclass
class Member:
    """One daemon of the cluster: its folder (config symlink, state, socket) and process."""

    home: Path
    host: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.home / "syncd.toml"

    @property
    def log_path(self) -> Path:
        return self.home / "daemon.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, timeout=timeout)


@dataclass
class Cluster:
    base: Path
    url: str
    members: list[Member] = field(default_factory=list)

    def member(self, host: str, *, mounts: bool = True) -> Member:
        """A daemon's folder; ``mounts``: it sees the ``mnt`` folder some pairs live in."""
        home = self.base / host
        (home / "run").mkdir(parents=True)
        (home / "syncd.toml").symlink_to("../syncd.toml")
        if mounts:
            (home / "mnt").symlink_to("../mounted")
        member = Member(home, host)
        self.members.append(member)
        return member

    def start(self, member: Member, *args: str) -> None:
        cmd = [*syncd_cmd(), "--config", str(member.config), "run", "--quiet-period", "0.5", *args]
        env = {**os.environ, "SYNCD_HOST_NAME": member.host}
        with open(member.log_path, "ab") as log:
            member.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def wait_started(self, member: Member) -> None:
        def answers() -> bool:
            assert member.proc is not None
            if member.proc.poll() is not None:
                raise AssertionError(f"{member.host} exited with {member.proc.returncode}:\n{member.log()}")
            return (member.home / "run" / "control.sock").exists() and member.cli("status").returncode in (0, 1)

        wait_for(answers, START_TIMEOUT_S, f"{member.host} to answer", every=0.5)

    def stop_all(self) -> None:
        for member in self.members:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for member in self.members:
            if member.proc is None:
                continue
            try:
                member.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(10)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.url, sql, *params)

    def poll(self, sql: str, ok: Callable[[list[tuple[Any, ...]]], bool], timeout: float, what: str) -> Any:
        """Poll the database until ``ok(rows)``; the rows then."""
        found: list[list[tuple[Any, ...]]] = []

        def check() -> bool:
            found[:] = [self.rows(sql)]
            return ok(found[0])

        wait_for(check, timeout, what, every=0.05)
        return found[0]


def write_cluster_config(base: Path, url: str, users: dict[str, str], extra: str = "") -> None:
    """The config every daemon of a test cluster shares (``base/syncd.toml``): one pair per user,
    ``users`` maps a user to its files folder (relative to a daemon's folder); its bucket is
    ``base/buckets/USER``; ``extra`` lines go in each user's section."""
    sections = "".join(
        f'\n[users.{name}]\nfiles  = {{ type = "local", path = "{files}" }}\n'
        f'bucket = {{ type = "dir",   path = "../buckets/{name}" }}\n{extra}'
        for name, files in users.items()
    )
    (base / "syncd.toml").write_text(
        f'[daemon]\nstate_dir = "state"\nsocket = "run/control.sock"\ninterval = "1h"\ncluster = "{url}"\n{sections}'
    )


@pytest.fixture
def cluster(cluster_db: str) -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="sdc-", dir="/tmp"))  # AF_UNIX paths: keep them short
    (base / "mounted").mkdir()
    world = Cluster(base, cluster_db)
    try:
        yield world
    finally:
        world.stop_all()
        for member in world.members:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.kill()
        shutil.rmtree(base, ignore_errors=True)
