"""Temp uploads that a killed run left on a generic WebDAV server (which has no atomic PUT:
syncd writes a temp name there, then MOVEs it in place) are swept by the pair's next run,
under its lock; another pair's temp names, maybe uploads in flight, are left alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import requests

from syncd.config import load_config
from syncd.engine.sync import sync_pair
from syncd.models import Outcome
from syncd.paths import TEMP_PREFIX
from syncd.remotes.settings import OpenContext
from tests.webdav.servers import DavServer


def test_a_pairs_own_temp_uploads_are_swept_by_its_next_run(wsgidav_dav: DavServer, tmp_path: Path) -> None:
    folder = f"leftovers-{uuid.uuid4().hex[:8]}"
    url = wsgidav_dav.mkcol(folder)
    (tmp_path / "secret").write_text(wsgidav_dav.password)
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n\n[users.alice]\n'
        f'files = {{ type = "webdav", url = "{url}", username = "{wsgidav_dav.username}", '
        'password_file = "secret", preset = "generic" }\n'
        'bucket = { type = "dir", path = "bucket" }\n'
    )
    pair = load_config(config).pairs[0]
    http = requests.Session()
    http.auth = (wsgidav_dav.username, wsgidav_dav.password)

    def put(name: str, data: bytes) -> None:
        http.put(url + name, data=data, timeout=30).raise_for_status()

    def listed() -> str:
        listing = http.request("PROPFIND", url, headers={"Depth": "1"}, timeout=30)
        listing.raise_for_status()
        return listing.text

    put("kept.txt", b"a user's file")
    own = OpenContext(label="", state_dir=pair.state_dir).temp_prefix + "0123456789ab"
    foreign = f"{TEMP_PREFIX}ba9876543210"
    put(own, b"the first half of an upload killed by kill -9")
    put(foreign, b"another pair's upload in flight")
    report = sync_pair(pair)
    assert report.outcome is Outcome.OK, report.message
    assert report.done == {"copy": 1}, report.done  # kept.txt only: temp names are never synced
    left = listed()
    assert own not in left, "the pair's own leftover temp upload is still on the server"
    assert foreign in left and "kept.txt" in left
