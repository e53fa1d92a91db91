"""Nextcloud's bulk upload (``syncd/remotes/_webdav_bulk.py``): the request body and the
reading of answers against what the real Nextcloud 31 sent and answered (the corpus's
scenario ``10-bulk-upload``), then the remote against the Nextcloud-protocol test server."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.errors import FatalError, ItemError, TransientError
from syncd.models import Entry
from syncd.remotes import _webdav_bulk
from syncd.remotes._webdav_bulk import MultipartBody, Written, read_answer, x_file_path
from syncd.remotes._webdav_session import DavSession
from syncd.remotes.base import NewFile
from syncd.remotes.settings import OpenContext
from syncd.remotes.webdav import Settings, WebDavRemote
from tests.webdav.nextcloud_remote import connect
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import PASSWORD, USER

CORPUS = Path("/work/shared/nextcloud-wire/exchanges.jsonl")
CORPUS_BOUNDARY = "boundary_corpus_0123456789abcdef"


@cache
def bulk_exchanges() -> dict[int, dict[str, Any]]:
    """Scenario 10's exchanges by step."""
    if not CORPUS.exists():
        pytest.skip(f"the Nextcloud wire corpus is not at {CORPUS}")
    steps = {}
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        exchange = json.loads(line)
        if exchange["scenario"] == "10-bulk-upload":
            steps[exchange["step"]] = exchange
    return steps


def new_file(path: str, data: bytes, mtime_s: int = 1_600_000_000) -> NewFile:
    return NewFile(
        path=path, data=data, mtime_ns=mtime_s * 1_000_000_000 + 123, content_hash=hashlib.sha256(data).hexdigest()
    )


def session_at(url: str, tmp_path: Path) -> DavSession:
    settings = Settings(type="webdav", url=url, username="alice")
    return DavSession(settings, "secret", OpenContext(label="t", state_dir=tmp_path))


# -- the request ----------------------------------------------------------------------------


def test_the_body_is_framed_as_the_desktop_client_frames_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 2 of the corpus, byte for byte (its second part used the X-OC-Mtime spelling;
    syncd always sends X-File-Mtime, whole seconds)."""
    monkeypatch.setattr(_webdav_bulk, "_boundary", lambda _files, _paths: CORPUS_BOUNDARY)
    files = [
        new_file("s10/one.txt", b"first file\n", 1_600_000_000),
        new_file("s10/two.txt", b"second file, a bit longer\n", 1_600_000_100),
        new_file("s10/three.txt", b"3\n", 1_600_000_200),
    ]
    body = MultipartBody(files, [f"/{f.path}" for f in files])
    sent = b"".join(body)
    expected = bulk_exchanges()[2]["request"]["body"].replace("X-OC-Mtime:", "X-File-Mtime:").encode()
    assert sent == expected
    corpus_length = int(bulk_exchanges()[2]["request"]["headers"]["Content-Length"])
    assert len(body) == len(sent) == corpus_length + len("X-File-Mtime") - len("X-OC-Mtime")


def test_an_empty_file_is_an_empty_part() -> None:
    body = MultipartBody([new_file("e.txt", b"")], ["/e.txt"])
    text = b"".join(body)
    assert b"X-File-MD5: d41d8cd98f00b204e9800998ecf8427e\r\n" in text
    assert text.endswith(b"Content-Length: 0\r\n\r\n\r\n--" + body.boundary.encode() + b"--\r\n")


def test_the_boundary_occurs_in_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    taken, free = uuid.UUID(int=1), uuid.UUID(int=2)
    draws: Iterator[uuid.UUID] = iter([taken, taken, free])
    monkeypatch.setattr(_webdav_bulk.uuid, "uuid4", lambda: next(draws))
    files = [new_file("a", f"--syncd-{taken.hex} is in this file".encode()), new_file("b", b"x")]
    body = MultipartBody(files, ["/a", "/b"])
    assert body.boundary == f"syncd-{free.hex}"
    assert b"".join(body).count(b"--" + body.boundary.encode()) == 3  # two parts and the end


def test_a_control_character_is_never_sent_in_a_header() -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        MultipartBody([new_file("a\r\nX-File-Path: /evil", b"x")], ["/a\r\nX-File-Path: /evil"])


@pytest.mark.parametrize(
    ("url", "key", "expected"),
    [
        ("https://cloud.example.com/remote.php/dav/files/alice/", "s10/one.txt", "/s10/one.txt"),
        ("https://cloud.example.com/remote.php/dav/files/alice/Sync/Team%20A/", "x.txt", "/Sync/Team A/x.txt"),
        ("https://example.com/nextcloud/remote.php/dav/files/alice/", "é/ü.txt", "/é/ü.txt"),
    ],
    ids=["user-root", "below-the-user-root", "nextcloud-in-a-subfolder"],
)
def test_x_file_path_starts_at_the_users_root(url: str, key: str, expected: str, tmp_path: Path) -> None:
    assert x_file_path(session_at(url, tmp_path), key) == expected


def test_the_endpoint_follows_nextcloud_below_a_prefix(tmp_path: Path) -> None:
    session = session_at("https://example.com/nextcloud/remote.php/dav/files/alice/", tmp_path)
    assert _webdav_bulk.bulk_path(session) == "/nextcloud/remote.php/dav/bulk"


# -- the answer -----------------------------------------------------------------------------


def corpus_answer(step: int) -> tuple[int, bytes, list[str]]:
    """(status, body, X-File-Paths sent) of one of the corpus's POSTs."""
    exchange = bulk_exchanges()[step]
    sent = [
        line.split(": ", 1)[1] for line in exchange["request"]["body"].split("\r\n") if line.startswith("X-File-Path")
    ]
    return exchange["response"]["status"], exchange["response"]["body"].encode(), sent


