"""How a run ends, and the exit code that says so: the one table the CLI and the daemon share.

Exit codes (documented in the README's Commands section)::

    0  ok
    1  some items failed (recorded, retried with backoff on the next runs)
    2  usage error
    3  aborted by a safety guard: nothing changed
    4  fatal: config, credentials, missing root or bucket, a state folder syncd cannot write
    5  busy: another run of the pair holds its lock, or the daemon has the pair paused
    6  a remote was unreachable or failed mid-listing: nothing changed, the next run retries
    70 internal error (a bug; SYNCD_DEBUG=1 shows the traceback)
    130 the command itself was interrupted (SIGINT or SIGTERM): finished actions are recorded

With several pairs the highest code wins (:func:`exit_code`). Pure data: no I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from syncd.models import Outcome, Report

INTERRUPTED_MESSAGE = "interrupted; finished actions are recorded, the next run goes on from there"


class ExitCode(enum.IntEnum):
    OK = 0
    ITEM_ERRORS = 1
    USAGE = 2
    ABORTED = 3
    FATAL = 4
    BUSY = 5
    RETRY = 6
    INTERNAL = 70  # EX_SOFTWARE
    INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C; SIGTERM ends the same way


OUTCOME_EXIT: Mapping[Outcome, ExitCode] = MappingProxyType(
    {
        Outcome.OK: ExitCode.OK,
        Outcome.ITEM_ERRORS: ExitCode.ITEM_ERRORS,
        Outcome.ABORTED: ExitCode.ABORTED,
        Outcome.FATAL: ExitCode.FATAL,
        Outcome.RETRY: ExitCode.RETRY,
        Outcome.LOCKED: ExitCode.BUSY,
        Outcome.PAUSED: ExitCode.BUSY,
        # A run ends as an *outcome* "interrupted" only when the daemon running it stops: the
        # command asking for it was not interrupted (that one exits 130 by its own signal), it
        # lost its service, which an admin must start again.
        Outcome.INTERRUPTED: ExitCode.FATAL,
    }
)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of one pair came to, as ``syncd now`` shows it and the daemon sends it.

    ``reported`` is False for a run that has no engine report to show: refused before it
    started (locked, paused, a fatal error opening the pair) or stopped by the daemon; such a
    result is shown as one error line made of ``message``. ``errors``, ``skipped`` and
    ``skipped_new`` are (path, reason) pairs; the daemon sends only the first of each list,
    so ``error_count`` and ``skipped_count`` are the true totals. ``plan`` holds the described
    actions of a dry run, else None.
    """

    pair: str
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    reported: bool = True
    done: Mapping[str, int] = field(default_factory=dict)
    bytes_moved: int = 0
    errors: tuple[tuple[str, str], ...] = ()
    error_count: int = 0
    skipped: tuple[tuple[str, str], ...] = ()
    skipped_count: int = 0
    skipped_new: tuple[tuple[str, str], ...] = ()
    plan: tuple[str, ...] | None = None

    @property
    def done_text(self) -> str:
        """``4 copy, 1 delete``; with nothing done, ``nothing to do`` after an ok run and
        ``nothing done`` after one that stopped (a fatal run did not find nothing to do)."""
        done = ", ".join(f"{n} {kind}" for kind, n in sorted(self.done.items()))
        return done or ("nothing to do" if self.outcome is Outcome.OK else "nothing done")

    @classmethod
    def of_report(
        cls, report: Report, newly_skipped: Iterable[tuple[str, str]], seconds: float, *, with_plan: bool
    ) -> RunResult:
        """The result of a run the engine reported; ``with_plan`` keeps its plan (a dry run)."""
        plan = report.plan
        return cls(
            pair=report.pair,
            outcome=report.outcome,
            message=report.message,
            seconds=round(seconds, 3),
            done=dict(report.done),
            bytes_moved=report.bytes_moved,
            errors=tuple(report.errors),
            error_count=len(report.errors),
            skipped=tuple(sorted(report.skipped)),
            skipped_count=len(report.skipped),
            skipped_new=tuple(newly_skipped),
            plan=tuple(a.describe() for a in plan.actions) if with_plan and plan is not None else None,
        )

    @classmethod
    def unreported(cls, pair: str, outcome: Outcome, message: str, seconds: float = 0.0) -> RunResult:
        """A run with no report: refused before it started, or stopped by the daemon."""
        return cls(pair=pair, outcome=outcome, message=message, seconds=round(seconds, 3), reported=False)

    @property
    def exit_code(self) -> ExitCode:
        return OUTCOME_EXIT[self.outcome]


def exit_code(results: Iterable[RunResult]) -> ExitCode:
    """The command's exit code for these runs: the highest of theirs, 0 for none."""
    return max((r.exit_code for r in results), default=ExitCode.OK)
