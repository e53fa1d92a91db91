"""Listing both sides into snapshots, and hashing only what the planner needs (I/O)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from syncd.errors import ItemError, SyncdError, UnsafePath
from syncd.models import Base, Entry, Side
from syncd.paths import check_key
from syncd.remotes.base import Remote


@dataclass(slots=True)
class Snapshot:
    """One side's listing: safe, not excluded entries by path, and the names it skipped."""

    side: Side
    entries: dict[str, Entry] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def list_side(remote: Remote, side: Side, excluded: Callable[[str], bool]) -> Snapshot:
    """List ``remote`` completely. Unsafe names are kept aside with the reason (they are
    reported, never written anywhere). :raises SyncdError: from the remote, unchanged."""
    snap = Snapshot(side)
    for entry in remote.list():
        path = entry.path
        if excluded(path):
            continue
        try:
            check_key(path)
        except UnsafePath as exc:
            printable = path.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            snap.skipped[printable] = f"unsafe name on {side.value}: {exc.message}"
            continue
        snap.entries[path] = entry
    return snap


def stat_paths(remote: Remote, side: Side, excluded: Callable[[str], bool], hints: Iterable[str]) -> Snapshot:
    """A partial snapshot of just the hinted paths (a watcher's hints): each is a file, or a
    folder whose files are listed by prefix. A hint that is neither is simply absent."""
    snap = Snapshot(side)
    for hint in sorted(set(hints)):
        try:
            entries: Iterable[Entry] = [remote.stat(hint)]
        except ItemError:
            entries = remote.list(hint.rstrip("/") + "/")
        for entry in entries:
            if excluded(entry.path):
                continue
            try:
                check_key(entry.path)
            except UnsafePath as exc:
                snap.skipped[entry.path] = f"unsafe name on {side.value}: {exc.message}"
                continue
            snap.entries[entry.path] = entry
    return snap


def within(path: str, hints: Iterable[str]) -> bool:
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hints)


def paths_needing_hash(snap: Snapshot, other: Snapshot, bases: Mapping[str, Base]) -> list[str]:
    """Paths of ``snap`` whose content hash the planner needs and the listing did not give.

    Unchanged files are never hashed. A changed file is hashed to tell an mtime-only change
    from an edit; a new file only when the other side has the same path (identical content
    is no conflict) or a vanished file of the same size could make it a rename.
    """
    gone_sizes = {b.size for p, b in bases.items() if p not in snap.entries}
    needed = []
    for path, entry in snap.entries.items():
        if entry.content_hash is not None:
            continue
        base = bases.get(path)
        if base is not None:
            if entry.etag != (base.a_etag if snap.side is Side.A else base.b_etag):
                needed.append(path)
        elif path in other.entries or entry.size in gone_sizes:
            needed.append(path)
    return needed


def fill_hashes(
    remote: Remote,
    snap: Snapshot,
    paths: Iterable[str],
    cache: Mapping[str, tuple[str, str]],
    workers: int,
) -> list[tuple[str, str, str]]:
    """Add content hashes to ``snap`` for ``paths``, from ``cache`` (path -> (etag, hash)) when
    the etag still matches, else by reading. A file that cannot be read is left without a
    hash (the planner then treats it as changed). :returns: new (path, etag, hash) rows."""
    todo: list[str] = []
    for path in paths:
        cached = cache.get(path)
        entry = snap.entries[path]
        if cached is not None and cached[0] == entry.etag:
            snap.entries[path] = dataclasses.replace(entry, content_hash=cached[1])
        else:
            todo.append(path)

    def one(path: str) -> tuple[str, str | None]:
        try:
            return path, remote.hash(path)
        except (ItemError, SyncdError):
            return path, None

    fresh: list[tuple[str, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, digest in pool.map(one, todo):
            if digest is not None:
                entry = snap.entries[path]
                snap.entries[path] = dataclasses.replace(entry, content_hash=digest)
                fresh.append((path, entry.etag, digest))
    return fresh
