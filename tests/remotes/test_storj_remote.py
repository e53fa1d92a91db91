"""The contract suite, and Storj specifics, against a real local Storj network."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import msgspec
import pytest

from syncd.errors import FatalError, PreconditionFailed, TransientError
from syncd.remotes import _uplink as uplink
from syncd.remotes.base import known_or_read_hash
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
from tests.storj_network.relay import TcpRelay


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
        assert known_or_read_hash(remote, "foreign.txt") == hashlib.sha256(b"from another tool").hexdigest()
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


def _listing_fails(remote: StorjRemote, match: str) -> None:
    """``remote``'s listing raises FatalError matching ``match``; the remote is closed."""
    try:
        with pytest.raises(FatalError, match=match):
            listing(remote)
    finally:
        remote.close()


def test_missing_bucket_is_fatal(storj_network: StorjNetwork) -> None:  # noqa: F811
    """Reported by the first listing (opening costs no satellite round trip) and by an
    upload, never as an empty bucket."""
    require_libuplink()
    remote = StorjRemote(storj_network.access_grant, "missing-" + secrets.token_hex(4))
    with pytest.raises(FatalError, match="does not exist"):
        put(remote, "a.txt", b"x")
    _listing_fails(remote, "does not exist")


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
    bad_ones: list[dict[str, object]] = [
        {"prefix": "/abs"},
        {"prefix": "a/../b"},
        {"bucket": "ab"},
        {"dial_timeout": 0},
        {"timeout": 0},
        {"timeout": -1},
        {"min_speed": 0},
        {"nope": 1},
    ]
    for bad in bad_ones:
        with pytest.raises((msgspec.ValidationError, ValueError)):
            decode({"type": "storj", "bucket": "abc", **bad}, Settings)


def test_every_call_is_bounded_by_default(storj_network: StorjNetwork, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    """A remote opened from a config has deadlines (60 s, and 32 KiB/s for the bytes a call
    moves) unless its libuplink cannot have them (the wheel's stock uplink-c)."""
    settings = msgspec.convert({"type": "storj", "bucket": bucket, "access_grant_env": "SYNCD_TEST_GRANT"}, Settings)
    assert (settings.timeout, settings.min_speed) == (60.0, 32)
    grant_file = tmp_path / "grant"
    grant_file.write_text(storj_network.access_grant)
    settings = Settings(type="storj", access_grant_file=grant_file, bucket=bucket)
    remote = open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))
    try:
        assert remote.project.bounded == (uplink.load_library().project_set_limits is not None)
    finally:
        remote.close()


def test_a_silent_satellite_is_a_transient_error(storj_network: StorjNetwork, bucket: str) -> None:  # noqa: F811
    """A satellite that keeps its connections open and never answers: the listing that
    starts every run ends at its deadline with a TransientError (retry), never a hang or a
    fatal error."""
    node_id, _, host_port = storj_network.satellite_addr.partition("@")
    host, _, port = host_port.rpartition(":")
    with TcpRelay((host, int(port))) as relay:
        with uplink.Access.request(f"{node_id}@127.0.0.1:{relay.port}", storj_network.api_key, "silent") as access:
            grant = access.serialize()
        remote = StorjRemote(grant, bucket, timeout=1.0, label="alice/default bucket")
        try:
            if not remote.project.bounded:
                pytest.skip(f"{uplink.library_path()} has no call deadlines (not syncd's libuplink build)")
            relay.stall()
            with pytest.raises(TransientError, match="alice/default bucket: Storj network not answering: list"):
                listing(remote)
        finally:
            remote.close()


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


# --------------------------------------------------------------------------- conditional create


class _CompetingSource(io.RawIOBase):
    """Upload data whose reading lets another client create the same key first."""

    def __init__(self, data: bytes, compete: Callable[[], object]) -> None:
        super().__init__()
        self._data = io.BytesIO(data)
        self._compete: Callable[[], object] | None = compete

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._compete is not None:
            compete, self._compete = self._compete, None
            compete()
        return self._data.readinto(buffer)


