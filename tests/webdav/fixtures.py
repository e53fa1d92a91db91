"""Session fixtures for the WebDAV test servers (imported by tests/webdav/conftest.py and
tests/remotes/test_webdav_remote.py; the lead may list this module in ``pytest_plugins``).

A server that cannot start skips its tests, unless ``SYNCD_REQUIRE_SERVERS=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.webdav import servers
from tests.webdav.servers import DavServer, ServerUnavailable


def _start_or_skip(name: str, start: Callable[[], DavServer]) -> Iterator[DavServer]:
    try:
        server = start()
    except ServerUnavailable as exc:
        if os.environ.get("SYNCD_REQUIRE_SERVERS") == "1":
            pytest.fail(f"{name} WebDAV server could not start: {exc}", pytrace=False)
        pytest.skip(f"{name} WebDAV server could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def apache_dav() -> Iterator[DavServer]:
    yield from _start_or_skip("Apache mod_dav", servers.start_apache)


@pytest.fixture(scope="session")
def wsgidav_dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    root = tmp_path_factory.mktemp("wsgidav") / "root"
    yield from _start_or_skip("wsgidav", lambda: servers.start_wsgidav(root))


@pytest.fixture(scope="session")
def rclone_dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    root = tmp_path_factory.mktemp("rclone") / "root"
    yield from _start_or_skip("rclone serve webdav", lambda: servers.start_rclone(root))


@pytest.fixture(scope="session")
def nextcloud_dav() -> Iterator[DavServer]:
    yield from _start_or_skip("Nextcloud-protocol test", servers.start_nextcloud)
