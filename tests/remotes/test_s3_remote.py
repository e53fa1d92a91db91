"""The contract suite, and S3 specifics, against Storj's gateway-st (local Storj network)
and ``rclone serve s3`` (a tmp folder, no Storj needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from syncd.errors import ChangedWhileReading, FatalError, TransientError
from syncd.remotes.base import known_or_read_hash
from syncd.remotes.s3 import (
    MTIME_KEY,
    SHA256_KEY,
    USER_AGENT,
    S3Remote,
    Settings,
    format_mtime,
    open_remote,
    parse_mtime,
)
from syncd.remotes.settings import OpenContext
from tests.remotes.contract import MTIME, RemoteContract, listing, put, read
from tests.s3.fixture import RcloneS3, free_port, rclone_s3  # noqa: F401
from tests.storj_network.fixture import StorjNetwork, storj_network  # noqa: F401

MiB = 1 << 20


def gateway_remote(net: StorjNetwork, bucket: str | None = None, **kw: Any) -> S3Remote:
    return S3Remote(
        endpoint=net.s3_endpoint,
        bucket=bucket or "s3-" + secrets.token_hex(6),
        access_key_id=net.s3_access_key,
        secret_access_key=net.s3_secret_key,
        create_bucket=True,
        label="test gateway-st",
        **kw,
    )


def rclone_remote(server: RcloneS3, bucket: str | None = None, **kw: Any) -> S3Remote:
    return S3Remote(
        endpoint=server.endpoint,
        bucket=bucket or "s3-" + secrets.token_hex(6),
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        create_bucket=True,
        label="test rclone-s3",
        **kw,
    )


class TestS3GatewaySt(RemoteContract):
    @pytest.fixture
    def remote(self, storj_network: StorjNetwork, tmp_path: Path) -> Iterator[S3Remote]:  # noqa: F811
        remote = gateway_remote(storj_network, part_size=5 * MiB, cache_dir=tmp_path)
        yield remote
        remote.close()


class TestS3GatewayStUnderPrefix(RemoteContract):
    @pytest.fixture
    def remote(self, storj_network: StorjNetwork) -> Iterator[S3Remote]:  # noqa: F811
        neighbour = gateway_remote(storj_network, prefix="alice2/")
        put(neighbour, "not-mine.txt", b"other pair")
        neighbour.close()
        remote = gateway_remote(storj_network, neighbour.bucket, prefix="alice")
        yield remote
        remote.close()


class TestS3RcloneServe(RemoteContract):
    @pytest.fixture
    def remote(self, rclone_s3: RcloneS3, tmp_path: Path) -> Iterator[S3Remote]:  # noqa: F811
        remote = rclone_remote(rclone_s3, part_size=5 * MiB, cache_dir=tmp_path)
        yield remote
        remote.close()


# --------------------------------------------------------------------------- S3 specifics


@pytest.fixture(params=["gateway-st", "rclone"])
def any_remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[S3Remote]:
    if request.param == "gateway-st":
        remote = gateway_remote(request.getfixturevalue("storj_network"), part_size=5 * MiB, cache_dir=tmp_path)
    else:
        remote = rclone_remote(request.getfixturevalue("rclone_s3"), part_size=5 * MiB, cache_dir=tmp_path)
    yield remote
    remote.close()


def _count_calls(remote: S3Remote, operation: str) -> list[str]:
    seen: list[str] = []
    remote.client.meta.events.register(f"before-call.s3.{operation}", lambda **kw: seen.append(operation))
    return seen


def test_metadata_is_rclone_compatible(any_remote: S3Remote) -> None:
    entry = put(any_remote, "f.txt", b"data", mtime_ns=MTIME)
    head = any_remote.client.head_object(Bucket=any_remote.bucket, Key="f.txt")
    meta = {k.lower(): v for k, v in head["Metadata"].items()}  # rclone serve s3 capitalises
    assert meta[MTIME_KEY] == "1700000000.123456789"
    assert meta[SHA256_KEY] == entry.content_hash
    assert any_remote.stat("f.txt").mtime_ns == MTIME


def test_unchanged_listing_needs_no_head(any_remote: S3Remote) -> None:
    for i in range(30):
        put(any_remote, f"d/{i}.txt", str(i).encode())
    heads = _count_calls(any_remote, "HeadObject")
    first = listing(any_remote)
    assert len(first) == 30 and heads == []  # written by us: already in the cache
    # A fresh remote on the same state dir (next run) does no HEAD either.
    assert set(listing(any_remote)) == set(first)
    assert heads == []


def test_cache_miss_heads_and_cache_loss_is_harmless(any_remote: S3Remote, tmp_path: Path) -> None:
    put(any_remote, "x.txt", b"x", mtime_ns=MTIME)
    other = S3Remote(
        endpoint=any_remote.endpoint,
        bucket=any_remote.bucket,
        access_key_id=any_remote.client._request_signer._credentials.access_key,  # type: ignore[attr-defined]
        secret_access_key=any_remote.client._request_signer._credentials.secret_key,  # type: ignore[attr-defined]
        cache_dir=tmp_path / "fresh",
    )
    try:
        etag = any_remote.stat("x.txt").etag  # before counting: the two remotes share one client
        heads = _count_calls(other, "HeadObject")
        got = listing(other)["x.txt"]
        assert heads == ["HeadObject"] and got.mtime_ns == MTIME and got.content_hash
        assert got.etag == etag
        listing(other)
        assert heads == ["HeadObject"]
    finally:
        other.close()


def test_foreign_object_without_metadata(any_remote: S3Remote) -> None:
    any_remote.client.put_object(Bucket=any_remote.bucket, Key="foreign.txt", Body=b"from another tool")
    if "gateway" in any_remote.name:  # rclone serve s3 turns "folder/" into a folder it lists
        any_remote.client.put_object(Bucket=any_remote.bucket, Key="folder/", Body=b"")
    entries = listing(any_remote)
    assert set(entries) == {"foreign.txt"}
    assert entries["foreign.txt"].content_hash is None
    assert entries["foreign.txt"].mtime_ns > 0
    assert known_or_read_hash(any_remote, "foreign.txt") == hashlib.sha256(b"from another tool").hexdigest()


def test_multipart_upload_without_hash_records_it(any_remote: S3Remote) -> None:
    data = os.urandom(12 * MiB + 7)
    entry = any_remote.write("mp.bin", io.BytesIO(data), size=len(data), mtime_ns=MTIME)
    digest = hashlib.sha256(data).hexdigest()
    assert entry.content_hash == digest and entry.size == len(data) and entry.mtime_ns == MTIME
    assert read(any_remote, "mp.bin") == data


def test_multipart_failure_aborts_and_keeps_old(storj_network: StorjNetwork) -> None:  # noqa: F811
    remote = gateway_remote(storj_network, part_size=5 * MiB)
    try:
        put(remote, "big.bin", b"old")
        data = os.urandom(11 * MiB)
        with pytest.raises(ChangedWhileReading):  # the source gives less than announced
            remote.write("big.bin", io.BytesIO(data), size=len(data) + 5, mtime_ns=MTIME)
        with pytest.raises(ChangedWhileReading):  # wrong hash: detected only after the last part
            remote.write("big.bin", io.BytesIO(data), size=len(data), mtime_ns=MTIME, content_hash="0" * 64)
        assert read(remote, "big.bin") == b"old"
        uploads = remote.client.list_multipart_uploads(Bucket=remote.bucket).get("Uploads", [])
        assert uploads == []
    finally:
        remote.close()


def test_copy_above_copy_limit(storj_network: StorjNetwork) -> None:  # noqa: F811
    """Above 5 GiB: multipart copy, or (gateway-st has no UploadPartCopy) a streamed copy."""
    remote = gateway_remote(storj_network, part_size=5 * MiB)
    try:
        remote.copy_limit = 5 * MiB  # act as if 11 MiB were above CopyObject's 5 GiB limit
        data = os.urandom(11 * MiB)
        put(remote, "a.bin", data, mtime_ns=MTIME)
        moved = remote.move("a.bin", "b.bin")
        assert set(listing(remote)) == {"b.bin"}
        assert moved.mtime_ns == MTIME and moved.content_hash == hashlib.sha256(data).hexdigest()
        assert read(remote, "b.bin") == data
    finally:
        remote.close()


def test_move_is_server_side(any_remote: S3Remote) -> None:
    put(any_remote, "m/a.txt", b"x" * 1000)
    uploads = _count_calls(any_remote, "PutObject")
    copies = _count_calls(any_remote, "CopyObject")
    any_remote.move("m/a.txt", "m/b.txt")
    assert uploads == [] and copies == ["CopyObject"]


def test_user_agent(any_remote: S3Remote) -> None:
    agents: list[str] = []

    def grab(request: Any, **kw: Any) -> None:
        agents.append(
            request.headers["User-Agent"].decode()
            if isinstance(request.headers["User-Agent"], bytes)
            else request.headers["User-Agent"]
        )

    any_remote.client.meta.events.register("before-send.s3", grab)
    listing(any_remote)
    assert agents and USER_AGENT in agents[0]


def test_servers_do_not_honour_if_match(any_remote: S3Remote) -> None:
    """Why conditional_writes is not declared: If-Match on PutObject is ignored."""
    any_remote.client.put_object(Bucket=any_remote.bucket, Key="c", Body=b"1")
    any_remote.client.put_object(Bucket=any_remote.bucket, Key="c", Body=b"2", IfMatch='"0000"')
    assert read(any_remote, "c") == b"2"
    assert not any_remote.capabilities.conditional_writes


def test_wrong_secret_is_fatal_without_secret(storj_network: StorjNetwork) -> None:  # noqa: F811
    bad = "wrong" + secrets.token_hex(12)
    with pytest.raises(FatalError) as info:
        S3Remote(
            endpoint=storj_network.s3_endpoint,
            bucket="whatever",
            access_key_id=storj_network.s3_access_key,
            secret_access_key=bad,
        )
    text = str(info.value)
    assert "refused access" in text and bad not in text and "\n" not in text


def test_unknown_key_is_fatal(rclone_s3: RcloneS3) -> None:  # noqa: F811
    with pytest.raises(FatalError, match=r"InvalidAccessKeyId|refused access"):
        S3Remote(endpoint=rclone_s3.endpoint, bucket="abc", access_key_id="nobody" * 4, secret_access_key="x" * 32)


def test_missing_bucket_is_fatal(any_remote: S3Remote) -> None:
    creds = any_remote.client._request_signer._credentials  # type: ignore[attr-defined]
    with pytest.raises(FatalError, match="does not exist"):
        S3Remote(
            endpoint=any_remote.endpoint,
            bucket="missing-" + secrets.token_hex(4),
            access_key_id=creds.access_key,
            secret_access_key=creds.secret_key,
        )


def test_unreachable_endpoint_is_transient() -> None:
    with pytest.raises(TransientError, match="unreachable"):
        S3Remote(
            endpoint=f"http://127.0.0.1:{free_port()}",
            bucket="abc",
            access_key_id="a" * 20,
            secret_access_key="b" * 32,
            retries=1,
            timeout=2,
        )


def test_settings_and_open_remote(rclone_s3: RcloneS3, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "id").write_text(rclone_s3.access_key + "\n")
    os.environ["SYNCD_TEST_S3_SECRET"] = rclone_s3.secret_key
    try:
        settings = msgspec.convert(
            {
                "type": "s3",
                "endpoint": rclone_s3.endpoint,
                "bucket": "opened-" + secrets.token_hex(3),
                "prefix": "u",
                "access_key_id_file": tmp_path / "id",
                "secret_access_key_env": "SYNCD_TEST_S3_SECRET",
                "create_bucket": True,
            },
            Settings,
        )
        assert settings.prefix == "u/"
        remote = open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))
        try:
            assert remote.part_size == 16 * MiB and remote.concurrency == 4
            put(remote, "a.txt", b"a")
            assert listing(remote).keys() == {"a.txt"}
            assert list((tmp_path).glob("s3-meta-*.sqlite"))
        finally:
            remote.close()
    finally:
        del os.environ["SYNCD_TEST_S3_SECRET"]


def test_settings_validation() -> None:
    base = {"type": "s3", "bucket": "abc", "access_key_id_env": "A", "secret_access_key_env": "B"}
    storj = msgspec.convert({**base, "preset": "storj"}, Settings)
    assert storj.resolved_endpoint == "https://gateway.storjshare.io"
    for bad in (
        {"prefix": "/abs"},
        {"prefix": "a/../b"},
        {"bucket": "ab"},
        {"endpoint": "ftp://x"},
        {"part_size": 1024},
        {"concurrency": 0},
        {"preset": "minio"},
        {"access_key_id_env": None},
        {"nope": 1},
    ):
        with pytest.raises((msgspec.ValidationError, ValueError)):
            msgspec.convert({**base, **bad}, Settings)


def test_mtime_format_round_trips() -> None:
    for ns in (0, MTIME, 1_700_000_000_000_000_000, 1):
        assert parse_mtime(format_mtime(ns)) == ns
    assert parse_mtime("1700000000.5") == 1_700_000_000_500_000_000
    assert parse_mtime("1700000000") == 1_700_000_000_000_000_000
    assert parse_mtime("2023-11-14T22:13:20Z") is None


def test_rclone_reads_our_mtime_through_gateway(storj_network: StorjNetwork) -> None:  # noqa: F811
    """A file written by the s3 remote shows rclone (s3 backend) the same ModTime."""
    rclone = shutil.which("rclone")
    if rclone is None:
        pytest.skip("rclone not on PATH")
    remote = gateway_remote(storj_network)
    try:
        put(remote, "dir/r.txt", b"for rclone", mtime_ns=MTIME)
        env = {
            **os.environ,
            "RCLONE_CONFIG": "/nonexistent",
            "RCLONE_CONFIG_GW_TYPE": "s3",
            "RCLONE_CONFIG_GW_PROVIDER": "Other",
            "RCLONE_CONFIG_GW_ENDPOINT": storj_network.s3_endpoint,
            "RCLONE_CONFIG_GW_ACCESS_KEY_ID": storj_network.s3_access_key,
            "RCLONE_CONFIG_GW_SECRET_ACCESS_KEY": storj_network.s3_secret_key,
        }
        out = subprocess.run(
            [rclone, "lsjson", "-R", "--files-only", f"gw:{remote.bucket}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        (item,) = json.loads(out)
        got = datetime.fromisoformat(item["ModTime"].replace("Z", "+00:00"))
        assert item["Path"] == "dir/r.txt"
        assert abs(got.astimezone(UTC).timestamp() - MTIME / 1e9) < 1e-6
    finally:
        remote.close()
