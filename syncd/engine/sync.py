"""One sync run of one pair: lock -> list -> hash what is needed -> plan -> guards -> apply.

``sync_pair(pair, options, progress)`` is the wiring the CLI and the daemon call: it takes the
pair's lock, opens its index and both remotes from the config, and hands them to the engine's
entry, ``run_sync(remotes, store, settings, options)``. ``run_sync`` runs on whatever opened
remotes and index it is given (a test's, a caller's own), and opens or closes none of them.
Keeping folder etags after the run is :mod:`syncd.engine.folder_etags`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from syncd.bwlimit import Bandwidth, pair_limiters
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
    sync_writes,
)
from syncd.engine.folder_etags import Applied, keep_folder_etags
from syncd.engine.moves import bytes_a_move_copies
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
from syncd.engine.scans import (
    DEFAULT_FULL_SCAN_INTERVAL_S,
    MARKER,
    base_snapshot,
    forget_marker,
    marker_side,
    renew_marker,
    unchanged_side,
    writes_side,
)
from syncd.errors import FatalError, GuardError, SideLooksEmpty, SyncdError, TooManyDeletes, TransientError
from syncd.index.store import Store
from syncd.lock import pair_lock
from syncd.models import Action, ActionKind, Base, ConflictPolicy, Entry, Mode, Outcome, Plan, Report, Side
from syncd.outcomes import INTERRUPTED_MESSAGE
from syncd.paths import excluded_among
from syncd.remotes import remote_module
from syncd.remotes.base import (
    Remote,
    SupportsAfterChanges,
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
    unchanged: frozenset[Side] = frozenset()  # sides the caller vouches for (a watcher saw nothing): not listed


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSettings:
    """What a run needs of its pair besides the remotes and the index: what to sync and
    how, and where the pair keeps its own state. :meth:`of` reads it from the config."""

    key: str  # names the pair in the report and the log ("user/pair")
    excludes: Callable[[str], bool]  # paths never synced (and never deleted for being gone)
    policy: ConflictPolicy
    mode: Mode
    transfers: int  # actions (or batches) running at once, and parallel hash reads
    max_delete_ratio: float  # the mass-delete guard's limit
    trash_retention_days: int
    state_dir: Path  # the pair's own folder: holds the stamp of the last trash purge
    bandwidth: Bandwidth = field(default_factory=dict)  # bwlimit: the daemon's and the pair's limiters each way
    sole_writer: bool = False  # syncd alone writes side B: a marker there stands for a listing (engine.scans)
    full_scan_interval_s: float = DEFAULT_FULL_SCAN_INTERVAL_S

    @classmethod
    def of(cls, pair: PairConfig) -> SyncSettings:
        return cls(
            key=pair.key,
            excludes=pair.excludes,
            policy=pair.policy,
            mode=pair.mode,
            transfers=pair.transfers,
            max_delete_ratio=pair.max_delete_ratio,
            trash_retention_days=pair.trash_retention_days,
            state_dir=pair.state_dir,
            bandwidth=pair_limiters(pair.key, pair.bwlimit, pair.daemon_bwlimit),
            sole_writer=pair.sole_writer,
            full_scan_interval_s=pair.full_scan_interval_s,
        )


@dataclass(frozen=True, slots=True)
class RunContext:
    """One run: what its steps (plan, hash, apply, keep etags, purge) share. Everything
    is fixed for the run except ``report``, which the steps fill in."""

    remotes: Mapping[Side, Remote]
    store: Store
    settings: SyncSettings
    options: RunOptions
    report: Report
    notify: ProgressFn
    now: datetime  # the run's clock: conflict-copy names, the trash cutoff
    run_id: int  # the index's record of this run (0 for a dry run, which records nothing)


def _ignore_progress(_event: str, _data: dict[str, object]) -> None:
    return None


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
    """Run one sync of ``pair`` under its lock, on its index and its remotes opened from the
    config (closed again at the end). Never raises for item errors or guards: they are in
    the report. :raises FatalError: lock held, credentials refused, missing root or bucket."""
    notify = progress or _ignore_progress
    with pair_lock(pair.state_dir, pair.key):
        store = Store.open(pair.index_path)
        try:
            try:
                remotes = open_remotes(pair, exclusive=True)
            except TransientError as exc:  # unreachable at connect: nothing was read or changed
                report = Report(pair=pair.key)
                report.outcome, report.message = Outcome.RETRY, f"{exc}; will retry on the next run"
                notify("finished", {"outcome": report.outcome.value, "message": report.message})
                return report
            try:
                return run_sync(remotes, store, SyncSettings.of(pair), options, notify)
            finally:
                for remote in remotes.values():
                    remote.close()
        finally:
            store.close()


def run_sync(
    remotes: Mapping[Side, Remote],
    store: Store,
    settings: SyncSettings,
    options: RunOptions = RunOptions(),
    progress: ProgressFn | None = None,
) -> Report:
    """Sync ``remotes[Side.A]`` with ``remotes[Side.B]`` against the bases in ``store``, and
    record the run there (unless a dry run). The caller opened the remotes and the store,
    closes them, and makes sure no other run of the pair goes on meanwhile (the pair lock).

    :returns: the report; item errors, guards, a server gone and fatal errors are in it.
    :raises KeyboardInterrupt: the run was interrupted (its finished actions are recorded).
    """
    ctx = RunContext(
        remotes=remotes,
        store=store,
        settings=settings,
        options=options,
        report=Report(pair=settings.key),
        notify=progress or _ignore_progress,
        now=options.now or datetime.now(),
        run_id=0 if options.dry_run else store.start_run(),
    )
    _run(ctx)
    return ctx.report


def _run(ctx: RunContext) -> None:
    options, store, report, notify = ctx.options, ctx.store, ctx.report, ctx.notify
    try:
        planned, snaps, bases = _plan(ctx)
        report.skipped = [(a.path, a.reason) for a in planned.actions if a.kind is ActionKind.SKIP]
        if not options.dry_run:
            listings = {side: snaps[side].entries for side in Side}
            applier = Applier(ctx.remotes, listings, bases, options.checkpoint, ctx.settings.bandwidth)
            kept = store.side_scans().get(Side.B.value) if _marked(ctx) else None
            if kept is not None and writes_side((c for a in planned.actions for c in changed_paths(a)), Side.B):
                forget_marker(store, Side.B, kept)
            applied = _apply(ctx, applier, planned)
            unsettled = {path for path, _ in report.errors} | applied.deferred
            keep_folder_etags(store, ctx.remotes, snaps, applied, unsettled=unsettled)
            if _marked(ctx):
                wrote = bool(applied.touched[Side.B]) or kept is None or kept.marker is None
                failed = renew_marker(store, ctx.remotes[Side.B], Side.B, wrote=wrote, kept=kept)
                if failed:
                    log.warning("%s: %s", ctx.settings.key, failed)
            _purge_trash(ctx)
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
                ctx.run_id,
                outcome=report.outcome.value,
                counts=dict(report.done),
                errors=len(report.errors),
                bytes_moved=report.bytes_moved,
                message=report.message,
            )
    notify("finished", {"outcome": report.outcome.value, "message": report.message})


def _plan(ctx: RunContext) -> tuple[Plan, dict[Side, Snapshot], dict[str, Base]]:
    """List both sides, hash what the planner needs, plan, and check the guards.

    :raises GuardError: a side lists empty, or the plan deletes too much (unless forced).
    """
    hints, excluded = ctx.options.hints, ctx.settings.excludes
    bases = ctx.store.load_bases(under=hints)
    for path in excluded_among(excluded, list(bases)):  # excluded since they were recorded
        del bases[path]
    ctx.notify("listing", {"hinted": len(hints) if hints is not None else None})
    unlisted = _unlisted_sides(ctx)  # vouched for, or a marker unchanged: the bases stand for them
    listed = [side for side in Side if side not in unlisted]
    known = {side: _known_folder_etags(ctx, side) for side in listed}
    # Two local listings one after the other: they are CPU work under the GIL, and two threads
    # cost a third more CPU in GIL hand-offs than one (a daemon's full scans are its idle cost).
    # A listing over the network waits on the server: it overlaps with the other side's.
    with ThreadPoolExecutor(max_workers=1 if _all_local(ctx, listed) else 2) as pool:
        futures = {side: pool.submit(_scan_side, ctx, side, bases, known[side]) for side in listed}
        snaps: dict[Side, Snapshot] = {side: f.result() for side, f in futures.items()}
    snaps.update((side, base_snapshot(side, bases)) for side in unlisted)
    for snap in snaps.values():
        snap.entries.pop(MARKER, None)  # syncd's own, never synced
    if hints is None and not ctx.options.dry_run and len(unlisted) < len(Side):
        ctx.store.save_full_scans([side.value for side in Side if side not in unlisted], time.time())
    ctx.notify("listed", {"files": len(snaps[Side.A].entries), "bucket": len(snaps[Side.B].entries)})
    for side, snap in snaps.items():
        for folder, cause in sorted(snap.unlisted.items()):
            why = f"cannot list this folder on {side.value} ({cause}); its files are left as they were"
            ctx.report.errors.append((folder, why))
    if not ctx.options.force and hints is None:
        _guard(ctx, check_side_not_empty, len(bases), {side: len(snaps[side].entries) for side in Side})
    _hash(ctx, snaps, bases)
    skipped = {**snaps[Side.A].skipped, **snaps[Side.B].skipped}
    planned = plan(bases, snaps[Side.A].entries, snaps[Side.B].entries, _plan_settings(ctx), ctx.now, skipped)
    if not ctx.options.force:
        counted = len(bases) if hints is None else ctx.store.count_bases()
        _guard(ctx, check_mass_delete, planned, counted, ctx.settings.max_delete_ratio)
    ctx.report.plan = planned
    return planned, snaps, bases


GUARD_NAMES = {SideLooksEmpty: "empty-side", TooManyDeletes: "mass-delete"}


def _guard(ctx: RunContext, check: Callable[..., None], *args: object) -> None:
    """Run one safety guard. A dry run goes on past a guard that would abort the real run,
    so that its plan is still shown: its report says which guard and why (outcome aborted).

    :raises GuardError: the guard refuses, in a real run.
    """
    try:
        check(*args)
    except GuardError as exc:
        if not ctx.options.dry_run:
            raise
        name = GUARD_NAMES.get(type(exc), type(exc).__name__)
        said = f"{ctx.report.message} Also, " if ctx.report.outcome is Outcome.ABORTED else "dry run: "
        ctx.report.outcome = Outcome.ABORTED
        ctx.report.message = f"{said}the {name} guard would abort the real run: {exc}"


def _plan_settings(ctx: RunContext) -> PlanSettings:
    """The planner's settings: the pair's, and what each remote's names can be."""
    caps_a, caps_b = ctx.remotes[Side.A].capabilities, ctx.remotes[Side.B].capabilities
    return PlanSettings(
        policy=ctx.settings.policy,
        mode=ctx.settings.mode,
        fold_a=Folding(caps_a.case_insensitive, caps_a.unicode_normalizing),
        fold_b=Folding(caps_b.case_insensitive, caps_b.unicode_normalizing),
        name_rules={side: r.name_problem for side, r in ctx.remotes.items() if isinstance(r, SupportsNameRules)},
    )


