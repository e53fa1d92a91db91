"""The contract suite against the two remotes that live on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.local import LocalRemote
from tests.remotes.contract import RemoteContract


class TestLocalRemote(RemoteContract):
    @pytest.fixture
    def remote(self, tmp_path: Path) -> Iterator[LocalRemote]:
        (tmp_path / "root").mkdir()
        yield LocalRemote(tmp_path / "root", trash_dir=tmp_path / "trash")


class TestDirBucket(RemoteContract):
    @pytest.fixture
    def remote(self, tmp_path: Path) -> Iterator[DirBucket]:
        yield DirBucket(tmp_path / "bucket")


def test_local_listing_sweeps_abandoned_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from syncd.remotes import local

    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    temp = root / "d" / ".syncd-tmp-dead01"
    temp.write_bytes(b"half a file from a killed run")
    remote = LocalRemote(root, trash_dir=tmp_path / "trash")
    assert list(remote.list()) == [] and temp.exists()  # young: maybe a write in flight
    later = time.time() + local.STALE_TEMP_S + 60
    monkeypatch.setattr(local.time, "time", lambda: later)
    assert list(remote.list()) == []
    assert not temp.exists()
