"""The Nextcloud-protocol test server and syncd's webdav remote on it, for the tests of that
remote (helpers in tests/webdav/nextcloud_remote.py). A module whose remote needs other settings
overrides ``remote_options``; one that needs another server overrides ``server``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import connect
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import PASSWORD, USER


@pytest.fixture
def server() -> Iterator[NextcloudServer]:
    with NextcloudServer({USER: PASSWORD}) as srv:
        yield srv


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def remote_options() -> dict[str, object]:
    """Settings the module's ``remote`` has besides those of :func:`connect`."""
    return {}


@pytest.fixture
def remote(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch, remote_options: dict[str, object]
) -> Iterator[WebDavRemote]:
    rem = connect(server, state_dir, monkeypatch, **remote_options)
    yield rem
    rem.close()