def _marked(ctx: RunContext) -> bool:
    return marker_side(Side.B, sole_writer=ctx.settings.sole_writer, mode=ctx.settings.mode)


def _unlisted_sides(ctx: RunContext) -> set[Side]:
    """The sides a full run need not list (see :func:`syncd.engine.scans.unchanged_side`)."""
    if ctx.options.hints is not None or not (ctx.options.unchanged or _marked(ctx)):
        return set()
    kept = ctx.store.side_scans()
    return {
        side
        for side in Side
        if unchanged_side(
            ctx.remotes[side],
            side,
            vouched=ctx.options.unchanged,
            marked=side is Side.B and _marked(ctx),
            kept=kept.get(side.value),
            interval_s=ctx.settings.full_scan_interval_s,
            key=ctx.settings.key,
        )
    }


def _tree_listing(remote: Remote) -> bool:
    return remote.capabilities.tree_etags and isinstance(remote, SupportsTreeListing)


def _all_local(ctx: RunContext, sides: Iterable[Side]) -> bool:
    return all(ctx.remotes[side].capabilities.local_path for side in sides)


def _known_folder_etags(ctx: RunContext, side: Side) -> dict[str, str]:
    """The folder etags kept by the last clean run, for a side listed by tree etags."""
    return ctx.store.load_folder_etags(side.value) if _tree_listing(ctx.remotes[side]) else {}


