"""Errors as Nextcloud means them: refused credentials stop a pair at once and are not tried
again, a 429 backs off the whole host, a lock or a full quota concerns one file; and what a
write costs when all goes well."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.errors import FatalError, ItemError, TransientError
from syncd.remotes import _webdav_throttle
from syncd.remotes._webdav_errors import QuotaExceeded, ServerLocked
from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import MiB, big, connect, put, raw
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import USER

IP = "127.0.0.1"


@pytest.fixture(autouse=True)
def open_gates() -> Iterator[None]:
    _webdav_throttle.reset()
    yield
    _webdav_throttle.reset()


def sent(server: NextcloudServer) -> int:
    with server.lock:
        return sum(server.counts.values())


# -- 401 ---------------------------------------------------------------------------------------


def test_refused_credentials_are_not_tried_again_until_the_password_changes(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    with pytest.raises(FatalError, match="refused the credentials"):
        connect(server, state, monkeypatch, password="revoked-app-password")
    marker = (state / "webdav-refused-credentials.json").read_text()
    assert "revoked-app-password" not in marker and "pbkdf2_sha256" in marker

    server.reset_counts()
    for _ in range(20):  # the daemon's next runs
        with pytest.raises(FatalError, match="not retried until the password changes"):
            connect(server, state, monkeypatch, password="revoked-app-password")
    assert sent(server) == 0
    assert server.throttle.failures(IP) == 1  # one failed login, not 21: no lockout of the host

    remote = connect(server, state, monkeypatch)  # the admin set a new password
    assert json.loads((state / "webdav-refused-credentials.json").read_text()) == {}
    remote.close()


def test_a_401_in_the_middle_of_a_run_stops_every_later_request_without_sending(
    remote: WebDavRemote, server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(remote, "a.txt", b"a")
    server.inject("PUT", status=401)
    with pytest.raises(FatalError, match="HTTP 401"):
        put(remote, "b.txt", b"b")
    server.reset_counts()
    with pytest.raises(FatalError):
        remote.stat("a.txt")
    assert sent(server) == 0
    with pytest.raises(FatalError, match="not retried"):
        connect(server, tmp_path / "state", monkeypatch)  # the same password: refused at once


# -- 429 ---------------------------------------------------------------------------------------


def test_a_429_closes_the_gate_of_the_host_for_every_remote_of_the_process(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = connect(server, tmp_path / "alice", monkeypatch)
    bob = connect(server, tmp_path / "bob", monkeypatch)
    now = [1000.0]
    monkeypatch.setattr(_webdav_throttle, "clock", lambda: now[0])
    server.inject("PROPFIND", status=429)
    with pytest.raises(TransientError, match="429"):
        alice.stat("x")
    assert server.counts["PROPFIND"] == 3  # two connects + this one: a 429 is never retried
    server.reset_counts()
    with pytest.raises(TransientError, match=r"127\.0\.0\.1:\d+ answered 429.*no requests to it until"):
        bob.stat("x")
    assert sent(server) == 0

    now[0] += 31
    put(bob, "open.txt", b"again")  # the gate opened after 30 s
    server.inject("PUT", status=429)
    with pytest.raises(TransientError, match=r"\(30 s\)"):
        put(bob, "b.txt", b"b")  # a success in between: the backoff starts anew
    now[0] += 31
    server.inject("PUT", status=429)
    with pytest.raises(TransientError, match=r"\(60 s\)"):
        put(alice, "c.txt", b"c")  # no success in between: it doubles
    alice.close()
    bob.close()


def test_retry_after_sets_how_long_the_gate_stays_closed(
    remote: WebDavRemote, server: NextcloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_webdav_throttle, "clock", lambda: 5000.0)
    server.inject("GET", status=429, retry_after="120")
    put(remote, "r.txt", b"r")
    with pytest.raises(TransientError, match=r"\(120 s\)"), remote.open_read("r.txt"):
        pass


def test_a_throttled_address_gets_transient_errors_not_a_fatal_one(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(11):  # other users' failed logins from this host
        server.throttle.record_failure(IP)
    with pytest.raises(TransientError, match="429"):
        connect(server, tmp_path / "state", monkeypatch)
    assert not (tmp_path / "state" / "webdav-refused-credentials.json").exists()


# -- locks, quota ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["write", "read", "delete"])
def test_a_file_locked_on_the_server_is_an_item_error_to_retry(
    remote: WebDavRemote, server: NextcloudServer, method: str
) -> None:
    put(remote, "busy.txt", b"v1")
    with server.hold_lock(USER, "busy.txt"), pytest.raises(ServerLocked, match="locked on the server") as info:
        if method == "write":
            put(remote, "busy.txt", b"v2")
        elif method == "read":
            with remote.open_read("busy.txt") as stream:
                stream.read()
        else:
            remote.delete("busy.txt")
    assert "will retry" in str(info.value) and not isinstance(info.value, TransientError)


def test_a_move_of_a_locked_file_is_an_item_error_sent_once(remote: WebDavRemote, server: NextcloudServer) -> None:
    put(remote, "busy.txt", b"v1")
    server.reset_counts()
    with server.hold_lock(USER, "busy.txt"), pytest.raises(ServerLocked, match="locked on the server"):
        remote.move("busy.txt", "moved.txt")
    assert server.counts["MOVE"] == 1  # a 500 LockedException is not retried as a server failure


def test_a_quota_too_small_is_an_item_error_with_the_servers_message(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.set_quota(USER, 1000)
    with pytest.raises(QuotaExceeded, match=r"quota is too small.*Insufficient space in /big\.bin, 2000 required"):
        put(remote, "big.bin", b"x" * 2000)
    put(remote, "small.txt", b"fits")  # the run goes on


def test_a_chunked_upload_over_quota_is_an_item_error_and_leaves_nothing(
    server: NextcloudServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, tmp_path / "state", monkeypatch, chunk_size=256 * 1024, chunked_threshold=256 * 1024)
    server.set_quota(USER, MiB)
    with pytest.raises(QuotaExceeded, match="Insufficient space"):
        put(remote, "video.bin", big(3 * MiB))
    assert server.uploads == {}
    remote.close()


# -- what a write costs ------------------------------------------------------------------------


def test_a_put_costs_exactly_one_request(remote: WebDavRemote, server: NextcloudServer) -> None:
    put(remote, "dir/first.txt", b"makes the folder")
    server.reset_counts()
    created = put(remote, "dir/new.txt", b"new", create_only=True)
    overwritten = put(remote, "dir/new.txt", b"newer", if_match=created.etag)
    assert dict(server.counts) == {"PUT": 2}
    listed = {e.path: e for e in remote.list()}["dir/new.txt"]
    assert listed == overwritten  # the answer told what a listing shows: etag, fileid, mtime, hash
    node = server.node(USER, "dir/new.txt")
    assert node is not None and overwritten.remote_id == str(node.fileid)


def test_an_answer_without_what_the_index_needs_falls_back_to_one_propfind(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.reset_counts()
    entry = remote.write("old-time.txt", io.BytesIO(b"1969"), size=4, mtime_ns=-5 * 10**9)  # no X-OC-MTime sent
    assert dict(server.counts) == {"PUT": 1, "PROPFIND": 1}
    assert entry == remote.stat("old-time.txt")


def test_move_costs_a_move_and_one_propfind(remote: WebDavRemote, server: NextcloudServer) -> None:
    written = put(remote, "m/a.txt", b"moved")
    server.reset_counts()
    moved = remote.move("m/a.txt", "m/b.txt")
    assert dict(server.counts) == {"MOVE": 1, "PROPFIND": 1}
    assert moved.remote_id == written.remote_id and moved.size == 5
    assert raw(server, "GET", "m/b.txt").content == b"moved"


def test_item_errors_for_locks_are_not_transient() -> None:
    assert issubclass(ServerLocked, ItemError) and not issubclass(ServerLocked, TransientError)
    assert issubclass(QuotaExceeded, ItemError)
