"""The command line: parse, call the engine (or, later, the daemon), render. Nothing else.

Exit codes (documented in the README):
  0 ok · 1 some items failed (retried later) · 2 usage error · 3 aborted by a safety guard,
  nothing changed · 4 fatal: config, credentials, missing root or bucket, state folder not
  writable · 5 another run of the pair holds its lock · 6 a remote was unreachable: nothing
  changed, the next run retries · 130 interrupted (SIGINT or SIGTERM): finished actions are
  recorded · 70 internal error (a bug: SYNCD_DEBUG=1 shows the traceback).

Every human-readable line goes through :func:`syncd.display.printable` where it is written:
names from a remote never reach the terminal raw. ``--json`` keeps them exact.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from syncd import __version__
from syncd.display import printable
from syncd.errors import ConfigError, FatalError, LockedError, SyncdError

if TYPE_CHECKING:
    from syncd.config import Config, PairConfig
    from syncd.index.store import RunInfo
    from syncd.models import Report

EXIT_OK, EXIT_ITEMS, EXIT_USAGE, EXIT_ABORTED, EXIT_FATAL, EXIT_LOCKED, EXIT_RETRY = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C; SIGTERM ends the same way
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in syncd
INTERRUPTED = "interrupted; finished actions are recorded, the next run goes on from there"
PLAIN_PROGRESS_EVERY_S = 2.0
OUTCOME_EXIT = {
    "ok": EXIT_OK,
    "item-errors": EXIT_ITEMS,
    "aborted": EXIT_ABORTED,
    "fatal": EXIT_FATAL,
    "retry": EXIT_RETRY,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Two-way sync of Nextcloud/Pydio files with Storj.")
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default $SYNCD_CONFIG or /etc/syncd/syncd.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    now = sub.add_parser("now", help="sync now (USER or USER/PAIR; all pairs by default)")
    now.add_argument("target", nargs="?", metavar="USER[/PAIR]")
    now.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    now.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")
    now.add_argument("-v", "--verbose", action="store_true", help="print every action as it is done")
    now.add_argument("--force", action="store_true", help="override the empty-side and mass-delete guards")
    now.set_defaults(handler=cmd_now)

    for name, handler, help_text in (
        ("status", cmd_status, "last run, counts, errors and skipped names of every pair"),
        ("log", cmd_log, "what changed when"),
        ("conflicts", cmd_conflicts, "conflict copies made, newest first"),
        ("check", cmd_check, "validate the config and reach every remote"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("target", nargs="?", metavar="USER[/PAIR]")
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("log", "conflicts"):
            cmd.add_argument("-n", "--limit", type=int, default=50, help="how many lines (default 50)")
        if name == "status":
            cmd.add_argument(
                "-v", "--verbose", action="store_true", help="list every item error and every skipped name"
            )
        cmd.set_defaults(handler=handler)
    from syncd.cli_daemon import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except LockedError as exc:
        _fail(str(exc))
        return EXIT_LOCKED
    except (ConfigError, FatalError) as exc:
        _fail(str(exc))
        return EXIT_FATAL
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see Terminated)
        _fail(str(exc) or INTERRUPTED)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line for the admin, the traceback on request
        if os.environ.get("SYNCD_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with SYNCD_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


def _fail(message: str) -> None:
    print(printable(f"syncd: error: {message}"), file=sys.stderr)


def _say(text: str) -> None:
    """One human-readable line on stderr."""
    print(printable(text), file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken like Ctrl-C: the run stops, records "interrupted" with what it finished,
    and the command ends with one line and :data:`EXIT_INTERRUPTED` (not silently with 143)."""

    def __init__(self) -> None:
        super().__init__(f"interrupted by SIGTERM; {INTERRUPTED.removeprefix('interrupted; ')}")


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated()


def _stop_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread, as SIGINT raises
    KeyboardInterrupt: every ``finally`` runs and the run's record is closed."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _config(args: argparse.Namespace) -> Config:
    from syncd.config import config_path, load_config

    return load_config(config_path(args.config))


