"""Conflict policies and conflict-copy names. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime

from syncd.models import ConflictPolicy, Entry, Side


def conflict_copy_name(path: str, when: datetime, taken: Container[str] = ()) -> str:
    """Nextcloud's form: ``dir/name (conflicted copy 2026-11-25 013000).ext``.

    The tag goes before the last extension; hidden files (``.bashrc``) and names with no
    extension get it at the end. If the name is taken, `` 2``, `` 3``... is added inside the
    parentheses so no existing path is ever reused.
    """
    folder, _, name = path.rpartition("/")
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    stamp = f"{when:%Y-%m-%d %H%M%S}"
    prefix = f"{folder}/" if folder else ""
    candidate = f"{prefix}{stem} (conflicted copy {stamp}){ext}"
    counter = 2
    while candidate in taken:
        candidate = f"{prefix}{stem} (conflicted copy {stamp} {counter}){ext}"
        counter += 1
    return candidate


def conflict_winner(policy: ConflictPolicy, a: Entry, b: Entry) -> Side:
    """The side whose version keeps the path.

    ``keep-both`` keeps the files side's version under the name (as Nextcloud's client keeps
    the server's) and the bucket's version as a conflict copy. ``newer`` compares the two
    files' own modification times: the only rule that compares times across sides, and it
    only chooses which version keeps the name — the other one is still kept (in the trash).
    """
    if policy is ConflictPolicy.PREFER_BUCKET:
        return Side.B
    if policy is ConflictPolicy.NEWER:
        return Side.B if b.mtime_ns > a.mtime_ns else Side.A
    return Side.A
