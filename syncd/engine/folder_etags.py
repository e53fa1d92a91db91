"""Keeping the folder etags of a tree listing after a run (remotes with ``tree_etags``).

The next run skips every folder whose etag is unchanged, so an etag is kept only where that
cannot hide anything: not for folders holding a failed or deferred item, and, for the folders
the run wrote into (their etags changed with its own writes), only once the folder is read
again and holds exactly the bytes the run expects. Everything else is listed again next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from syncd.engine.apply import Done, changed_paths
from syncd.engine.scan import Snapshot
from syncd.errors import SyncdError
from syncd.index.store import Store
from syncd.models import Entry, Side
from syncd.remotes.base import Remote, SupportsFolderTotals


@dataclass(slots=True)
class Applied:
    """What a run's actions changed: the paths they wrote or removed on each side, and the
    size each path has on both sides now (None: gone from both)."""

    deferred: set[str]
    touched: dict[Side, set[str]] = field(default_factory=lambda: {Side.A: set(), Side.B: set()})
    sizes: dict[str, int | None] = field(default_factory=dict)

    def note(self, done: Done) -> None:
        """Add what one finished action wrote or removed."""
        for side, path in changed_paths(done.action):
            self.touched[side].add(path)
        for path in done.drop:
            self.sizes[path] = None
        for base in done.put:
            self.sizes[base.path] = base.size


def keep_folder_etags(
    store: Store, remotes: Mapping[Side, Remote], snaps: dict[Side, Snapshot], applied: Applied, *, unsettled: set[str]
) -> None:
    """Keep the folder etags of a tree listing once every action was tried, except those of
    the folders holding an ``unsettled`` path (failed or deferred): a folder skipped next time
    must not hide such an item, while every other unchanged folder is still skipped. The
    etags of the folders the run wrote into changed with its writes: they are read again and
    kept where the folder holds exactly the bytes the run expects (see :func:`settled_etags`)."""
    holders = folders_holding(unsettled)
    for side, snap in snaps.items():
        if snap.folder_etags is None:
            continue
        written = folders_holding(applied.touched[side]) - holders
        stale = holders | written  # once, not per folder
        kept = {folder: etag for folder, etag in snap.folder_etags.items() if folder not in stale}
        kept.update(settled_etags(remotes[side], written, snap, applied.sizes))
        store.save_folder_etags(side.value, kept)


def settled_etags(remote: Remote, folders: set[str], snap: Snapshot, sizes: Mapping[str, int | None]) -> dict[str, str]:
    """The new etags of ``folders`` whose bytes below are what the listing and the run's own
    changes add up to. Another client's change there since would show as another total (or
    as another etag on the next run); a folder that does not add up is listed again next run."""
    if not folders or not isinstance(remote, SupportsFolderTotals):
        return {}
    try:
        totals = remote.folder_totals(folders)
    except SyncdError:
        return {}  # not worth failing a finished run for: the next run lists those folders
    expected = expected_totals(snap.entries, sizes, set(totals))
    return {folder: etag for folder, (etag, size) in totals.items() if expected.get(folder) == size}


def expected_totals(entries: Mapping[str, Entry], sizes: Mapping[str, int | None], folders: set[str]) -> dict[str, int]:
    """The bytes below each of ``folders`` once ``sizes`` (path -> size, None for gone)
    replaced what ``entries`` listed."""
    totals = dict.fromkeys(folders, 0)

    def add(path: str, size: int) -> None:
        folder = path
        while folder:
            folder = folder.rpartition("/")[0]
            if folder in totals:
                totals[folder] += size

    for path, entry in entries.items():
        if path not in sizes:
            add(path, entry.size)
    for path, size in sizes.items():
        if size is not None:
            add(path, size)
    return totals


def folders_holding(paths: set[str]) -> set[str]:
    """Every folder (the root as "") that holds one of ``paths``, at any depth."""
    holders: set[str] = set()
    for path in paths:
        folder = path
        while folder:
            folder = folder.rpartition("/")[0]
            if folder in holders:
                break
            holders.add(folder)
    return holders
