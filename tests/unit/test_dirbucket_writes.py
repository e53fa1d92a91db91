"""The ``dir`` bucket's write path under failures (syncd.remotes.dirbucket): whichever os call
fails, the object reads back whole afterwards, the old version or the new one (its sidecar and
its data file agree), never a sidecar pointing at nothing; and the next write succeeds."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import NotFound, SyncdError
from syncd.remotes.dirbucket import DirBucket

KEY = "docs/report.txt"
MTIME_NS = 1_700_000_000 * 10**9
OLD, NEW, NEXT = b"the old version", b"the new version, longer", b"the next version"


def _write(bucket: DirBucket, data: bytes) -> None:
    bucket.write(KEY, io.BytesIO(data), size=len(data), mtime_ns=MTIME_NS)


def _read_whole(bucket: DirBucket) -> bytes:
    """The object's bytes, checked against what its sidecar says of them."""
    entry = bucket.stat(KEY)
    with bucket.open_read(KEY) as stream:
        data = stream.read()
    assert len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.content_hash
    return data


def _failing(real: Callable[..., Any], fails: Callable[[str], bool], *, after: bool = False) -> Callable[..., Any]:
    """``real`` (an os call whose first argument is a path) raising EIO where ``fails(name)``:
    before it acts, or with ``after`` once it has acted (an error reported late)."""

    def call(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not fails(Path(path).name):
            return real(path, *args, **kwargs)
        if after:
            real(path, *args, **kwargs)
        raise OSError(errno.EIO, "injected failure")

    return call


def _old_data(bucket: DirBucket) -> Callable[[str], bool]:
    etag = bucket.stat(KEY).etag
    return lambda name: name.endswith(f".{etag}")


def _sidecar(name: str) -> bool:
    return ".json.tmp-" in name


@pytest.mark.parametrize(
    ("call", "target", "after", "expect", "reported"),
    [
        # the put committed, then the old bytes could not be removed: a success
        ("unlink", _old_data, False, NEW, False),
        # the sidecar's rename failed: nothing committed, the failure is reported
        ("replace", lambda _b: _sidecar, False, OLD, True),
        # the rename happened, then an error came: it may be reported, the new version stays
        ("replace", lambda _b: _sidecar, True, NEW, None),
    ],
    ids=["old-data-unlink-fails", "sidecar-rename-fails", "error-after-the-rename"],
)
def test_a_failed_step_of_a_put_leaves_the_old_or_the_new_object_whole(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
    target: Callable[[DirBucket], Callable[[str], bool]],
    after: bool,
    expect: bytes,
    reported: bool | None,
) -> None:
    bucket = DirBucket(tmp_path / "bucket")
    _write(bucket, OLD)
    with monkeypatch.context() as patch:
        patch.setattr(os, call, _failing(getattr(os, call), target(bucket), after=after))
        try:
            _write(bucket, NEW)
        except SyncdError:
            assert reported is not False, "a put that committed must not report a failure after it"
        else:
            assert reported is not True
    assert _read_whole(bucket) == expect
    assert [e.path for e in bucket.list()] == [KEY]
    _write(bucket, NEXT)
    assert _read_whole(bucket) == NEXT


def test_a_delete_whose_bytes_cannot_be_removed_is_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar's removal is the delete; the bytes left behind are garbage nothing reads."""
    bucket = DirBucket(tmp_path / "bucket")
    _write(bucket, OLD)
    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", _failing(os.unlink, _old_data(bucket)))
        bucket.delete(KEY)
    with pytest.raises(NotFound):
        bucket.stat(KEY)
    _write(bucket, NEXT)
    assert _read_whole(bucket) == NEXT