# -- now ---------------------------------------------------------------------------------------


def cmd_now(args: argparse.Namespace) -> int:
    from syncd.engine.sync import RunOptions, sync_pair

    _stop_on_sigterm()
    config = _config(args)
    from syncd.cli_daemon import try_daemon_now

    if (code := try_daemon_now(args, config)) is not None:  # the service runs: it does the work
        return code
    worst = EXIT_OK
    options = RunOptions(dry_run=args.dry_run, force=args.force)
    for pair in config.select(args.target):
        started = time.monotonic()
        with _Progress(pair, as_json=args.json, verbose=args.verbose) as progress:
            try:
                report = sync_pair(pair, options, progress)
            except LockedError as exc:
                _fail(str(exc))
                worst = max(worst, EXIT_LOCKED)
                continue
            except SyncdError as exc:
                _fail(f"{pair.key}: {exc}")
                worst = max(worst, EXIT_FATAL)
                continue
        newly = note_skipped(pair, report, save=not args.dry_run)
        seconds = time.monotonic() - started
        _render_report(pair, report, newly, seconds, as_json=args.json, dry_run=args.dry_run, verbose=args.verbose)
        worst = max(worst, OUTCOME_EXIT[report.outcome.value])
    return worst


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


class _Progress:
    """Progress while a pair syncs: a rich bar on a terminal, plain lines otherwise,
    JSON lines with --json."""

    def __init__(self, pair: PairConfig, *, as_json: bool, verbose: bool) -> None:
        self.pair = pair
        self.as_json = as_json
        self.verbose = verbose
        self.count = self.total = 0
        self.last_line = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Callable[[str, dict[str, object]], None]:
        if not self.as_json and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"[bold]{self.pair.key}[/] {{task.description}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("listing", total=None)
        return self.event

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def event(self, name: str, data: dict[str, object]) -> None:
        if self.as_json:
            print(json.dumps({"event": name, "pair": self.pair.key, **data}), flush=True)
        elif self.bar is not None:
            if name == "applying":
                self.bar.update(self.task, description="syncing", total=data["actions"], completed=0)
            elif name in ("done", "error"):
                self.bar.advance(self.task)
                if name == "error":
                    from rich.markup import escape

                    line = printable(f"{data['path']}: {data['error']}")
                    self.bar.console.print(f"[red]error[/] {escape(line)}")
            elif name in ("hashing", "listed"):
                self.bar.update(self.task, description=name)
        elif name == "applying":
            self.total = int(str(data["actions"]))
            _say(f"{self.pair.key}: {self.total} action(s) to run")
        elif name == "done":
            self.count += 1
            if self.verbose:
                _say(f"{self.pair.key}: {data['action']}")
            elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_EVERY_S:
                self.last_line = time.monotonic()
                _say(f"{self.pair.key}: {self.count}/{self.total} done")
        elif name == "error":
            _say(f"{self.pair.key}: error {data['path']}: {data['error']}")


def _render_report(
    pair: PairConfig,
    report: Report,
    newly_skipped: list[tuple[str, str]],
    seconds: float,
    *,
    as_json: bool,
    dry_run: bool,
    verbose: bool,
) -> None:
    """The run's result: JSON (exact names), or the plan and the summary on stdout, skipped
    names (only the new ones unless ``verbose``) and the message on stderr."""
    plan = report.plan
    if as_json:
        print(
            json.dumps(
                {
                    "event": "report",
                    "pair": pair.key,
                    "outcome": report.outcome.value,
                    "message": report.message,
                    "done": dict(report.done),
                    "errors": report.errors,
                    "skipped": report.skipped,
                    "skipped_new": newly_skipped,
                    "bytes": report.bytes_moved,
                    "seconds": round(seconds, 3),
                    "plan": [a.describe() for a in plan.actions] if dry_run and plan else None,
                }
            ),
            flush=True,
        )
        if report.message:  # for the human reading the logs; scripts read the JSON
            _say(f"{pair.key}: {report.message}")
        return
    if dry_run and plan is not None:
        print(printable(f"{pair.key}: plan ({len(plan.actions)} actions, nothing changed):"))
        for action in plan.actions:
            print(printable(f"  {action.describe()}"))
    for path, reason in sorted(report.skipped) if verbose else newly_skipped:
        _say(f"{pair.key}: skipped {path}: {reason}")
    print(printable(_summary(pair, report, seconds)), flush=True)
    if report.message:
        _say(f"{pair.key}: {report.message}")


