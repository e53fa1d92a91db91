"""Folders on Nextcloud: created once, parents first, by one writer at a time; the 423 and 403
that concurrent MKCOLs get are no error once the folder exists; a refusal of one file or
folder is an item error, never fatal for the run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from syncd.errors import FatalError, ItemError
from syncd.remotes.webdav import WebDavRemote
from tests.webdav.nextcloud_remote import put, raw, waits
from tests.webdav.nextcloud_server import NextcloudServer
from tests.webdav.servers import USER


def mkcols(server: NextcloudServer) -> list[str]:
    with server.lock:
        return [path.rstrip("/") for method, path in server.log if method == "MKCOL"]


def test_eight_parallel_writers_into_one_new_folder_send_one_mkcol(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.reset_counts()
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait(timeout=10)
        put(remote, f"new/deeper/f{n}.txt", f"file {n}".encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert mkcols(server) == ["/remote.php/dav/files/syncd/new", "/remote.php/dav/files/syncd/new/deeper"]
    assert {e.path for e in remote.list()} == {f"new/deeper/f{n}.txt" for n in range(8)}


def test_prepare_folders_creates_each_once_parents_first_and_remembers_what_it_created(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    raw(server, "MKCOL", "old").raise_for_status()
    server.reset_counts()
    remote.prepare_folders(["b/c/d", "a", "b", "old/x", "b/c"])
    assert mkcols(server) == [
        "/remote.php/dav/files/syncd/a",
        "/remote.php/dav/files/syncd/b",
        "/remote.php/dav/files/syncd/b/c",
        "/remote.php/dav/files/syncd/old",  # not known to exist: 405, it does
        "/remote.php/dav/files/syncd/old/x",
        "/remote.php/dav/files/syncd/b/c/d",
    ]
    session = remote.session
    assert all(session.created_this_run(f) for f in ("a", "b", "b/c", "b/c/d", "old/x"))
    assert not session.created_this_run("old") and not session.created_this_run("")
    server.reset_counts()
    put(remote, "b/c/d/file.txt", b"x")
    assert dict(server.counts) == {"PUT": 1}


def test_listed_folders_need_no_mkcol(remote: WebDavRemote, server: NextcloudServer) -> None:
    raw(server, "MKCOL", "there").raise_for_status()
    raw(server, "MKCOL", "there/too").raise_for_status()
    tree = remote.list_changed({})
    list(tree.entries)
    server.reset_counts()
    remote.prepare_folders(["there/too"])
    put(remote, "there/too/a.txt", b"a")
    assert dict(server.counts) == {"PUT": 1}


@pytest.mark.parametrize("status", [423, 403])
def test_refused_mkcol_of_a_folder_that_exists_by_then_is_no_error(
    remote: WebDavRemote, server: NextcloudServer, status: int
) -> None:
    raw(server, "MKCOL", "raced").raise_for_status()  # another client made it; we do not know yet
    server.inject("MKCOL", path_contains="/raced", status=status)
    put(remote, "raced/a.txt", b"a")
    node = server.node(USER, "raced/a.txt")
    assert node is not None and node.data == b"a"
    assert not remote.session.created_this_run("raced")


def test_mkcol_that_loses_the_race_on_the_server_gets_403_and_is_no_error(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    """Another client creates the folder between the server's check and its lock: the
    server's own "403 Could not create directory"."""

    def other_client_creates_it(_user: str, _path: str) -> None:
        server.on_mkcol_checked = None
        raw(server, "MKCOL", "both").raise_for_status()

    server.on_mkcol_checked = other_client_creates_it
    put(remote, "both/mine.txt", b"mine")
    node = server.node(USER, "both/mine.txt")
    assert node is not None and node.data == b"mine"
    assert ("MKCOL", "/remote.php/dav/files/syncd/both") in server.log


def test_mkcol_held_by_another_writer_is_tried_again_once_it_is_done(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    """The server's own 423 while another request holds the folder's path locked."""
    held = server.hold_lock(USER, "busy")
    held.__enter__()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        held.__exit__(None, None, None)  # the other writer is done during our backoff

    remote.session.transport.sleep = sleep
    put(remote, "busy/a.txt", b"a")
    assert waits == [0.2] and remote.session.created_this_run("busy")


def test_423_on_mkcol_is_tried_again_until_the_folder_is_made(remote: WebDavRemote, server: NextcloudServer) -> None:
    server.inject("MKCOL", path_contains="/busy", status=423, count=2)
    put(remote, "busy/a.txt", b"a")
    assert mkcols(server).count("/remote.php/dav/files/syncd/busy") == 3
    assert waits == [0.2, 0.4]  # short backoff, no real sleeping in tests
    assert remote.session.created_this_run("busy")


def test_mkcol_locked_for_good_is_an_item_error(remote: WebDavRemote, server: NextcloudServer) -> None:
    server.inject("MKCOL", path_contains="/stuck", status=423, count=10)
    with pytest.raises(ItemError, match="locked on the server"):
        put(remote, "stuck/a.txt", b"a")


def test_forbidden_folder_is_an_item_error_asked_once_and_prepare_never_raises(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.inject("MKCOL", path_contains="/ro", status=403, count=100)
    remote.prepare_folders(["ro", "ok"])
    assert server.node(USER, "ok") is not None
    asked = mkcols(server).count("/remote.php/dav/files/syncd/ro")
    with pytest.raises(ItemError, match="forbids creating this folder") as info:
        put(remote, "ro/a.txt", b"a")
    assert not isinstance(info.value, FatalError)
    assert mkcols(server).count("/remote.php/dav/files/syncd/ro") == asked == 2
    put(remote, "ok/b.txt", b"b")  # the run goes on


def test_403_on_a_file_write_is_an_item_error_and_403_on_the_listing_stays_fatal(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    server.inject("PUT", path_contains="/locked-down.txt", status=403)
    with pytest.raises(ItemError, match="forbids write"):
        put(remote, "locked-down.txt", b"x")
    put(remote, "fine.txt", b"y")
    server.inject("PROPFIND", status=403)
    with pytest.raises(FatalError, match="permissions"):
        list(remote.list())


def test_put_into_a_folder_deleted_meanwhile_makes_it_again_and_sends_once_more(
    remote: WebDavRemote, server: NextcloudServer
) -> None:
    put(remote, "kept/a.txt", b"a")
    raw(server, "DELETE", "kept").raise_for_status()  # another client removes the folder
    server.reset_counts()
    put(remote, "kept/b.txt", b"b")
    assert [m for m, _ in server.log] == ["PUT", "MKCOL", "PUT"]
    node = server.node(USER, "kept/b.txt")
    assert node is not None and node.data == b"b"
