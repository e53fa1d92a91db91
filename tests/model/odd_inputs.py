"""Odd inputs for the model test: extreme times, names a listing may hold, lying metadata.

Three kinds of input that once stopped a pair or left it wrong (issue 11), kept apart from
the state machine so its rules read as "someone does X" and the data lives here:

* **times** a file system or a bucket can report that the index's signed 64-bit nanoseconds
  cannot hold exactly (past 2262-04-11, before 1677-09-21), and the small ones that are easy
  to get wrong (0, -1 ns: the sign of a fraction before 1970);
* **names** that are legal in a local tree and as a bucket key: some syncd must sync (a bidi
  override, a C1 control, spaces at either end, U+2028), some it must refuse (C0 controls,
  DEL, backslash, bytes that are not UTF-8), and bucket keys that would leave the root
  (``..``, absolute, NUL). Which of them syncd refuses is :func:`syncd.paths.check_key`'s rule;
  the model asks it (:func:`is_refused`) and checks what follows from the answer;
* **claims**: a foreign writer that puts an object whose sidecar's ``sha256`` is not the hash
  of its bytes (:func:`rewrite_claim`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import strategies as st

from syncd.paths import is_safe_key

# What the index holds: signed 64-bit nanoseconds. Written here rather than imported, so the
# oracle does not share a bug with the code it checks.
INDEX_NS_MIN = -(1 << 63)
INDEX_NS_MAX = (1 << 63) - 1

SECOND = 10**9
YEAR_2300 = 10_413_792_000 * SECOND  # 2300-01-01: past what the index holds
YEAR_9999 = 253_402_214_400 * SECOND  # 9999-12-31, as an rclone:mtime may say
YEAR_1900 = -2_208_988_800 * SECOND

# Times a local file can be given (the file system keeps them or not: see ``FsTimes``).
LOCAL_TIMES = st.sampled_from(
    (0, -1, -SECOND - 1, YEAR_1900, INDEX_NS_MAX, INDEX_NS_MAX + 1, YEAR_2300, YEAR_9999, INDEX_NS_MIN - 1)
)
# Times a bucket object's metadata can say: any integer, absurd ones included.
BUCKET_TIMES = st.sampled_from((0, -1, -SECOND - 1, YEAR_1900, YEAR_2300, YEAR_9999, 10**30, -(10**30)))

# Legal on both sides and accepted by syncd: these must sync like "a.txt".
SYNCED_ODD_NAMES = (
    "\u202egnp.txt",  # RIGHT-TO-LEFT OVERRIDE: shows as "txt.png"
    "trail ",
    " lead",
    "\x9b2J",  # C1 CSI: an escape sequence on some terminals, yet not a C0 control
    "\u2028ls",  # LINE SEPARATOR
)
# Legal in a local tree (and as a bucket key) but refused by syncd today (C0 controls, DEL,
# backslash, not UTF-8). Whatever check_key decides for them, the model follows its answer.
CONTROL_NAMES = ("new\nline", "\ttab", "\x1b[2J", "\x7f", "back\\slash", "\u00e9\r", "bad\udcff")
# Bucket keys that would land outside the files root, or are no path at all: always refused.
# ``ABSOLUTE`` stands for an absolute key inside the test's own folder (see the machine).
ABSOLUTE = "<absolute>"
ESCAPING_KEYS = ("../escaped", "d/../../up", "nul\x00", "./dot", "d//x", "slash/", ABSOLUTE)

FILE_NAMES_ODD = SYNCED_ODD_NAMES + CONTROL_NAMES
KEYS_ODD = SYNCED_ODD_NAMES + CONTROL_NAMES + ESCAPING_KEYS


def is_refused(name: str) -> bool:
    """Whether syncd refuses to sync ``name`` (it is then skipped and reported, never written)."""
    return not is_safe_key(name)


def reported_forms(name: str) -> set[str]:
    """The forms under which a skipped name may be reported: exactly as it is, or with each
    byte that is not UTF-8 (a lone surrogate U+DC80-U+DCFF in Python) as ``\\xNN`` and every
    other character exact."""
    escaped = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in name)
    return {name, escaped}


def index_time(ns: int) -> int:
    """``ns`` as the index can hold it: exact inside the signed 64-bit range, else its edge."""
    return max(INDEX_NS_MIN, min(INDEX_NS_MAX, ns))


class FsTimes:
    """Which mtimes the file system under ``folder`` keeps exactly (tmpfs keeps any 64-bit
    second; ext4 stops at 1901 and 2446). Probed once per value, with a scratch file."""

    def __init__(self, folder: Path) -> None:
        self.probe = folder / "fs-times-probe"
        self.known: dict[int, bool] = {}

    def keeps(self, ns: int) -> bool:
        if ns not in self.known:
            self.probe.touch()
            try:
                os.utime(self.probe, ns=(ns, ns))
                self.known[ns] = self.probe.stat().st_mtime_ns == ns
            except (OverflowError, OSError):
                self.known[ns] = False
            finally:
                self.probe.unlink()
        return self.known[ns]


def rewrite_claim(bucket_root: Path, key: str, claimed_sha256: str) -> None:
    """Make the ``dir`` bucket's sidecar of ``key`` claim ``claimed_sha256``, as a foreign
    writer whose metadata lies would: the bytes and the etag stay as they are.

    The sidecar is found by its ``key`` field (each object's ``<id>.json`` in a shard folder,
    see ``syncd/remotes/dirbucket.py``) rather than by recomputing the id: the test then does
    not depend on how the bucket names its files. Replaced atomically, as the bucket does.

    :raises LookupError: no sidecar holds ``key`` (the bucket's layout changed: this helper
    must follow it, or the lies it plants would silently stop being lies).
    """
    for sidecar in (bucket_root / "objects").glob("*/*.json"):
        meta = json.loads(sidecar.read_bytes())
        if meta.get("key") == key:
            meta["sha256"] = claimed_sha256
            tmp = sidecar.with_name(sidecar.name + ".model-tmp")
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, sidecar)
            return
    raise LookupError(f"no sidecar in {bucket_root} holds the key {key!r}")
