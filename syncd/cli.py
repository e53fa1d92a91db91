"""The command line: parse, then ask the running daemon or run the engine in-process,
and render. Nothing else.

Exit codes are :class:`syncd.outcomes.ExitCode` (the README documents them); ``main`` maps
what escapes a command: a lock held 5, a config or fatal error 4, an interrupt (Ctrl-C or
SIGTERM) 130, a bug 70 (SYNCD_DEBUG=1 shows the traceback).

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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from syncd import __version__
from syncd.display import printable
from syncd.errors import ConfigError, FatalError, LockedError, SyncdError
from syncd.outcomes import INTERRUPTED_MESSAGE, ExitCode, RunResult, exit_code
from syncd.progress import fail as _fail
from syncd.progress import say as _say

if TYPE_CHECKING:
    from syncd.config import Config, PairConfig
    from syncd.progress import NowRenderer


def build_parser() -> argparse.ArgumentParser:
    """The one parser of ``syncd`` (the man page and the shell completions are made from it).
    Global options (:func:`_add_global_options`) go before or after the command."""
    parser = argparse.ArgumentParser(prog="syncd", description="Two-way sync of Nextcloud/Pydio files with Storj.")
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    _add_global_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    now = sub.add_parser("now", help="sync now (USER or USER/PAIR; all pairs by default)")
    now.add_argument("target", nargs="?", metavar="USER[/PAIR]")
    now.add_argument("--dry-run", action="store_true", help="print the plan (even one a guard refuses), change nothing")
    now.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")
    now.add_argument(
        "-v", "--verbose", action="store_true", help="print every action as it is done (above the progress bar)"
    )
    now.add_argument("--force", action="store_true", help="override the empty-side and mass-delete guards")
    now.set_defaults(handler=cmd_now)

    for name, handler, help_text in (
        ("status", _cmd_status, "what runs, what is paused, next run, last run, errors and skipped names"),
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

    # Commands of other modules: each module's add_commands(sub) registers its own, one line here.
    from syncd.cli_admin import add_commands as add_admin_commands
    from syncd.cli_daemon import add_commands
    from syncd.service_install import add_commands as add_install_commands

    add_commands(sub)
    add_admin_commands(sub)
    add_install_commands(sub)

    for command in {id(p): p for p in sub.choices.values()}.values():  # every command, whoever added it
        _add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """The options every command takes, before or after its name (``syncd --config F now`` and
    ``syncd now --config F``). A command's copy defaults to SUPPRESS, so that an option given
    before the command name is not overwritten by the command's default."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=default,
            help="config file (default $SYNCD_CONFIG or /etc/syncd/syncd.toml)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except LockedError as exc:
        _fail(str(exc))
        return ExitCode.BUSY
    except (ConfigError, FatalError) as exc:
        _fail(str(exc))
        return ExitCode.FATAL
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see Terminated)
        _fail(str(exc) or INTERRUPTED_MESSAGE)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: one line for the admin, the traceback on request
        if os.environ.get("SYNCD_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with SYNCD_DEBUG=1 for the traceback)")
        return ExitCode.INTERNAL


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken like Ctrl-C: the run stops, records "interrupted" with what it finished,
    and the command ends with one line and :attr:`ExitCode.INTERRUPTED` (not silently with 143)."""

    def __init__(self) -> None:
        super().__init__(f"interrupted by SIGTERM; {INTERRUPTED_MESSAGE.removeprefix('interrupted; ')}")


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
    """Sync the chosen pairs: through the running daemon when one answers, else in this
    process under each pair's lock; both rendered by one :class:`~syncd.progress.NowRenderer`.
    :returns: the highest exit code of the pairs' results."""
    from syncd.cli_daemon import try_daemon_now
    from syncd.progress import NowRenderer

    _stop_on_sigterm()
    config = _config(args)
    with NowRenderer(as_json=args.json, verbose=args.verbose, dry_run=args.dry_run) as render:
        code = try_daemon_now(args, config, render)  # the service runs: it does the work
        if code is not None:
            return code
        return _now_in_process(args, config.select(args.target), render)


def _now_in_process(args: argparse.Namespace, pairs: Sequence[PairConfig], render: NowRenderer) -> int:
    from syncd.engine.result import run_pair
    from syncd.engine.sync import RunOptions

    options = RunOptions(dry_run=args.dry_run, force=args.force)
    results: list[RunResult] = []
    for pair in pairs:
        result = run_pair(pair, options, render.progress_for(pair.key), started=time.monotonic())
        render.result(result)
        results.append(result)
    return exit_code(results)


