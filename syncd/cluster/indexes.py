"""A pair's index follows it from daemon to daemon: the cluster keeps its latest snapshot.

Each daemon keeps its own SQLite index of a pair (the bases: what both sides agreed on after
the last sync). A pair that moves (its daemon died, or could not run it) would start from the
new host's own index of it, as old as that host's last run of the pair: a file created and
synced elsewhere, then deleted on one side, would come back from the other side; an edit since
would be a needless conflict. So:

* after a run here that changed the bases (:attr:`RunResult.done` has any action), or when an
  earlier save failed (the mark's ``pending``), or when the cluster has no snapshot of a pair
  whose index is here, the index is saved to ``syncd_cluster_indexes``: a ``VACUUM INTO``
  copy (consistent: one read transaction, the WAL's commits in it), zlib-compressed, with the
  next generation. The statement runs on the session holding the pair's fence, and only after
  :meth:`PairFence.held`: a daemon that lost the pair saves nothing. An idle run saves nothing.
* before a run here, when the cluster's generation is not the one this index was last the same
  as (the mark, ``index.cluster.json`` beside the index, written atomically), the snapshot
  replaces the local index under the pair's local lock: written to a temp file, checked
  (``quick_check``, its schema upgraded if older), its kept bucket markers dropped (a run that
  died after the snapshot may have written there: the first run here lists the bucket in full),
  fsynced, the old index's WAL folded in and any ``-wal``/``-shm`` removed, then renamed over.
* a dry run (``syncd now --dry-run``, run by the daemon asked, outside the queue) takes the
  snapshot the same way first, best effort and without the fence, so that its plan is the one a
  run would make; it saves nothing.
* a snapshot that cannot be used (corrupt, a schema newer than this syncd) leaves the local
  index as it was: the run goes on with it (a stale base loses nothing: it costs a resurrected
  deletion or a conflict copy at worst), and the run's end saves this index over the bad
  snapshot. A database that cannot be read, or an index in use here (a dry run), is not a
  reason to run on a stale index: :class:`NotNow`, and the job runs again a few seconds later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from syncd.cluster.database import index_snapshot, save_index_snapshot
from syncd.config import PairConfig
from syncd.display import size
from syncd.errors import FatalError, LockedError
from syncd.index.store import Store
from syncd.lock import pair_lock
from syncd.outcomes import RunResult

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from syncd.cluster.fence import PairFence

log = logging.getLogger("syncd.cluster")

MARK = "index.cluster.json"
CHUNK = 1 << 20
DRY_RUN_WAIT_S = 5.0  # a dry run waits this long for a connection, then plans from the local index
LEVEL = 6  # zlib; a 10,000-file index: 1.15 MB in 70 ms of CPU (level 9: 1% smaller, 3x the CPU)


class NotNow(Exception):
    """The pair's index cannot be brought up to date now (the database unreadable, the index in
    use here): the run waits, rather than running on an index that may be stale."""


@dataclass(frozen=True, slots=True)
class Mark:
    """What the local index of a pair is, to the cluster."""

    generation: int = 0  # the cluster's snapshot it was last the same as (0: none)
    pending: bool = False  # newer than the cluster's snapshot: save it after the next run here


def read_mark(state_dir: Path) -> Mark:
    """The pair's mark; the default (generation 0: take any snapshot) when missing or unreadable."""
    try:
        data = json.loads((state_dir / MARK).read_text(encoding="utf-8"))
        return Mark(int(data["generation"]), bool(data["pending"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Mark()


def write_mark(state_dir: Path, mark: Mark) -> None:
    """Write the mark atomically (a temp file, fsynced, renamed). :raises OSError:"""
    state_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"generation": mark.generation, "pending": mark.pending})
    _write_atomically(state_dir / MARK, text.encode())


def snapshot(index_path: Path) -> bytes:
    """A consistent copy of the index (``VACUUM INTO``: compact, one read transaction, the
    WAL's commits included), zlib-compressed. :raises sqlite3.Error: :raises OSError:"""
    if not index_path.is_file():
        raise FileNotFoundError(f"no index at {index_path}")
    copy = index_path.with_name(f"{index_path.name}.snapshot")
    copy.unlink(missing_ok=True)  # a crash's leftover: VACUUM INTO refuses an existing file
    try:
        with contextlib.closing(sqlite3.connect(index_path, timeout=10.0)) as db:
            db.execute("VACUUM INTO ?", (str(copy),))
        compressor = zlib.compressobj(LEVEL)
        parts = []
        with open(copy, "rb") as source:
            while chunk := source.read(CHUNK):
                parts.append(compressor.compress(chunk))
        parts.append(compressor.flush())
        return b"".join(parts)
    finally:
        copy.unlink(missing_ok=True)


def replace_index(index_path: Path, data: bytes) -> None:
    """Make ``data`` (a :func:`snapshot`) the index at ``index_path``, atomically; the caller
    holds the pair's lock. Nothing of the old index is touched until the new one is written
    and checked. :raises zlib.error: :raises sqlite3.Error: :raises FatalError: (a schema this
    syncd cannot read) :raises OSError:"""
    temp = index_path.with_name(f"{index_path.name}.download")
    try:
        _remove(temp)
        with open(temp, "wb") as out:
            decompressor = zlib.decompressobj()
            for start in range(0, len(data), CHUNK):
                out.write(decompressor.decompress(data[start : start + CHUNK]))
            out.write(decompressor.flush())
            if not decompressor.eof:
                raise zlib.error("the snapshot is cut short")
        _check(temp)
        _fsync(temp)
        _fold_wal(index_path)
        for stale in _sidecars(index_path):
            stale.unlink(missing_ok=True)
        os.replace(temp, index_path)
        _fsync_dir(index_path.parent)
    finally:
        _remove(temp)


class PairIndexes:
    """Brings a pair's local index up to date before its run here, and saves it after."""

    def __init__(self, host: str) -> None:
        self.host = host

    def before_run(self, pair: PairConfig, fence: PairFence) -> None:
        """Take the cluster's snapshot of ``pair`` if the local index is not that generation
        (the fence held).

        :raises NotNow: the cluster's snapshot cannot be read, or the index is in use here.
        """
        try:
            session = _session(fence)
        except psycopg.Error as exc:
            raise NotNow(f"cannot read the cluster's index of {pair.key}: {exc}") from exc
        self._take(pair, session)

    def before_dry_run(self, pair: PairConfig, pool: ConnectionPool) -> None:
        """A dry run shows what a run here would do: from the cluster's latest index too (no
        fence: a snapshot is whole, and only the fence holder saves one). Best effort: when the
        snapshot cannot be taken now (the pair runs here: its index is current), the dry run
        uses the local index."""
        try:
            with pool.connection(timeout=DRY_RUN_WAIT_S) as conn:
                self._take(pair, conn)
        except (NotNow, psycopg.Error) as exc:
            log.info("index: the dry run uses this host's index: %s", exc, extra={"pair": pair.key})

    def _take(self, pair: PairConfig, conn: psycopg.Connection[Any]) -> None:
        mark = read_mark(pair.state_dir)
        known = mark.generation if pair.index_path.exists() else -1  # no index here: any snapshot will do
        try:
            found = index_snapshot(conn, pair.key, known)
        except psycopg.Error as exc:
            raise NotNow(f"cannot read the cluster's index of {pair.key}: {exc}") from exc
        if found is None:  # no daemon saved one yet: this index is the best there is
            if pair.index_path.exists() and not mark.pending:
                _note(pair, Mark(mark.generation, pending=True))
            return
        if found.data is None:
            return  # this index is the newest (or newer: a save that failed)
        try:
            with pair_lock(pair.state_dir, pair.key):
                replace_index(pair.index_path, found.data)
                write_mark(pair.state_dir, Mark(found.generation))
        except LockedError as exc:
            raise NotNow(f"cannot take the cluster's index of {pair.key} now: {exc}") from exc
        except (zlib.error, sqlite3.Error, FatalError, OSError) as exc:
            log.warning(
                "index: cannot use the cluster's generation %d (saved by %s): %s; this run uses this host's "
                "index%s, saved to the cluster at its end",
                found.generation,
                found.host,
                exc,
                f" (generation {mark.generation})" if mark.generation else "",
                extra={"pair": pair.key},
            )
            _note(pair, Mark(mark.generation, pending=True))
            return
        log.info(
            "index: took generation %d saved by %s (%s)",
            found.generation,
            found.host,
            size(len(found.data)),
            extra={"pair": pair.key},
        )

    def after_run(self, pair: PairConfig, result: RunResult, fence: PairFence) -> None:
        """Save the index to the cluster after a run that changed it (or when a save is
        pending), while this daemon holds the pair's fence. Never raises: a save that fails is
        pending, for the next run here."""
        mark = read_mark(pair.state_dir)
        if not (result.done or mark.pending) or not pair.index_path.exists():
            return  # an idle run: the cluster's snapshot is as good as this index
        if not fence.held():
            log.warning("index: not saved to the cluster: lost the pair's lock", extra={"pair": pair.key})
            _note(pair, Mark(mark.generation, pending=True))
            return
        try:
            data = snapshot(pair.index_path)
            generation = save_index_snapshot(_session(fence), pair.key, self.host, data)
        except (sqlite3.Error, OSError, psycopg.Error) as exc:
            log.warning(
                "index: not saved to the cluster (%s); saved after the next run here", exc, extra={"pair": pair.key}
            )
            _note(pair, Mark(mark.generation, pending=True))
            return
        _note(pair, Mark(generation))
        log.debug("index: saved generation %d (%s)", generation, size(len(data)), extra={"pair": pair.key})


def _session(fence: PairFence) -> psycopg.Connection[Any]:
    """The connection holding the pair's lock. :raises psycopg.OperationalError: none (released)."""
    if fence.conn is None or fence.conn.closed:
        raise psycopg.OperationalError("the pair's lock is not held")
    return fence.conn


def _note(pair: PairConfig, mark: Mark) -> None:
    try:
        write_mark(pair.state_dir, mark)
    except OSError as exc:  # a state folder that cannot be written: the run itself says so
        log.warning("index: cannot write %s: %s", pair.state_dir / MARK, exc, extra={"pair": pair.key})


def _check(path: Path) -> None:
    """``path`` is an index this syncd can use: intact, its schema upgraded if older, with no
    kept marker; self-contained (rollback journal: no WAL to lose in a rename).
    :raises sqlite3.Error: :raises FatalError:"""
    with contextlib.closing(sqlite3.connect(path, timeout=10.0)) as db:
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {verdict}")
    store = Store.open(path)  # upgrades an older schema; a newer one is a FatalError
    try:
        for side, scan in store.side_scans().items():
            if scan.marker is not None:
                store.save_marker(side, None)
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path, timeout=10.0)) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # folds the WAL in and removes it


def _fold_wal(index_path: Path) -> None:
    """Fold the old index's WAL into it, so that a failed rename leaves it whole."""
    if not index_path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(index_path, timeout=10.0)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # a damaged old index: replaced all the same
        log.debug("index %s: checkpoint failed: %s", index_path, exc)


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(f"{path.name}{suffix}") for suffix in ("-wal", "-shm", "-journal")]


def _remove(path: Path) -> None:
    for one in (path, *_sidecars(path)):
        one.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{path.name}.tmp")
    with open(temp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