def _scan_side(ctx: RunContext, side: Side, bases: dict[str, Base], known_folder_etags: dict[str, str]) -> Snapshot:
    """One side's snapshot: the hinted paths only, or by tree etags, or a full listing."""
    remote, excluded, hints = ctx.remotes[side], ctx.settings.excludes, ctx.options.hints
    if hints is not None:
        return stat_paths(remote, side, excluded, hints, bases)
    if _tree_listing(remote):
        assert isinstance(remote, SupportsTreeListing)
        snap, etags = list_side_by_tree(remote, side, excluded, known_folder_etags, bases)
        snap.folder_etags = etags
        return snap
    return list_side(remote, side, excluded, bases)


def _hash(ctx: RunContext, snaps: dict[Side, Snapshot], bases: dict[str, Base]) -> None:
    """Give the snapshots the content hashes the planner needs, then check the hashes that
    are only claims where a claim alone would let the run skip moving bytes."""
    for side in Side:
        _fill_hashes(ctx, side, snaps, bases)
    for side in Side:
        if ctx.remotes[side].capabilities.hashes_are_claims:
            _check_claims(ctx, side, snaps, bases)


def _fill_hashes(ctx: RunContext, side: Side, snaps: dict[Side, Snapshot], bases: dict[str, Base]) -> None:
    """Hash what ``side``'s listing left without one; side A's hashes are cached in the
    index (reading a local file again costs the same as the first time)."""
    remote = ctx.remotes[side]
    cheap = remote.capabilities.local_path
    needed = paths_needing_hash(snaps[side], snaps[side.other], bases, reading_is_cheap=cheap)
    if not needed:
        return
    ctx.notify("hashing", {"side": side.value, "files": len(needed)})
    cache = ctx.store.load_hash_cache(needed) if side is Side.A else {}
    fresh = fill_hashes(remote, snaps[side], needed, cache, ctx.settings.transfers)
    if side is Side.A:
        ctx.store.save_hashes(fresh)


