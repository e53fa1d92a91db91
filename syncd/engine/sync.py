"""One sync run of one pair: lock -> list -> hash what is needed -> plan -> guards -> apply.

``sync_pair`` is the engine's only entry point; the CLI and the daemon both call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.config import PairConfig
from syncd.engine.apply import (
    Applier,
    Checkpoint,
    Done,
    batch_settings,
    changed_paths,
    choose_batches,
    prepare_target_folders,
    run_actions,
)
from syncd.engine.plan import Folding, PlanSettings, plan
from syncd.engine.safety import check_mass_delete, check_side_not_empty
from syncd.engine.scan import (
    Snapshot,
    check_claims,
    claims_to_check,
    fill_hashes,
    list_side,
    list_side_by_tree,
    paths_needing_hash,
    stat_paths,
)
from syncd.errors import FatalError, GuardError, SyncdError, TransientError
from syncd.index.store import Store
from syncd.lock import pair_lock
from syncd.models import Action, ActionKind, Base, Entry, Outcome, Plan, Report, Side
from syncd.outcomes import INTERRUPTED_MESSAGE
from syncd.remotes import remote_module
from syncd.remotes.base import (
    Remote,
    SupportsAfterChanges,
    SupportsFolderTotals,
    SupportsNameRules,
    SupportsTreeListing,
)
from syncd.remotes.settings import OpenContext

log = logging.getLogger("syncd.engine")

ProgressFn = Callable[[str, dict[str, object]], None]
PURGE_EVERY_S = 24 * 3600
BATCH_ACTIONS = 200
BATCH_SECONDS = 1.0
# Transient failures in a row after which a run stops (Outcome.RETRY) instead of trying,
# and recording a backoff for, every remaining item against a server that is gone.
TRANSIENT_STREAK = 3


@dataclass(frozen=True, slots=True)
class RunOptions:
    dry_run: bool = False
    force: bool = False  # override the safety guards (on purpose only)
    respect_backoff: bool = False  # skip paths whose retry time has not come (the daemon's way)
    now: datetime | None = None  # fixed clock for tests (conflict-copy names)
    checkpoint: Checkpoint | None = None  # tests inject crashes here
    hints: frozenset[str] | None = None  # sync only these paths (files or folders): a watcher's hint


def open_remotes(pair: PairConfig, *, exclusive: bool = False) -> dict[Side, Remote]:
    """Open both remotes of ``pair``; ``exclusive`` when the caller holds the pair's lock."""
    remotes: dict[Side, Remote] = {}
    try:
        for side, settings in ((Side.A, pair.files), (Side.B, pair.bucket)):
            ctx = OpenContext(label=f"{pair.key} {side.value}", state_dir=pair.state_dir, exclusive=exclusive)
            remotes[side] = remote_module(settings.type).open_remote(settings, ctx)
    except BaseException:
        for remote in remotes.values():
            remote.close()
        raise
    return remotes


def sync_pair(pair: PairConfig, options: RunOptions = RunOptions(), progress: ProgressFn | None = None) -> Report:
    """Run one sync of ``pair``. Never raises for item errors or guards: they are in the
    report. :raises FatalError: lock held, credentials refused, missing root or bucket."""
    notify = progress or (lambda _event, _data: None)
    report = Report(pair=pair.key)
    with pair_lock(pair.state_dir, pair.key):
        store = Store.open(pair.index_path)
        try:
            try:
                remotes = open_remotes(pair, exclusive=True)
            except TransientError as exc:  # unreachable at connect: nothing was read or changed
                report.outcome, report.message = Outcome.RETRY, f"{exc}; will retry on the next run"
                notify("finished", {"outcome": report.outcome.value, "message": report.message})
                return report
            try:
                _run(pair, options, store, remotes, report, notify)
            finally:
                for remote in remotes.values():
                    remote.close()
        finally:
            store.close()
    return report


