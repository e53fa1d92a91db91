"""The webdav remote's Nextcloud preset against the Nextcloud-protocol test server,
and the error behaviour every preset shares (faults injected by the server)."""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from syncd.errors import ChangedWhileReading, FatalError, PreconditionFailed, TransientError, UnsafePath
from syncd.models import Entry
from syncd.remotes import _webdav_listing
from syncd.remotes.base import known_or_read_hash
from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import MTIME_NS, MiB, big, connect, put, raw, waits
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import PASSWORD, USER

# -- detection, metadata ----------------------------------------------------------------------


def test_detects_nextcloud_and_declares_its_capabilities(remote: WebDavRemote) -> None:
    assert remote.preset.name == "nextcloud"
    caps = remote.capabilities
    assert caps.conditional_writes and caps.tree_etags and caps.server_side_move and caps.empty_dirs
    assert caps.mtime_precision_ns == 1_000_000_000


def test_x_oc_mtime_is_kept(remote: WebDavRemote, server: NextcloudServer) -> None:
    written = put(remote, "docs/a.txt", b"hello")
    node = server.node(USER, "docs/a.txt")
    assert node is not None and node.mtime == MTIME_NS // 10**9
    assert written.mtime_ns == MTIME_NS // 10**9 * 10**9
    assert ("PUT", "/remote.php/dav/files/syncd/docs/a.txt") in server.log