def _check_claims(ctx: RunContext, side: Side, snaps: dict[Side, Snapshot], bases: dict[str, Base]) -> None:
    checks = claims_to_check(snaps[side], snaps[side.other], bases)
    if not checks:
        return
    ctx.notify("hashing", {"side": side.value, "files": len(checks)})
    for path in check_claims(ctx.remotes[side], snaps[side], checks, ctx.settings.transfers):
        log.warning("%s: %r on %s does not have the SHA-256 its metadata claims", ctx.settings.key, path, side.value)


# -- applying -------------------------------------------------------------------------------


def deferred_paths(actions: Iterable[Action], next_retry: Mapping[str, float], now: float) -> set[str]:
    """The paths of ``actions`` still waiting out the backoff of an earlier item error:
    ``next_retry`` (path -> when it may be tried again, epoch seconds) is after ``now``."""
    return {a.path for a in actions if a.path in next_retry and next_retry[a.path] > now}


def transient_streak(streak: int, error: Exception | None) -> int:
    """The transient failures in a row once one more action ended with ``error`` (None: it
    succeeded), after ``streak`` of them. A success, or an error of the item itself, ends
    the streak: the server answered."""
    return streak + 1 if isinstance(error, TransientError) else 0


def server_gone(streak: int) -> bool:
    """Whether ``streak`` transient failures in a row mean the server is gone: the other
    items would fail the same way, and a backoff kept for each would delay them once it is
    back, so the run stops (to be retried as a whole)."""
    return streak >= TRANSIENT_STREAK


