"""pytest fixture: a real local Storj network (testplanet + gateway-st S3).

Use from tests/conftest.py::

    from tests.storj_network.fixture import storj_network  # noqa: F401

The network is our Go test binary ``tests/storj_network/bin/storj-network.test``
(built by ``tests/storj_network/build.sh``, or ``.ci/storj.sh`` which also sets
up PostgreSQL). It runs once per pytest session, listens on 127.0.0.1 only,
and writes its coordinates as JSON when ready.

When ``SYNCD_STORJ_NETWORK_JSON`` names the info file of a network that is
already running (started by hand, or by a parent pytest that hands its network
to a child), the fixture reuses that network: it neither starts nor stops
anything, and needs neither the binaries nor PostgreSQL.

When the binaries, PostgreSQL or the named network are missing the tests are
skipped with the reason, unless ``SYNCD_REQUIRE_STORJ=1`` (CI), where they fail
instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

HERE = Path(__file__).resolve().parent
BIN_DIR = HERE / "bin"
NETWORK_BIN = BIN_DIR / "storj-network.test"
GATEWAY_BIN = BIN_DIR / "gateway"

# The info file of an already running network to reuse instead of starting one.
ENV_NETWORK_JSON = "SYNCD_STORJ_NETWORK_JSON"

# Same defaults as .ci/storj.sh; override with STORJ_TEST_POSTGRES.
DEFAULT_POSTGRES = "postgres://syncd:syncd@127.0.0.1:5432/storj_test?sslmode=disable"

START_TIMEOUT = 180.0  # seconds until the info file must appear
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.2


@dataclass(frozen=True, slots=True)
class StorjNetwork:
    access_grant: str
    satellite_addr: str
    api_key: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    # Valid grants that must fail in clear ways (network_test.go's badGrants).
    read_only_grant: str
    other_project_grant: str
    foreign_satellite_grant: str
    # The network's log (a reused network's may be elsewhere: then it does not exist).
    log_path: Path
    # The JSON file the network wrote its coordinates to: hand it to a child pytest
    # as $SYNCD_STORJ_NETWORK_JSON to share this network.
    info_path: Path


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the environment demands a real network (CI)."""
    message = f"local Storj network unavailable: {reason}"
    if os.environ.get("SYNCD_REQUIRE_STORJ") == "1":
        pytest.fail(message + " (SYNCD_REQUIRE_STORJ=1)", pytrace=False)
    pytest.skip(message)


def require_libuplink() -> None:
    """Skip (or fail under SYNCD_REQUIRE_STORJ=1) when libuplink.so is not built."""
    from syncd.remotes._uplink import library_path

    if not library_path().is_file():
        _unavailable(f"libuplink not built at {library_path()}; run `bash packaging/libuplink/build.sh`")


def _postgres_url() -> str:
    return os.environ.get("STORJ_TEST_POSTGRES", DEFAULT_POSTGRES)


def _check_postgres(url: str, timeout: float = 3.0) -> str | None:
    """A TCP probe of the PostgreSQL server; returns a reason when it is not there."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"PostgreSQL not reachable at {host}:{port} ({exc}); run `bash .ci/storj.sh`"


def _check_prerequisites() -> None:
    for binary in (NETWORK_BIN, GATEWAY_BIN):
        if not os.access(binary, os.X_OK):
            _unavailable(f"{binary} not built; run `bash tests/storj_network/build.sh` (or `bash .ci/storj.sh`)")
    reason = _check_postgres(_postgres_url())
    if reason:
        _unavailable(reason)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(workdir: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    info_path = workdir / "network.json"
    log_path = workdir / "network.log"
    env = {
        **os.environ,
        "STORJ_TEST_POSTGRES": _postgres_url(),
        "STORJ_TEST_COCKROACH": "omit",
        "STORJ_TEST_LOG_LEVEL": os.environ.get("STORJ_TEST_LOG_LEVEL", "info"),
        "STORJ_NETWORK_INFO": str(info_path),
        "STORJ_NETWORK_GATEWAY": str(GATEWAY_BIN),
        # The network also stops when our end of its stdin closes: a pytest
        # that dies without running teardown does not leave it behind.
        "STORJ_NETWORK_WATCH_STDIN": "1",
        "TMPDIR": str(workdir),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            # -test.v streams testplanet's logs (t.Logf) instead of buffering
            # them until exit; -test.timeout 0: lives as long as the session.
            [str(NETWORK_BIN), "-test.run", "^TestNetwork$", "-test.v", "-test.timeout", "0"],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, info_path, log_path


def _read_info(info_path: Path, log_path: Path) -> StorjNetwork:
    """The network's coordinates from its info file (KeyError/ValueError when malformed)."""
    raw = json.loads(info_path.read_text())
    return StorjNetwork(
        access_grant=raw["access_grant"],
        satellite_addr=raw["satellite_addr"],
        api_key=raw["api_key"],
        s3_endpoint=raw["s3_endpoint"],
        s3_access_key=raw["s3_access_key"],
        s3_secret_key=raw["s3_secret_key"],
        read_only_grant=raw["read_only_grant"],
        other_project_grant=raw["other_project_grant"],
        foreign_satellite_grant=raw["foreign_satellite_grant"],
        log_path=log_path,
        info_path=info_path,
    )


