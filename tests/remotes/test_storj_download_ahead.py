"""Downloads read ahead in parts (``syncd_download_object_ahead``, our libuplink build)
against the local Storj network: byte-exact in order, one version only, bounded by the
deadlines, and a satellite lost mid-download is a transient error that leaves no file."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from syncd.errors import ChangedWhileReading, NotFound, TransientError
from syncd.remotes import _uplink as u
from syncd.remotes.base import CHUNK
from syncd.remotes.local import LocalRemote
from syncd.remotes.storj import DOWNLOAD_READ_BYTES, USER_AGENT, Settings, StorjRemote
from tests.storj_network.fixture import StorjNetwork, require_libuplink, storj_network  # noqa: F401
from tests.storj_network.relay import TcpRelay

MiB = 1 << 20
PART = MiB  # small parts: a few MiB object has several
DEADLINE = 1.0  # seconds: the deadline floor of the relayed projects below
RETURN_SLACK = 30.0  # a call back this long after its deadline fails the test (a loaded machine)


def _require_ahead(project: u.Project) -> None:
    if not project.downloads_ahead:
        pytest.skip(f"{u.library_path()} cannot read ahead (not syncd's libuplink build)")


@pytest.fixture(scope="module")
def project(storj_network: StorjNetwork) -> Iterator[u.Project]:  # noqa: F811
    require_libuplink()
    with u.Access.parse(storj_network.access_grant) as access, access.open_project(user_agent=USER_AGENT) as proj:
        _require_ahead(proj)
        yield proj


@pytest.fixture
def bucket(project: u.Project) -> str:
    name = "da-" + secrets.token_hex(6)
    project.ensure_bucket(name)
    return name


def _read_all(download: u.Download, buffer_size: int) -> bytes:
    got = bytearray()
    buf = bytearray(buffer_size)
    while n := download.readinto(buf):
        got += buf[:n]
    return bytes(got)


@pytest.mark.parametrize("buffer_size", [4096, 1000 * 1000, 3 * MiB])
def test_parts_read_back_byte_exact(project: u.Project, bucket: str, buffer_size: int) -> None:
    """Seven parts (the last a short one) through three in flight, read with buffers smaller
    than, unaligned to and larger than a part: the bytes come back whole and in order."""
    data = secrets.token_bytes(6 * MiB + 12345)
    project.upload(bucket, "big", io.BytesIO(data), chunk_size=MiB)
    with project.open_download(bucket, "big", parts=3, part_size=PART) as down:
        assert _read_all(down, buffer_size) == data
        assert down.info().content_length == len(data)


@pytest.mark.parametrize(("offset", "length"), [(0, -1), (1, 5 * MiB), (PART - 1, 2 * PART + 2), (3 * MiB, 10)])
def test_ranges_read_ahead(project: u.Project, bucket: str, offset: int, length: int) -> None:
    data = secrets.token_bytes(5 * MiB + 7)
    project.upload(bucket, "r", io.BytesIO(data), chunk_size=MiB)
    want = data[offset:] if length < 0 else data[offset : offset + length]
    with project.open_download(bucket, "r", offset=offset, length=length, parts=4, part_size=PART) as down:
        assert _read_all(down, 700 * 1024) == want


def test_a_download_across_a_segment_boundary(project: u.Project, bucket: str) -> None:
    """Parts that straddle the 64 MiB segment boundary (uplink may return empty reads there)."""
    data = secrets.token_bytes(64 * MiB + 4097)
    project.upload(bucket, "seg", io.BytesIO(data), chunk_size=MiB)
    with project.open_download(bucket, "seg", parts=4, part_size=7 * MiB) as down:
        assert _read_all(down, MiB) == data


def test_a_replaced_object_fails_the_download_instead_of_mixing_versions(project: u.Project, bucket: str) -> None:
    """A part started after the object was replaced finds another object (creation time,
    size, metadata) than the download began with: the download fails rather than splice
    two versions, and the bytes read before are the old version's."""
    old, new = secrets.token_bytes(6 * MiB), secrets.token_bytes(6 * MiB)
    project.upload(bucket, "v", io.BytesIO(old), chunk_size=MiB)
    got = bytearray()
    with project.open_download(bucket, "v", parts=2, part_size=PART) as down:
        buf = bytearray(64 * 1024)
        got += buf[: down.readinto(buf)]  # parts 1 and 2 are in flight, 3 to 6 not started
        project.upload(bucket, "v", io.BytesIO(new), chunk_size=MiB)
        with pytest.raises(u.FailedPreconditionError, match="replaced while it was downloaded"):
            while n := down.readinto(buf):
                got += buf[:n]
    assert got == old[: len(got)]
    assert len(got) < len(old)


