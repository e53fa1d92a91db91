"""bwlimit in a real sync: uploads and downloads of a pair take at least bytes / limit, for
the pair's own limit and the daemon's; a bad value is a config error naming the key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.engine.sync import RunOptions, sync_pair
from syncd.errors import ConfigError
from syncd.models import Outcome
from tests.integration.helpers import PairEnv

K = 1024


def _timed(env: PairEnv) -> float:
    started = time.monotonic()
    report = env.sync()
    assert report.outcome is Outcome.OK, report.message
    return time.monotonic() - started


def test_pair_bwlimit_bounds_uploads_and_downloads(tmp_path: Path) -> None:
    env = PairEnv(tmp_path, extra='bwlimit = "64K"\n')
    size = 96 * K
    env.files.mkdir()
    _timed(env)  # the first run makes the index: its cost is not the transfer's
    env.write_a("up.bin", os.urandom(size))
    assert _timed(env) >= size / (64 * K) - 1e-3  # files -> bucket
    env.write_b("down.bin", os.urandom(size))
    assert _timed(env) >= size / (64 * K) - 1e-3  # bucket -> files
    assert env.read_a("down.bin") == env.read_b("down.bin")
    assert env.read_b("up.bin") == env.read_a("up.bin")


@pytest.mark.parametrize(("limit", "limited"), [("64K:off", "up"), ("off:64K", "down")])
def test_an_upload_and_a_download_rate_each_bound_their_way(tmp_path: Path, limit: str, limited: str) -> None:
    """``UP:DOWN`` as rclone: up is files -> bucket, down is bucket -> files."""
    env = PairEnv(tmp_path, extra=f'bwlimit = "{limit}"\n')
    size = 96 * K
    env.files.mkdir()
    _timed(env)
    if limited == "up":
        env.write_a("up.bin", os.urandom(size))
    else:
        env.write_b("down.bin", os.urandom(size))
    assert _timed(env) >= size / (64 * K) - 1e-3


def test_daemon_bwlimit_is_shared_by_the_pairs(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\nbwlimit = "00:00,32K 23:59,32K"\n'
        '[users.a]\nfiles = { type = "local", path = "fa" }\nbucket = { type = "dir", path = "ba" }\n'
        '[users.b]\nfiles = { type = "local", path = "fb" }\nbucket = { type = "dir", path = "bb" }\n'
    )
    size = 32 * K
    pairs = load_config(config).pairs
    for pair in pairs:  # the first runs make the indexes: their cost is not the transfers'
        (tmp_path / f"f{pair.user}").mkdir()
        assert sync_pair(pair, RunOptions()).outcome is Outcome.OK
    for user in ("a", "b"):
        (tmp_path / f"f{user}" / "x.bin").write_bytes(os.urandom(size))
    started = time.monotonic()
    for pair in pairs:
        assert sync_pair(pair, RunOptions()).outcome is Outcome.OK
    assert time.monotonic() - started >= 2 * size / (32 * K) - 1e-3  # one allowance for both pairs


@pytest.mark.parametrize(
    ("where", "value", "key"),
    [("daemon", "8 megabytes", "daemon.bwlimit"), ("user", "25:00,1M", "users.t.bwlimit")],
)
def test_bad_bwlimit_names_the_key(tmp_path: Path, where: str, value: str, key: str) -> None:
    daemon = f'bwlimit = "{value}"\n' if where == "daemon" else ""
    user = f'bwlimit = "{value}"\n' if where == "user" else ""
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "state"\n{daemon}[users.t]\n'
        f'files = {{ type = "local", path = "f" }}\nbucket = {{ type = "dir", path = "b" }}\n{user}'
    )
    with pytest.raises(ConfigError, match=key):
        load_config(config)