def _run(
    pair: PairConfig,
    options: RunOptions,
    store: Store,
    remotes: dict[Side, Remote],
    report: Report,
    notify: ProgressFn,
) -> None:
    now = options.now or datetime.now()
    run_id = 0 if options.dry_run else store.start_run()
    try:
        planned, snaps, bases = _plan(pair, options, store, remotes, report, notify, now)
        report.skipped = [(a.path, a.reason) for a in planned.actions if a.kind is ActionKind.SKIP]
        if not options.dry_run:
            listings = {side: snaps[side].entries for side in Side}
            applier = Applier(remotes, listings, bases, options.checkpoint)
            applied = _apply(pair, options, store, applier, planned, report, notify, run_id)
            unsettled = {path for path, _ in report.errors} | applied.deferred
            _keep_folder_etags(store, remotes, snaps, applied, unsettled=unsettled)
            _purge_trash(pair, remotes, now)
    except GuardError as exc:
        report.outcome, report.message = Outcome.ABORTED, str(exc)
    except FatalError as exc:
        report.outcome, report.message = Outcome.FATAL, str(exc)
    except TransientError as exc:
        report.outcome, report.message = Outcome.RETRY, f"{exc}; will retry on the next run"
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, the daemon stopping: finished actions are recorded
        report.outcome, report.message = Outcome.INTERRUPTED, str(exc) or INTERRUPTED_MESSAGE
        raise
    except BaseException as exc:  # a bug: the run record must not say "ok"
        report.outcome, report.message = Outcome.FATAL, f"stopped by {type(exc).__name__}: {exc}"
        raise
    finally:
        if not options.dry_run:
            store.finish_run(
                run_id,
                outcome=report.outcome.value,
                counts=dict(report.done),
                errors=len(report.errors),
                bytes_moved=report.bytes_moved,
                message=report.message,
            )
    notify("finished", {"outcome": report.outcome.value, "message": report.message})


def _plan(
    pair: PairConfig,
    options: RunOptions,
    store: Store,
    remotes: dict[Side, Remote],
    report: Report,
    notify: ProgressFn,
    now: datetime,
) -> tuple[Plan, dict[Side, Snapshot], dict[str, Base]]:
    hints = options.hints
    bases = {p: b for p, b in store.load_bases(under=hints).items() if not pair.excludes(p)}
    notify("listing", {"hinted": len(hints) if hints is not None else None})
    with ThreadPoolExecutor(max_workers=2) as pool:
        known = {side: store.load_folder_etags(side.value) if _tree_listing(remotes[side]) else {} for side in Side}
        futures = {side: pool.submit(_scan_side, pair, remotes[side], side, bases, hints, known[side]) for side in Side}
        snaps: dict[Side, Snapshot] = {side: f.result() for side, f in futures.items()}
    notify("listed", {"files": len(snaps[Side.A].entries), "bucket": len(snaps[Side.B].entries)})
    for side, snap in snaps.items():
        for folder, cause in sorted(snap.unlisted.items()):
            why = f"cannot list this folder on {side.value} ({cause}); its files are left as they were"
            report.errors.append((folder, why))
    if not options.force and hints is None:
        check_side_not_empty(len(bases), {side: len(snaps[side].entries) for side in Side})
    _hash(pair, store, remotes, snaps, bases, notify)
    caps_a, caps_b = remotes[Side.A].capabilities, remotes[Side.B].capabilities
    settings = PlanSettings(
        policy=pair.policy,
        mode=pair.mode,
        fold_a=Folding(caps_a.case_insensitive, caps_a.unicode_normalizing),
        fold_b=Folding(caps_b.case_insensitive, caps_b.unicode_normalizing),
        name_rules={side: r.name_problem for side, r in remotes.items() if isinstance(r, SupportsNameRules)},
    )
    skipped = {**snaps[Side.A].skipped, **snaps[Side.B].skipped}
    planned = plan(bases, snaps[Side.A].entries, snaps[Side.B].entries, settings, now, skipped)
    if not options.force:
        check_mass_delete(planned, len(bases) if hints is None else store.count_bases(), pair.max_delete_ratio)
    report.plan = planned
    return planned, snaps, bases


def _tree_listing(remote: Remote) -> bool:
    return remote.capabilities.tree_etags and isinstance(remote, SupportsTreeListing)


def _scan_side(
    pair: PairConfig,
    remote: Remote,
    side: Side,
    bases: dict[str, Base],
    hints: frozenset[str] | None,
    known_folder_etags: dict[str, str],
) -> Snapshot:
    if hints is not None:
        return stat_paths(remote, side, pair.excludes, hints, bases)
    if _tree_listing(remote):
        assert isinstance(remote, SupportsTreeListing)
        snap, etags = list_side_by_tree(remote, side, pair.excludes, known_folder_etags, bases)
        snap.folder_etags = etags
        return snap
    return list_side(remote, side, pair.excludes, bases)


