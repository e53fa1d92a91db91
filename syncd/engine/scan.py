"""Listing both sides into snapshots, and hashing only what the planner needs (I/O)."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from syncd.errors import ItemError, SyncdError, UnsafePath
from syncd.models import Base, Entry, Side
from syncd.paths import check_key
from syncd.remotes.base import (
    Remote,
    SupportsListingNotes,
    SupportsTreeListing,
    known_or_read_hash,
    local_root,
    sha256_stream,
)


@dataclass(slots=True)
class Snapshot:
    """One side's listing: safe, not excluded entries by path, and the names it skipped."""

    side: Side
    entries: dict[str, Entry] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    folder_etags: dict[str, str] | None = None  # from a tree listing: keep if the run ends clean
    unlisted: dict[str, str] = field(default_factory=dict)  # folders it could not read -> why


def list_side(remote: Remote, side: Side, excluded: Callable[[str], bool], bases: Mapping[str, Base]) -> Snapshot:
    """List ``remote`` completely. Unsafe names are kept aside with the reason (they are
    reported, never written anywhere); the files of a folder the remote could not read are
    taken from the index as they were (see :class:`SupportsListingNotes`). ``bases`` holds no
    excluded path (their names are taken as checked: see :func:`_snapshot`).

    :raises SyncdError: from the remote, unchanged.
    """
    snap = _snapshot(remote.list(), side, excluded, known=bases)
    _take_notes(remote, snap, bases)
    return snap


def _take_notes(remote: Remote, snap: Snapshot, bases: Mapping[str, Base]) -> None:
    """Fold what the last listing of ``remote`` noted into ``snap``."""
    if not isinstance(remote, SupportsListingNotes):
        return
    notes = remote.listing_notes
    for path, why in notes.skipped.items():
        snap.skipped[printable(path)] = f"not synced on {snap.side.value}: {why}"
    if notes.unlisted:
        snap.unlisted.update(notes.unlisted)
        unread = set(notes.unlisted)
        for path, base in bases.items():
            if path not in snap.entries and _under_any(path, unread):
                snap.entries[path] = base_entry(base, snap.side)


def list_side_by_tree(
    remote: SupportsTreeListing,
    side: Side,
    excluded: Callable[[str], bool],
    known_folder_etags: Mapping[str, str],
    bases: Mapping[str, Base],
) -> tuple[Snapshot, dict[str, str]]:
    """A complete snapshot from a remote whose folder etags cover their subtree: folders
    whose etag is unchanged are not listed, their files are taken from the index as they
    were at the last sync. :returns: the snapshot and the folder etags to keep if the run
    ends clean."""
    tree = remote.list_changed(known_folder_etags)
    snap = _snapshot(tree.entries, side, excluded, known=bases)
    unchanged = set(tree.unchanged)
    if unchanged:
        for path, base in bases.items():
            if path not in snap.entries and _under_any(path, unchanged):
                snap.entries[path] = base_entry(base, side)
    return snap, tree.folder_etags


def base_entry(base: Base, side: Side) -> Entry:
    """The entry a side had when ``base`` was recorded."""
    if side is Side.A:
        return Entry(base.path, base.size, base.a_mtime_ns, base.a_etag, base.content_hash, base.a_inode)
    return Entry(base.path, base.size, base.b_mtime_ns, base.b_etag, base.content_hash, None, base.b_remote_id)


def _under_any(path: str, folders: set[str]) -> bool:
    if "" in folders:
        return True
    parent = path
    while "/" in parent:
        parent = parent.rpartition("/")[0]
        if parent in folders:
            return True
    return False


def _snapshot(
    entries: Iterable[Entry],
    side: Side,
    excluded: Callable[[str], bool],
    into: Snapshot | None = None,
    known: Container[str] = (),
) -> Snapshot:
    """``entries`` that are safe and not excluded, into a snapshot. A path in ``known`` (the
    bases, already filtered by the excludes; a base's name was checked before it was first
    synced) is taken as it is: an unchanged tree costs no name check per file."""
    snap = into if into is not None else Snapshot(side)
    taken = snap.entries
    for entry in entries:
        path = entry.path
        if path in known:
            taken[path] = entry
            continue
        if excluded(path):
            continue
        try:
            check_key(path)
        except UnsafePath as exc:
            snap.skipped[printable(path)] = f"unsafe name on {side.value}: {exc.message}"
            continue
        taken[path] = entry
    return snap