def _apply(ctx: RunContext, applier: Applier, planned: Plan) -> Applied:
    """Run the plan's actions: create the folders they write into first (remotes that can),
    then run them, small new files in batches where a remote can batch.

    :returns: what the run changed, and the paths of actions deferred by their backoff.
    :raises FatalError: e.g. credentials refused. :raises TransientError: the run stops
        to be retried (a server gone while folders were created, or too many failures in a row).
    """
    actions = [a for a in planned.actions if a.kind is not ActionKind.SKIP]
    deferred: set[str] = set()
    if ctx.options.respect_backoff:
        retry_at = {e.path: e.next_retry for e in ctx.store.item_errors()}
        deferred = deferred_paths(actions, retry_at, time.time())
    if deferred:
        ctx.report.deferred = len(deferred)
        actions = [a for a in actions if a.path not in deferred]
    ctx.notify(
        "applying", {"actions": len(actions), "bytes": _planned_bytes(actions, applier.listings, applier.remotes)}
    )
    batch = _Batch(ctx.store, ctx.run_id, ctx.options.checkpoint or (lambda _stage: None), ctx.remotes)
    prepare_target_folders(applier.remotes, actions)
    # Asked only now: a remote may accept only files in the folders this run created.
    chosen = choose_batches(actions, applier.listings, *batch_settings(applier.remotes))
    applied = Applied(deferred)
    ends = _ActionEnds(ctx, batch, applied, total=len(actions))
    try:
        run_actions(
            applier, chosen.singles, ctx.settings.transfers, ends.done, ends.failed, chosen.batches, ends.started
        )
    except (Exception, KeyboardInterrupt):
        batch.flush()  # record what finished before the run stopped
        raise
    batch.flush()
    _tell_after_changes(ctx, applied)
    if ctx.report.errors:
        ctx.report.outcome = Outcome.ITEM_ERRORS
        ctx.report.message = f"{len(ctx.report.errors)} item(s) failed; they are retried on the next runs"
    return applied


class _ActionEnds:
    """Takes each action's end, in the calling thread: records finished work (in batches)
    and item errors (with their backoff), counts them in the report and tells the progress.
    Stops the run when the failures in a row say the server is gone (:func:`server_gone`)."""

    def __init__(self, ctx: RunContext, batch: _Batch, applied: Applied, *, total: int) -> None:
        self.ctx, self.batch, self.applied, self.total = ctx, batch, applied, total
        self.streak = 0
        self.transient_failures: list[str] = []  # their backoff is dropped if the run stops

    def started(self, action: Action) -> None:
        self.ctx.notify("start", {"action": action.describe(), "path": action.path})

    def done(self, done: Done) -> None:
        self.streak = transient_streak(self.streak, None)
        self.batch.add(done)
        self.applied.note(done)
        report = self.ctx.report
        report.done[done.action.kind.value] += 1
        report.bytes_moved += done.bytes_moved
        action = done.action
        self.ctx.notify(
            "done", {"action": action.describe(), "path": action.path, "bytes": done.bytes_moved, "total": self.total}
        )

    def failed(self, action: Action, exc: Exception) -> None:
        """Record the item error. :raises TransientError: the server is gone; the backoff
        of this streak's failures is dropped, so nothing waits once it is back."""
        store = self.ctx.store
        self.streak = transient_streak(self.streak, exc)
        if server_gone(self.streak):
            for path in self.transient_failures:
                store.clear_item_error(path)
            raise TransientError(f"stopped after {self.streak} failures in a row: {exc}")
        if isinstance(exc, TransientError):
            self.transient_failures.append(action.path)
        info = store.record_item_error(action.path, str(exc), time.time())
        self.ctx.report.errors.append((action.path, str(exc)))
        self.ctx.notify("error", {"path": action.path, "error": str(exc), "attempts": info.attempts})


