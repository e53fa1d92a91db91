"""The commands that talk to the daemon: ``run``, ``pause``, ``resume``, ``reload``, and
``syncd now`` through a running daemon (:func:`try_daemon_now`). Thin: parse, send, render.

Exit codes are :class:`syncd.outcomes.ExitCode`'s; a daemon's error reply carries its own
(2 usage, 4 fatal or no daemon, 5 busy). ``now`` is rendered by
:class:`syncd.progress.NowRenderer`, exactly as an in-process run; lines for people go
through :func:`syncd.display.printable`, ``--json`` keeps the daemon's exact names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.display import printable
from syncd.outcomes import ExitCode
from syncd.progress import fail

if TYPE_CHECKING:
    from syncd.config import Config
    from syncd.progress import NowRenderer


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
        return _fail("--max-parallel must be >= 1, durations >= 0", ExitCode.USAGE)
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
    from syncd.control import Request, send
    from syncd.errors import DaemonUnavailable, ProtocolError

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
        return _fail(str(result.get("error", "no reply")), int(result.get("exit", ExitCode.FATAL)))
    if not as_json:
        pairs = ", ".join(result.get("pairs", [])) or "no pairs"
        print(printable(result.get("message") or f"{result['op']}: {pairs}"))
    return ExitCode.OK


def _fail(message: str, code: int = ExitCode.FATAL) -> int:
    fail(message)
    return code


def _sockets(config: Config, target: str | None) -> list[Path]:
    from syncd.control import client_sockets

    return client_sockets(config, target)


def try_daemon_now(args: argparse.Namespace, config: Config, render: NowRenderer) -> int | None:
    """``syncd now`` through a running daemon: its progress and results go to ``render``;
    returns the exit code the daemon gives. None when no daemon answers (the caller then
    syncs in-process, with the same renderer: nothing was shown yet)."""
    from syncd.control import Request, send
    from syncd.errors import DaemonUnavailable, ProtocolError

    request = Request(op="now", target=args.target, dry_run=args.dry_run, force=args.force)
    for path in _sockets(config, args.target):
        seen = False
        try:
            for message in send(path, request):
                seen = True
                if "ok" not in message:
                    render.event(message)
                    continue
                return _now_result(message, render)
        except DaemonUnavailable:
            if seen:
                return _fail(f"{path}: the daemon went away")
            continue
        except (ProtocolError, OSError, ValueError) as exc:
            return _fail(f"{path}: {exc}")
    return None


def _now_result(message: dict[str, Any], render: NowRenderer) -> int:
    """Render the daemon's result line of ``now``; return its exit code.

    :raises ValueError: a result this syncd cannot read (an unknown outcome, a bad value).
    """
    from syncd.control import result_from_json

    if not message.get("ok"):
        return _fail(str(message.get("error")), int(message.get("exit", ExitCode.FATAL)))
    for raw in message.get("results", []):
        render.result(result_from_json(raw))
    return int(message.get("exit", ExitCode.OK))
