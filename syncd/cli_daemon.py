"""CLI commands that talk to the daemon: ``run``, ``pause``, ``resume``, ``reload``, and
``syncd now`` through a running daemon (:func:`try_daemon_now`). Thin: parse, send, render.

Exit codes are the CLI's: 0 ok, 1 item errors, 2 usage, 3 guard abort, 4 fatal (or no
daemon for pause/resume/reload), 5 locked or paused. Lines for people go through
:func:`syncd.display.printable`; ``--json`` prints the daemon's lines as they came.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.display import printable

if TYPE_CHECKING:
    from syncd.config import Config

EXIT_FATAL = 4
PLAIN_PROGRESS_EVERY_S = 2.0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the service: schedule, watch, serve the control socket")
    run.add_argument("--only", metavar="USER[/PAIR]", help="serve only this user (one systemd instance per user)")
    run.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="control socket (default: [daemon] socket; with --only, USER.sock next to it)",
    )
    run.add_argument("--log-format", choices=("plain", "json"), default="plain", help="stderr log lines")
    run.add_argument(
        "--quiet-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait this long after the last local change before syncing (default 2)",
    )
    run.add_argument(
        "--max-parallel", type=int, default=2, metavar="N", help="pairs that may run at the same time (default 2)"
    )
    run.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics on the loopback")
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, wait this long for runs to stop between two actions (default 30)",
    )
    run.add_argument(
        "--first-run-within",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="first full run of each pair after start, spread over this long (default 15)",
    )
    run.set_defaults(handler=cmd_run)
    for name, help_text in (
        ("pause", "stop scheduled and watcher runs of USER[/PAIR] (all by default)"),
        ("resume", "resume paused pairs and sync them now"),
        ("reload", "reload the daemon's config (like SIGHUP); errors keep the old one"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        if name != "reload":
            cmd.add_argument("target", nargs="?", metavar="USER[/PAIR]")
        cmd.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
        cmd.add_argument(
            "--socket",
            type=Path,
            metavar="PATH",
            help="the daemon's socket (default: from the config; needed when the config is broken)",
        )
        cmd.set_defaults(handler=cmd_control)


def cmd_run(args: argparse.Namespace) -> int:
    from syncd.config import config_path
    from syncd.daemon import DaemonOptions, run_daemon

    if args.max_parallel < 1 or args.quiet_period < 0 or args.stop_timeout < 0:
        print("syncd: error: --max-parallel must be >= 1, durations >= 0", file=sys.stderr)
        return 2
    return run_daemon(
        DaemonOptions(
            config_path=config_path(args.config),
            only=args.only,
            socket=args.socket,
            log_format=args.log_format,
            quiet_s=args.quiet_period,
            max_parallel=args.max_parallel,
            metrics=args.metrics,
            stop_timeout_s=args.stop_timeout,
            first_run_within_s=args.first_run_within,
        )
    )


def cmd_control(args: argparse.Namespace) -> int:
    """pause / resume / reload: one request, print the reply."""
    from syncd.config import config_path, load_config
    from syncd.control import DaemonUnavailable, ProtocolError, Request, send

    target = getattr(args, "target", None)
    request = Request(op=args.command, target=target)
    # --socket reaches a daemon even when the config is broken (to hear why its reload failed)
    sockets = [args.socket] if args.socket is not None else _sockets(load_config(config_path(args.config)), target)
    for path in sockets:
        try:
            result: dict[str, Any] = {}
            for message in send(path, request, timeout=60):
                result = message
        except DaemonUnavailable:
            continue
        except (ProtocolError, OSError, ValueError) as exc:
            return _fail(f"{path}: {exc}")
        return _print_result(result, as_json=args.json)
    return _fail(
        f"no daemon answers (tried {', '.join(map(str, sockets))}); is `syncd run` (systemctl start syncd) running?"
    )


def _print_result(result: dict[str, Any], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result))
    if not result.get("ok"):
        return _fail(str(result.get("error", "no reply")), int(result.get("exit", EXIT_FATAL)))
    if not as_json:
        pairs = ", ".join(result.get("pairs", [])) or "no pairs"
        print(printable(result.get("message") or f"{result['op']}: {pairs}"))
    return 0


def _fail(message: str, code: int = EXIT_FATAL) -> int:
    print(printable(f"syncd: error: {message}"), file=sys.stderr)
    return code


def _sockets(config: Config, target: str | None) -> list[Path]:
    from syncd.control import client_sockets

    return client_sockets(config, target)


def try_daemon_now(args: argparse.Namespace, config: Config) -> int | None:
    """``syncd now`` through a running daemon: stream its progress and result, return the
    exit code. None when no daemon answers (the caller then syncs in-process)."""
    from syncd.control import DaemonUnavailable, ProtocolError, Request, send

    request = Request(op="now", target=args.target, dry_run=args.dry_run, force=args.force)
    render = _NowRenderer(as_json=args.json, verbose=args.verbose, dry_run=args.dry_run)
    for path in _sockets(config, args.target):
        try:
            for message in send(path, request):
                render.line(message)
        except DaemonUnavailable:
            if render.seen:
                return _fail(f"{path}: the daemon went away")
            continue
        except (ProtocolError, OSError, ValueError) as exc:
            return _fail(f"{path}: {exc}")
        return render.exit_code
    return None


class _NowRenderer:
    """The daemon's reply to ``now``, rendered like an in-process ``syncd now``: plain lines
    on stderr (progress at most every 2 s, every action with -v), the summary on stdout;
    with --json the daemon's own lines, one per line."""

    def __init__(self, *, as_json: bool, verbose: bool, dry_run: bool) -> None:
        self.as_json, self.verbose, self.dry_run = as_json, verbose, dry_run
        self.seen = False
        self.exit_code = EXIT_FATAL
        self.counts: dict[str, list[int]] = {}
        self.last_line = time.monotonic()

    def line(self, message: dict[str, Any]) -> None:
        self.seen = True
        if self.as_json:
            print(json.dumps(message), flush=True)
        if "ok" in message:
            self._result(message)
        elif not self.as_json:
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        pair, name = message.get("pair", "?"), message.get("event")
        counts = self.counts.setdefault(pair, [0, 0])
        if name == "applying":
            counts[1] = int(message.get("actions", 0))
            _err(f"{pair}: {counts[1]} action(s) to run")
        elif name == "done":
            counts[0] += 1
            if self.verbose:
                _err(f"{pair}: {message.get('action')}")
            elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_EVERY_S:
                self.last_line = time.monotonic()
                _err(f"{pair}: {counts[0]}/{counts[1]} done")
        elif name == "error":
            _err(f"{pair}: error {message.get('path')}: {message.get('error')}")
        elif name in ("joined", "queued"):
            _err(f"{pair}: {'joined the run in progress' if name == 'joined' else 'queued after the run in progress'}")

    def _result(self, message: dict[str, Any]) -> None:
        if not message.get("ok"):
            _err(f"syncd: error: {message.get('error')}")
            self.exit_code = int(message.get("exit", EXIT_FATAL))
            return
        self.exit_code = int(message.get("exit", 0))
        if self.as_json:
            return
        for result in message.get("results", []):
            self._summary(result)

    def _summary(self, result: dict[str, Any]) -> None:
        pair = result.get("pair")
        if self.dry_run and result.get("plan") is not None:
            print(printable(f"{pair}: plan ({len(result['plan'])} actions, nothing changed):"))
            for action in result["plan"]:
                print(printable(f"  {action}"))
        # the daemon sends the newly skipped names, and every one (bounded) for -v
        for path, reason in result.get("skipped_names" if self.verbose else "skipped_new") or []:
            _err(f"{pair}: skipped {path}: {reason}")
        done = ", ".join(f"{n} {k}" for k, n in sorted(dict(result.get("done") or {}).items())) or "nothing to do"
        line = f"{pair}: {result.get('outcome')}: {done}; {result.get('bytes', 0)} B in {result.get('seconds', 0)}s"
        if result.get("error_count"):
            line += f"; {result['error_count']} failed"
        if result.get("skipped"):
            line += f"; {result['skipped']} name(s) skipped"
        print(printable(line), flush=True)
        if result.get("message"):
            _err(f"{pair}: {result['message']}")


def _err(text: str) -> None:
    print(printable(text), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m syncd.cli_daemon``: these commands (and ``now`` through the daemon only)
    without the main CLI, for tests and for a cli.py that does not hook them in yet."""
    from syncd.config import config_path, load_config
    from syncd.errors import ConfigError

    parser = argparse.ArgumentParser(prog="syncd")
    parser.add_argument("--config", metavar="FILE")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub)
    now = sub.add_parser("now", help="sync now through the running daemon")
    now.add_argument("target", nargs="?", metavar="USER[/PAIR]")
    for flag in ("--dry-run", "--json", "--force"):
        now.add_argument(flag, action="store_true")
    now.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "now":
            code = try_daemon_now(args, load_config(config_path(args.config)))
            return _fail("no daemon answers") if code is None else code
        handler = args.handler
        result: int = handler(args)
        return result
    except ConfigError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
