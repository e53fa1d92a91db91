"""How much of each side a run must look at: idle pairs cost O(1).

A full listing of both sides on every scheduled run costs every pair the same, changed or
not. Between full scans (every ``full_scan_interval``, default 1h, as the Nextcloud desktop
client does its full local discovery) two cheaper ways tell that a side did not change:

* **a trusted watcher** (local trees, ``dir`` buckets): the daemon's watcher turns every change
  into a hinted run, so a scheduled run of a side it watches, that saw nothing, and that lost
  no events since the last full scan needs no listing at all (:func:`scheduled_scan`);
* **a marker** (buckets whose only writer is syncd, ``sole_writer = true``): a small object
  ``.syncd-marker`` at the root of the pair's prefix that every run writing to the side
  rewrites (through the plain :class:`~syncd.remotes.base.Remote` contract, so any bucket
  remote does), and whose etag the index keeps. An unchanged etag means nothing was written
  since: one stat instead of a listing (:func:`marker_unchanged`). A run that writes first
  forgets the kept etag, so a run that dies midway leaves the next one a full listing.

Another writer's change on a marker side is caught by the next full scan. The decisions
here are pure; the two functions at the end do the marker's I/O.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from syncd.engine.scan import Snapshot, base_entry
from syncd.errors import ItemError, SyncdError
from syncd.index.store import SideScan, Store
from syncd.models import Base, Mode, Side
from syncd.remotes.base import Remote

MARKER = ".syncd-marker"  # at the root of side B; never synced (taken out of every snapshot)
DEFAULT_FULL_SCAN_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class WatchState:
    """What the daemon knows of one pair between runs (in this process)."""

    last_full_at: float | None = None  # the last full run (both sides listed) that ended ok
    lost_at: float | None = None  # the watcher lost events or restarted (None: never)
    last_ok: bool = False  # the pair's last run ended ok (no item error waiting for a retry)


def phase(key: str, period_s: float) -> float:
    """A fixed point in ``[0, period_s)`` from a hash of ``key``: N keys spread evenly."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * period_s


def full_scan_due(last_full_at: float | None, now: float, interval_s: float, key: str = "") -> bool:
    """Whether a side last fully listed at ``last_full_at`` must be listed again: after a
    time between half the interval and the interval, fixed per pair by its ``key``, so that
    pairs listed together (a daemon's start) do not all list at once again."""
    return last_full_at is None or now - last_full_at >= interval_s / 2 + phase(key, interval_s / 2)


def scheduled_scan(
    state: WatchState, watched: frozenset[Side], now: float, interval_s: float, key: str = ""
) -> frozenset[Side] | None:
    """What a scheduled run of a pair must do. ``watched``: the sides a working watcher covers.

    :returns: None for a full run (a full scan is due, the watcher lost events since the last
        one, or the last run did not end ok: its failed items are retried); else the sides
        the run may take as unchanged (their base is their state). Both sides: no run at all.
    """
    if not state.last_ok or full_scan_due(state.last_full_at, now, interval_s, key):
        return None
    if state.lost_at is not None and (state.last_full_at is None or state.lost_at >= state.last_full_at):
        return None
    return watched


def use_marker(
    *, sole_writer: bool, hinted: bool, last_full_at: float | None, now: float, interval_s: float, key: str = ""
) -> bool:
    """Whether a run may stat a side's marker instead of listing it (False: list it)."""
    return sole_writer and not hinted and not full_scan_due(last_full_at, now, interval_s, key)


def marker_unchanged(remote: Remote, kept_etag: str | None) -> bool:
    """One stat: the side's marker is still the one this pair wrote last (nothing written since)."""
    if kept_etag is None:
        return False
    try:
        return remote.stat(MARKER).etag == kept_etag
    except ItemError:  # gone (NotFound) or unreadable: list
        return False


def write_marker(remote: Remote) -> str:
    """Write a new marker (unique bytes: an etag may be a hash of them) and return its etag.

    :raises SyncdError: from the remote, unchanged.
    """
    token = os.urandom(16).hex().encode()
    return remote.write(MARKER, io.BytesIO(token), size=len(token), mtime_ns=time.time_ns()).etag


def marker_side(side: Side, *, sole_writer: bool, mode: Mode) -> bool:
    """Whether ``side`` keeps a marker: the bucket side of a pair that says syncd alone writes
    it, and that may write it (not download-only)."""
    return side is Side.B and sole_writer and mode is not Mode.DOWNLOAD_ONLY


def unchanged_side(
    remote: Remote,
    side: Side,
    *,
    vouched: frozenset[Side],
    marked: bool,
    kept: SideScan | None,
    interval_s: float,
    key: str = "",
) -> bool:
    """Whether a full run may take ``side`` as its bases say instead of listing it: the caller
    vouches for it (a trusted watcher saw nothing), or its marker is the one kept (one stat)
    and its full scan is not due. ``marked``: see :func:`marker_side`."""
    if side in vouched:
        return True
    last_full = kept.full_at if kept is not None else None
    now = time.time()
    if not use_marker(
        sole_writer=marked, hinted=False, last_full_at=last_full, now=now, interval_s=interval_s, key=key
    ):
        return False
    return marker_unchanged(remote, kept.marker if kept is not None else None)


def base_snapshot(side: Side, bases: Mapping[str, Base]) -> Snapshot:
    """``side`` as the last sync left it: what a side with no change since looks like."""
    return Snapshot(side, {path: base_entry(base, side) for path, base in bases.items()})


def forget_marker(store: Store, side: Side, kept: SideScan | None) -> None:
    """Before a run writes on a marker side: a run that stops midway leaves no kept marker,
    so the next run lists the side in full."""
    if kept is not None and kept.marker is not None:
        store.save_marker(side.value, None)


def renew_marker(store: Store, remote: Remote, side: Side, *, wrote: bool, kept: SideScan | None) -> str | None:
    """After a run that wrote on a marker side (or found no marker kept): a new marker, its etag
    kept. :returns: why it could not be written (the next run then lists), or None."""
    if not wrote and kept is not None and kept.marker is not None:
        return None
    try:
        store.save_marker(side.value, write_marker(remote))
    except SyncdError as exc:
        return f"cannot write the marker {MARKER}: {exc}"
    return None


def writes_side(changed: Iterable[tuple[Side, str]], side: Side) -> bool:
    return any(where is side for where, _ in changed)
