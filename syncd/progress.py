"""``syncd now`` as its user sees it: one renderer for a run in this process and for one the
daemon runs, fed the same events and results.

Input: *events*, the control protocol's event lines (``{"event": name, "pair": key, ...}``;
an in-process run's progress is put in that shape by :meth:`NowRenderer.progress_for`), and
one :class:`~syncd.outcomes.RunResult` per pair.

Output, the same for both:

* ``--json``: every event as it came, then one ``report`` line per pair (:func:`report_line`),
  exact names; the human lines of a result (its message, an error) still go to stderr;
* on a terminal: a rich progress bar, one row per pair;
* otherwise plain lines on stderr: the number of actions, ``n/total done`` at most every
  :data:`PLAIN_PROGRESS_EVERY_S`, every action with ``-v``, every failed item;
* then per pair: the plan of a dry run and the summary on stdout, skipped names (the new
  ones, every one with ``-v``) and the message on stderr; a run that has no report (refused,
  stopped) is one ``syncd: error:`` line instead.

Every human-readable line goes through :func:`syncd.display.printable` where it is written.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from syncd.display import printable, size
from syncd.outcomes import RunResult

PLAIN_PROGRESS_EVERY_S = 2.0
_WAITING = {"joined": "joined the run in progress", "queued": "queued after the run in progress"}


def say(text: str) -> None:
    """One human-readable line on stderr, escaped, in one write: ``print`` writes the text and
    its newline apart, and SIGTERM's handler (which raises in the main thread) could end the
    run between the two, gluing the ``syncd: error:`` line to the end of an action line."""
    sys.stderr.write(printable(text) + "\n")
    sys.stderr.flush()


def fail(message: str) -> None:
    """The ``syncd: error:`` line on stderr."""
    say(f"syncd: error: {message}")


def report_line(result: RunResult) -> dict[str, Any]:
    """The ``--json`` line of a finished run (the README's Commands section documents it)."""
    return {
        "event": "report",
        "pair": result.pair,
        "outcome": result.outcome.value,
        "message": result.message,
        "reported": result.reported,
        "done": dict(result.done),
        "errors": [list(e) for e in result.errors],
        "error_count": result.error_count,
        "skipped": [list(s) for s in result.skipped],
        "skipped_count": result.skipped_count,
        "skipped_new": [list(s) for s in result.skipped_new],
        "bytes": result.bytes_moved,
        "seconds": result.seconds,
        "plan": list(result.plan) if result.plan is not None else None,
    }


def summary(result: RunResult) -> str:
    """``user/pair: ok: 4 copy; 1.2 KiB in 0.31s`` (+ failed and skipped counts); for a dry
    run ``user/pair: dry run, ok: 4 action(s) planned, nothing changed``."""
    if result.plan is not None:  # a dry run: what it would do
        line = f"{result.pair}: dry run, {result.outcome.value}: {len(result.plan)} action(s) planned, nothing changed"
    else:
        moved = f"{size(result.bytes_moved)} in {result.seconds:.2f}s"
        line = f"{result.pair}: {result.outcome.value}: {result.done_text}; {moved}"
    if result.error_count:
        line += f"; {result.error_count} failed"
    if result.skipped_count:
        line += f"; {result.skipped_count} name(s) skipped"
    return line


def naming(pair: str, message: str) -> str:
    """``message`` led by the pair's key, once (many errors already name their pair, as
    ``alice/default: ...`` or ``alice/default files: ...``)."""
    return message if message.startswith((f"{pair}: ", f"{pair} ")) else f"{pair}: {message}"


@dataclass(slots=True)
class RunProgress:
    """Where one pair's run stands, from its events: actions and bytes done of those planned,
    and :attr:`current`, the file in flight that started last (with none in flight, the one
    that ended last). Both the bar and the plain lines show :meth:`line`."""

    done: int = 0
    total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    current: str = ""
    running: dict[str, None] = field(default_factory=dict)  # paths in flight, in order of start
    started: float | None = None  # time.monotonic() when applying began
    last_line: float = field(default_factory=time.monotonic)

    def take(self, message: dict[str, Any], now: float) -> None:
        """Count one event (``applying``, ``start``, ``done``, ``error``; others change nothing here)."""
        name = message.get("event")
        path = str(message.get("path") or message.get("action") or "")
        if name == "applying":
            self.total, self.bytes_total = _int(message.get("actions")), _int(message.get("bytes"))
            self.started = now
        elif name == "start":
            self.running.pop(path, None)
            self.running[path] = None
            self.current = path
        elif name in ("done", "error"):
            self.done += 1
            self.bytes_done += _int(message.get("bytes"))
            self.running.pop(path, None)
            self.current = next(reversed(self.running)) if self.running else path

    def rate(self, now: float) -> float:
        """Bytes per second moved since applying began."""
        elapsed = now - self.started if self.started is not None else 0.0
        return self.bytes_done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float) -> str:
        """``3/10 files, 1.2 MiB of 4.0 MiB, 350.0 KiB/s`` (no bytes part when none move)."""
        text = f"{self.done}/{self.total} files"
        if self.bytes_total or self.bytes_done:
            text += f", {size(self.bytes_done)} of {size(self.bytes_total)}, {size(int(self.rate(now)))}/s"
        return text

    @property
    def units(self) -> tuple[int, int]:
        """(completed, total) for a bar and its ETA: bytes plus one per action, so that a big
        file and a thousand deletes both move it."""
        return self.bytes_done + self.done, self.bytes_total + self.total


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class NowRenderer:
    """Renders one ``syncd now``: use as a context manager (it owns the bar), feed it
    :meth:`event` and :meth:`result`. ``bar`` None: a bar when stderr is a terminal and
    the output is not JSON. The bar shows while a run goes on and is gone (transient)
    before results are printed, so they never mix with it; with ``verbose`` every action
    is printed above it as it ends. ``console`` (a rich Console) is for tests."""

    def __init__(
        self, *, as_json: bool, verbose: bool, dry_run: bool, bar: bool | None = None, console: Any = None
    ) -> None:
        self.as_json, self.verbose, self.dry_run = as_json, verbose, dry_run
        self.use_bar = (not as_json and sys.stderr.isatty()) if bar is None else bar
        self.counts: dict[str, RunProgress] = {}
        self._console = console
        self._bar: Any = None  # rich.progress.Progress, imported only when shown
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> NowRenderer:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._stop_bar()

    def _start_bar(self) -> Any:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.fields[pair]}[/] {task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[stats]}", markup=False),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", markup=False),
                console=self._console or Console(stderr=True),
                transient=True,
            )
            self._bar.start()
        return self._bar

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks.clear()

    def progress_for(self, pair: str) -> Callable[[str, dict[str, object]], None]:
        """The engine's progress callback for an in-process run of ``pair``."""

        def progress(name: str, data: dict[str, object]) -> None:
            self.event({"event": name, "pair": pair, **data})

        return progress

    # -- events -----------------------------------------------------------------------------

    def event(self, message: dict[str, Any]) -> None:
        """One progress event (a control protocol event line)."""
        if self.as_json:
            print(json.dumps(message), flush=True)
            return
        pair = str(message.get("pair", "?"))
        count = self.counts.setdefault(pair, RunProgress())
        now = time.monotonic()
        count.take(message, now)
        if self.use_bar:
            self._bar_event(pair, message, count, now)
        else:
            self._plain_event(pair, message, count, now)

    def _plain_event(self, pair: str, message: dict[str, Any], count: RunProgress, now: float) -> None:
        name = message.get("event")
        if name == "applying":
            planned = f" ({size(count.bytes_total)} to move)" if count.bytes_total else ""
            say(f"{pair}: {count.total} action(s) to run{planned}")
        elif name == "done":
            if self.verbose:
                say(f"{pair}: {message.get('action')}")
            elif now - count.last_line >= PLAIN_PROGRESS_EVERY_S:
                count.last_line = now
                say(f"{pair}: {count.line(now)}")
        elif name == "error":
            say(f"{pair}: error {message.get('path')}: {message.get('error')}")
        elif name in _WAITING:
            say(f"{pair}: {_WAITING[str(name)]}")

    def _bar_event(self, pair: str, message: dict[str, Any], count: RunProgress, now: float) -> None:
        name = message.get("event")
        bar = self._start_bar()
        task = self._tasks.get(pair)
        if task is None:
            task = self._tasks[pair] = bar.add_task("listing", total=None, pair=pair, stats="", current="")
        if name in ("applying", "start", "done", "error"):
            completed, total = count.units
            current = printable(count.current)
            bar.update(
                task,
                description="syncing",
                completed=completed,
                total=total or None,
                stats=count.line(now),
                current=current if len(current) <= 60 else "..." + current[-57:],
            )
        if name == "done" and self.verbose:
            bar.console.print(printable(f"{pair}: {message.get('action')}"), markup=False, highlight=False)
        elif name == "error":
            from rich.markup import escape

            line = printable(f"{pair}: {message.get('path')}: {message.get('error')}")
            bar.console.print(f"[red]error[/] {escape(line)}", highlight=False)
        elif name in ("hashing", "listed", *_WAITING):
            bar.update(task, description=name)

    # -- results ----------------------------------------------------------------------------

    def result(self, result: RunResult) -> None:
        """One pair's result: its report line (JSON), or its plan, skipped names and summary;
        a run with no report is one error line."""
        task = self._tasks.pop(result.pair, None)
        if task is not None:
            self._bar.remove_task(task)
        if not self._tasks:  # no run left to show: clear the bar before the result's lines
            self._stop_bar()
        if self.as_json:
            print(json.dumps(report_line(result)), flush=True)
        if not result.reported:
            fail(naming(result.pair, result.message))
            return
        if not self.as_json:
            self._show(result)
        if result.message:  # in JSON mode too: for the human reading the logs
            say(naming(result.pair, result.message))

    def _show(self, result: RunResult) -> None:
        if self.dry_run and result.plan is not None:
            print(printable(f"{result.pair}: plan ({len(result.plan)} actions, nothing changed):"))
            for action in result.plan:
                print(printable(f"  {action}"))
        for path, reason in result.skipped if self.verbose else result.skipped_new:
            say(f"{result.pair}: skipped {path}: {reason}")
        print(printable(summary(result)), flush=True)
