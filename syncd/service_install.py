"""``syncd install-service``, ``syncd completion`` and ``syncd man``: put this installation
in place as a system service.

The wheel carries the systemd units, the tmpfiles.d and sysusers.d files, the example
config and the service guide as package data (``syncd/share/``: links to ``packaging/``, their one source).
``install-service`` writes them where systemd and the admin look, with ``ExecStart=`` naming
this installation's ``syncd`` (a venv's, say), plus the man page and the bash and zsh
completions made from the parser (:mod:`syncd.shell_docs`). It never overwrites an existing
config, changes nothing with ``--dry-run``, and prints the next steps. ``--prefix`` installs
below another root (a package's staging folder, a test's temporary one).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from syncd import __version__
from syncd.display import printable
from syncd.errors import FatalError
from syncd.outcomes import ExitCode

SHARE = Path(__file__).resolve().parent / "share"
UNITS = ("syncd.service", "syncd@.service")
# Where each shipped file goes on the target system (admin-local places: /etc, /usr/local).
UNIT_DIR = PurePosixPath("/etc/systemd/system")
SYSUSERS = PurePosixPath("/etc/sysusers.d/syncd.conf")
TMPFILES = PurePosixPath("/etc/tmpfiles.d/syncd.conf")
CONFIG = PurePosixPath("/etc/syncd/syncd.toml")
MAN_PAGE = PurePosixPath("/usr/local/share/man/man1/syncd.1")
BASH_COMPLETION = PurePosixPath("/usr/local/share/bash-completion/completions/syncd")
ZSH_COMPLETION = PurePosixPath("/usr/local/share/zsh/site-functions/_syncd")
LIBUPLINK = PurePosixPath("/usr/local/lib/syncd/libuplink.so")
COMMAND_LINK = PurePosixPath("/usr/local/bin/syncd")
GUIDE = PurePosixPath("/usr/local/share/doc/syncd/README-service.md")  # the units' Documentation=
# The units name /usr/bin/syncd; the installed copy names this installation's syncd.
_EXEC_START = re.compile(r"^ExecStart=/usr/bin/syncd ", re.MULTILINE)
# ProtectHome=yes hides these from the service: a syncd installed below them cannot start.
_HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")


@dataclass(frozen=True, slots=True)
class Placed:
    """One file to put in place: ``target`` is its path on the target system."""

    target: PurePosixPath
    content: bytes
    mode: int = 0o644
    keep_existing: bool = False  # never overwrite (the admin's config)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    install = sub.add_parser(
        "install-service", help="install the systemd units, config example, man page and completions (--dry-run first)"
    )
    install.add_argument(
        "--prefix", type=Path, default=Path("/"), metavar="DIR", help="install below this root (default /)"
    )
    install.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")
    install.add_argument(
        "--libuplink",
        type=Path,
        metavar="FILE",
        help=f"install this libuplink.so (bash packaging/libuplink/build.sh) as {LIBUPLINK} for the units",
    )
    install.set_defaults(handler=cmd_install_service)
    completion = sub.add_parser("completion", help="print the shell completion script for bash or zsh")
    completion.add_argument("shell", choices=("bash", "zsh"))
    completion.set_defaults(handler=cmd_completion)
    man = sub.add_parser("man", help="print the man page as roff (syncd man | man -l -)")
    man.set_defaults(handler=cmd_man)


def cmd_completion(args: argparse.Namespace) -> int:
    from syncd.cli import build_parser
    from syncd.shell_docs import SHELLS, describe

    sys.stdout.write(SHELLS[args.shell](describe(build_parser()), __version__))
    return ExitCode.OK


def cmd_man(_args: argparse.Namespace) -> int:
    from syncd.cli import build_parser
    from syncd.shell_docs import describe, man_page

    sys.stdout.write(man_page(describe(build_parser()), __version__))
    return ExitCode.OK


def cmd_install_service(args: argparse.Namespace) -> int:
    """Write every file of :func:`files_to_install` below ``--prefix``, then print the next steps.
    :raises FatalError: (exit 4) a file that cannot be read or written, no syncd to name."""
    executable = this_syncd()
    if args.libuplink is not None and not args.libuplink.is_file():
        raise FatalError(f"{args.libuplink}: --libuplink: no such file")
    files = files_to_install(SHARE, executable, args.libuplink)
    prefix: Path = args.prefix
    for line in install(files, prefix, dry_run=args.dry_run):
        _say(line)
    link = link_command(executable, prefix, dry_run=args.dry_run)
    if link:
        _say(link)
    for line in next_steps(executable, prefix):
        _say(line)
    return ExitCode.OK


def this_syncd() -> Path:
    """The ``syncd`` command of this installation (a venv's bin/syncd when run from a venv).
    :raises FatalError: when there is none (syncd not installed, only imported)."""
    candidate = Path(sysconfig.get_path("scripts")) / "syncd"
    if candidate.is_file():
        return candidate.absolute()
    found = shutil.which("syncd")
    if found is None:
        raise FatalError("no syncd command in this installation: install syncd with pip first")
    return Path(found).absolute()


def unit_text(source: str, executable: Path, libuplink: PurePosixPath | None) -> str:
    """A shipped unit made to start ``executable`` (and load ``libuplink``, when given).
    :raises FatalError: the unit has no ``ExecStart=/usr/bin/syncd`` line, or the path needs quoting."""
    if re.search(r"\s|[\\\"'%$;]", str(executable)):
        raise FatalError(f"{executable}: install syncd at a path without spaces or special characters")
    if not _EXEC_START.search(source):
        raise FatalError("a shipped unit has no 'ExecStart=/usr/bin/syncd ' line")
    environment = f"Environment=SYNCD_LIBUPLINK={libuplink}\n" if libuplink else ""
    text = _EXEC_START.sub(lambda _: f"{environment}ExecStart={executable} ", source)
    return f"# Installed by `syncd install-service` (syncd {__version__}): ExecStart= is that installation.\n" + text


def files_to_install(share: Path, executable: Path, libuplink: Path | None) -> list[Placed]:
    """What ``install-service`` writes, from the package's share folder and the parser.
    :raises FatalError: a shipped file is missing (a broken installation)."""
    from syncd.cli import build_parser
    from syncd.shell_docs import bash_completion, describe, man_page, zsh_completion

    def shipped(name: str) -> bytes:
        try:
            return (share / name).read_bytes()
        except OSError as exc:
            raise FatalError(f"{share / name}: cannot read a file syncd ships: {exc.strerror}") from exc

    lib_target = LIBUPLINK if libuplink is not None else None
    files = [
        Placed(UNIT_DIR / name, unit_text(shipped(f"systemd/{name}").decode(), executable, lib_target).encode())
        for name in UNITS
    ]
    cli = describe(build_parser())
    files += [
        Placed(SYSUSERS, shipped("systemd/syncd.sysusers")),
        Placed(TMPFILES, shipped("systemd/syncd.tmpfiles")),
        Placed(CONFIG, shipped("syncd.toml"), mode=0o640, keep_existing=True),
        Placed(GUIDE, shipped("README-service.md")),
        Placed(MAN_PAGE, man_page(cli, __version__).encode()),
        Placed(BASH_COMPLETION, bash_completion(cli, __version__).encode()),
        Placed(ZSH_COMPLETION, zsh_completion(cli, __version__).encode()),
    ]
    if libuplink is not None:
        try:
            files.append(Placed(LIBUPLINK, libuplink.read_bytes()))
        except OSError as exc:
            raise FatalError(f"{libuplink}: cannot read: {exc.strerror}") from exc
    return files


def below(prefix: Path, target: PurePosixPath) -> Path:
    return prefix / target.relative_to("/")


def install(files: Sequence[Placed], prefix: Path, *, dry_run: bool) -> list[str]:
    """Write ``files`` below ``prefix`` (atomically, each with its mode); an existing file kept
    by :attr:`Placed.keep_existing` is left alone. :returns: one line per file, what was done.
    :raises FatalError: a file that cannot be written (e.g. not root)."""
    lines = []
    for placed in files:
        path = below(prefix, placed.target)
        if path.exists() and placed.keep_existing:
            lines.append(f"kept {path} (it exists; the example is {SHARE / 'syncd.toml'})")
        elif path.is_file() and path.read_bytes() == placed.content:
            lines.append(f"unchanged {path}")
        elif dry_run:
            lines.append(f"would write {path}")
        else:
            _write(path, placed.content, placed.mode)
            lines.append(f"wrote {path}")
    return lines


def _write(path: Path, content: bytes, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.chmod(temp, mode)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise FatalError(f"{path}: cannot write: {exc.strerror} (run as root?)") from exc


def link_command(executable: Path, prefix: Path, *, dry_run: bool) -> str | None:
    """``/usr/local/bin/syncd`` -> this installation's syncd, so admins find it on PATH.
    A file of another installation there is left alone. :returns: what was done, if anything."""
    link = below(prefix, COMMAND_LINK)
    if executable == Path(COMMAND_LINK) or (link.exists() and not link.is_symlink()):
        return None
    if link.is_symlink() and Path(os.readlink(link)) == executable:
        return None
    if dry_run:
        return f"would link {link} -> {executable}"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        temp = link.with_name(f".{link.name}.new")
        temp.unlink(missing_ok=True)
        temp.symlink_to(executable)
        os.replace(temp, link)
    except OSError as exc:
        raise FatalError(f"{link}: cannot link: {exc.strerror}") from exc
    return f"linked {link} -> {executable}"


def next_steps(executable: Path, prefix: Path) -> list[str]:
    """What the admin does next, as commands for the target system."""
    lines = []
    if str(executable).startswith(_HIDDEN_BY_PROTECT_HOME):
        lines += [
            f"warning: {executable} is below {'/'.join(str(executable).split('/')[:2])}, which the units' "
            "ProtectHome=yes hides from the service: install syncd in /opt/syncd (python3 -m venv /opt/syncd)",
        ]
    if prefix.resolve() != Path("/"):
        lines.append(f"(installed below {prefix}; the commands below are for the system that root becomes)")
    lines += [
        "Next steps:",
        f"  systemd-sysusers {SYSUSERS}                  # the system user and group syncd",
        f"  systemd-tmpfiles --create {TMPFILES}         # /var/lib/syncd, /run/syncd, /etc/syncd (root:syncd)",
        f"  $EDITOR {CONFIG}                              # your users, remotes and secret files",
        f"  sudo -u syncd syncd --config {CONFIG} check   # config, secrets, every remote reached",
        "  systemctl daemon-reload",
        "  systemctl enable --now syncd                   # or one daemon per user: systemctl enable --now syncd@alice",
    ]
    return lines


def _say(text: str) -> None:
    print(printable(text), flush=True)
