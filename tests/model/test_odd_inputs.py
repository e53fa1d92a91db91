"""The state machine's odd-input pools say what they are meant to say.

The machine asks :func:`syncd.paths.check_key` which names syncd refuses and checks what
follows from the answer; these tests pin the answers the pools rely on, so a change of that
rule shows up here by name instead of silently narrowing what the machine exercises.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from syncd.remotes.dirbucket import DirBucket
from tests.model.odd_inputs import (
    ABSOLUTE,
    CONTROL_NAMES,
    ESCAPING_KEYS,
    INDEX_NS_MAX,
    INDEX_NS_MIN,
    SYNCED_ODD_NAMES,
    YEAR_2300,
    index_time,
    is_refused,
    rewrite_claim,
)


@pytest.mark.parametrize("key", [k for k in ESCAPING_KEYS if k != ABSOLUTE] + ["/etc/passwd", "C:/x"], ids=ascii)
def test_keys_that_would_leave_the_root_are_refused(key: str) -> None:
    """DESIGN 19: such a key is skipped and reported, never written. (The machine's absolute
    key is made in its own temp folder, in place of ``ABSOLUTE``.)"""
    assert is_refused(key)


@pytest.mark.parametrize("name", SYNCED_ODD_NAMES, ids=ascii)
def test_odd_but_harmless_names_are_synced(name: str) -> None:
    """Bidi overrides, C1 controls, edge spaces: legal on both sides, so syncd syncs them
    (how they are shown to people is the display's business, not the data's)."""
    assert not is_refused(name)


def test_control_names_are_refused_today() -> None:
    """C0 controls, DEL, backslash and bytes that are not UTF-8 are refused by check_key
    (its docstring says so). The machine follows whatever it decides; this records today's
    rule, so that changing it is a decision seen here."""
    assert [name for name in CONTROL_NAMES if not is_refused(name)] == []


def test_index_time_clamps_only_outside_64_bits() -> None:
    assert [index_time(t) for t in (0, -1, INDEX_NS_MAX, INDEX_NS_MIN)] == [0, -1, INDEX_NS_MAX, INDEX_NS_MIN]
    assert index_time(YEAR_2300) == INDEX_NS_MAX
    assert index_time(-(10**30)) == INDEX_NS_MIN


def test_rewrite_claim_changes_only_the_claim(tmp_path: Path) -> None:
    """The planted lie is what the bucket's listing reports; bytes, size and etag stay."""
    bucket = DirBucket(tmp_path / "bucket")
    written = bucket.write("a", io.BytesIO(b"xy"), size=2, mtime_ns=5)
    rewrite_claim(bucket.root, "a", "0" * 64)
    (listed,) = bucket.list()
    assert listed == written._replace(content_hash="0" * 64)
    with bucket.open_read("a") as stream:
        assert stream.read() == b"xy"
    with pytest.raises(LookupError):
        rewrite_claim(bucket.root, "missing", "0" * 64)
