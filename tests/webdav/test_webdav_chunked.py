"""Nextcloud chunked upload v2 against the Nextcloud-protocol test server: the final MOVE's
conditions as Nextcloud honours them, resuming, verification, and no upload folder left behind."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.errors import ChangedWhileReading, ItemError, PreconditionFailed
from syncd.remotes import _webdav_chunked
from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import MTIME_NS, MiB, big, connect, put, raw
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import USER

SMALL_CHUNKS: dict[str, object] = {"chunk_size": 64 * 1024, "chunked_threshold": 100 * 1024}


@pytest.fixture
def remote_options() -> dict[str, object]:
    """Files over 100 KiB go up chunked, in chunks of 64 KiB."""
    return SMALL_CHUNKS


Sent = list[tuple[str, str, dict[str, str]]]


def spy(remote: WebDavRemote, before_final_move: Callable[[], None] | None = None) -> Sent:
    """Record (method, url, headers) of every request the remote sends from now on; run
    ``before_final_move`` (another client's write, say) right before the first final MOVE."""
    sent: Sent = []
    transport = remote.session.transport
    request = transport.request
    pending = [before_final_move] if before_final_move is not None else []

    def recording(method: str, url: str, **kw: object) -> object:
        headers = kw.get("headers") or {}
        assert isinstance(headers, dict)
        if method == "MOVE" and url.endswith("/.file") and pending:
            pending.pop()()
        sent.append((method, url, dict(headers)))
        return request(method, url, **kw)  # type: ignore[arg-type]

    transport.request = recording  # type: ignore[assignment,method-assign]
    return sent


def final_moves(sent: Sent) -> list[dict[str, str]]:
    return [headers for method, url, headers in sent if method == "MOVE" and url.endswith("/.file")]


def test_new_file_goes_up_with_overwrite_f_and_no_propfind(remote: WebDavRemote, server: NextcloudServer) -> None:
    data = big(300 * 1024 + 7)
    sent = spy(remote)
    server.reset_counts()
    entry = put(remote, "new.bin", data, create_only=True)
    [move] = final_moves(sent)
    assert move["Overwrite"] == "F" and "If-None-Match" not in move and "If-Match" not in move
    assert move["OC-Total-Length"] == str(len(data))
    assert move["OC-Checksum"] == "SHA256:" + hashlib.sha256(data).hexdigest()
    assert server.counts["PROPFIND"] == 0  # the MOVE's answer gave the entry
    listed = remote.stat("new.bin")
    assert entry == listed._replace(content_hash=entry.content_hash)
    assert entry.content_hash == hashlib.sha256(data).hexdigest() and server.uploads == {}


def test_overwrite_goes_up_with_an_if_header_on_the_destination(remote: WebDavRemote, server: NextcloudServer) -> None:
    old = put(remote, "same.bin", big(200 * 1024))
    data = big(250 * 1024)
    sent = spy(remote)
    entry = put(remote, "same.bin", data, if_match=old.etag)
    [move] = final_moves(sent)
    assert move["If"] == f"<{remote.session.url('same.bin')}> ([{old.etag}])"
    assert "If-Match" not in move and "Overwrite" not in move
    node = server.node(USER, "same.bin")
    assert node is not None and node.data == data and entry.remote_id == str(node.fileid)
    assert entry.etag == remote.stat("same.bin").etag


def test_new_file_where_another_client_created_one_is_precondition_failed(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    spy(remote, before_final_move=lambda: raw(server, "PUT", "race.bin", b"theirs").raise_for_status())
    with pytest.raises(PreconditionFailed):
        put(remote, "race.bin", big(300 * 1024), create_only=True)
    node = server.node(USER, "race.bin")
    assert node is not None and node.data == b"theirs"


def test_overwrite_racing_a_concurrent_edit_is_precondition_failed_and_resumes_later(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    old = put(remote, "edit.bin", big(200 * 1024))
    data = big(640 * 1024)
    spy(remote, before_final_move=lambda: raw(server, "PUT", "edit.bin", b"their edit").raise_for_status())
    with pytest.raises(PreconditionFailed):
        put(remote, "edit.bin", data, if_match=old.etag)
    node = server.node(USER, "edit.bin")
    assert node is not None and node.data == b"their edit"  # never clobbered
    assert len(server.uploads) == 1  # kept: the same content may go up again

    theirs = remote.stat("edit.bin")
    server.reset_counts()
    put(remote, "edit.bin", data, if_match=theirs.etag)  # e.g. the policy says ours wins
    chunk_puts = [p for m, p in server.log if m == "PUT" and "/uploads/" in p]
    assert len(chunk_puts) == 1  # only the last chunk is sent again
    node = server.node(USER, "edit.bin")
    assert node is not None and node.data == data and server.uploads == {}


def test_overwrite_of_a_file_deleted_meanwhile_is_precondition_failed(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    old = put(remote, "gone.bin", big(200 * 1024))
    spy(remote, before_final_move=lambda: raw(server, "DELETE", "gone.bin").raise_for_status())
    with pytest.raises(PreconditionFailed):
        put(remote, "gone.bin", big(300 * 1024), if_match=old.etag)
    assert server.node(USER, "gone.bin") is None


def test_sixty_mib_file_goes_up_in_one_write_with_the_default_chunks(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, tmp_path / "state", monkeypatch, chunk_size=10 * MiB)
    data = big(60 * MiB)
    server.reset_counts()
    entry = put(remote, "video/big.mkv", data)
    uploads = [m for m, p in server.log if p.startswith("/remote.php/dav/uploads/")]
    assert uploads == ["MKCOL", *["PUT"] * 6, "MOVE"]
    node = server.node(USER, "video/big.mkv")
    assert node is not None and node.data == data and entry.size == 60 * MiB
    remote.close()


def test_short_source_abandons_the_upload_folder(remote: WebDavRemote, server: NextcloudServer) -> None:
    with pytest.raises(ChangedWhileReading):
        remote.write("short.bin", io.BytesIO(big(150 * 1024)), size=300 * 1024, mtime_ns=MTIME_NS)
    assert server.node(USER, "short.bin") is None and server.uploads == {}
    assert _webdav_chunked.UploadLedger(remote.session).uploads() == []


def test_a_final_refusal_of_the_move_abandons_the_upload_folder(remote: WebDavRemote, server: NextcloudServer) -> None:
    server.inject("MOVE", path_contains="/.file", status=400)
    with pytest.raises(ItemError):
        put(remote, "refused.bin", big(300 * 1024))
    assert server.uploads == {} and _webdav_chunked.UploadLedger(remote.session).uploads() == []


def test_an_upload_left_over_for_a_day_is_removed_by_the_sweep(
    remote: WebDavRemote, server: NextcloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.inject("PUT", path_contains="/00003", drop=True)
    with pytest.raises(Exception, match=r"no answer|connection"):
        put(remote, "left.bin", big(300 * 1024))
    assert len(server.uploads) == 1
    assert remote.session.created_this_run("") is False
    later = _webdav_chunked.clock() + _webdav_chunked.UPLOAD_KEEP_S + 60
    monkeypatch.setattr(_webdav_chunked, "clock", lambda: later)
    assert remote._chunked.sweep() == 1
    assert server.uploads == {} and _webdav_chunked.UploadLedger(remote.session).uploads() == []


def test_new_content_for_the_same_path_removes_the_earlier_upload(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.inject("PUT", path_contains="/00002", drop=True)
    with pytest.raises(Exception, match=r"no answer|connection"):
        put(remote, "v.bin", big(300 * 1024))
    assert len(server.uploads) == 1
    put(remote, "v.bin", b"x" * (200 * 1024))  # the file changed meanwhile: other content
    assert server.uploads == {}
    node = server.node(USER, "v.bin")
    assert node is not None and node.data == b"x" * (200 * 1024)