def test_the_remote_reports_a_replaced_object_as_changed_while_reading(
    storj_network: StorjNetwork,  # noqa: F811
) -> None:
    require_libuplink()
    remote = StorjRemote(
        storj_network.access_grant,
        "rp-" + secrets.token_hex(5),
        create_bucket=True,
        download_parts=2,
        download_part_size=PART,
    )
    try:
        _require_ahead(remote.project)
        old = secrets.token_bytes(5 * MiB)
        remote.write("f", io.BytesIO(old), size=len(old), mtime_ns=0)
        with remote.open_read("f") as stream:
            assert stream.read(1000) == old[:1000]
            new = secrets.token_bytes(5 * MiB)
            remote.write("f", io.BytesIO(new), size=len(new), mtime_ns=0)
            with pytest.raises(ChangedWhileReading):
                stream.read()
    finally:
        remote.close()


def test_the_remote_reads_a_download_in_pieces_of_at_most_256_kib(storj_network: StorjNetwork) -> None:  # noqa: F811
    """A read of the remote's stream returns at most DOWNLOAD_READ_BYTES, whatever it asks
    for (its caller writes each read in one write(); see storj.py for what large ones cost),
    and the pieces are the object's bytes in order; read() with no size reads to the end."""
    require_libuplink()
    remote = StorjRemote(
        storj_network.access_grant, "rs-" + secrets.token_hex(5), create_bucket=True, download_part_size=PART
    )
    try:
        data = secrets.token_bytes(3 * MiB + 5)
        remote.write("f", io.BytesIO(data), size=len(data), mtime_ns=0)
        with remote.open_read("f") as stream:
            pieces = list(iter(lambda: stream.read(CHUNK), b""))
        assert b"".join(pieces) == data
        assert max(len(piece) for piece in pieces) == DOWNLOAD_READ_BYTES < CHUNK
        with remote.open_read("f") as stream:
            assert stream.read(10) + stream.read() == data
    finally:
        remote.close()


def test_closing_a_download_part_way_releases_it(project: u.Project, bucket: str) -> None:
    data = secrets.token_bytes(5 * MiB)
    project.upload(bucket, "c", io.BytesIO(data), chunk_size=MiB)
    for _ in range(3):
        with project.open_download(bucket, "c", parts=4, part_size=PART) as down:
            assert down.read(1000) == data[:1000]
    with pytest.raises(ValueError, match="closed"):
        down.read(10)
    with project.open_download(bucket, "c", parts=4, part_size=PART) as down:  # the project still works
        assert _read_all(down, MiB) == data


def test_downloads_of_one_object_in_a_row_are_not_refused_for_the_rate(project: u.Project, bucket: str) -> None:
    """The satellite lets one object be asked for in a burst of 3, then once a millisecond;
    a download and its parts ask at once, the next download right after: refusals for the
    rate are asked again after a pause, not passed on as errors."""
    data = secrets.token_bytes(4 * MiB)
    project.upload(bucket, "hot", io.BytesIO(data), chunk_size=MiB)
    for _ in range(10):
        with project.open_download(bucket, "hot", parts=4, part_size=PART) as down:
            assert down.read(1000) == data[:1000]
    with project.open_download(bucket, "hot", parts=4, part_size=PART) as down:
        assert _read_all(down, MiB) == data


def test_bad_part_arguments_are_refused(project: u.Project, bucket: str) -> None:
    with pytest.raises(ValueError):
        project.open_download(bucket, "x", parts=0)
    with pytest.raises(ValueError):
        project.open_download(bucket, "x", parts=2, part_size=0)


# --------------------------------------------------------------------------- a lost satellite


@pytest.fixture
def relayed(storj_network: StorjNetwork) -> Iterator[tuple[str, TcpRelay]]:  # noqa: F811
    """An access grant whose satellite is reached through a relay the test can cut."""
    require_libuplink()
    node_id, _, host_port = storj_network.satellite_addr.partition("@")
    host, _, port = host_port.rpartition(":")
    with TcpRelay((host, int(port))) as relay:
        address = f"{node_id}@127.0.0.1:{relay.port}"
        with u.Access.request(address, storj_network.api_key, "ahead-" + secrets.token_hex(4)) as access:
            yield access.serialize(), relay


