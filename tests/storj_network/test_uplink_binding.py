"""The ctypes binding (syncd/remotes/_uplink.py) against a real local Storj network."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.remotes import _uplink as u
from tests.storj_network.fixture import StorjNetwork, require_libuplink, storj_network  # noqa: F401
from tests.storj_network.relay import TcpRelay

USER_AGENT = "syncd/test"


@pytest.fixture(scope="module")
def project(storj_network: StorjNetwork) -> Iterator[u.Project]:  # noqa: F811
    require_libuplink()
    with u.Access.parse(storj_network.access_grant) as access, access.open_project(user_agent=USER_AGENT) as proj:
        yield proj


@pytest.fixture
def bucket(project: u.Project) -> str:
    # A fresh bucket per test: tests never see each other's objects.
    name = "t-" + secrets.token_hex(6)
    project.ensure_bucket(name)
    return name


def _payload(size: int) -> bytes:
    # Not repetitive, so a misplaced range cannot compare equal by accident.
    return secrets.token_bytes(size)


def test_upload_with_custom_metadata_then_stat(project: u.Project, bucket: str) -> None:
    data = _payload(1000)
    custom = {"rclone:mtime": "2024-05-06T07:08:09.123456789Z", "syncd:sha256": "ab" * 32, "ünïcode": "välue"}
    info = project.upload(bucket, "dir/file.bin", io.BytesIO(data), custom=custom)
    assert info.key == "dir/file.bin"
    assert info.content_length == len(data)

    stat = project.stat_object(bucket, "dir/file.bin")
    assert stat.key == "dir/file.bin"
    assert not stat.is_prefix
    assert stat.content_length == len(data)
    assert dict(stat.custom) == custom
    assert stat.created is not None
    assert stat.expires is None


def test_list_recursive_with_metadata_and_prefixes(project: u.Project, bucket: str) -> None:
    keys = ["a.txt", "d/b.txt", "d/e/c.txt"]
    for i, key in enumerate(keys):
        project.upload(bucket, key, io.BytesIO(b"x" * i), custom={"n": str(i)})

    listed = {o.key: o for o in project.list_objects(bucket)}
    assert sorted(listed) == keys
    assert all(not o.is_prefix for o in listed.values())
    assert {k: o.custom["n"] for k, o in listed.items()} == {"a.txt": "0", "d/b.txt": "1", "d/e/c.txt": "2"}
    assert [listed[k].content_length for k in keys] == [0, 1, 2]

    top = {o.key: o.is_prefix for o in project.list_objects(bucket, recursive=False)}
    assert top == {"a.txt": False, "d/": True}

    under = sorted(o.key for o in project.list_objects(bucket, prefix="d/"))
    assert under == ["d/b.txt", "d/e/c.txt"]


def test_download_whole_and_ranges_streaming(project: u.Project, bucket: str) -> None:
    # Larger than one chunk and than one segment-sized read, to exercise the loops.
    data = _payload(3 * u.DEFAULT_CHUNK_SIZE + 12345)
    project.upload(bucket, "big", io.BytesIO(data), chunk_size=64 * 1024)

    with project.open_download(bucket, "big") as down:
        reader = io.BufferedReader(down, buffer_size=32 * 1024)
        chunks = iter(lambda: reader.read(50_000), b"")
        assert b"".join(chunks) == data
        assert down.info().content_length == len(data)

    for offset, length in [(0, 1), (5, 100), (len(data) - 10, 10), (u.DEFAULT_CHUNK_SIZE - 3, 7)]:
        with project.open_download(bucket, "big", offset=offset, length=length) as down:
            assert down.read() == data[offset : offset + length]

    with project.open_download(bucket, "big", offset=len(data) - 500) as down:  # to the end
        assert down.read() == data[-500:]


def test_download_across_segment_boundary(project: u.Project, bucket: str) -> None:
    # Past 64 MiB (one segment) uplink's Read may return 0 bytes without error at the
    # boundary; the binding must not take that for the end of the object.
    size = 64 * 1024 * 1024 + 4097
    data = secrets.token_bytes(size)
    project.upload(bucket, "segments", io.BytesIO(data), chunk_size=1024 * 1024)
    assert project.stat_object(bucket, "segments").content_length == size
    got = bytearray()
    with project.open_download(bucket, "segments") as down:
        buf = bytearray(1024 * 1024)
        while n := down.readinto(buf):
            got += buf[:n]
    assert len(got) == size
    assert got == data


def test_empty_object(project: u.Project, bucket: str) -> None:
    info = project.upload(bucket, "empty", io.BytesIO(b""))
    assert info.content_length == 0
    with project.open_download(bucket, "empty") as down:
        assert down.read() == b""


def test_move(project: u.Project, bucket: str) -> None:
    project.upload(bucket, "old/name", io.BytesIO(b"moved"), custom={"k": "v"})
    project.move_object(bucket, "old/name", bucket, "new/name")

    with pytest.raises(u.ObjectNotFoundError):
        project.stat_object(bucket, "old/name")
    moved = project.stat_object(bucket, "new/name")
    assert moved.custom == {"k": "v"}
    with project.open_download(bucket, "new/name") as down:
        assert down.read() == b"moved"


def test_copy(project: u.Project, bucket: str) -> None:
    project.upload(bucket, "orig", io.BytesIO(b"copied"), custom={"k": "v"})
    copy = project.copy_object(bucket, "orig", bucket, "trash/orig")
    assert (copy.key, copy.content_length, dict(copy.custom)) == ("trash/orig", 6, {"k": "v"})
    assert sorted(o.key for o in project.list_objects(bucket)) == ["orig", "trash/orig"]
    with project.open_download(bucket, "trash/orig") as down:
        assert down.read() == b"copied"


def test_move_missing_source_is_not_found(project: u.Project, bucket: str) -> None:
    with pytest.raises(u.ObjectNotFoundError):
        project.move_object(bucket, "nope", bucket, "other")


def test_delete(project: u.Project, bucket: str) -> None:
    project.upload(bucket, "gone", io.BytesIO(b"bye"))
    deleted = project.delete_object(bucket, "gone")
    assert deleted is not None and deleted.key == "gone"
    assert project.delete_object(bucket, "gone") is None  # deleting nothing is not an error
    assert list(project.list_objects(bucket)) == []


def test_not_found_mapping(project: u.Project, bucket: str) -> None:
    with pytest.raises(u.ObjectNotFoundError) as exc:
        project.stat_object(bucket, "missing")
    assert exc.value.code == 0x21
    assert isinstance(exc.value, u.NotFoundError)
    assert "missing" in str(exc.value)

    with pytest.raises(u.ObjectNotFoundError):
        project.open_download(bucket, "missing")

    with pytest.raises(u.BucketNotFoundError) as bexc:
        project.stat_bucket("no-such-bucket-" + secrets.token_hex(4))
    assert bexc.value.code == 0x13

    with pytest.raises(u.BucketNotFoundError):
        list(project.list_objects("no-such-bucket-" + secrets.token_hex(4)))


def test_invalid_bucket_name(project: u.Project) -> None:
    with pytest.raises(u.BucketNameInvalidError):
        project.ensure_bucket("x")


def test_failed_source_aborts_upload(project: u.Project, bucket: str) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
            if self.sent >= 100_000:
                raise OSError("disk went away")
            n = min(len(buf), 10_000)
            buf[:n] = b"y" * n
            self.sent += n
            return n

    with pytest.raises(OSError, match="disk went away"):
        project.upload(bucket, "partial", Broken())  # type: ignore[arg-type]
    with pytest.raises(u.ObjectNotFoundError):
        project.stat_object(bucket, "partial")


def test_overwrite_replaces_content_and_metadata(project: u.Project, bucket: str) -> None:
    project.upload(bucket, "f", io.BytesIO(b"one"), custom={"v": "1"})
    project.upload(bucket, "f", io.BytesIO(b"two!"), custom={"v": "2"})
    stat = project.stat_object(bucket, "f")
    assert (stat.content_length, stat.custom) == (4, {"v": "2"})


def test_malformed_access_grant_is_a_clear_error() -> None:
    require_libuplink()
    with pytest.raises(u.InvalidAccessError, match="malformed access grant"):
        u.Access.parse("this-is-not-an-access-grant")
    with pytest.raises(u.InvalidAccessError, match="malformed access grant"):
        u.Access.parse("   ")


def test_request_access_with_passphrase_roundtrip(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    with u.Access.request(storj_network.satellite_addr, storj_network.api_key, "correct horse") as access:
        assert access.satellite_address == storj_network.satellite_addr
        with access.open_project(user_agent=USER_AGENT) as proj:
            name = "pp-" + secrets.token_hex(4)
            proj.ensure_bucket(name)
            proj.upload(name, "k", io.BytesIO(b"secret"))
            with proj.open_download(name, "k") as down:
                assert down.read() == b"secret"


def test_bad_api_key_is_a_clear_error(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    with pytest.raises(u.InvalidAccessError, match="API key"):
        u.Access.request(storj_network.satellite_addr, "not-an-api-key", "pw")


def test_unreachable_satellite_is_internal_error(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    node_id = storj_network.satellite_addr.split("@", 1)[0]
    # Port 9 on loopback (discard) is closed here: the dial fails fast.
    with pytest.raises(u.InternalError):
        u.Access.request(f"{node_id}@127.0.0.1:9", storj_network.api_key, "pw")


def test_closed_project_raises(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    with u.Access.parse(storj_network.access_grant) as access:
        proj = access.open_project(user_agent=USER_AGENT)
        proj.close()
        proj.close()  # idempotent
        with pytest.raises(u.InvalidHandleError):
            proj.stat_bucket("whatever")


def test_missing_library_message() -> None:
    # In a child process: the library is loaded once per process.
    code = (
        "from syncd.remotes import _uplink as u\n"
        "try:\n    u.load_library()\n"
        "except u.UplinkLibraryError as e:\n    print(e)\n"
    )
    env = {**os.environ, "SYNCD_LIBUPLINK": "/nonexistent/libuplink.so"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "libuplink not found at /nonexistent/libuplink.so" in out.stdout
    assert "packaging/libuplink/build.sh" in out.stdout


@pytest.mark.parametrize("library", ["not-a-library", "another-library"])
def test_an_incompatible_library_is_one_line_naming_what_to_install(library: str, tmp_path: Path) -> None:
    """A file that is no shared library, or a shared library without uplink-c's API (here
    the Python runtime's own libz or libc): `syncd now` exits 4 with one line, nothing synced."""
    if library == "not-a-library":
        path = tmp_path / "libuplink.so"
        path.write_text("not ELF\n")
    else:
        import ctypes.util

        found = ctypes.util.find_library("z") or ctypes.util.find_library("c")
        assert found is not None
        path = Path(found)
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("keep me")
    (tmp_path / "grant").write_text("1SomeGrant")
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nsocket = "{tmp_path / "sock"}"\n'
        f'[users.u]\nfiles = {{ type = "local", path = "{files}" }}\n'
        'bucket = { type = "storj", access_grant_file = "grant", bucket = "bucket" }\n'
    )
    env = {**os.environ, "SYNCD_LIBUPLINK": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "now"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and "packaging/libuplink/build.sh" in lines[0] and "storj-uplink" in lines[0]
    assert (files / "a.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- deadlines

STALL_DEADLINE = 1.0  # seconds: the deadline floor of the projects below
# Upper bound for a call to come back after its deadline on a loaded machine: only
# exceeding it fails a test.
RETURN_SLACK = 30.0


@dataclass
class Stalled:
    project: u.Project
    bucket: str
    relay: TcpRelay


@pytest.fixture
def stalled(storj_network: StorjNetwork) -> Iterator[Stalled]:  # noqa: F811
    """A project with 1 s deadlines whose satellite, reached through a relay, stops
    answering (connections stay open) once a bucket with object "k" is set up."""
    require_libuplink()
    node_id, _, host_port = storj_network.satellite_addr.partition("@")
    host, _, port = host_port.rpartition(":")
    with TcpRelay((host, int(port))) as relay:
        address = f"{node_id}@127.0.0.1:{relay.port}"
        with (
            u.Access.request(address, storj_network.api_key, "stalled") as access,
            access.open_project(user_agent=USER_AGENT, timeout=STALL_DEADLINE, min_rate=1 << 20) as proj,
        ):
            if not proj.bounded:
                pytest.skip(f"{u.library_path()} has no call deadlines (not syncd's libuplink build)")
            name = "st-" + secrets.token_hex(6)
            proj.ensure_bucket(name)
            proj.upload(name, "k", io.BytesIO(b"data"))
            relay.stall()
            yield Stalled(proj, name, relay)


def _upload(proj: u.Project, bucket: str) -> None:
    with proj.open_upload(bucket, "new") as upload:
        upload.write(b"x" * 1000)
        upload.commit()


def _download(proj: u.Project, bucket: str) -> None:
    with proj.open_download(bucket, "k") as download:
        download.read()


CALLS: dict[str, Callable[[u.Project, str], object]] = {
    "stat bucket": lambda p, b: p.stat_bucket(b),
    "stat object": lambda p, b: p.stat_object(b, "k"),
    "list objects": lambda p, b: list(p.list_objects(b)),
    "delete object": lambda p, b: p.delete_object(b, "k"),
    "move object": lambda p, b: p.move_object(b, "k", b, "k2"),
    "copy object": lambda p, b: p.copy_object(b, "k", b, "k2"),
    "upload": _upload,
    "download": _download,
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_call_to_a_silent_satellite_ends_at_its_deadline(stalled: Stalled, call: str) -> None:
    """Each kind of call ends with DeadlineExceededError once its deadline has passed
    (not before: the satellite really is silent), and the project works again as soon as
    the satellite answers: a deadline cancels a call, not the project."""
    started = time.monotonic()
    with pytest.raises(u.DeadlineExceededError, match="no answer from the Storj network within"):
        CALLS[call](stalled.project, stalled.bucket)
    took = time.monotonic() - started
    assert STALL_DEADLINE <= took < STALL_DEADLINE + RETURN_SLACK, took
    stalled.relay.resume()
    # A call may still pick a pooled connection that the restart closed: it fails at once
    # (a transient error, the connection is dropped), and a later one dials anew.
    failures: list[u.UplinkError] = []
    for _ in range(4):
        try:
            assert stalled.project.stat_object(stalled.bucket, "k").content_length == 4
            break
        except (u.CanceledError, u.InternalError) as exc:
            failures.append(exc)
    else:
        pytest.fail(f"the project did not recover: {failures}")


def test_request_access_to_a_silent_satellite_ends_at_its_timeout(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    if u.load_library().request_access_within is None:
        pytest.skip(f"{u.library_path()} has no request timeout (not syncd's libuplink build)")
    node_id, _, host_port = storj_network.satellite_addr.partition("@")
    host, _, port = host_port.rpartition(":")
    with TcpRelay((host, int(port))) as relay:
        relay.stall()
        started = time.monotonic()
        with pytest.raises(u.DeadlineExceededError, match="request access"):
            u.Access.request(f"{node_id}@127.0.0.1:{relay.port}", storj_network.api_key, "pw", timeout=STALL_DEADLINE)
        assert time.monotonic() - started < STALL_DEADLINE + RETURN_SLACK
        assert relay.connections >= 1  # it did reach the relay: the wait was for an answer