# -- status, log, conflicts, check -------------------------------------------------------------


def _history(args: argparse.Namespace, action: str | None) -> int:
    from syncd.cli_status import open_index, when

    config = _config(args)
    out = []
    for pair in config.select(args.target):
        store = open_index(pair)
        if store is None:
            continue
        try:
            out += [(pair.key, item) for item in store.history(args.limit, action)]
        finally:
            store.close()
    out.sort(key=lambda row: row[1].at, reverse=True)
    if not out and not args.json:
        where = f" in {args.target}" if args.target else ""
        print(
            printable(
                f"no conflicts{where}: no conflict copy was made"
                if action == "conflict"
                else f"nothing was changed{where} yet"
            )
        )
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
            print(printable(f"{when(item.at)} {key}: {item.path}: the {item.side} version is now '{item.detail}'"))
        else:
            side = f" on {item.side}" if item.side else ""
            print(printable(f"{when(item.at)} {key}: {item.action}{side} {item.path}  {item.detail}"))
    return ExitCode.OK


def _cmd_status(args: argparse.Namespace) -> int:
    from syncd.cli_status import cmd_status

    return cmd_status(args, _config(args))


def cmd_log(args: argparse.Namespace) -> int:
    return _history(args, None)


def cmd_conflicts(args: argparse.Namespace) -> int:
    return _history(args, "conflict")


def cmd_check(args: argparse.Namespace) -> int:
    """The config is valid (else exit 4), the state folders are writable and every remote
    answers. One line per check (problems on stderr), or with ``--json`` one object:
    ``{"config", "ok", "pairs", "checks": [{"pair", "what", "ok", "detail"}]}`` (``pair``
    null for the config and the daemon's state folder; ``what`` one of config, state, open
    (opening the pair's remotes), files, bucket).
    Any problem makes exit 4."""
    from syncd.config import config_path

    try:
        config = _config(args)
    except ConfigError as exc:
        if not args.json:
            raise
        problem = {"pair": None, "what": "config", "ok": False, "detail": str(exc)}
        print(json.dumps({"config": str(config_path(args.config)), "ok": False, "pairs": 0, "checks": [problem]}))
        return ExitCode.FATAL
    checks = [_Check(None, "config", True, f"valid, {len(config.pairs)} pair(s)")]
    checks.append(_check_folder(None, config.daemon.state_dir))
    for pair in config.select(args.target):
        checks.append(_check_folder(pair.key, pair.state_dir))
        checks += _check_remotes(pair)
    ok = all(check.ok for check in checks)
    if args.json:
        rows = [{"pair": c.pair, "what": c.what, "ok": c.ok, "detail": c.detail} for c in checks]
        print(json.dumps({"config": str(config.path), "ok": ok, "pairs": len(config.pairs), "checks": rows}))
    else:
        for one in checks:
            _print_check(one, config.path)
    return ExitCode.OK if ok else ExitCode.FATAL


@dataclass(frozen=True, slots=True)
class _Check:
    """One thing ``check`` tried: ``pair`` None for the config and the daemon's state folder."""

    pair: str | None
    what: str  # config | state | open (opening the remotes) | files | bucket
    ok: bool
    detail: str


def _print_check(check: _Check, config_file: Path) -> None:
    label = {"config": str(config_file), "open": ""}.get(check.what, check.what)
    if check.pair is not None:
        label = f"{check.pair} {label}".rstrip()
    if check.ok:
        print(printable(f"{label}: {check.detail}"))
    else:
        _say(f"{label}: {check.detail}")


def _check_remotes(pair: PairConfig) -> list[_Check]:
    from syncd.engine.sync import open_remotes

    try:
        remotes = open_remotes(pair)
    except SyncdError as exc:
        return [_Check(pair.key, "open", False, str(exc))]
    checks = []
    try:
        for side, remote in remotes.items():
            try:
                _probe(remote)
            except SyncdError as exc:
                checks.append(_Check(pair.key, side.value, False, str(exc)))
            else:
                checks.append(_Check(pair.key, side.value, True, f"reachable ({remote.name})"))
    finally:
        for remote in remotes.values():
            remote.close()
    return checks


def _check_folder(pair: str | None, folder: Path) -> _Check:
    problem = writable_problem(folder)
    if problem is not None:
        return _Check(pair, "state", False, problem)
    return _Check(pair, "state", True, f"writable ({folder})")


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