def _tell_after_changes(ctx: RunContext, applied: Applied) -> None:
    """Tell each remote that wants to know which paths the run changed on it."""
    for side, paths in applied.touched.items():
        remote = ctx.remotes[side]
        if paths and isinstance(remote, SupportsAfterChanges):
            ctx.report.errors.extend((side.value, failure) for failure in remote.after_changes(paths))


class _Batch:
    """Finished actions waiting to be recorded: committed together every ``BATCH_ACTIONS``
    actions or ``BATCH_SECONDS``, so a large sync does not pay one transaction per file.
    Only finished work is ever in a batch, and it is made durable on the remotes before it is
    recorded (:func:`sync_writes`: one flush per batch); if the process dies (or the power goes)
    before a flush, the next run finds those paths identical on both sides (or gone from both)
    and records them without moving a byte, or finds them as the disk kept them."""

    def __init__(self, store: Store, run_id: int, checkpoint: Checkpoint, remotes: Mapping[Side, Remote]) -> None:
        self.store, self.run_id, self.checkpoint, self.remotes = store, run_id, checkpoint, remotes
        self.items: list[Done] = []
        self.since = time.monotonic()

    def add(self, done: Done) -> None:
        self.items.append(done)
        if len(self.items) >= BATCH_ACTIONS or time.monotonic() - self.since > BATCH_SECONDS:
            self.flush()
        self.checkpoint("action-done")

    def flush(self) -> None:
        if self.items:
            sync_writes(self.remotes)
            self.store.commit_actions(
                self.run_id,
                put=[b for d in self.items for b in d.put],
                drop=[p for d in self.items for p in d.drop],
                history=[h for d in self.items for h in d.history],
            )
            self.items.clear()
        self.since = time.monotonic()


def _planned_bytes(
    actions: list[Action], listings: Mapping[Side, Mapping[str, Entry]], remotes: Mapping[Side, Remote]
) -> int:
    """The bytes the actions will move through this host, counted as the Applier counts them
    (the progress bar's total): a copy its source; a move on a remote without one its file
    (copy-then-trash); a keep-both conflict both versions, and the loser's once more where its
    side cannot move it to the conflict-copy name."""
    total = 0
    for action in actions:
        if action.side is None:
            continue
        here, there = listings[action.side], listings[action.side.other]
        if action.kind is ActionKind.COPY:
            total += _size(there.get(action.path))
        elif action.kind is ActionKind.MOVE:
            total += bytes_a_move_copies(remotes[action.side], _size(here.get(action.path)))
        elif action.kind is ActionKind.CONFLICT and action.dest:
            lost = _size(here.get(action.path))
            total += _size(there.get(action.path)) + lost + bytes_a_move_copies(remotes[action.side], lost)
    return total


def _size(entry: Entry | None) -> int:
    return entry.size if entry is not None else 0


def _purge_trash(ctx: RunContext) -> None:
    """Empty trash older than the retention, at most once a day per pair."""
    stamp = ctx.settings.state_dir / "last-trash-purge"
    try:
        if time.time() - stamp.stat().st_mtime < PURGE_EVERY_S:
            return
    except FileNotFoundError:
        pass
    cutoff = ctx.now - timedelta(days=ctx.settings.trash_retention_days)
    for remote in ctx.remotes.values():
        try:
            remote.purge_trash(cutoff)
        except SyncdError:
            return  # try again next run; trash is only ever kept too long, never lost early
    stamp.touch()
