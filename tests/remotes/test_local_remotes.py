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