def test_a_written_part_gets_its_etag_quoted_as_a_listing_shows_it() -> None:
    status, body, sent = corpus_answer(2)
    assert status == 200
    assert read_answer(body, sent, missing=None) == [
        Written('"{etag1}"', "{ocid2}"),
        Written('"{etag2}"', "{ocid3}"),
        Written('"{etag3}"', "{ocid4}"),
    ]
    # what PROPFIND lists for the same file right after (step 3): the quoted etag
    assert "<d:getetag>&quot;{etag1}&quot;</d:getetag>" in bulk_exchanges()[3]["response"]["body"]


def test_a_refused_part_is_an_error_of_its_own() -> None:
    status, body, sent = corpus_answer(10)
    assert status == 200 and sent == ["/s10/.htaccess", "/s10/ok4.txt"]
    refused, written = read_answer(body, sent, missing=None) or []
    assert refused == "refused in a bulk upload: Invalid path: files/s10/.htaccess"
    assert written == Written('"{etag8}"', "{ocid6}")


def test_a_missing_parent_folder_is_an_error_of_its_own() -> None:
    _, body, sent = corpus_answer(11)
    (answer,) = read_answer(body, sent, missing=None) or []
    assert isinstance(answer, str) and "Could not create path" in answer


def test_after_a_400_the_parts_not_listed_were_not_written() -> None:
    status, body, sent = corpus_answer(6)
    assert status == 400 and len(sent) == 3
    ok1, bad, ok3 = read_answer(body, sent, missing="stopped") or []
    assert ok1 == Written('"{etag6}"', "{ocid5}")
    assert bad == ok3 == "stopped"


def test_an_empty_400_answer_wrote_nothing() -> None:
    status, body, sent = corpus_answer(8)
    assert (status, body) == (400, b"[]")
    assert read_answer(body, sent, missing="stopped") == ["stopped"]


def test_a_part_the_answer_does_not_list_is_not_taken_as_written() -> None:
    answer = json.dumps({"/a": {"error": False, "etag": "e1", "fileid": "00000007ocid"}}).encode()
    assert read_answer(answer, ["/a", "/b"], missing=None) == [
        Written('"e1"', "00000007ocid"),
        "not written: the bulk upload's answer does not list it",
    ]


@pytest.mark.parametrize(
    "item",
    [{"error": False}, {"error": False, "etag": ""}, {"etag": "e"}, {"error": "no", "etag": "e"}, "garbage"],
    ids=["no-etag", "empty-etag", "no-error-key", "error-not-a-bool", "not-an-object"],
)
def test_an_entry_that_does_not_say_it_was_written_is_an_error(item: object) -> None:
    (answer,) = read_answer(json.dumps({"/a": item}).encode(), ["/a"], missing=None) or []
    assert isinstance(answer, str)


@pytest.mark.parametrize("step", [19, 20, 22], ids=["wrong-content-type", "no-boundary", "garbage-body"])
def test_an_xml_error_is_no_answer_per_file(step: int) -> None:
    _, body, sent = corpus_answer(step)
    assert read_answer(body, sent or ["/x"], missing="stopped") is None


# -- the remote against the Nextcloud-protocol test server ----------------------------------


@pytest.fixture
def remote_options() -> dict[str, object]:
    return {"retries": 2, "max_retry_wait": 0.0}