def test_checksum_is_sent_and_read_back_and_fileid_is_the_remote_id(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    data = b"checksummed"
    digest = hashlib.sha256(data).hexdigest()
    written = put(remote, "c.txt", data)
    node = server.node(USER, "c.txt")
    assert node is not None and node.checksum == f"SHA256:{digest}"
    listed = {e.path: e for e in remote.list()}["c.txt"]
    assert listed.content_hash == written.content_hash == digest
    assert listed.remote_id == written.remote_id == str(node.fileid)
    assert known_or_read_hash(remote, "c.txt") == digest


def test_foreign_sha1_checksum_is_not_taken_for_sha256(remote: WebDavRemote, server: NextcloudServer) -> None:
    raw(
        server,
        "PUT",
        "desktop.txt",
        b"from the desktop client",
        {"OC-Checksum": "SHA1:" + hashlib.sha1(b"from the desktop client").hexdigest()},
    )
    entry = remote.stat("desktop.txt")
    assert entry.content_hash is None
    assert known_or_read_hash(remote, "desktop.txt") == hashlib.sha256(b"from the desktop client").hexdigest()


# -- subtree skipping -------------------------------------------------------------------------


def seed_tree(server: NextcloudServer) -> None:
    """1,000 files in 50 folders, in 5 groups: g0/f00/n00.txt ... g4/f49/n19.txt."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    base = server.files_url(USER)
    for group in range(5):
        session.request("MKCOL", f"{base}g{group}/", timeout=10).raise_for_status()
        for folder in range(group * 10, group * 10 + 10):
            session.request("MKCOL", f"{base}g{group}/f{folder:02d}/", timeout=10).raise_for_status()
            for n in range(20):
                session.put(
                    f"{base}g{group}/f{folder:02d}/n{n:02d}.txt", data=f"{folder}-{n}".encode(), timeout=10
                ).raise_for_status()
    session.close()


def drain(
    remote: WebDavRemote, server: NextcloudServer, known: dict[str, str]
) -> tuple[dict[str, Entry], dict[str, str], list[str], int]:
    """Run list_changed; :returns: entries, folder etags, unchanged folders, PROPFINDs sent."""
    before = server.counts["PROPFIND"]
    tree = remote.list_changed(known)
    entries = {e.path: e for e in tree.entries}
    return entries, tree.folder_etags, tree.unchanged, server.counts["PROPFIND"] - before


def test_unchanged_tree_costs_one_propfind_and_changes_cost_one_per_changed_folder(
    remote: WebDavRemote, server: NextcloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_webdav_listing, "ROOT_REUSE_S", -1.0)  # the tree changes after connect: no reuse
    seed_tree(server)

    entries, etags, unchanged, cost = drain(remote, server, {})
    assert len(entries) == 1000 and len(etags) == 56  # root + 5 groups + 50 folders
    assert cost == 1 + 1 + 5 + 50

    entries, etags2, unchanged, cost = drain(remote, server, etags)
    assert entries == {} and unchanged == [""] and cost == 1
    assert etags2 == etags

    raw(server, "PUT", "g2/f23/n05.txt", b"changed")
    raw(server, "DELETE", "g4/f41/n00.txt")
    entries, etags3, unchanged, cost = drain(remote, server, etags)
    # root (depth 0), root, g2, g2/f23, g4, g4/f41: O(changed folders), not O(folders)
    assert cost == 6
    assert set(entries) == {f"g2/f23/n{n:02d}.txt" for n in range(20)} | {f"g4/f41/n{n:02d}.txt" for n in range(1, 20)}
    assert entries["g2/f23/n05.txt"].size == len(b"changed")
    assert set(unchanged) >= {"g0", "g1", "g3", "g2/f20", "g4/f40"}
    assert etags3["g2/f23"] != etags["g2/f23"] and etags3["g0/f01"] == etags["g0/f01"]
    assert len(etags3) == 56


def test_list_changed_on_a_server_without_tree_etags_lists_everything(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, state_dir, monkeypatch, preset="generic")
    put(remote, "a/b.txt", b"x")
    tree = remote.list_changed({"": "whatever"})
    assert [e.path for e in tree.entries] == ["a/b.txt"] and tree.unchanged == [] and tree.listed == [""]


# -- chunked upload v2 ------------------------------------------------------------------------


def test_big_file_goes_through_chunked_upload_v2(remote: WebDavRemote, server: NextcloudServer) -> None:
    data = big(3 * MiB + 12345)
    entry = put(remote, "video/big.bin", data)
    methods = [(m, p) for m, p in server.log if p.startswith("/remote.php/dav/uploads/")]
    assert [m for m, _ in methods] == ["MKCOL", "PUT", "PUT", "PUT", "PUT", "MOVE"]
    assert methods[-1][1].endswith("/.file")
    node = server.node(USER, "video/big.bin")
    assert node is not None and node.data == data and node.mtime == MTIME_NS // 10**9
    assert node.checksum == "SHA256:" + hashlib.sha256(data).hexdigest()
    assert entry.size == len(data) and server.uploads == {}
    assert ("PUT", "/remote.php/dav/files/syncd/video/big.bin") not in server.log


def test_interrupted_chunked_upload_resumes_and_never_shows_a_partial_file(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    data = big(4 * MiB + 1)
    server.inject("PUT", path_contains="/00003", drop=True)
    with pytest.raises(TransientError):
        put(remote, "resume.bin", data)
    assert server.node(USER, "resume.bin") is None
    assert len(server.uploads) == 1  # kept for the next try

    server.reset_counts()
    put(remote, "resume.bin", data)
    node = server.node(USER, "resume.bin")
    assert node is not None and node.data == data
    chunk_puts = [p for m, p in server.log if m == "PUT" and "/uploads/" in p]
    assert [p.rsplit("/", 1)[1] for p in chunk_puts] == ["00003", "00004", "00005"]
    assert server.uploads == {}


def test_chunked_upload_with_short_data_commits_nothing(remote: WebDavRemote, server: NextcloudServer) -> None:
    with pytest.raises(ChangedWhileReading):
        remote.write("short.bin", io.BytesIO(big(2 * MiB)), size=3 * MiB, mtime_ns=MTIME_NS)
    assert server.node(USER, "short.bin") is None and server.uploads == {}


def test_chunked_upload_honours_if_match(remote: WebDavRemote, server: NextcloudServer) -> None:
    old = put(remote, "c.bin", big(2 * MiB))
    raw(server, "PUT", "c.bin", b"changed by someone else")
    with pytest.raises(PreconditionFailed):
        put(remote, "c.bin", big(2 * MiB), if_match=old.etag)
    node = server.node(USER, "c.bin")
    assert node is not None and node.data == b"changed by someone else"


# -- conditional writes, names ----------------------------------------------------------------


def test_stale_if_match_is_precondition_failed(remote: WebDavRemote, server: NextcloudServer) -> None:
    old = put(remote, "x.txt", b"v1")
    raw(server, "PUT", "x.txt", b"v2 from the web UI")
    with pytest.raises(PreconditionFailed):
        put(remote, "x.txt", b"v3", if_match=old.etag)
    with pytest.raises(PreconditionFailed):
        remote.delete("x.txt", if_match=old.etag)
    with pytest.raises(PreconditionFailed):
        remote.move("x.txt", "y.txt", if_match=old.etag)
    with pytest.raises(PreconditionFailed):
        put(remote, "x.txt", b"v4", create_only=True)
    node = server.node(USER, "x.txt")
    assert node is not None and node.data == b"v2 from the web UI"


@pytest.mark.parametrize("name", [".htaccess", "dir/.HTACCESS", "upload.part", "dir/" + "é" * 115, "x" * 251])
def test_forbidden_names_raise_unsafe_path_before_any_request(
    remote: WebDavRemote, server: NextcloudServer, name: str
) -> None:
    server.reset_counts()
    with pytest.raises(UnsafePath) as info:
        put(remote, name, b"data")
    assert "Nextcloud refuses" in str(info.value)
    assert server.counts["PUT"] == 0


def test_backslash_is_unsafe(remote: WebDavRemote) -> None:
    with pytest.raises(UnsafePath, match="backslash"):
        put(remote, "a\\b.txt", b"data")


def test_server_refusal_of_a_name_maps_to_unsafe_path(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, state_dir, monkeypatch, preset="generic")  # no client-side check
    with pytest.raises(UnsafePath, match="refuses"):
        put(remote, ".htaccess", b"deny from all")
    assert [e.path for e in remote.list()] == []


# -- trash ------------------------------------------------------------------------------------


def test_trash_uses_the_server_trash_bin_and_purge_leaves_the_users_own_deletions(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    put(remote, "mine.txt", b"syncd trashes this")
    put(remote, "users.txt", b"the user deletes this")
    remote.trash("mine.txt")
    raw(server, "DELETE", "users.txt")
    assert {t.original_location for t in server.trash[USER]} == {"mine.txt", "users.txt"}
    assert ("MOVE", "/remote.php/dav/files/syncd/mine.txt") not in server.log
    assert remote.purge_trash(datetime.now() + timedelta(days=1)) == 1
    assert [t.original_location for t in server.trash[USER]] == ["users.txt"]


# -- faults -----------------------------------------------------------------------------------


def test_wrong_password_is_fatal_with_a_clear_message_and_no_secret(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FatalError) as info:
        connect(server, state_dir, monkeypatch, password="wrong-password-123")
    message = str(info.value)
    assert "401" in message and "refused the credentials" in message and "\n" not in message
    assert "wrong-password-123" not in message and "wrong-password-123" not in caplog.text


def test_password_is_not_in_repr(remote: WebDavRemote) -> None:
    assert PASSWORD not in repr(remote) and PASSWORD not in repr(remote.session.transport)


def test_401_in_the_middle_of_a_run_is_fatal_not_an_empty_listing(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    put(remote, "a/b.txt", b"x")
    server.inject("PROPFIND", status=401)
    with pytest.raises(FatalError):
        list(remote.list())


def test_403_on_listing_is_fatal(remote: WebDavRemote, server: NextcloudServer) -> None:
    server.inject("PROPFIND", status=403)
    with pytest.raises(FatalError):
        list(remote.list())


def test_503_with_retry_after_is_retried(remote: WebDavRemote, server: NextcloudServer) -> None:
    put(remote, "r.txt", b"retry me")
    server.inject("GET", status=503, count=2, retry_after="2")
    with remote.open_read("r.txt") as stream:
        assert stream.read() == b"retry me"
    assert waits == [2.0, 2.0]


def test_persistent_5xx_is_transient_after_bounded_retries(remote: WebDavRemote, server: NextcloudServer) -> None:
    server.inject("PROPFIND", status=500, count=10)
    with pytest.raises(TransientError):
        list(remote.list())
    assert len(waits) == 2  # retries=3: three tries, two waits


def test_dropped_connection_mid_propfind_is_transient_not_a_short_listing(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    for n in range(30):
        put(remote, f"many/file{n:02d}.txt", b"x")
    server.inject("PROPFIND", path_contains="/many", drop=True, count=5)
    with pytest.raises(TransientError, match=r"cut short|no answer|connection"):
        list(remote.list())


def test_dropped_connection_mid_get_is_an_error_not_truncated_data(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    put(remote, "g.bin", big(300_000))
    server.inject("GET", drop=True)
    with pytest.raises(TransientError), remote.open_read("g.bin") as stream:
        stream.read()


def test_depth_infinity_answered_as_depth_1_still_lists_everything(
    server: NextcloudServer, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = connect(server, state_dir, monkeypatch, preset="generic", depth_infinity=True)
    for key in ("top.txt", "a/one.txt", "a/b/two.txt", "c/three.txt"):
        put(remote, key, key.encode())
    assert {e.path for e in remote.list()} == {"top.txt", "a/one.txt", "a/b/two.txt", "c/three.txt"}


def test_depth_infinity_when_allowed_is_one_request(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with NextcloudServer({USER: PASSWORD}, allow_depth_infinity=True) as srv:
        remote = connect(srv, state_dir, monkeypatch, preset="generic", depth_infinity=True)
        for key in ("top.txt", "a/one.txt", "a/b/two.txt"):
            put(remote, key, key.encode())
        srv.reset_counts()
        assert {e.path for e in remote.list()} == {"top.txt", "a/one.txt", "a/b/two.txt"}
        assert srv.counts["PROPFIND"] == 1


def test_connections_are_reused(remote: WebDavRemote, server: NextcloudServer) -> None:
    for n in range(20):
        put(remote, f"k/{n}.txt", b"x")
    adapter = remote.session.transport.session.get_adapter(server.base_url)
    assert isinstance(adapter, HTTPAdapter)
    pool = adapter.poolmanager
    assert len(pool.pools) == 1
