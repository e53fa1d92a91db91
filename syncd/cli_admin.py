"""The admin's commands beside syncing: ``syncd init`` (a first config) and ``syncd restore``
(a version back from syncd's trash). Parse, call, render; the work is in
:mod:`syncd.init_config` and :mod:`syncd.engine.restore`.

Exit codes (:class:`syncd.outcomes.ExitCode`): ``restore`` ends 0 when it restored (or
listed) something, 1 when no version of PATH is in the trash or the version could not be
written, 2 for a bad ``--at`` or a PATH found in several pairs (name one), 4 fatal (config,
credentials), 5 when a sync of the pair holds its lock, 6 when a remote did not answer.
``init`` ends 0, or 4 when the config exists already or cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.display import printable
from syncd.errors import ConfigError, ItemError, SyncdError, TransientError
from syncd.outcomes import ExitCode
from syncd.progress import fail

if TYPE_CHECKING:
    from syncd.engine.restore import Found, Pick, Restored


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    restore = sub.add_parser(
        "restore",
        help="bring a deleted or overwritten version back from syncd's trash",
        description=(
            "Restore PATH from syncd's trash (a local tree's trash under the state dir, a bucket's "
            ".syncd-trash/) to where it was, on the side it was removed from; the next sync carries "
            "it to the other side. A file present there is kept in the trash first, then replaced. "
            "A folder comes back file by file where no file is now (present ones are left, or "
            "restored beside them with --as-copy)."
        ),
    )
    restore.add_argument(
        "path", metavar="PATH", help="the path in the pair of a file (docs/report.odt) or of a folder (docs: its files)"
    )
    restore.add_argument("target", nargs="?", metavar="USER[/PAIR]", help="where to look (default: every pair)")
    restore.add_argument(
        "--at", metavar="TIME", help="the newest version trashed at or before TIME: 2026-11-30 14:00, or 2h / 3d ago"
    )
    restore.add_argument(
        "--list",
        action="store_true",
        help="list the versions it could bring back (with --at: trashed at or before TIME), mark the one it "
        "would, restore nothing",
    )
    restore.add_argument(
        "--as-copy", action="store_true", help="write it as 'name (restored DATE TIME).ext', next to the present file"
    )
    restore.add_argument("--json", action="store_true", help="machine-readable output")
    restore.set_defaults(handler=cmd_restore)

    init = sub.add_parser(
        "init",
        help="write a commented config for the users given, and their empty secret files",
        description="Write a first config (never over an existing one) and print the next steps.",
    )
    files = init.add_mutually_exclusive_group(required=True)
    files.add_argument("--nextcloud", metavar="URL", help="Nextcloud over WebDAV, e.g. https://cloud.example.com")
    files.add_argument("--datadir", metavar="PATH", type=Path, help="a local Nextcloud data dir (PATH/USER/files)")
    init.add_argument("--user", action="append", required=True, metavar="NAME", help="a user to sync (repeat)")
    init.add_argument(
        "--bucket-dir", metavar="PATH", type=Path, help="buckets kept in local folders (PATH/USER) instead of Storj"
    )
    init.add_argument(
        "--state-dir", metavar="PATH", type=Path, default=Path("/var/lib/syncd"), help="[daemon] state_dir"
    )
    init.add_argument(
        "--socket", metavar="PATH", type=Path, default=Path("/run/syncd/control.sock"), help="[daemon] socket"
    )
    init.set_defaults(handler=cmd_init)


# -- init --------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from syncd.config import config_path
    from syncd.init_config import InitChoices, check_choices, next_steps, write_config

    path = config_path(args.config)
    choices = InitChoices(
        users=tuple(args.user),
        nextcloud=args.nextcloud,
        datadir=args.datadir.absolute() if args.datadir else None,
        bucket_dir=args.bucket_dir.absolute() if args.bucket_dir else None,
        state_dir=args.state_dir.absolute(),
        socket=args.socket.absolute(),
    )
    try:
        check_choices(choices)
    except ConfigError as exc:
        fail(str(exc))
        return ExitCode.USAGE
    created = write_config(path, choices, date.today())  # exists, cannot write: ConfigError, exit 4 (cli.main)
    for line in next_steps(path, created, choices):
        print(printable(line))
    return ExitCode.OK


# -- restore -----------------------------------------------------------------------------------


def parse_when(text: str, now: datetime) -> datetime:
    """``--at``: a local date and time (``2026-11-30``, ``2026-11-30 14:05[:09]``, ISO ``T``),
    or a duration ago (``90m``, ``2h``, ``3d``). :raises ValueError:"""
    from syncd.config import parse_duration

    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--at {text!r}: not a time (e.g. '2026-11-30 14:00', or 2h for two hours ago)") from None
    if len(text.strip()) == 10:  # a date alone: the whole day
        when += timedelta(days=1) - timedelta(microseconds=1)
    return when.replace(tzinfo=None) if when.tzinfo is None else when.astimezone().replace(tzinfo=None)


def cmd_restore(args: argparse.Namespace) -> int:
    from syncd.config import config_path, load_config
    from syncd.engine.restore import below, normalise_path, pick, search

    try:
        at = parse_when(args.at, datetime.now()) if args.at else None
        path = normalise_path(args.path)
    except (ValueError, SyncdError) as exc:
        fail(str(exc))
        return ExitCode.USAGE
    config = load_config(config_path(args.config))
    pairs = config.select(args.target)
    try:
        found = search(pairs, path)
    except TransientError as exc:
        fail(str(exc))
        return ExitCode.RETRY
    if not found.found:  # a folder: its files' versions
        inside = below(search(pairs, None).found, path)
        if inside:
            return _restore_folder(args, pairs, path, inside, at)
    picked = pick(found.found, at)
    if args.list:  # what this restore (with its --at) could bring back, the one it would marked
        _print_versions(picked, at, as_json=args.json)
        return ExitCode.OK
    if not picked.eligible:
        others = f" ({picked.newer} newer)" if picked.newer else ""
        hint = f"; {', '.join(found.no_trash)} keep no syncd trash" if found.no_trash else ""
        if any(pair.files.type == "webdav" for pair in pairs):
            hint += "; Nextcloud keeps deleted and overwritten files in its own trash bin and versions"
        fail(f"no version of {path!r}{_at_or_before(at)} in syncd's trash{others}{hint}")
        return ExitCode.ITEM_ERRORS
    if picked.chosen is None:  # in the trash of several pairs
        code = _in_several_pairs(path, picked.pairs)
        _print_versions(picked, at, as_json=args.json, out=sys.stderr)
        return code
    chosen = picked.chosen
    return _restore(args, {p.key: p for p in pairs}[chosen.pair], chosen)


def _restore_folder(args: argparse.Namespace, pairs: list[Any], folder: str, inside: list[Found], at: Any) -> int:
    """``syncd restore FOLDER``: each file below it that has a version it could bring back,
    written back where no file is now (present ones are left, or with --as-copy copied beside)."""
    from syncd.engine.restore import chosen_each, pick_each, restore_each

    picked = pick_each(inside, at)
    chosen = chosen_each(picked)
    if args.list:
        _print_versions(picked, at, as_json=args.json, chosen=chosen)
        return ExitCode.OK
    if not picked.eligible:
        fail(f"no version of anything in {folder!r}{_at_or_before(at)} in syncd's trash ({picked.newer} newer)")
        return ExitCode.ITEM_ERRORS
    if not chosen:  # in the trash of several pairs
        return _in_several_pairs(folder, picked.pairs)
    pair = {p.key: p for p in pairs}[chosen[0].pair]
    try:
        done = restore_each(pair, chosen, as_copy=args.as_copy)
    except TransientError as exc:
        fail(str(exc))
        return ExitCode.RETRY
    if args.json:
        rows = {
            "folder": folder,
            "restored": [_restored_row(r) for r in done.restored],
            "present": [_version_row(f) for f in done.present],
            "failed": [{**_version_row(f), "error": why} for f, why in done.failed],
        }
        print(json.dumps(rows))
    else:
        for r in done.restored:
            print(printable(f"restored {r.path} (the version trashed {r.found.version.trashed_at:%Y-%m-%d %H:%M:%S})"))
        for f in done.present:
            print(
                printable(f"  left {f.version.path} as it is: a file is there (restore it by its path to replace it)")
            )
        for f, why in done.failed:
            fail(f"{f.version.path}: {why}")
        where = f"{pair.key} {chosen[0].side.value}" if len({f.side for f in chosen}) == 1 else pair.key
        summary = f"restored {len(done.restored)} file(s) under {folder}/ on {where}"
        summary += f"; {len(done.present)} present, left as they are" if done.present else ""
        summary += f"; {len(done.failed)} failed" if done.failed else ""
        print(printable(summary))
        if done.restored:
            print(printable(f"  the next sync carries them to the other side (or: syncd now {pair.key})"))
    return ExitCode.ITEM_ERRORS if done.failed else ExitCode.OK


def _in_several_pairs(path: str, pairs: list[str]) -> int:
    fail(f"{path!r} is in the trash of {len(pairs)} pairs ({', '.join(pairs)}); name one as USER/PAIR")
    return ExitCode.USAGE


def _at_or_before(at: datetime | None) -> str:
    return f" trashed at or before {at:%Y-%m-%d %H:%M:%S}" if at is not None else ""


def _restore(args: argparse.Namespace, pair: Any, chosen: Found) -> int:
    from syncd.engine.restore import restore

    try:
        done = restore(pair, chosen, as_copy=args.as_copy)
    except TransientError as exc:
        fail(str(exc))
        return ExitCode.RETRY
    except ItemError as exc:  # not found, changed meanwhile, name taken: nothing was replaced
        fail(f"{chosen.pair} {chosen.side.value}: {exc}")
        return ExitCode.ITEM_ERRORS
    if args.json:
        print(json.dumps(_restored_row(done)))
    else:
        version = chosen.version
        print(
            printable(
                f"restored {done.path} on {chosen.pair} {chosen.side.value} "
                f"(the version trashed {version.trashed_at:%Y-%m-%d %H:%M:%S}, {version.size} bytes)"
            )
        )
        if done.replaced is not None:
            print(printable(f"  the version that was there is kept in the trash: {done.replaced}"))
        print(printable(f"  the next sync carries it to the {chosen.side.other.value} side (or: syncd now {pair.key})"))
    return ExitCode.OK


def _version_row(found: Found) -> dict[str, Any]:
    version = found.version
    return {
        "pair": found.pair,
        "side": found.side.value,
        "path": version.path,
        "key": version.key,
        "trashed_at": version.trashed_at.isoformat(),
        "size": version.size,
    }


def _restored_row(done: Restored) -> dict[str, Any]:
    return {**_version_row(done.found), "restored_as": done.path, "replaced_kept_at": done.replaced}


def _print_versions(
    picked: Pick, at: datetime | None, *, as_json: bool, out: Any = None, chosen: Iterable[Found] | None = None
) -> None:
    """The versions a restore (with ``--at``) could bring back, oldest first; the one it
    would (``chosen``: those, for a folder) is marked (``chosen`` in JSON)."""
    stream = out or sys.stdout
    marked = set(chosen) if chosen is not None else {picked.chosen}
    if as_json:
        rows = [{**_version_row(f), "chosen": f in marked} for f in picked.eligible]
        print(json.dumps(rows), file=stream)
        return
    if not picked.eligible:
        newer = f" ({picked.newer} newer)" if picked.newer else ""
        print(f"no versions in syncd's trash{_at_or_before(at)}{newer}", file=stream)
    for f in picked.eligible:
        when, where = f"{f.version.trashed_at:%Y-%m-%d %H:%M:%S}", f"{f.pair} {f.side.value}"
        mark = "  <- restore brings this one back" if f in marked else ""
        print(printable(f"{when}  {where}  {f.version.size} bytes  {f.version.path}{mark}"), file=stream)
    if picked.eligible and picked.newer:
        print(f"({picked.newer} newer than --at, not shown)", file=stream)
