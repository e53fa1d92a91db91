"""The contract every remote passes (like rclone's fstests and vdirsyncer's StorageTests).

Use it by subclassing :class:`RemoteContract` in a ``test_*.py`` module and defining a
``remote`` fixture that yields a fresh, empty remote::

    class TestDirBucket(RemoteContract):
        @pytest.fixture
        def remote(self, tmp_path): ...
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from datetime import datetime, timedelta

import pytest

from syncd.engine.moves import copy_then_trash
from syncd.errors import ChangedWhileReading, NotFound, PreconditionFailed
from syncd.models import Entry
from syncd.remotes.base import SHA256, Remote, SupportsMove, known_or_read_hash
from syncd.remotes.bucket_trash import SupportsTrashVersions

MTIME = 1_700_000_000_123_456_789  # 2023-11-14, with nanoseconds


def put(remote: Remote, path: str, data: bytes, mtime_ns: int = MTIME, **kw: object) -> Entry:
    return remote.write(
        path,
        io.BytesIO(data),
        size=len(data),
        mtime_ns=mtime_ns,
        content_hash=hashlib.sha256(data).hexdigest(),
        **kw,  # type: ignore[arg-type]
    )


def read(remote: Remote, path: str) -> bytes:
    with remote.open_read(path) as stream:
        return stream.read()


def listing(remote: Remote, prefix: str = "") -> dict[str, Entry]:
    return {e.path: e for e in remote.list(prefix)}


class RemoteContract:
    """Behaviour the engine relies on. Each test gets an empty remote."""

    def test_empty_remote_lists_nothing(self, remote: Remote) -> None:
        assert listing(remote) == {}

    def test_write_then_list_and_stat_agree(self, remote: Remote) -> None:
        written = put(remote, "a.txt", b"hello")
        listed = listing(remote)["a.txt"]
        stated = remote.stat("a.txt")
        assert written.etag == listed.etag == stated.etag
        assert listed.size == stated.size == 5
        assert written.etag

    def test_content_round_trips(self, remote: Remote) -> None:
        data = os.urandom(3000) + b"\x00\xff" * 10
        put(remote, "bin/data.bin", data)
        assert read(remote, "bin/data.bin") == data

    def test_empty_file(self, remote: Remote) -> None:
        put(remote, "empty", b"")
        assert listing(remote)["empty"].size == 0
        assert read(remote, "empty") == b""

    def test_mtime_is_kept_to_the_remote_precision(self, remote: Remote) -> None:
        put(remote, "m.txt", b"x", mtime_ns=MTIME)
        precision = remote.capabilities.mtime_precision_ns
        got = remote.stat("m.txt").mtime_ns
        assert abs(got - MTIME) < precision or got == MTIME // precision * precision

    def test_nested_keys_and_prefix_listing(self, remote: Remote) -> None:
        for key in ("top.txt", "d1/a.txt", "d1/d2/b.txt", "d10/c.txt"):
            put(remote, key, key.encode())
        assert set(listing(remote)) == {"top.txt", "d1/a.txt", "d1/d2/b.txt", "d10/c.txt"}
        assert set(listing(remote, "d1/")) == {"d1/a.txt", "d1/d2/b.txt"}

    def test_overwrite_changes_etag_and_content(self, remote: Remote) -> None:
        first = put(remote, "o.txt", b"one")
        second = put(remote, "o.txt", b"two!")
        assert first.etag != second.etag
        assert read(remote, "o.txt") == b"two!"
        assert remote.stat("o.txt").size == 4

    def test_missing_paths_raise_not_found(self, remote: Remote) -> None:
        with pytest.raises(NotFound):
            remote.stat("nope.txt")
        with pytest.raises(NotFound), remote.open_read("nope.txt"):
            pass
        with pytest.raises(NotFound):
            remote.delete("nope.txt")
        with pytest.raises(NotFound):
            copy_then_trash(remote, "nope.txt", "other.txt")
        if isinstance(remote, SupportsMove):
            with pytest.raises(NotFound):
                remote.move("nope.txt", "other.txt")

    def test_delete_removes(self, remote: Remote) -> None:
        put(remote, "d/x.txt", b"x")
        put(remote, "d/y.txt", b"y")
        remote.delete("d/x.txt")
        assert set(listing(remote)) == {"d/y.txt"}

    def test_if_match_guards_overwrite_and_delete(self, remote: Remote) -> None:
        if not remote.capabilities.conditional_writes:
            pytest.skip("remote does not declare conditional writes")
        old = put(remote, "c.txt", b"v1")
        new = put(remote, "c.txt", b"v2", if_match=old.etag)
        with pytest.raises(PreconditionFailed):
            put(remote, "c.txt", b"v3", if_match=old.etag)
        with pytest.raises(PreconditionFailed):
            remote.delete("c.txt", if_match=old.etag)
        assert read(remote, "c.txt") == b"v2"
        remote.delete("c.txt", if_match=new.etag)
        assert listing(remote) == {}

    def test_create_only_refuses_existing(self, remote: Remote) -> None:
        put(remote, "n.txt", b"first")
        with pytest.raises(PreconditionFailed):
            put(remote, "n.txt", b"second", create_only=True)
        assert read(remote, "n.txt") == b"first"
        put(remote, "fresh.txt", b"ok", create_only=True)
        assert read(remote, "fresh.txt") == b"ok"

    def test_short_data_is_not_committed(self, remote: Remote) -> None:
        put(remote, "s.txt", b"original")
        with pytest.raises(ChangedWhileReading):
            remote.write("s.txt", io.BytesIO(b"abc"), size=10, mtime_ns=MTIME)
        with pytest.raises(ChangedWhileReading):
            remote.write("new.txt", io.BytesIO(b"abc"), size=10, mtime_ns=MTIME)
        assert read(remote, "s.txt") == b"original"
        assert set(listing(remote)) == {"s.txt"}

    def test_wrong_hash_is_not_committed(self, remote: Remote) -> None:
        with pytest.raises(ChangedWhileReading):
            remote.write("h.txt", io.BytesIO(b"abc"), size=3, mtime_ns=MTIME, content_hash="0" * 64)
        assert listing(remote) == {}

    def test_hash_is_sha256_of_content(self, remote: Remote) -> None:
        data = b"hash me" * 1000
        put(remote, "h.bin", data)
        assert known_or_read_hash(remote, "h.bin") == hashlib.sha256(data).hexdigest()
        listed = listing(remote)["h.bin"]
        assert remote.capabilities.hashes <= {SHA256, "sha1", "md5"}, "hash names are lower-case"
        if SHA256 in remote.capabilities.hashes:
            assert listed.content_hash == hashlib.sha256(data).hexdigest()

    def test_move_renames(self, remote: Remote) -> None:
        if not isinstance(remote, SupportsMove):
            pytest.skip("no move: the engine copies then trashes (test_copy_then_trash_renames)")
        put(remote, "src/a.txt", b"moved")
        moved = remote.move("src/a.txt", "dst/b.txt")
        assert set(listing(remote)) == {"dst/b.txt"}
        assert read(remote, "dst/b.txt") == b"moved"
        assert moved.etag == remote.stat("dst/b.txt").etag

    def test_move_onto_existing_is_refused(self, remote: Remote) -> None:
        if not isinstance(remote, SupportsMove):
            pytest.skip("no move: the engine copies then trashes (test_copy_then_trash_renames)")
        put(remote, "a.txt", b"a")
        put(remote, "b.txt", b"b")
        with pytest.raises(PreconditionFailed):
            remote.move("a.txt", "b.txt")
        assert read(remote, "a.txt") == b"a" and read(remote, "b.txt") == b"b"

    def test_copy_then_trash_renames(self, remote: Remote) -> None:
        """The engine's move on a remote without one works on every remote: the new name
        holds the bytes and the time, the old name is gone from the listing (into the trash)."""
        old = put(remote, "src/a.txt", b"copied, then trashed")
        moved = copy_then_trash(remote, "src/a.txt", "dst/b.txt", if_match=old.etag)
        assert set(listing(remote)) == {"dst/b.txt"}
        assert read(remote, "dst/b.txt") == b"copied, then trashed"
        assert moved.etag == remote.stat("dst/b.txt").etag
        precision = remote.capabilities.mtime_precision_ns
        assert moved.mtime_ns // precision == MTIME // precision

    def test_copy_then_trash_refuses_a_changed_source_or_an_existing_target(self, remote: Remote) -> None:
        old = put(remote, "a.txt", b"a")
        put(remote, "b.txt", b"b")
        with pytest.raises(PreconditionFailed):
            copy_then_trash(remote, "a.txt", "b.txt")
        put(remote, "a.txt", b"a, changed", if_match=old.etag)
        with pytest.raises(PreconditionFailed):
            copy_then_trash(remote, "a.txt", "c.txt", if_match=old.etag)
        assert read(remote, "a.txt") == b"a, changed" and read(remote, "b.txt") == b"b"
        assert set(listing(remote)) == {"a.txt", "b.txt"}

    def test_trash_keeps_version_out_of_listing(self, remote: Remote) -> None:
        put(remote, "t/keep.txt", b"precious")
        where = remote.trash("t/keep.txt")
        assert where
        assert listing(remote) == {}
        assert remote.purge_trash(datetime.now() - timedelta(days=1)) == 0
        assert remote.purge_trash(datetime.now() + timedelta(days=1)) >= 1

    def test_keep_version_copies_into_trash_and_leaves_the_file(self, remote: Remote) -> None:
        old = put(remote, "k/v.txt", b"version one")
        assert remote.keep_version("k/v.txt", if_match=old.etag)
        assert read(remote, "k/v.txt") == b"version one"
        assert set(listing(remote)) == {"k/v.txt"}
        put(remote, "k/v.txt", b"version two", if_match=remote.stat("k/v.txt").etag)
        assert read(remote, "k/v.txt") == b"version two"
        if remote.capabilities.conditional_writes:
            with pytest.raises(PreconditionFailed):
                remote.keep_version("k/v.txt", if_match=old.etag)

    def test_trashed_versions_are_listed_and_read_back(self, remote: Remote) -> None:
        """What ``syncd restore`` needs of a remote whose trash syncd keeps itself."""
        if not isinstance(remote, SupportsTrashVersions):
            pytest.skip("this remote's trash is the server's own (no syncd trash to restore from)")
        old = put(remote, "r/doc.txt", b"version one")
        remote.keep_version("r/doc.txt", if_match=old.etag)
        put(remote, "r/doc.txt", b"version two!", if_match=remote.stat("r/doc.txt").etag)
        remote.trash("r/doc.txt")
        put(remote, "r/other.txt", b"x")
        remote.trash("r/other.txt")
        versions = remote.trashed_versions("r/doc.txt")
        assert [v.size for v in versions] == [11, 12]  # oldest first
        assert {v.path for v in versions} == {"r/doc.txt"}
        kept = versions[0].key
        assert versions[0].trashed_at <= versions[1].trashed_at
        assert {v.path for v in remote.trashed_versions()} == {"r/doc.txt", "r/other.txt"}
        with remote.open_trashed(kept) as stream:
            assert stream.read() == b"version one"
        entry = remote.stat_trashed(kept)
        assert entry.size == 11 and entry.mtime_ns // 1_000_000_000 == MTIME // 1_000_000_000
        with pytest.raises(NotFound):
            remote.stat_trashed(kept.replace("doc.txt", "nothing.txt"))
        assert listing(remote) == {}

    def test_unusual_names_round_trip(self, remote: Remote) -> None:
        names = [
            "with space.txt",
            "percent%20and#hash?.txt",
            "ümlaut/日本語.txt",
            "emoji 🎉.txt",
            unicodedata.normalize("NFD", "café-nfd.txt"),
            "semi;colon & amp+plus=eq.txt",
        ]
        for name in names:
            put(remote, name, name.encode())
        got = listing(remote)
        for name in names:
            assert name in got, f"{name!r} missing from {sorted(got)}"
            assert read(remote, name) == name.encode()

    def test_large_file_streams(self, remote: Remote) -> None:
        size = 5 * (1 << 20) + 123
        block = os.urandom(1 << 16)
        data = (block * (size // len(block) + 1))[:size]
        put(remote, "big.bin", data)
        assert remote.stat("big.bin").size == size
        assert known_or_read_hash(remote, "big.bin") == hashlib.sha256(data).hexdigest()