def _hash(
    pair: PairConfig,
    store: Store,
    remotes: dict[Side, Remote],
    snaps: dict[Side, Snapshot],
    bases: dict[str, Base],
    notify: ProgressFn,
) -> None:
    for side in Side:
        cheap = remotes[side].capabilities.local_path
        needed = paths_needing_hash(snaps[side], snaps[side.other], bases, reading_is_cheap=cheap)
        if not needed:
            continue
        notify("hashing", {"side": side.value, "files": len(needed)})
        cache = store.load_hash_cache(needed) if side is Side.A else {}
        fresh = fill_hashes(remotes[side], snaps[side], needed, cache, pair.transfers)
        if side is Side.A:
            store.save_hashes(fresh)
    for side in Side:
        if remotes[side].capabilities.hashes_are_claims:
            checks = claims_to_check(snaps[side], snaps[side.other], bases)
            if checks:
                notify("hashing", {"side": side.value, "files": len(checks)})
                for path in check_claims(remotes[side], snaps[side], checks, pair.transfers):
                    log.warning(
                        "%s: %r on %s does not have the SHA-256 its metadata claims", pair.key, path, side.value
                    )


def _apply(
    pair: PairConfig,
    options: RunOptions,
    store: Store,
    applier: Applier,
    planned: Plan,
    report: Report,
    notify: ProgressFn,
    run_id: int,
) -> Applied:
    """Run the plan's actions: create the folders they write into first (remotes that can),
    then run them, small new files in batches where a remote can batch.

    :returns: what the run changed, and the paths of actions deferred by their backoff.
    :raises FatalError: e.g. credentials refused. :raises TransientError: the run stops
        to be retried (a server gone while folders were created, or too many failures in a row).
    """
    actions = [a for a in planned.actions if a.kind is not ActionKind.SKIP]
    deferred = _waiting_paths(store, actions) if options.respect_backoff else set()
    if deferred:
        report.deferred = len(deferred)
        actions = [a for a in actions if a.path not in deferred]
    total = len(actions)
    notify("applying", {"actions": total, "bytes": _planned_bytes(actions, applier.listings)})
    checkpoint = options.checkpoint or (lambda _stage: None)
    batch = _Batch(store, run_id, checkpoint)
    prepare_target_folders(applier.remotes, actions)
    # Asked only now: a remote may accept only files in the folders this run created.
    chosen = choose_batches(actions, applier.listings, *batch_settings(applier.remotes))

    applied = Applied(deferred)
    touched = applied.touched
    streak = 0  # transient failures in a row, with no success between them
    transient_failures: list[str] = []

    def on_done(done: Done) -> None:
        nonlocal streak
        streak = 0
        batch.add(done)
        for side, path in changed_paths(done.action):
            touched[side].add(path)
        applied.note(done)
        report.done[done.action.kind.value] += 1
        report.bytes_moved += done.bytes_moved
        notify("done", {"action": done.action.describe(), "bytes": done.bytes_moved, "total": total})

    def on_error(action: Action, exc: Exception) -> None:
        nonlocal streak
        transient = isinstance(exc, TransientError)
        streak = streak + 1 if transient else 0
        if streak >= TRANSIENT_STREAK:
            # The server went away: the other items would fail the same way, and a backoff
            # kept for each would delay them once it is back. Stop; the run is retried.
            for path in transient_failures:
                store.clear_item_error(path)
            raise TransientError(f"stopped after {streak} failures in a row: {exc}")
        if transient:
            transient_failures.append(action.path)
        info = store.record_item_error(action.path, str(exc), time.time())
        report.errors.append((action.path, str(exc)))
        notify("error", {"path": action.path, "error": str(exc), "attempts": info.attempts})

    try:
        run_actions(applier, chosen.singles, pair.transfers, on_done, on_error, chosen.batches)
    except (Exception, KeyboardInterrupt):
        batch.flush()  # record what finished before the run stopped
        raise
    batch.flush()
    for side, paths in touched.items():
        remote = applier.remotes[side]
        if paths and isinstance(remote, SupportsAfterChanges):
            report.errors.extend((side.value, failure) for failure in remote.after_changes(paths))
    if report.errors:
        report.outcome = Outcome.ITEM_ERRORS
        report.message = f"{len(report.errors)} item(s) failed; they are retried on the next runs"
    return applied


