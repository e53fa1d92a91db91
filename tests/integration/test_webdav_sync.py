"""`syncd now` between the Nextcloud-protocol test server (files) and a `dir` bucket,
through the real CLI, config and engine."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from syncd.remotes.dirbucket import DirBucket
from tests.integration.nextcloud_pair import PASSWORD, USER, NextcloudDirPair
from tests.webdav.nextcloud import bulk as nc_bulk
from tests.webdav.nextcloud_server import NextcloudServer

REPO = Path(__file__).resolve().parents[2]


class Pair(NextcloudDirPair):
    """The pair run through the CLI."""

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
    with NextcloudServer({USER: PASSWORD}) as server:
        yield Pair(tmp_path, server)


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


# -- small new files go up in bulk (Nextcloud's dav.bulkupload) ---------------------------------

FILES_PATH = f"/remote.php/dav/files/{USER}/"


def with_transfers(pair: Pair, transfers: int) -> None:
    """Give the pair ``transfers`` (the config's last section is the pair's user)."""
    pair.config.write_text(pair.config.read_text() + f"transfers = {transfers}\n")


def record_requests(pair: Pair, monkeypatch: pytest.MonkeyPatch, header: str) -> list[tuple[str, str, str | None]]:
    """From now on, (method, decoded path, value of ``header``) of each request the server gets."""
    seen: list[tuple[str, str, str | None]] = []
    handle = pair.server.handle

    def recording(request: Any) -> Any:
        seen.append((request.method, unquote(request.raw_path), request.header(header)))
        return handle(request)

    monkeypatch.setattr(pair.server, "handle", recording)
    return seen


def bucket_tree(pair: Pair, paths: list[str]) -> dict[str, bytes]:
    """Small files of 100 B to 8 KB in the bucket only, with mtimes that have nanoseconds."""
    bucket, tree = pair.bucket(), {}
    for n, path in enumerate(paths):
        data = f"{path} #{n}\n".encode() * (4 + n * 37 % 300)
        tree[path] = data
        bucket.write(path, io.BytesIO(data), size=len(data), mtime_ns=1_700_000_000_123_456_789 + n * 10**9)
    return tree


def test_first_sync_of_1000_small_files_in_100_new_folders_is_one_run_in_bulk(pair: Pair) -> None:
    """The issue's initial sync: one run, no item error, 8 transfers, fewer requests than the
    desktop client (215): the folders once each, the files 100 to a POST, nothing per file."""
    with_transfers(pair, 8)
    tree = bucket_tree(pair, [f"dir{n // 10:03d}/file{n % 10}.txt" for n in range(1000)])
    pair.server.reset_counts()
    started = time.monotonic()
    report = pair.sync()
    seconds = time.monotonic() - started
    counts = dict(pair.server.counts)
    print(f"\n1,000 small files in 100 new folders up to Nextcloud: {seconds:.2f} s, {sum(counts.values())} requests")
    print(f"requests by method: {sorted(counts.items())}")
    assert report["outcome"] == "ok" and report["errors"] == [], report
    assert report["done"] == {"copy": 1000}
    assert pair.nc_files() == tree
    assert counts["MKCOL"] == 100
    assert counts["POST"] == 10
    # connect, list the root, and read the written folders' etags again at the end (one
    # Depth 1 PROPFIND of their parent)
    assert counts.get("PUT", 0) == 0 and counts.get("PROPFIND", 0) == 3
    assert sum(counts.values()) <= 200
    # Each entry built from the bulk answer is what a listing shows, and the folders' new
    # etags were kept: the very next sync has nothing to do, in one request.
    pair.server.reset_counts()
    second = pair.sync()
    assert second["outcome"] == "ok" and second["done"] == {}
    assert dict(pair.server.counts) == {"PROPFIND": 1}


def test_a_file_the_bulk_upload_refused_is_retried_alone(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = bucket_tree(pair, [f"new/f{n}.txt" for n in range(5)])
    real_store = nc_bulk._store
    refused: list[str] = []

    def refuse_once(server: Any, user: str, path: str, part: Any) -> Any:
        if path == "/new/f2.txt" and not refused:
            refused.append(path)
            return {"error": True, "message": "injected: refused once"}
        return real_store(server, user, path, part)

    monkeypatch.setattr(nc_bulk, "_store", refuse_once)
    seen = record_requests(pair, monkeypatch, "If-None-Match")
    report = pair.sync()
    assert report["outcome"] == "ok" and report["done"] == {"copy": 5}, report
    assert pair.nc_files() == tree and refused == ["/new/f2.txt"]
    writes = [(method, path, value) for method, path, value in seen if method in ("POST", "PUT")]
    assert writes == [("POST", "/remote.php/dav/bulk", None), ("PUT", f"{FILES_PATH}new/f2.txt", "*")]


def test_a_bulk_upload_that_failed_as_a_whole_is_retried_file_by_file(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = bucket_tree(pair, [f"new/f{n}.txt" for n in range(5)])
    pair.server.inject("POST", path_contains="/bulk", status=503)
    seen = record_requests(pair, monkeypatch, "If-None-Match")
    report = pair.sync()
    assert report["outcome"] == "ok" and report["done"] == {"copy": 5}, report
    assert pair.nc_files() == tree
    assert [m for m, _, _ in seen].count("POST") == 1  # sent once: a resend could overwrite
    puts = sorted((path, value) for method, path, value in seen if method == "PUT")
    assert puts == [(f"{FILES_PATH}new/f{n}.txt", "*") for n in range(5)]


def test_a_new_file_in_a_folder_that_existed_goes_alone_and_create_only(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk endpoint overwrites: only folders this run created (where no other client can
    have put a file since the listing) are written in bulk."""
    pair.nc_put("old/kept.txt", b"there before")
    pair.sync()
    tree = bucket_tree(pair, [f"{folder}/{name}.txt" for folder in ("old", "fresh") for name in "abc"])
    seen = record_requests(pair, monkeypatch, "If-None-Match")
    report = pair.sync()
    assert report["outcome"] == "ok" and report["done"] == {"copy": 6}, report
    assert pair.nc_files() == {**tree, "old/kept.txt": b"there before"}
    puts = sorted((path, value) for method, path, value in seen if method == "PUT")
    assert puts == [(f"{FILES_PATH}old/{name}.txt", "*") for name in "abc"]
    posts = [(method, path) for method, path, _ in seen if method == "POST"]
    assert posts == [("POST", "/remote.php/dav/bulk")]
    assert ("MKCOL", f"{FILES_PATH}fresh/", None) in seen


def test_no_bulk_upload_where_the_capabilities_do_not_announce_it(pair: Pair) -> None:
    pair.server.capabilities.bulkupload = None
    tree = bucket_tree(pair, [f"new/f{n}.txt" for n in range(3)])
    pair.server.reset_counts()
    assert pair.sync()["done"] == {"copy": 3}
    assert pair.nc_files() == tree
    assert pair.server.counts.get("POST", 0) == 0 and pair.server.counts["PUT"] == 3
