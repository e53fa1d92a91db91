"""The command line: parse, call the engine (or, later, the daemon), render. Nothing else.

Exit codes (documented in the README):
  0 ok · 1 some items failed (retried later) · 2 usage error · 3 aborted by a safety guard,
  nothing changed · 4 fatal: config, credentials, missing root or bucket · 5 another run of the
  pair holds its lock · 6 a remote was unreachable: nothing changed, the next run retries ·
  70 internal error (a bug: SYNCD_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from syncd import __version__
from syncd.errors import ConfigError, FatalError, LockedError, SyncdError

if TYPE_CHECKING:
    from syncd.config import Config, PairConfig
    from syncd.models import Report

EXIT_OK, EXIT_ITEMS, EXIT_USAGE, EXIT_ABORTED, EXIT_FATAL, EXIT_LOCKED, EXIT_RETRY = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in syncd
PLAIN_PROGRESS_EVERY_S = 2.0
OUTCOME_EXIT = {
    "ok": EXIT_OK, "item-errors": EXIT_ITEMS, "aborted": EXIT_ABORTED, "fatal": EXIT_FATAL, "retry": EXIT_RETRY,
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
        ("status", cmd_status, "last run, counts and errors of every pair"),
        ("log", cmd_log, "what changed when"),
        ("conflicts", cmd_conflicts, "conflict copies made, newest first"),
        ("check", cmd_check, "validate the config and reach every remote"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("target", nargs="?", metavar="USER[/PAIR]")
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("log", "conflicts"):
            cmd.add_argument("-n", "--limit", type=int, default=50, help="how many lines (default 50)")
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
    except KeyboardInterrupt:
        _fail("interrupted; finished actions are recorded, the next run goes on from there")
        return 130
    except Exception as exc:  # a bug: one line for the admin, the traceback on request
        if os.environ.get("SYNCD_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with SYNCD_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


def _fail(message: str) -> None:
    print(f"syncd: error: {message}", file=sys.stderr)


def _config(args: argparse.Namespace) -> Config:
    from syncd.config import config_path, load_config

    return load_config(config_path(args.config))


# -- now ---------------------------------------------------------------------------------------


def cmd_now(args: argparse.Namespace) -> int:
    from syncd.engine.sync import RunOptions, sync_pair

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
        _render_report(pair, report, time.monotonic() - started, as_json=args.json, dry_run=args.dry_run)
        worst = max(worst, OUTCOME_EXIT[report.outcome.value])
    return worst


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
                BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
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
                    self.bar.console.print(f"[red]error[/] {data['path']}: {data['error']}")
            elif name in ("hashing", "listed"):
                self.bar.update(self.task, description=name)
        elif name == "applying":
            self.total = int(str(data["actions"]))
            print(f"{self.pair.key}: {self.total} action(s) to run", file=sys.stderr, flush=True)
        elif name == "done":
            self.count += 1
            if self.verbose:
                print(f"{self.pair.key}: {data['action']}", file=sys.stderr, flush=True)
            elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_EVERY_S:
                self.last_line = time.monotonic()
                print(f"{self.pair.key}: {self.count}/{self.total} done", file=sys.stderr, flush=True)
        elif name == "error":
            print(f"{self.pair.key}: error {data['path']}: {data['error']}", file=sys.stderr, flush=True)


def _render_report(pair: PairConfig, report: Report, seconds: float, *, as_json: bool, dry_run: bool) -> None:
    plan = report.plan
    if as_json:
        print(json.dumps({
            "event": "report", "pair": pair.key, "outcome": report.outcome.value, "message": report.message,
            "done": dict(report.done), "errors": report.errors, "skipped": report.skipped,
            "bytes": report.bytes_moved, "seconds": round(seconds, 3),
            "plan": [a.describe() for a in plan.actions] if dry_run and plan else None,
        }), flush=True)
        if report.message:  # for the human reading the logs; scripts read the JSON
            print(f"{pair.key}: {report.message}", file=sys.stderr)
        return
    if dry_run and plan is not None:
        print(f"{pair.key}: plan ({len(plan.actions)} actions, nothing changed):")
        for action in plan.actions:
            print(f"  {action.describe()}")
    for path, reason in report.skipped:
        print(f"{pair.key}: skipped {path}: {reason}", file=sys.stderr)
    done = ", ".join(f"{n} {k}" for k, n in sorted(report.done.items())) or "nothing to do"
    summary = f"{pair.key}: {report.outcome.value}: {done}; {_size(report.bytes_moved)} in {seconds:.2f}s"
    if report.errors:
        summary += f"; {len(report.errors)} failed"
    print(summary)
    if report.message:
        print(f"{pair.key}: {report.message}", file=sys.stderr)


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
    rows: list[dict[str, Any]] = []
    for pair in config.select(args.target):
        store = _open_index(pair)
        if store is None:
            rows.append({"pair": pair.key, "state": "never synced"})
            continue
        try:
            runs, errors, files = store.runs(1), store.item_errors(), store.count_bases()
        finally:
            store.close()
        row: dict[str, Any] = {"pair": pair.key, "files": files, "errors": [(e.path, e.error) for e in errors]}
        if runs:
            last = runs[0]
            row.update(state=last.outcome, last_run=_when(last.started_at), counts=last.counts, message=last.message)
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    for row in rows:
        if "files" not in row:
            print(f"{row['pair']}: {row['state']}")
            continue
        counts_by_kind: dict[str, int] = row.get("counts", {})
        counts = ", ".join(f"{n} {k}" for k, n in sorted(counts_by_kind.items())) or "no changes"
        print(f"{row['pair']}: {row.get('state', 'never synced')}, last run {row.get('last_run', '-')} "
              f"({counts}); {row['files']} files in sync; {len(row['errors'])} item error(s)")
        if row.get("message"):
            print(f"  {row['message']}")
        item_errors: list[tuple[str, str]] = row["errors"]
        for path, error in item_errors[:10]:
            print(f"  error {path}: {error}")
    return EXIT_OK


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
            print(json.dumps({"pair": key, "at": item.at, "action": item.action, "path": item.path,
                              "side": item.side, "detail": item.detail}))
        elif action == "conflict":
            print(f"{_when(item.at)} {key}: {item.path}: the {item.side} version is now {item.detail!r}")
        else:
            side = f" on {item.side}" if item.side else ""
            print(f"{_when(item.at)} {key}: {item.action}{side} {item.path}  {item.detail}")
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    return _history(args, None)


def cmd_conflicts(args: argparse.Namespace) -> int:
    return _history(args, "conflict")


def cmd_check(args: argparse.Namespace) -> int:
    from syncd.engine.sync import open_remotes

    config = _config(args)
    worst = EXIT_OK
    print(f"{config.path}: valid, {len(config.pairs)} pair(s)")
    for pair in config.select(args.target):
        try:
            remotes = open_remotes(pair)
            try:
                for side, remote in remotes.items():
                    _probe(remote)
                    print(f"{pair.key} {side.value}: reachable ({remote.name})")
            finally:
                for remote in remotes.values():
                    remote.close()
        except SyncdError as exc:
            print(f"{pair.key}: {exc}", file=sys.stderr)
            worst = EXIT_FATAL
    return worst


def _probe(remote: Any) -> None:
    """Reach the remote: read the start of its listing (raises what listing raises)."""
    for _entry in remote.list():
        break


if __name__ == "__main__":
    sys.exit(main())
