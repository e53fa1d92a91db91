"""The contract suite, and Storj specifics, against a real local Storj network."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from syncd.errors import FatalError
from syncd.remotes import _uplink as uplink
from syncd.remotes.settings import OpenContext
from syncd.remotes.storj import (
    MTIME_KEY,
    SHA256_KEY,
    USER_AGENT,
    Settings,
    StorjRemote,
    format_mtime,
    open_remote,
    parse_mtime,
)
from tests.remotes.contract import MTIME, RemoteContract, listing, put, read
from tests.storj_network.fixture import StorjNetwork, require_libuplink, storj_network  # noqa: F401


def _fresh_bucket(network: StorjNetwork) -> str:
    require_libuplink()
    name = "r-" + secrets.token_hex(6)
    with uplink.Access.parse(network.access_grant) as access, access.open_project(user_agent=USER_AGENT) as p:
        p.ensure_bucket(name)
    return name


class TestStorjRemoteBucketRoot(RemoteContract):
    @pytest.fixture
    def remote(self, storj_network: StorjNetwork) -> Iterator[StorjRemote]:  # noqa: F811
        remote = StorjRemote(storj_network.access_grant, _fresh_bucket(storj_network), label="test storj")
        yield remote
        remote.close()


class TestStorjRemoteUnderPrefix(RemoteContract):
    """The same contract with the pair living under a key prefix, next to other data."""

    @pytest.fixture
    def remote(self, storj_network: StorjNetwork) -> Iterator[StorjRemote]:  # noqa: F811
        bucket = _fresh_bucket(storj_network)
        neighbour = StorjRemote(storj_network.access_grant, bucket, prefix="alice2/")
        put(neighbour, "not-mine.txt", b"other pair")  # "alice/" must never see "alice2/"
        neighbour.close()
        remote = StorjRemote(storj_network.access_grant, bucket, prefix="alice")
        yield remote
        remote.close()


@pytest.fixture
def bucket(storj_network: StorjNetwork) -> str:  # noqa: F811
    return _fresh_bucket(storj_network)


def test_metadata_is_rclone_compatible(storj_network: StorjNetwork, bucket: str) -> None:  # noqa: F811
    remote = StorjRemote(storj_network.access_grant, bucket, prefix="p/")
    try:
        entry = put(remote, "f.txt", b"data", mtime_ns=MTIME)
        info = remote.project.stat_object(bucket, "p/f.txt")
        assert info.custom[MTIME_KEY] == "2023-11-14T22:13:20.123456789Z"
        assert info.custom[SHA256_KEY] == entry.content_hash
        assert remote.stat("f.txt").mtime_ns == MTIME
    finally:
        remote.close()


def test_foreign_object_without_metadata(storj_network: StorjNetwork, bucket: str) -> None:  # noqa: F811
    remote = StorjRemote(storj_network.access_grant, bucket)
    try:
        remote.project.upload(bucket, "foreign.txt", io.BytesIO(b"from another tool"))
        remote.project.upload(bucket, "folder/", io.BytesIO(b""))  # a folder marker: not a file
        entries = listing(remote)
        assert set(entries) == {"foreign.txt"}
        entry = entries["foreign.txt"]
        assert entry.content_hash is None
        assert entry.mtime_ns > 0  # the upload time stands in
        assert remote.hash("foreign.txt") == hashlib.sha256(b"from another tool").hexdigest()
    finally:
        remote.close()


def test_trash_lives_under_the_prefix(storj_network: StorjNetwork, bucket: str) -> None:  # noqa: F811
    remote = StorjRemote(storj_network.access_grant, bucket, prefix="u/")
    try:
        put(remote, "t.txt", b"keep me")
        where = remote.trash("t.txt")
        assert where.startswith(".syncd-trash/")
        assert read(remote, where) == b"keep me"
        keys = [o.key for o in remote.project.list_objects(bucket)]
        assert keys == ["u/" + where]
    finally:
        remote.close()


def test_missing_bucket_is_fatal(storj_network: StorjNetwork) -> None:  # noqa: F811
    require_libuplink()
    with pytest.raises(FatalError, match="does not exist"):
        StorjRemote(storj_network.access_grant, "missing-" + secrets.token_hex(4))


def test_create_bucket_option(storj_network: StorjNetwork, tmp_path: Path) -> None:  # noqa: F811
    require_libuplink()
    grant_file = tmp_path / "grant"
    grant_file.write_text(storj_network.access_grant + "\n")
    name = "created-" + secrets.token_hex(4)
    settings = Settings(type="storj", access_grant_file=grant_file, bucket=name, prefix="x", create_bucket=True)
    assert settings.prefix == "x/"
    remote = open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))
    try:
        assert listing(remote) == {}
        assert remote.project.stat_bucket(name).name == name
    finally:
        remote.close()


def test_settings_validation() -> None:
    decode = msgspec.convert
    assert decode({"type": "storj", "bucket": "abc", "prefix": "a/b"}, Settings).prefix == "a/b/"
    for bad in ({"prefix": "/abs"}, {"prefix": "a/../b"}, {"bucket": "ab"}, {"dial_timeout": 0}, {"nope": 1}):
        with pytest.raises((msgspec.ValidationError, ValueError)):
            decode({"type": "storj", "bucket": "abc", **bad}, Settings)


def test_malformed_grant_is_fatal(tmp_path: Path) -> None:
    require_libuplink()
    with pytest.raises(FatalError, match="malformed access grant"):
        StorjRemote("garbage", "bucket", label="alice/default bucket")


def test_mtime_format_round_trips() -> None:
    for ns in (0, MTIME, 1_700_000_000_000_000_000, 1_700_000_000_100_000_000, 1):
        assert parse_mtime(format_mtime(ns)) == ns
    assert format_mtime(1_700_000_000_100_000_000) == "2023-11-14T22:13:20.1Z"
    assert parse_mtime("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert parse_mtime("not a time") is None


def test_prefix_not_ending_in_slash(storj_network: StorjNetwork, bucket: str) -> None:  # noqa: F811
    remote = StorjRemote(storj_network.access_grant, bucket, prefix="q/")
    try:
        for key in ("doc.txt", "docs/a.txt", "dog.txt", "other/doc.txt"):
            put(remote, key, b"x")
        assert set(listing(remote, "do")) == {"doc.txt", "docs/a.txt", "dog.txt"}
        assert set(listing(remote, "docs/a")) == {"docs/a.txt"}
        assert set(listing(remote, "nothing")) == set()
    finally:
        remote.close()