def _summary(pair: PairConfig, report: Report, seconds: float) -> str:
    done = ", ".join(f"{n} {k}" for k, n in sorted(report.done.items())) or "nothing to do"
    summary = f"{pair.key}: {report.outcome.value}: {done}; {_size(report.bytes_moved)} in {seconds:.2f}s"
    if report.errors:
        summary += f"; {len(report.errors)} failed"
    if report.skipped:
        summary += f"; {len(report.skipped)} name(s) skipped"
    return summary


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# -- status, log, conflicts, check -------------------------------------------------------------


def _open_index(pair: PairConfig) -> Any:
    from syncd.index.store import Store

    if not pair.index_path.exists():
        return None
    return Store.open(pair.index_path)


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    rows = [_status_row(pair, verbose=args.verbose) for pair in config.select(args.target)]
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    for row in rows:
        _print_status(row, verbose=args.verbose)
    return EXIT_OK


def _status_row(pair: PairConfig, *, verbose: bool) -> dict[str, Any]:
    """What ``status`` says of one pair (the ``--json`` row): exact names, escaped only when printed."""
    store = _open_index(pair)
    if store is None:
        return {"pair": pair.key, "state": "never synced"}
    try:
        runs, errors, files = store.runs(1), store.item_errors(), store.count_bases()
        names = store.skipped() if verbose else None
        skipped = len(names) if names is not None else store.count_skipped()
    finally:
        store.close()
    row: dict[str, Any] = {
        "pair": pair.key,
        "files": files,
        "errors": [(e.path, e.error) for e in errors],
        "skipped": skipped,
    }
    if names is not None:
        row["skipped_names"] = names
    if runs:
        state, message = run_state(runs[0])
        row.update(state=state, last_run=_when(runs[0].started_at), counts=runs[0].counts, message=message)
    return row


def run_state(run: RunInfo) -> tuple[str, str]:
    """(state, message) of a run as ``status`` shows it. A run recorded as "running" whose
    process is gone (killed, host rebooted) "died"; one interrupted by an older syncd, which
    recorded "fatal: stopped by KeyboardInterrupt", is "interrupted"."""
    if run.outcome == "fatal" and run.message.startswith("stopped by KeyboardInterrupt"):
        return "interrupted", INTERRUPTED
    if run.outcome != "running":
        return run.outcome, run.message
    from syncd.lock import process_alive

    alive = process_alive(run.host, run.pid, run.pid_start)
    if alive:
        return "running", f"pid {run.pid}"
    if alive is False:
        return "died", (
            f"its process (pid {run.pid}) ended without finishing the run (killed?); "
            "finished actions are recorded, the next run goes on from there"
        )
    if run.pid is None:
        return "unknown", "recorded as running by an older syncd, which did not record its process"
    return "running", f"on host {run.host} (pid {run.pid}): not checked from this host"


