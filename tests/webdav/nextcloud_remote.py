"""syncd's webdav remote connected to the Nextcloud-protocol test server, and what the tests of
that remote do with it: write a file, send a request as another client, make big contents.

The fixtures built on these (``server``, ``state_dir``, ``remote_options``, ``remote``) are in
tests/webdav/conftest.py.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import requests

from syncd.models import Entry
from syncd.remotes.settings import OpenContext
from syncd.remotes.webdav import Settings, WebDavRemote, open_remote
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import PASSWORD, USER

MTIME_NS = 1_700_000_000_123_456_789
MiB = 1 << 20

# The backoffs the last connected remote asked for, instead of sleeping them.
waits: list[float] = []


def connect(
    server: NextcloudServer,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    password: str = PASSWORD,
    **options: object,
) -> WebDavRemote:
    """Open the remote on ``server``'s files of USER; ``options`` override its settings.
    Its backoffs go to :data:`waits` (cleared here), no real sleeping in tests."""
    monkeypatch.setenv("SYNCD_TEST_NC_PASSWORD", password)
    values: dict[str, object] = {
        "type": "webdav",
        "url": server.files_url(USER),
        "username": USER,
        "password_env": "SYNCD_TEST_NC_PASSWORD",
        "chunk_size": MiB,
        "retries": 3,
        "max_retry_wait": 5.0,
    }
    values.update(options)
    remote = open_remote(Settings(**values), OpenContext(label="alice/default files", state_dir=state_dir))
    remote.session.transport.sleep = waits.append
    waits.clear()
    return remote


def put(
    remote: WebDavRemote, path: str, data: bytes, *, if_match: str | None = None, create_only: bool = False
) -> Entry:
    digest = hashlib.sha256(data).hexdigest()
    stream = io.BytesIO(data)
    return remote.write(
        path, stream, size=len(data), mtime_ns=MTIME_NS, content_hash=digest, if_match=if_match, create_only=create_only
    )


def raw(
    server: NextcloudServer, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    """A request as another client (the web UI, the desktop client) would send it."""
    return requests.request(
        method, server.files_url(USER) + path, data=data, headers=headers, auth=(USER, PASSWORD), timeout=10
    )


def big(size: int) -> bytes:
    """``size`` bytes of a random 64 KiB block repeated."""
    block = os.urandom(1 << 16)
    return (block * (size // len(block) + 1))[:size]