def printable(path: str) -> str:
    """``path`` as a key of the skipped names, exact but for bytes that are not UTF-8 (kept by
    Python as lone surrogates, which no text column or JSON string holds): those become ``\\xNN``.
    Control characters stay: display escapes them (:mod:`syncd.display`), ``--json`` keeps them."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def stat_paths(
    remote: Remote, side: Side, excluded: Callable[[str], bool], hints: Iterable[str], bases: Mapping[str, Base]
) -> Snapshot:
    """A partial snapshot of just the hinted paths (a watcher's hints). A hint that is a file
    on this side costs one stat; a hint that is not a file here is listed as a folder only if
    the index knows files below it, or the remote has it as a folder (a local tree)."""
    snap = Snapshot(side)
    known_folders = {p.rpartition("/")[0] for p in bases}
    for hint in sorted(set(hints)):
        try:
            _snapshot([remote.stat(hint)], side, excluded, into=snap, known=bases)
        except ItemError:
            if _may_be_folder(remote, hint, known_folders):
                _snapshot(remote.list(hint.rstrip("/") + "/"), side, excluded, into=snap, known=bases)
                _take_notes(remote, snap, {p: b for p, b in bases.items() if p.startswith(hint.rstrip("/") + "/")})
    return snap


def _may_be_folder(remote: Remote, hint: str, known_folders: set[str]) -> bool:
    if hint in known_folders or any(f.startswith(hint + "/") for f in known_folders):
        return True
    root = local_root(remote)
    return remote.capabilities.empty_dirs or (root is not None and (root / hint).is_dir())


def paths_needing_hash(
    snap: Snapshot, other: Snapshot, bases: Mapping[str, Base], *, reading_is_cheap: bool = True
) -> list[str]:
    """Paths of ``snap`` whose content hash the planner needs and the listing did not give.

    Unchanged files are never hashed. Where reading is cheap (a local tree), a changed file is
    hashed to tell an mtime-only change from an edit, and a new file when the other side has
    the same path (identical content is no conflict) or a vanished file of the same size could
    make it a rename. Where reading means a download, only files changed on both sides are
    hashed (to spare a conflict copy) besides rename candidates; a copy establishes the others'.
    """
    side_a = snap.side is Side.A
    gone_sizes = {bases[p].size for p in bases.keys() - snap.entries.keys()}  # set difference: no loop over the index
    needed = []
    for path, entry in snap.entries.items():
        if entry.content_hash is not None:
            continue
        base = bases.get(path)
        if base is not None and entry.etag == (base.a_etag if side_a else base.b_etag):
            continue  # unchanged
        if base is None and path not in other.entries:
            if entry.size in gone_sizes:  # maybe a rename: cheaper to read than to copy again
                needed.append(path)
        elif reading_is_cheap or _changed_too(other.entries.get(path), base, side_a):
            needed.append(path)
    return needed


def claims_to_check(snap: Snapshot, other: Snapshot, bases: Mapping[str, Base]) -> list[str]:
    """Paths of ``snap`` (a remote whose hashes are claims: metadata any writer can set) whose
    claimed hash alone decides what the sync does: it equals the hash of the other side's file
    at that path, the base's (a change that looks like an mtime-only one), or that of a vanished
    path (a rename), or, where the other side changed too, it claims a change of a file whose
    size is that of the other side's or of the base (a conflict, unless the bytes say the same
    file, or no change on this side). Such a claim is checked against the bytes once; an
    entry whose etag is the base's was checked when the base was recorded."""
    side_a = snap.side is Side.A
    vanished: set[str] | None = None  # hashes of vanished paths: a pass over the index, only if asked
    checks = []
    for path, entry in snap.entries.items():
        claim = entry.content_hash
        if claim is None:
            continue
        base = bases.get(path)
        if base is not None and entry.etag == (base.a_etag if side_a else base.b_etag):
            continue
        theirs = other.entries.get(path)
        # where both sides changed, a conflict unless the bytes say the same file as theirs,
        # or no change of ours since the base
        both_changed = theirs is not None and _changed_too(theirs, base, side_a)
        sizes_agree = entry.size in ((theirs.size if theirs is not None else -1), (base.size if base else -1))
        if (
            (theirs is not None and theirs.content_hash == claim)
            or (both_changed and sizes_agree)
            or (base is not None and base.content_hash == claim)
        ):
            checks.append(path)
            continue
        if vanished is None:
            vanished = {b.content_hash for p, b in bases.items() if b.content_hash and p not in snap.entries}
        if claim in vanished:
            checks.append(path)
    return checks


def check_claims(remote: Remote, snap: Snapshot, paths: Iterable[str], workers: int) -> list[str]:
    """Replace the claimed hashes of ``paths`` in ``snap`` with those of their bytes, read.
    A file that cannot be read loses its claim (the planner then treats it as changed).
    :returns: the paths whose bytes did not match their claim."""

    def one(path: str) -> tuple[str, str | None]:
        try:
            with remote.open_read(path) as stream:
                return path, sha256_stream(stream)[0]
        except (ItemError, SyncdError):
            return path, None

    lies = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, digest in pool.map(one, list(paths)):
            entry = snap.entries[path]
            if digest != entry.content_hash:
                snap.entries[path] = entry._replace(content_hash=digest)
                if digest is not None:
                    lies.append(path)
    return lies


def _changed_too(theirs: Entry | None, base: Base | None, side_a: bool) -> bool:
    """Whether the other side's entry is new or changed since ``base``."""
    if theirs is None:
        return False
    return base is None or theirs.etag != (base.b_etag if side_a else base.a_etag)


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
            snap.entries[path] = entry._replace(content_hash=cached[1])
        else:
            todo.append(path)

    def one(path: str) -> tuple[str, str | None]:
        try:
            return path, known_or_read_hash(remote, path)
        except (ItemError, SyncdError):
            return path, None

    fresh: list[tuple[str, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, digest in pool.map(one, todo):
            if digest is not None:
                entry = snap.entries[path]
                snap.entries[path] = entry._replace(content_hash=digest)
                fresh.append((path, entry.etag, digest))
    return fresh
