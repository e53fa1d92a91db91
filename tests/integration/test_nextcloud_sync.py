"""Two-way runs against the Nextcloud-protocol test server that the Nextcloud issue asks for:
a concurrent edit racing an overwrite (plain and chunked), a refused name beside a quiet
account, and a 1 GiB file up and down through chunked upload in bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.engine.sync import RunOptions, sync_pair
from syncd.models import Outcome, Report
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.webdav import WebDavRemote
from tests.integration.nextcloud_pair import PASSWORD, USER, NextcloudDirPair
from tests.webdav.nextcloud.clock import ManualClock
from tests.webdav.nextcloud_server import NextcloudServer

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


class NextcloudPair(NextcloudDirPair):
    """The pair synced in-process by the real engine."""

    def __init__(self, root: Path, server: NextcloudServer, files_options: str = "") -> None:
        super().__init__(root, server, files_options)
        self.bucket = DirBucket(root / "bucket")

    def sync(self, options: RunOptions | None = None) -> Report:
        return sync_pair(load_config(self.config).pairs[0], options or RunOptions())

    def nc_get(self, path: str) -> bytes:
        got = self.http.get(self.url + path, timeout=30)
        got.raise_for_status()
        return got.content

    def nc_names(self) -> set[str]:
        return set(self.nc_files())

    def bucket_put(self, path: str, data: bytes) -> None:
        self.bucket.write(
            path,
            io.BytesIO(data),
            size=len(data),
            mtime_ns=1_700_000_000 * 10**9,
            content_hash=hashlib.sha256(data).hexdigest(),
        )

    def bucket_get(self, path: str) -> bytes:
        with self.bucket.open_read(path) as stream:
            return stream.read()


@pytest.fixture
def server() -> Iterator[NextcloudServer]:
    with NextcloudServer({USER: PASSWORD}) as nc:
        yield nc


@pytest.mark.parametrize("chunked", [False, True], ids=["plain-put", "chunked-upload"])
def test_an_overwrite_racing_a_concurrent_edit_becomes_a_conflict(
    tmp_path: Path, server: NextcloudServer, chunked: bool
) -> None:
    options = ", chunk_size = 4096, chunked_threshold = 4096" if chunked else ""
    pair = NextcloudPair(tmp_path, server, options)
    size = 20_000 if chunked else 100
    pair.bucket_put("doc.txt", b"v1 " * (size // 3))
    assert pair.sync().outcome is Outcome.OK
    ours, theirs = b"bucket edit " * (size // 12), b"edit by another Nextcloud client"
    pair.bucket_put("doc.txt", ours)

    def race(stage: str) -> None:  # after the old version is kept, right before the upload
        if stage == "copy:kept-old-version":
            pair.nc_put("doc.txt", theirs)

    raced = pair.sync(RunOptions(checkpoint=race))
    assert raced.outcome is Outcome.ITEM_ERRORS, raced.message
    assert pair.nc_get("doc.txt") == theirs, "the concurrent edit was overwritten"
    resolved = pair.sync()
    assert resolved.outcome is Outcome.OK, (resolved.message, resolved.errors)
    copies = sorted(n for n in pair.nc_names() if "conflicted copy" in n)
    assert len(copies) == 1, pair.nc_names()
    versions = {pair.nc_get("doc.txt"), pair.nc_get(copies[0])}
    assert versions == {ours, theirs}, "a version was lost"
    assert {pair.bucket_get("doc.txt"), pair.bucket_get(copies[0])} == versions
    assert not pair.sync().done


def test_a_refused_name_is_skipped_once_and_a_quiet_sync_costs_one_propfind(
    tmp_path: Path, server: NextcloudServer
) -> None:
    pair = NextcloudPair(tmp_path, server)
    for i in range(20):
        pair.bucket_put(f"dir{i:03d}/file.txt", b"x" * i)
    pair.bucket_put("dir050/.htaccess", b"deny from all")
    pair.bucket_put(" leading.txt", b"Nextcloud keeps leading spaces")
    pair.bucket_put("trailing.txt ", b"and trailing ones")
    first = pair.sync()
    assert first.outcome is Outcome.OK, (first.message, first.errors)
    assert [path for path, _ in first.skipped] == ["dir050/.htaccess"]
    assert "files refuses the name 'dir050/.htaccess'" in first.skipped[0][1]
    assert {" leading.txt", "trailing.txt "} <= pair.nc_names()
    pair.sync()  # re-lists the folders the first run's own uploads changed
    server.reset_counts()
    quiet = pair.sync()
    assert quiet.outcome is Outcome.OK and not quiet.done
    assert dict(server.counts) == {"PROPFIND": 1}, server.counts


def _write_big(bucket: DirBucket, path: str, size: int) -> str:
    """``size`` random bytes into the bucket, streamed; :returns: their SHA-256."""
    seed = os.urandom(MiB)
    digest = hashlib.sha256()

    class Source(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left, MiB)
            piece = seed[self.left % 7919 :][:n] or seed[:n]
            n = len(piece)
            buffer[:n] = piece
            digest.update(piece)
            self.left -= n
            return n

    bucket.write(path, io.BufferedReader(Source(), MiB), size=size, mtime_ns=1_700_000_000 * 10**9)
    return digest.hexdigest()


# The child of a big process reports that process's peak RSS as its own (vfork + exec keep the
# old high-water mark), and this test's process holds the server's 1 GiB: syncd is started by
# a small launcher, which reads syncd's own peak from wait4.
LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "peak_kb": usage.ru_maxrss}))
"""


