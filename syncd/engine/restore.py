"""``syncd restore``: bring a version back from syncd's own trash.

Deleted and overwritten versions are kept in the trash of the side they were removed from
(a local tree's trash folder under the state dir, a bucket's ``.syncd-trash/`` prefix; see
:mod:`syncd.remotes.bucket_trash`). A restore writes the chosen version back to its original
path on that side, under the pair's lock; the next sync carries it to the other side as an
ordinary change.

A file present at that path is never overwritten silently: it is first kept in the trash
itself (so a restore can be undone by restoring again), then replaced atomically and only if
it is still the version that was kept. With ``as_copy`` the version is written next to it
as ``name (restored YYYY-MM-DD HHMMSS).ext`` (the moment it was trashed) instead.

A folder (a path with no version of its own but versions below it) is restored file by file:
each path below it gets the version a restore of that path alone would pick, written back
where no file is now; a file present now is left as it is (restore it by its own path to
replace it), or with ``as_copy`` gets its version next to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncd.config import PairConfig
from syncd.engine.sync import open_remotes
from syncd.errors import ItemError, NotFound, PreconditionFailed
from syncd.lock import pair_lock
from syncd.models import Side
from syncd.paths import check_key
from syncd.remotes.base import Remote
from syncd.remotes.bucket_trash import SupportsTrashVersions, TrashedVersion


@dataclass(frozen=True, slots=True)
class Found:
    """One version of the path in one pair side's trash."""

    pair: str  # "user/pair"
    side: Side
    version: TrashedVersion


@dataclass(frozen=True, slots=True)
class Restored:
    found: Found
    path: str  # where the version was written
    replaced: str | None  # where the version that was at ``path`` was kept, if there was one


@dataclass(frozen=True, slots=True)
class Search:
    found: list[Found]  # oldest first
    no_trash: list[str]  # "alice/default files": sides whose trash syncd does not keep


def normalise_path(text: str) -> str:
    """A path as typed (``/docs/a.txt``, ``docs//a.txt``) as a key. :raises UnsafePath:"""
    key = "/".join(part for part in text.strip().split("/") if part and part != ".")
    check_key(key)
    return key


def search(pairs: Iterable[PairConfig], path: str | None) -> Search:
    """Every version of ``path`` (of every path when None) in the trash of ``pairs``' sides.

    :raises FatalError: :raises TransientError: a remote could not be opened or listed.
    """
    found: list[Found] = []
    no_trash: list[str] = []
    for pair in pairs:
        remotes = open_remotes(pair)
        try:
            for side, remote in remotes.items():
                if isinstance(remote, SupportsTrashVersions):
                    found += [Found(pair.key, side, v) for v in remote.trashed_versions(path)]
                else:
                    no_trash.append(f"{pair.key} {side.value}")
        finally:
            _close(remotes)
    found.sort(key=lambda f: (f.version.trashed_at, f.pair, f.side.value))
    return Search(found, no_trash)


@dataclass(frozen=True, slots=True)
class Pick:
    """What ``restore`` (``--at``) would do with the versions found: what ``--list`` shows."""

    eligible: list[Found]  # trashed at or before ``at`` (all without one), oldest first
    newer: int  # how many were trashed after ``at``
    pairs: list[str]  # the pairs the eligible versions are in (more than one: the admin names one)
    chosen: Found | None  # the version it would bring back: the newest eligible, when in one pair


def pick(found: Sequence[Found], at: datetime | None) -> Pick:
    """The version a restore at ``at`` (the newest without one) brings back, and those it
    could: every version trashed at or before ``at``. None is chosen when none is, or when
    they are in several pairs (a restore refuses to guess which pair)."""
    eligible = [f for f in found if at is None or f.version.trashed_at <= at]
    pairs = sorted({f.pair for f in eligible})
    newest = max(eligible, key=lambda f: f.version.trashed_at, default=None)
    return Pick(eligible, len(found) - len(eligible), pairs, newest if len(pairs) == 1 else None)


def below(found: Sequence[Found], folder: str) -> list[Found]:
    """The versions of paths inside ``folder`` (at any depth)."""
    prefix = folder + "/"
    return [f for f in found if f.version.path.startswith(prefix)]