def test_create_only_is_enforced_by_the_satellite(
    storj_network: StorjNetwork,  # noqa: F811
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our libuplink asks the satellite for If-None-Match: the key taken mid-upload is
    refused at commit, with no stat (which would leave a window open) on the way."""
    remote = StorjRemote(storj_network.access_grant, bucket)
    other = StorjRemote(storj_network.access_grant, bucket)
    try:
        if not remote.project.conditional_create and uplink.library_path() != uplink._BUILT_LIBRARY:
            # uplink-c as Storj builds it (test_uplink_c_abi.py) has no such call: there the
            # remote emulates create_only with a stat, which the contract suite covers.
            pytest.skip(f"{uplink.library_path()} is not our libuplink build: no syncd_upload_object_if_absent")
        assert remote.project.conditional_create
        data = b"mine" * 10_000

        def no_stat(path: str) -> NoReturn:
            raise AssertionError(f"stat({path!r}): create_only must not be emulated here")

        monkeypatch.setattr(remote, "stat", no_stat)
        with pytest.raises(PreconditionFailed):
            remote.write(
                "race.txt",
                io.BufferedReader(_CompetingSource(data, lambda: put(other, "race.txt", b"theirs"))),
                size=len(data),
                mtime_ns=MTIME,
                create_only=True,
            )
        assert read(other, "race.txt") == b"theirs"
        # and a free key is created as usual, still without a stat
        remote.write("free.txt", io.BytesIO(data), size=len(data), mtime_ns=MTIME, create_only=True)
        assert read(other, "free.txt") == data
    finally:
        remote.close()
        other.close()


# --------------------------------------------------------------------------- credentials


def test_read_only_grant_lists_and_reads_but_refuses_writes(
    storj_network: StorjNetwork,  # noqa: F811
    bucket: str,
) -> None:
    owner = StorjRemote(storj_network.access_grant, bucket)
    put(owner, "there.txt", b"readable")
    reader = StorjRemote(storj_network.read_only_grant, bucket, label="alice/default bucket")
    try:
        assert set(listing(reader)) == {"there.txt"}
        assert read(reader, "there.txt") == b"readable"
        with pytest.raises(FatalError, match=r"alice/default bucket: permission denied for 'new.txt'.*read-only"):
            put(reader, "new.txt", b"x")
        with pytest.raises(FatalError, match="permission denied"):
            reader.delete("there.txt")
        assert set(listing(owner)) == {"there.txt"}
    finally:
        reader.close()
        owner.close()


def test_grant_of_another_project_does_not_see_the_bucket(
    storj_network: StorjNetwork,  # noqa: F811
    bucket: str,
) -> None:
    _listing_fails(StorjRemote(storj_network.other_project_grant, bucket), f"bucket '{bucket}' does not exist")


def test_grant_for_another_satellite_is_fatal_not_retried(
    storj_network: StorjNetwork,  # noqa: F811
    bucket: str,
) -> None:
    remote = StorjRemote(storj_network.foreign_satellite_grant, bucket, dial_timeout=10)
    _listing_fails(remote, r"server at 127\.0\.0\.1:\d+ is not the satellite the access grant")


def _api_key_settings(network: StorjNetwork, root: Path, bucket: str, prefix: str = "") -> Settings:
    (root / "api-key").write_text(network.api_key + "\n")
    (root / "passphrase").write_text("correct horse battery staple\n")
    return Settings(
        type="storj",
        bucket=bucket,
        satellite_address=network.satellite_addr,
        api_key_file=root / "api-key",
        passphrase_file=root / "passphrase",
        prefix=prefix,
    )


def test_api_key_satellite_and_passphrase(storj_network: StorjNetwork, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    settings = _api_key_settings(storj_network, tmp_path, bucket, prefix="k/")
    remote = open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))
    try:
        put(remote, "by-key.txt", b"derived grant")
        assert read(remote, "by-key.txt") == b"derived grant"
    finally:
        remote.close()
    # The same key and passphrase derive the same encryption: a second opening reads it.
    again = open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))
    try:
        assert set(listing(again)) == {"by-key.txt"}
    finally:
        again.close()


def test_refused_api_key_is_fatal(storj_network: StorjNetwork, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    settings = _api_key_settings(storj_network, tmp_path, bucket)
    # well-formed, but made for no project of this satellite
    unknown = "13YqeGFpvtzbUp1QAfpvy2E5ZqLUFFNhEkv7153UDGDVnSmTuYYa7tKUnENGgvFXCCSFP7zNhKw6fsuQmWG5JGdQJbXVaVYFhoM2LcA"
    (tmp_path / "api-key").write_text(unknown + "\n")
    with pytest.raises(FatalError, match="alice/default bucket: the satellite refused the API key"):
        open_remote(settings, OpenContext(label="alice/default bucket", state_dir=tmp_path))


def test_credential_settings_validation() -> None:
    base = {"type": "storj", "bucket": "abc"}
    sat = "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S@us1.storj.io:7777"
    whole = {"satellite_address": sat, "api_key_env": "K", "passphrase_env": "P"}
    assert msgspec.convert({**base, **whole}, Settings).satellite_address == sat
    bad_ones: list[tuple[dict[str, object], str]] = [
        ({"satellite_address": sat, "api_key_env": "K"}, "missing passphrase_file or passphrase_env"),
        ({**whole, "access_grant_env": "G"}, "not both"),
        ({**whole, "satellite_address": "us1.storj.io:7777"}, "node id"),
    ]
    for bad, message in bad_ones:
        with pytest.raises((msgspec.ValidationError, ValueError), match=message):
            msgspec.convert({**base, **bad}, Settings)