def _run_measured(config: Path) -> tuple[int, float]:
    """`syncd now` in a child of a small launcher: (exit code, syncd's peak RSS in MB)."""
    cmd = [sys.executable, "-m", "syncd", "--config", str(config), "now"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *cmd],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["code"], figures["peak_kb"] / 1024


@pytest.mark.slow
def test_a_1_gib_file_goes_up_and_down_through_chunked_upload_in_bounded_memory(
    tmp_path: Path, server: NextcloudServer
) -> None:
    pair = NextcloudPair(tmp_path, server)
    size = 1 << 30
    up_hash = _write_big(pair.bucket, "big/up.bin", size)
    code, peak_mb = _run_measured(pair.config)
    assert code == 0
    print(f"1 GiB up through chunked upload: syncd peak RSS {peak_mb:.0f} MB; requests {dict(server.counts)}")
    assert peak_mb <= 150, f"peak RSS {peak_mb:.0f} MB uploading 1 GiB"
    assert server.counts["PUT"] >= size // (10 * MiB), "not a chunked upload"
    node = server.node(USER, "big/up.bin")
    assert node is not None and hashlib.sha256(node.data).hexdigest() == up_hash
    del node

    down = bytes(reversed(pair.nc_get("big/up.bin")[: 64 * MiB])) * 16  # 1 GiB, other content
    pair.nc_put("big/down.bin", down)
    down_hash = hashlib.sha256(down).hexdigest()
    del down
    code, peak_mb = _run_measured(pair.config)
    assert code == 0
    print(f"1 GiB down: syncd peak RSS {peak_mb:.0f} MB")
    assert peak_mb <= 150, f"peak RSS {peak_mb:.0f} MB downloading 1 GiB"
    with pair.bucket.open_read("big/down.bin") as stream:
        digest = hashlib.sha256()
        while chunk := stream.read(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == down_hash


def test_an_edit_by_another_client_as_the_run_ends_is_not_hidden_by_the_kept_folder_etags(
    tmp_path: Path, server: NextcloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folders a run wrote into are read again at its end so the next run can skip them;
    a folder that holds other bytes than the run expects (another client wrote there in the
    meantime) keeps no etag, and the next run lists it and brings the edit."""
    pair = NextcloudPair(tmp_path, server)
    pair.bucket_put("d/a.txt", b"one")
    pair.bucket_put("d/b.txt", b"two")
    real = WebDavRemote.folder_totals

    def another_client_first(remote: WebDavRemote, folders: Collection[str]) -> dict[str, tuple[str, int]]:
        pair.nc_put("d/c.txt", b"written by another client as the run ends")
        return real(remote, folders)

    monkeypatch.setattr(WebDavRemote, "folder_totals", another_client_first)
    first = pair.sync()
    assert first.outcome is Outcome.OK and first.done == {"copy": 2}, (first.message, first.done)
    monkeypatch.undo()
    second = pair.sync()
    assert second.done == {"copy": 1}, "the other client's file was hidden behind a kept folder etag"
    assert pair.bucket_get("d/c.txt") == b"written by another client as the run ends"
    server.reset_counts()
    assert not pair.sync().done and dict(server.counts) == {"PROPFIND": 1}


def test_an_edit_that_keeps_the_etag_is_still_seen(tmp_path: Path) -> None:
    """Nextcloud keeps a file's ETag when another client overwrites it within the same second
    with the same X-OC-MTime, even with another size: the fingerprint has the size too."""
    with NextcloudServer({USER: PASSWORD}, clock=ManualClock()) as server:
        pair = NextcloudPair(tmp_path, server)
        mtime = {"X-OC-MTime": "1600000000"}
        pair.http.put(pair.url + "notes.txt", data=b"first", headers=mtime, timeout=30).raise_for_status()
        assert pair.sync().done == {"copy": 1}
        before = pair.http.request("PROPFIND", pair.url + "notes.txt", headers={"Depth": "0"}, timeout=30)
        put = pair.http.put(pair.url + "notes.txt", data=b"second, longer", headers=mtime, timeout=30)
        put.raise_for_status()
        assert put.headers["ETag"] in before.text, "the server gave the overwrite a new ETag: not the case tested"
        edited = pair.sync()
        assert edited.done == {"copy": 1}, "an edit that kept the ETag was missed"
        assert pair.bucket_get("notes.txt") == b"second, longer"