def test_only_folders_this_run_created_take_files_in_bulk(remote: WebDavRemote, server: NextcloudServer) -> None:
    assert remote.batch_limits() == _webdav_bulk.BULK_LIMITS
    requests.request("MKCOL", server.files_url(USER) + "theirs/", auth=(USER, PASSWORD), timeout=10)
    remote.prepare_folders(["mine/deep", "theirs"])
    assert remote.accepts_in_batch("mine/deep/a.txt", 10)
    assert remote.accepts_in_batch("mine/b.txt", 10)  # created as the parent of mine/deep
    assert not remote.accepts_in_batch("theirs/a.txt", 10)  # it existed: a file may be there
    assert not remote.accepts_in_batch("top.txt", 10)  # the root always exists
    assert not remote.accepts_in_batch("mine/big.bin", _webdav_bulk.BULK_LIMITS.max_file_bytes + 1)
    assert not remote.accepts_in_batch("mine/.htaccess", 10)  # refused alone, with its reason
    assert not remote.accepts_in_batch("mine/line\nbreak.txt", 10)


def test_created_files_are_what_a_listing_shows(remote: WebDavRemote, server: NextcloudServer) -> None:
    remote.prepare_folders(["new"])
    files = [new_file(f"new/{n}.txt", f"content {n}".encode() * n, 1_600_000_000 + n) for n in range(4)]
    server.reset_counts()
    entries = remote.create_batch(files)
    assert dict(server.counts) == {"POST": 1}
    listed = {entry.path: entry for entry in remote.list()}
    for new, entry in zip(files, entries, strict=True):
        assert isinstance(entry, Entry)
        assert entry == listed[new.path]  # no checksum either: a bulk upload stores none
        node = server.node(USER, new.path)
        assert node is not None and node.data == new.data and node.mtime == new.mtime_ns // 10**9


def test_a_file_the_server_refuses_is_an_error_of_its_own(remote: WebDavRemote, server: NextcloudServer) -> None:
    remote.prepare_folders(["new"])
    good, missing_folder = new_file("new/ok.txt", b"fine"), new_file("gone/x.txt", b"no folder")
    entries = remote.create_batch([missing_folder, good])
    assert isinstance(entries[0], ItemError) and "Could not create path" in entries[0].message
    assert isinstance(entries[1], Entry) and entries[1].path == "new/ok.txt"


def test_after_a_400_only_the_parts_written_before_it_count(
    remote: WebDavRemote, server: NextcloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong X-File-MD5 (a part damaged in transit) stops the server there."""
    remote.prepare_folders(["new"])
    real_headers = _webdav_bulk.part_headers

    def damaged_second_part(new: NewFile, path: str) -> bytes:
        headers = real_headers(new, path)
        return headers.replace(hashlib.md5(new.data).hexdigest().encode(), b"0" * 32) if path == "/new/2" else headers

    monkeypatch.setattr(_webdav_bulk, "part_headers", damaged_second_part)
    first, second, third = remote.create_batch([new_file(f"new/{n}", f"file {n}".encode()) for n in (1, 2, 3)])
    assert isinstance(first, Entry) and server.node(USER, "new/1") is not None
    for refused, path in ((second, "new/2"), (third, "new/3")):
        assert isinstance(refused, ItemError) and "stopped the bulk upload" in refused.message
        assert server.node(USER, path) is None


def test_a_request_failing_as_a_whole_is_transient_and_sent_once(remote: WebDavRemote, server: NextcloudServer) -> None:
    remote.prepare_folders(["new"])
    server.inject("POST", status=503, count=5)
    server.reset_counts()
    with pytest.raises(TransientError):
        remote.create_batch([new_file("new/a", b"a"), new_file("new/b", b"b")])
    assert server.counts["POST"] == 1


def test_an_endpoint_that_is_gone_fails_each_file(remote: WebDavRemote, server: NextcloudServer) -> None:
    """The capabilities said bulk upload, the server no longer serves it (404): each file is
    an item error, which the engine retries alone."""
    remote.prepare_folders(["new"])
    server.capabilities.bulkupload = None
    entries = remote.create_batch([new_file("new/a", b"a"), new_file("new/b", b"b")])
    assert all(isinstance(e, ItemError) and "bulk upload failed" in e.message for e in entries)


def test_refused_credentials_are_fatal(remote: WebDavRemote, server: NextcloudServer) -> None:
    remote.prepare_folders(["new"])
    server.inject("POST", status=401)
    with pytest.raises(FatalError):
        remote.create_batch([new_file("new/a", b"a"), new_file("new/b", b"b")])


def test_no_batches_without_the_capability_or_off_nextcloud(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch, remote_options: dict[str, object]
) -> None:
    server.capabilities.bulkupload = None
    without = connect(server, state_dir, monkeypatch, **remote_options)
    generic = connect(server, state_dir, monkeypatch, **remote_options, preset="generic")
    try:
        assert without.batch_limits() is None and generic.batch_limits() is None
    finally:
        without.close()
        generic.close()
