"""One run of one pair as a :class:`~syncd.outcomes.RunResult`: what ``syncd now`` (in
process) and the daemon both do around :func:`syncd.engine.sync.sync_pair`.

The run's refusals (lock held, a fatal error opening the pair) become results, the names it
skipped are kept in the pair's index, and the result says which of them are new.
"""

from __future__ import annotations

import time

from syncd.config import PairConfig
from syncd.engine.sync import ProgressFn, RunOptions, sync_pair
from syncd.errors import FatalError, LockedError, SyncdError
from syncd.models import Outcome, Report
from syncd.outcomes import RunResult


def run_pair(pair: PairConfig, options: RunOptions, progress: ProgressFn, *, started: float) -> RunResult:
    """Sync ``pair`` once and note its skipped names (not for a dry run). ``started`` is the
    ``time.monotonic()`` the run's time counts from.

    Never raises a :class:`SyncdError`: a lock held is a ``locked`` result, any other such
    error before the engine could report is a ``fatal`` one. An interrupt (KeyboardInterrupt
    and its subclasses) propagates: the engine has recorded the run as interrupted.
    """
    try:
        report = sync_pair(pair, options, progress)
    except SyncdError as exc:
        return refused(pair, exc, started=started)
    newly = note_skipped(pair, report, hints=options.hints, save=not options.dry_run)
    return RunResult.of_report(report, newly, time.monotonic() - started, with_plan=options.dry_run)


def refused(pair: PairConfig, exc: SyncdError, *, started: float) -> RunResult:
    """The result of a run that ``exc`` stopped before the engine could report it."""
    outcome = Outcome.LOCKED if isinstance(exc, LockedError) else Outcome.FATAL
    return RunResult.unreported(pair.key, outcome, str(exc), time.monotonic() - started)


def note_skipped(
    pair: PairConfig, report: Report, *, hints: frozenset[str] | None = None, save: bool = True
) -> list[tuple[str, str]]:
    """Keep the names ``report``'s run skipped in the pair's index (all of them, or those
    under ``hints`` after a hinted run; ``save`` False changes nothing) and return the ones
    not skipped before: a run reports a skipped name once, ``syncd status`` counts them.

    A run that made no plan (it stopped earlier) changes nothing and returns nothing. When
    the index cannot be written now (another run holds the pair's lock: it records its own;
    or an index error), every skipped name of this run is returned, so none goes unreported.
    """
    if report.plan is None:
        return []
    from syncd.index.store import Store
    from syncd.lock import pair_lock

    try:
        with pair_lock(pair.state_dir, pair.key):
            store = Store.open(pair.index_path)
            try:
                return store.note_skipped(report.skipped, under=hints, save=save)
            finally:
                store.close()
    except FatalError:
        return sorted(report.skipped)
