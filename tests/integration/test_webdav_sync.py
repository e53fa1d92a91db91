"""`syncd now` between the Nextcloud-protocol test server (files) and a `dir` bucket,
through the real CLI, config and engine."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.remotes.dirbucket import DirBucket
from tests.webdav.nextcloud_server import NextcloudServer

USER, PASSWORD = "alice", "alice-app-password"
REPO = Path(__file__).resolve().parents[2]


class Pair:
    def __init__(self, root: Path, server: NextcloudServer) -> None:
        self.root = root
        self.server = server
        self.http = requests.Session()
        self.http.auth = (USER, PASSWORD)
        (root / "secret").write_text(PASSWORD)
        self.config = root / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\nsocket = "state/control.sock"\n\n[users.alice]\n'
            f'files = {{ type = "webdav", url = "{server.files_url(USER)}", username = "{USER}", '
            f'password_file = "{root / "secret"}", retries = 2, max_retry_wait = 0.2 }}\n'
            'bucket = { type = "dir", path = "bucket" }\n'
        )

    def sync(self) -> dict[str, Any]:
        """Run `syncd now --json`; :returns: its final report."""
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(self.config), "now", "--json"],
            check=False,  # a failed run is judged by its report and exit code below
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        reports = [json.loads(line) for line in done.stdout.splitlines() if '"event": "report"' in line]
        if not reports:  # the pair could not even start (e.g. the remote refused to open)
            assert done.returncode != 0, done.stdout[-800:]
            return {"outcome": f"exit {done.returncode}", "message": done.stderr[-800:]}
        return dict(reports[-1])

    def nc_put(self, path: str, data: bytes) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.http.request("MKCOL", self.server.files_url(USER) + "/".join(parts[:i]) + "/", timeout=10)
        self.http.put(self.server.files_url(USER) + path, data=data, timeout=10).raise_for_status()

    def nc_files(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}

        def walk(prefix: str, node: Any) -> None:
            for name, child in node.children.items():
                if child.is_dir:
                    walk(f"{prefix}{name}/", child)
                else:
                    files[prefix + name] = child.data

        walk("", self.server.roots[USER])
        return files

    def bucket(self) -> DirBucket:
        return DirBucket(self.root / "bucket")

    def bucket_files(self) -> dict[str, bytes]:
        bucket = self.bucket()
        out = {}
        for entry in bucket.list():
            with bucket.open_read(entry.path) as stream:
                out[entry.path] = stream.read()
        return out

    def bucket_put(self, path: str, data: bytes) -> None:
        self.bucket().write(path, io.BytesIO(data), size=len(data), mtime_ns=1_700_000_000_000_000_000)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    server = NextcloudServer({USER: PASSWORD})
    server.start()
    yield Pair(tmp_path, server)
    server.stop()


def test_two_way_copy_then_nothing_to_do(pair: Pair) -> None:
    pair.nc_put("docs/report.txt", b"from nextcloud")
    pair.bucket_put("photos/cat.jpg", b"from the bucket")
    assert pair.sync()["outcome"] == "ok"
    assert pair.bucket_files() == {"docs/report.txt": b"from nextcloud", "photos/cat.jpg": b"from the bucket"}
    assert pair.nc_files() == pair.bucket_files()
    second = pair.sync()
    assert second["outcome"] == "ok" and second["done"] == {}


def test_rename_on_nextcloud_is_a_rename_in_the_bucket(pair: Pair) -> None:
    pair.nc_put("a/old.txt", b"same bytes")
    pair.sync()
    pair.server.move_as_client(pair.http, USER, "a/old.txt", "a/new.txt")
    assert pair.sync()["outcome"] == "ok"
    assert pair.bucket_files() == {"a/new.txt": b"same bytes"}


def test_conflict_keeps_both_versions_on_both_sides(pair: Pair) -> None:
    pair.nc_put("c.txt", b"base")
    pair.sync()
    pair.nc_put("c.txt", b"nextcloud edit")
    pair.bucket_put("c.txt", b"bucket edit")
    pair.sync()
    nc, bucket = pair.nc_files(), pair.bucket_files()
    assert set(nc) == set(bucket) and len(nc) == 2
    assert sorted(nc.values()) == sorted(bucket.values()) == [b"bucket edit", b"nextcloud edit"]
    assert any("conflicted copy" in name for name in nc)


@pytest.mark.parametrize(
    "fault",
    [
        # path_contains "/keep": the root opens and lists fine, the subfolder's listing fails
        {"method": "PROPFIND", "path_contains": "/keep", "drop": True, "count": 50},
        {"method": "PROPFIND", "path_contains": "/keep", "status": 503, "count": 50},
        {"method": "PROPFIND", "path_contains": "/keep", "status": 401, "count": 50},
        {"method": "PROPFIND", "path_contains": "/keep", "status": 404, "count": 50},
        {"method": "PROPFIND", "drop": True, "count": 50},
        {"method": "PROPFIND", "status": 404, "count": 50},
    ],
    ids=["dropped-sub-listing", "503-sub-listing", "401-sub-listing", "vanished-subfolder", "dropped-root", "404-root"],
)
def test_faults_while_listing_change_nothing(pair: Pair, fault: dict[str, Any]) -> None:
    for n in range(5):
        pair.nc_put(f"keep/{n}.txt", f"file {n}".encode())
    pair.sync()
    pair.nc_put("keep/0.txt", b"edited: the folder's etag changes, so the next sync lists it")
    before_nc, before_bucket = pair.nc_files(), pair.bucket_files()
    assert len(before_bucket) == 5
    method = fault.pop("method")
    pair.server.inject(method, **fault)
    report = pair.sync()
    assert report["outcome"] != "ok"
    assert pair.bucket_files() == before_bucket and pair.nc_files() == before_nc
    assert pair.server.trash[USER] == []


def test_no_change_sync_lists_only_changed_folders(pair: Pair) -> None:
    """Nextcloud's folder etags cover their subtree: an unchanged account costs one PROPFIND of
    the root; a change in one folder re-lists only the folders on its path."""
    for d in range(20):
        for f in range(10):
            pair.nc_put(f"d{d:02d}/f{f}.txt", f"{d}-{f}".encode())
    assert pair.sync()["done"] == {"copy": 200}
    pair.sync()  # the first run wrote nothing on files; this one records the settled etags
    pair.server.reset_counts()
    quiet = pair.sync()
    assert quiet["outcome"] == "ok" and quiet["done"] == {}
    assert pair.server.counts["PROPFIND"] == 1, pair.server.counts
    pair.nc_put("d07/f3.txt", b"edited")
    pair.server.reset_counts()
    one = pair.sync()
    assert one["done"] == {"copy": 1}
    assert pair.bucket_files()["d07/f3.txt"] == b"edited"
    # connect (the root, depth 0) + the changed folders root and d07 (depth 1): 3, whatever the
    # size of the account (a server serves one version per GET: no re-check after the copy)
    assert pair.server.counts["PROPFIND"] == 3, pair.server.counts


def test_a_failed_item_is_not_hidden_behind_an_unchanged_folder_etag(pair: Pair) -> None:
    for f in range(3):
        pair.nc_put(f"keep/f{f}.txt", b"v1")
    pair.sync()
    pair.sync()
    pair.nc_put("keep/f1.txt", b"v2 that fails to download once")
    pair.server.inject("GET", path_contains="keep/f1.txt", status=500, count=50)
    failed = pair.sync()
    assert failed["outcome"] == "item-errors"
    pair.server.faults.clear()
    assert pair.sync()["done"] == {"copy": 1}  # folder etags were not kept after the failed run
    assert pair.bucket_files()["keep/f1.txt"] == b"v2 that fails to download once"