def _wait_ready(proc: subprocess.Popen[bytes], info_path: Path, log_path: Path) -> StorjNetwork:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if info_path.exists():  # written atomically by the network
            return _read_info(info_path, log_path)
        if proc.poll() is not None:
            _unavailable(f"network exited with {proc.returncode} before ready; log {log_path}:\n{_log_tail(log_path)}")
        time.sleep(POLL_INTERVAL)
    _stop(proc)
    _unavailable(f"network not ready after {START_TIMEOUT:.0f} s; log {log_path}:\n{_log_tail(log_path)}")


def _reuse(info_path: Path) -> StorjNetwork:
    """A network someone else runs, named by its info file; checked to be listening."""
    where = f"${ENV_NETWORK_JSON}={info_path}"
    try:
        # The log next to the info file, where our fixture and .ci put it.
        network = _read_info(info_path, info_path.with_name("network.log"))
    except OSError as exc:
        _unavailable(f"cannot read {where}: {exc}")
    except (ValueError, KeyError, TypeError) as exc:
        _unavailable(f"{where} is not a network info file ({type(exc).__name__}: {exc})")
    # A stale file (network since stopped) should say so, not time out in every test.
    for name, url in (("satellite", "//" + network.satellite_addr.rpartition("@")[2]), ("S3", network.s3_endpoint)):
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=3.0):
                pass
        except (OSError, ValueError) as exc:
            _unavailable(f"the {name} of {where} is not reachable at {parts.netloc} ({exc}): is it still running?")
    return network


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (orderly testplanet shutdown), then SIGKILL of the group after a bound."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The process group holds the gateway too.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    if proc.stdin is not None:
        proc.stdin.close()


class _Shared:
    """One network per process, however many modules register the fixture.

    Importing ``storj_network`` into a conftest *and* a test module makes pytest see
    two session fixtures; both then share this one network (reference counted).
    """

    network: StorjNetwork | None = None
    proc: subprocess.Popen[bytes] | None = None
    users = 0


@pytest.fixture(scope="session")
def storj_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorjNetwork]:
    """A running local Storj network for the whole test session.

    Started here and stopped after the session, or the one named by
    ``$SYNCD_STORJ_NETWORK_JSON``, which is left running.
    """
    if _Shared.network is None:
        reuse = os.environ.get(ENV_NETWORK_JSON)
        if reuse:
            _Shared.network = _reuse(Path(reuse))
        else:
            _check_prerequisites()
            workdir = tmp_path_factory.mktemp("storj-network")
            proc, info_path, log_path = _start(workdir)
            try:
                _Shared.network = _wait_ready(proc, info_path, log_path)
            except BaseException:
                _stop(proc)
                raise
            _Shared.proc = proc
    _Shared.users += 1
    try:
        yield _Shared.network
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            ours, _Shared.proc, _Shared.network = _Shared.proc, None, None
            if ours is not None:  # a reused network is not ours to stop
                _stop(ours)