def _print_status(row: dict[str, Any], *, verbose: bool) -> None:
    if "files" not in row:
        print(printable(f"{row['pair']}: {row['state']}"))
        return
    counts_by_kind: dict[str, int] = row.get("counts", {})
    counts = ", ".join(f"{n} {k}" for k, n in sorted(counts_by_kind.items())) or "no changes"
    item_errors: list[tuple[str, str]] = row["errors"]
    lines = [
        f"{row['pair']}: {row.get('state', 'never synced')}, last run {row.get('last_run', '-')} "
        f"({counts}); {row['files']} files in sync; {len(item_errors)} item error(s); "
        f"{row['skipped']} skipped name(s)"
    ]
    if row.get("message"):
        lines.append(f"  {row['message']}")
    lines += [f"  error {path}: {error}" for path, error in (item_errors if verbose else item_errors[:10])]
    lines += [f"  skipped {path}: {reason}" for path, reason in row.get("skipped_names") or []]
    if row["skipped"] and not verbose:
        lines.append("  (syncd status -v lists the skipped names)")
    for line in lines:
        print(printable(line))


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _history(args: argparse.Namespace, action: str | None) -> int:
    config = _config(args)
    out = []
    for pair in config.select(args.target):
        store = _open_index(pair)
        if store is None:
            continue
        try:
            out += [(pair.key, item) for item in store.history(args.limit, action)]
        finally:
            store.close()
    out.sort(key=lambda row: row[1].at, reverse=True)
    for key, item in out[: args.limit]:
        if args.json:
            print(
                json.dumps(
                    {
                        "pair": key,
                        "at": item.at,
                        "action": item.action,
                        "path": item.path,
                        "side": item.side,
                        "detail": item.detail,
                    }
                )
            )
        elif action == "conflict":
            print(printable(f"{_when(item.at)} {key}: {item.path}: the {item.side} version is now '{item.detail}'"))
        else:
            side = f" on {item.side}" if item.side else ""
            print(printable(f"{_when(item.at)} {key}: {item.action}{side} {item.path}  {item.detail}"))
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    return _history(args, None)


def cmd_conflicts(args: argparse.Namespace) -> int:
    return _history(args, "conflict")


def cmd_check(args: argparse.Namespace) -> int:
    """The config is valid (else exit 4 from loading it), the state folders are writable and
    every remote answers. Problems go to stderr, one line each; any of them makes exit 4."""
    from syncd.engine.sync import open_remotes

    config = _config(args)
    print(printable(f"{config.path}: valid, {len(config.pairs)} pair(s)"))
    worst = EXIT_OK if _check_folder("state", config.daemon.state_dir) else EXIT_FATAL
    for pair in config.select(args.target):
        if not _check_folder(f"{pair.key} state", pair.state_dir):
            worst = EXIT_FATAL
        try:
            remotes = open_remotes(pair)
            try:
                for side, remote in remotes.items():
                    _probe(remote)
                    print(printable(f"{pair.key} {side.value}: reachable ({remote.name})"))
            finally:
                for remote in remotes.values():
                    remote.close()
        except SyncdError as exc:
            _say(f"{pair.key}: {exc}")
            worst = EXIT_FATAL
    return worst


def _check_folder(label: str, folder: Path) -> bool:
    problem = writable_problem(folder)
    if problem is not None:
        _say(f"{label}: {problem}")
        return False
    print(printable(f"{label}: writable ({folder})"))
    return True


STATE_FILES = ("lock", "index.db", "index.db-wal", "index.db-shm")


def writable_problem(folder: Path) -> str | None:
    """None when syncd can create and write its files in ``folder``, else what is wrong. A
    folder that does not exist yet is created by the first run: its nearest existing parent
    takes the test. Writes and removes one probe file; changes nothing else."""
    import tempfile

    probe = folder
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            return f"{probe} is not a folder"
        fd, name = tempfile.mkstemp(dir=probe, prefix=".syncd-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return _cannot_write(probe, exc)
    for existing in (probe / n for n in STATE_FILES if probe == folder and (probe / n).exists()):
        try:
            os.close(os.open(existing, os.O_RDWR))  # opened, not changed: sqlite's and flock's own files
        except OSError as exc:
            return _cannot_write(existing, exc)
    return None


def _cannot_write(path: Path, exc: OSError) -> str:
    return f"cannot write {path}: {exc.strerror or exc} (syncd keeps its index, lock and trash there)"


def _probe(remote: Any) -> None:
    """Reach the remote: read the start of its listing (raises what listing raises)."""
    for _entry in remote.list():
        break


if __name__ == "__main__":
    sys.exit(main())