def _remote(grant: str, bucket: str) -> StorjRemote:
    remote = StorjRemote(
        grant,
        bucket,
        create_bucket=True,
        download_parts=2,
        download_part_size=PART,
        timeout=DEADLINE,
        min_speed=MiB,
        label="ahead",
    )
    _require_ahead(remote.project)
    if not remote.project.bounded:
        pytest.skip(f"{u.library_path()} has no call deadlines (not syncd's libuplink build)")
    return remote


@pytest.mark.parametrize("create_only", [True, False], ids=["unnamed-file", "temp-name"])
def test_a_satellite_cut_mid_download_is_transient_and_leaves_no_file(
    relayed: tuple[str, TcpRelay], tmp_path: Path, create_only: bool
) -> None:
    """The parts not started yet ask the satellite for their pieces: with the satellite gone
    the copy into a local folder fails with a TransientError (the run stops, the next one
    resumes), and the folder holds no partial file."""
    grant, relay = relayed
    data = secrets.token_bytes(6 * MiB)
    remote = _remote(grant, "cut-" + secrets.token_hex(5))
    try:
        remote.write("f.bin", io.BytesIO(data), size=len(data), mtime_ns=0, create_only=True)
        entry = remote.stat("f.bin")
        files = tmp_path / "files"
        files.mkdir()
        local = LocalRemote(files, trash_dir=tmp_path / "trash")

        class CutAfterFirstRead(io.RawIOBase):
            """The download as the engine streams it, with the satellite cut after 64 KiB."""

            def __init__(self, inner: io.BufferedReader) -> None:
                super().__init__()
                self.inner, self.reads = inner, 0

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                n = self.inner.readinto(memoryview(buffer)[: 64 * 1024])
                self.reads += 1
                if self.reads == 1:
                    relay.cut()
                return n

        with pytest.raises(TransientError), remote.open_read("f.bin") as stream:
            assert isinstance(stream, io.BufferedReader)
            source = io.BufferedReader(CutAfterFirstRead(stream))
            local.write("f.bin", source, size=entry.size, mtime_ns=0, create_only=create_only)
        assert list(files.iterdir()) == []
        relay.resume()
        with remote.open_read("f.bin") as stream:  # the satellite is back: the next run gets it all
            assert stream.read() == data
    finally:
        remote.close()


def test_a_silent_satellite_mid_download_ends_at_a_deadline(relayed: tuple[str, TcpRelay]) -> None:
    """A part that waits on a satellite that stopped answering ends the download with a
    TransientError once its deadline passes (1 s + its bytes at 1 MiB/s per part in
    flight), not never."""
    grant, relay = relayed
    data = secrets.token_bytes(6 * MiB)
    remote = _remote(grant, "stall-" + secrets.token_hex(5))
    try:
        remote.write("f.bin", io.BytesIO(data), size=len(data), mtime_ns=0, create_only=True)
        with remote.open_read("f.bin") as stream:
            assert stream.read(1000) == data[:1000]
            relay.stall()
            started = time.monotonic()
            with pytest.raises(TransientError, match="not answering"):
                stream.read()
            assert time.monotonic() - started < DEADLINE + 2 * 2 * PART / MiB + RETURN_SLACK
    finally:
        relay.resume()
        remote.close()


def test_a_deleted_object_is_not_found_before_any_part(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    remote = StorjRemote(
        storj_network.access_grant, "nf-" + secrets.token_hex(5), create_bucket=True, download_part_size=PART
    )
    try:
        with pytest.raises(NotFound), remote.open_read("missing.bin"):
            pass
    finally:
        remote.close()


def test_download_parts_setting() -> None:
    base = {"type": "storj", "bucket": "bkt", "access_grant_env": "G"}
    assert msgspec.convert(base, Settings).download_parts == 4
    assert msgspec.convert({**base, "download_parts": 1}, Settings).download_parts == 1
    for bad in (0, 17):
        with pytest.raises(msgspec.ValidationError, match="download_parts"):
            msgspec.convert({**base, "download_parts": bad}, Settings)