def pick_each(found: Sequence[Found], at: datetime | None) -> Pick:
    """A folder's :func:`pick`: for each path, the version a restore of it alone would bring
    back (``chosen`` is None; see :attr:`FolderPick.chosen`); eligible and newer as for one path."""
    by_path: dict[str, list[Found]] = defaultdict(list)
    for f in found:
        by_path[f.version.path].append(f)
    picks = {path: pick(versions, at) for path, versions in sorted(by_path.items())}
    eligible = [f for p in picks.values() for f in p.eligible]
    eligible.sort(key=lambda f: (f.version.trashed_at, f.version.path))
    pairs = sorted({f.pair for f in eligible})
    return Pick(eligible, sum(p.newer for p in picks.values()), pairs, None)


def chosen_each(picked: Pick) -> list[Found]:
    """The version of each path a folder restore brings back: the newest eligible one, by path
    (none when the versions are in several pairs: the restore refuses to guess)."""
    if len(picked.pairs) != 1:
        return []
    newest: dict[str, Found] = {}
    for f in picked.eligible:  # oldest first: the last one of each path wins
        newest[f.version.path] = f
    return [newest[path] for path in sorted(newest)]


@dataclass(frozen=True, slots=True)
class FolderRestore:
    restored: list[Restored]  # written back (or, with as_copy, next to the present file)
    present: list[Found]  # a file is there now: left as it is
    failed: list[tuple[Found, str]]  # could not be written back: why (nothing was replaced)


def restore_each(pair: PairConfig, chosen: Sequence[Found], *, as_copy: bool = False) -> FolderRestore:
    """Write each of ``chosen`` back on its side of ``pair`` where no file is now (with
    ``as_copy`` next to a present one), under the pair's lock, on remotes opened once.

    :raises LockedError: :raises FatalError: :raises TransientError: before or between files.
    """
    restored: list[Restored] = []
    present: list[Found] = []
    failed: list[tuple[Found, str]] = []
    with pair_lock(pair.state_dir, pair.key):
        remotes = open_remotes(pair, exclusive=True)
        try:
            for found in chosen:
                remote = remotes[found.side]
                try:
                    there = _exists(remote, found.version.path)
                    if there and not as_copy:
                        present.append(found)
                        continue
                    restored.append(_write_back(remote, found, as_copy=there))
                except ItemError as exc:
                    failed.append((found, str(exc)))
        finally:
            _close(remotes)
    return FolderRestore(restored, present, failed)


def _exists(remote: Remote, path: str) -> bool:
    try:
        remote.stat(path)
    except NotFound:
        return False
    return True


def restored_copy_name(path: str, when: datetime) -> str:
    """``dir/name (restored 2026-11-25 013000).ext``: the tag before the last extension."""
    folder, _, name = path.rpartition("/")
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    return f"{folder + '/' if folder else ''}{stem} (restored {when:%Y-%m-%d %H%M%S}){ext}"


def restore(pair: PairConfig, found: Found, *, as_copy: bool = False) -> Restored:
    """Write ``found``'s version back on its side of ``pair``, under the pair's lock.

    :raises LockedError: a sync of the pair is running. :raises PreconditionFailed: the
        file at the path changed while it was being kept (nothing was replaced), or, with
        ``as_copy``, the copy's name is taken. :raises NotFound: the version is gone from the
        trash. :raises FatalError: :raises TransientError:
    """
    with pair_lock(pair.state_dir, pair.key):
        remotes = open_remotes(pair, exclusive=True)
        try:
            return _write_back(remotes[found.side], found, as_copy)
        finally:
            _close(remotes)


def _write_back(remote: Remote, found: Found, as_copy: bool) -> Restored:
    assert isinstance(remote, SupportsTrashVersions)
    version = found.version
    target = restored_copy_name(version.path, version.trashed_at) if as_copy else version.path
    try:
        present = remote.stat(target)
    except NotFound:
        present = None
    if present is not None and as_copy:
        raise PreconditionFailed(target, "already exists (restored before?)")
    replaced = remote.keep_version(target, if_match=present.etag) if present is not None else None
    kept = remote.stat_trashed(version.key)
    with remote.open_trashed(version.key) as stream:
        remote.write(
            target,
            stream,
            size=kept.size,
            mtime_ns=kept.mtime_ns,
            content_hash=kept.content_hash,
            if_match=present.etag if present is not None else None,
            create_only=present is None,
        )
    return Restored(found, target, replaced)


def _close(remotes: Mapping[Side, Remote]) -> None:
    for remote in remotes.values():
        remote.close()