def _waiting_paths(store: Store, actions: list[Action]) -> set[str]:
    """Paths of ``actions`` whose retry time (backoff after an item error) has not come."""
    waiting = {e.path for e in store.item_errors() if e.next_retry > time.time()}
    return {a.path for a in actions if a.path in waiting}


@dataclass(slots=True)
class Applied:
    """What a run's actions changed: the paths they wrote or removed on each side, and the
    size each path has on both sides now (None: gone from both)."""

    deferred: set[str]
    touched: dict[Side, set[str]] = field(default_factory=lambda: {Side.A: set(), Side.B: set()})
    sizes: dict[str, int | None] = field(default_factory=dict)

    def note(self, done: Done) -> None:
        for path in done.drop:
            self.sizes[path] = None
        for base in done.put:
            self.sizes[base.path] = base.size


def _keep_folder_etags(
    store: Store, remotes: Mapping[Side, Remote], snaps: dict[Side, Snapshot], applied: Applied, *, unsettled: set[str]
) -> None:
    """Keep the folder etags of a tree listing once every action was tried, except those of
    the folders holding an ``unsettled`` path (failed or deferred): a folder skipped next time
    must not hide such an item, while every other unchanged folder is still skipped. The
    etags of the folders the run wrote into changed with its writes: they are read again and
    kept where the folder holds exactly the bytes the run expects (see :func:`_settled`)."""
    holders = folders_holding(unsettled)
    for side, snap in snaps.items():
        if snap.folder_etags is None:
            continue
        written = folders_holding(applied.touched[side]) - holders
        kept = {folder: etag for folder, etag in snap.folder_etags.items() if folder not in holders | written}
        kept.update(_settled(remotes[side], written, snap, applied.sizes))
        store.save_folder_etags(side.value, kept)


def _settled(remote: Remote, folders: set[str], snap: Snapshot, sizes: Mapping[str, int | None]) -> dict[str, str]:
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


class _Batch:
    """Finished actions waiting to be recorded: committed together every ``BATCH_ACTIONS``
    actions or ``BATCH_SECONDS``, so a large sync does not pay one transaction per file.
    Only finished work is ever in a batch; if the process dies before a flush, the next run
    finds those paths identical on both sides (or gone from both) and records them without
    moving a byte."""

    def __init__(self, store: Store, run_id: int, checkpoint: Checkpoint) -> None:
        self.store, self.run_id, self.checkpoint = store, run_id, checkpoint
        self.items: list[Done] = []
        self.since = time.monotonic()

    def add(self, done: Done) -> None:
        self.items.append(done)
        if len(self.items) >= BATCH_ACTIONS or time.monotonic() - self.since > BATCH_SECONDS:
            self.flush()
        self.checkpoint("action-done")

    def flush(self) -> None:
        if self.items:
            self.store.commit_actions(
                self.run_id,
                put=[b for d in self.items for b in d.put],
                drop=[p for d in self.items for p in d.drop],
                history=[h for d in self.items for h in d.history],
            )
            self.items.clear()
        self.since = time.monotonic()


def _planned_bytes(actions: list[Action], listings: Mapping[Side, Mapping[str, Entry]]) -> int:
    total = 0
    for action in actions:
        if action.kind is ActionKind.COPY and action.side is not None:
            entry = listings[action.side.other].get(action.path)
            total += entry.size if entry is not None else 0
    return total


def _purge_trash(pair: PairConfig, remotes: dict[Side, Remote], now: datetime) -> None:
    """Empty trash older than the retention, at most once a day per pair."""
    stamp = pair.state_dir / "last-trash-purge"
    try:
        if time.time() - stamp.stat().st_mtime < PURGE_EVERY_S:
            return
    except FileNotFoundError:
        pass
    cutoff = now - timedelta(days=pair.trash_retention_days)
    for remote in remotes.values():
        try:
            remote.purge_trash(cutoff)
        except SyncdError:
            return  # try again next run; trash is only ever kept too long, never lost early
    stamp.touch()
