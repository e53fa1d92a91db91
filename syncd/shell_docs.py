"""The man page (roff, section 1) and the bash and zsh completions, generated from the
command line's own parser (:func:`syncd.cli.build_parser`): a command or option added there
appears in all three without another edit.

:func:`describe` walks the argparse parser once into plain data (:class:`Cli`); the three
renderers are pure functions of that data. ``syncd man`` and ``syncd completion bash|zsh``
print them; ``syncd install-service`` puts them where man, bash-completion and zsh look.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from syncd.outcomes import ExitCode

# What each exit code means, for the man page (the README says the same at more length).
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.ITEM_ERRORS: "some items failed: recorded, retried with backoff on the next runs",
    ExitCode.USAGE: "usage error",
    ExitCode.ABORTED: "aborted by a safety guard, nothing changed",
    ExitCode.FATAL: "fatal: config, credentials, missing root or bucket, state folder not writable, no daemon",
    ExitCode.BUSY: "another run of the pair holds its lock, or the daemon has the pair paused",
    ExitCode.RETRY: "a remote was unreachable or failed mid-listing: nothing changed, the next run retries",
    ExitCode.INTERNAL: "internal error (a bug; SYNCD_DEBUG=1 shows the traceback)",
    ExitCode.INTERRUPTED: "interrupted by SIGINT or SIGTERM: finished actions are recorded",
}
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("SYNCD_CONFIG", "the config file when --config is not given (default /etc/syncd/syncd.toml)"),
    ("SYNCD_LIBUPLINK", "the libuplink.so to load for storj buckets"),
    ("SYNCD_DEBUG", "set to 1: an internal error prints its traceback"),
    ("CREDENTIALS_DIRECTORY", "set by systemd's LoadCredential=: relative *_file secrets are looked up there first"),
)
FILES: tuple[tuple[str, str], ...] = (
    ("/etc/syncd/syncd.toml", "the config: one [users.NAME] section per Nextcloud user"),
    ("/var/lib/syncd", "state: one index and trash per user and pair"),
    ("/run/syncd/control.sock", "the daemon's control socket (USER.sock for syncd@USER)"),
)
SEE_ALSO = ("systemctl(1)", "journalctl(1)", "systemd.exec(5)", "rclone(1)")
# Words a shell may see unquoted in a completion list; anything else is left out of the lists.
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.,:/+=@%-]+$")
_PATH_WORDS = ("FILE", "PATH", "DIR")


@dataclass(frozen=True, slots=True)
class Option:
    """One option or positional argument of a parser."""

    flags: tuple[str, ...]  # empty for a positional
    help: str
    metavar: str | None  # None: a flag that takes no value
    choices: tuple[str, ...] = ()
    wants_path: bool = False
    optional: bool = True  # a positional that may be left out

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Option, ...]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Cli:
    prog: str
    description: str
    options: tuple[Option, ...]
    commands: tuple[Command, ...]


# -- walking the parser ------------------------------------------------------------------------


def describe(parser: argparse.ArgumentParser) -> Cli:
    """The commands, options and help texts of ``parser`` (one level of subcommands)."""
    options: list[Option] = []
    commands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.extend(_commands(action))
        elif action.option_strings and action.help != argparse.SUPPRESS:
            options.append(_option(parser, action))
    return Cli(parser.prog, parser.description or "", tuple(options), tuple(commands))


def _commands(action: argparse._SubParsersAction) -> Iterable[Command]:  # type: ignore[type-arg]
    choices: dict[str, argparse.ArgumentParser] = action.choices
    for pseudo in action._choices_actions:
        name = pseudo.dest
        sub = choices[name]
        aliases = tuple(key for key, parser in choices.items() if parser is sub and key != name)
        actions = [a for a in sub._actions if a.help != argparse.SUPPRESS]
        yield Command(
            name=name,
            help=pseudo.help or "",
            options=tuple(_option(sub, a) for a in actions if a.option_strings),
            positionals=tuple(_option(sub, a) for a in actions if not a.option_strings),
            aliases=aliases,
        )


def _option(parser: argparse.ArgumentParser, action: argparse.Action) -> Option:
    choices = tuple(str(choice) for choice in action.choices or ())
    metavar: str | None = None
    if action.nargs != 0:
        if isinstance(action.metavar, str):
            metavar = action.metavar
        elif choices:
            metavar = "{" + ",".join(choices) + "}"
        else:
            metavar = action.dest.upper() if action.option_strings else action.dest
    help_text = argparse.HelpFormatter(parser.prog)._expand_help(action) if action.help else ""
    wants_path = action.type is Path or any(word in (metavar or "").upper() for word in _PATH_WORDS)
    return Option(
        flags=tuple(action.option_strings),
        help=" ".join(help_text.split()),
        metavar=metavar,
        choices=choices,
        wants_path=wants_path,
        optional=bool(action.option_strings) or action.nargs in ("?", "*") or not action.required,
    )


def _own_options(cli: Cli, command: Command) -> tuple[Option, ...]:
    """A command's options without the global ones it also accepts (listed once, at the top)."""
    common = {option.flags for option in cli.options}
    return tuple(option for option in command.options if option.flags not in common)


# -- man page ----------------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Running text for roff: backslashes escaped, no line taken for a request."""
    text = text.replace("\\", "\\e")
    return "\\&" + text if text.startswith((".", "'")) else text


def _roff_literal(text: str) -> str:
    """An option, command or metavar: also its hyphens are minus signs (copy-pastable)."""
    return _roff(text).replace("-", "\\-")


def _bold(text: str) -> str:
    return f"\\fB{_roff_literal(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{_roff_literal(text)}\\fR"


def _option_tag(option: Option) -> str:
    tag = ", ".join(_bold(flag) for flag in option.flags) if option.flags else _italic(option.metavar or "")
    if option.flags and option.metavar:
        tag += " " + _italic(option.metavar)
    return tag


def _synopsis_item(option: Option) -> str:
    if not option.flags:
        return f"[{_italic(option.metavar or '')}]" if option.optional else _italic(option.metavar or "")
    text = _bold(option.flags[-1])
    return f"[{text} {_italic(option.metavar)}]" if option.metavar else f"[{text}]"


def _tagged(items: Iterable[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for tag, text in items:
        lines += [".TP", tag, _roff(text)]
    return lines


def man_page(cli: Cli, version: str) -> str:
    """The manual page, section 1, as roff source (``man -l`` renders it)."""
    prog = cli.prog
    summary = cli.description.rstrip(".") or prog
    lines = [
        f'.TH {prog.upper()} 1 "" "{prog} {_roff(version)}" "User Commands"',
        ".SH NAME",
        f"{prog} \\- {_roff(summary[0].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        f"{_bold(prog)} [{_italic('OPTIONS')}] {_italic('COMMAND')} [{_italic('ARGUMENTS')}]",
        ".SH DESCRIPTION",
        _roff(cli.description),
        f"Each command below takes {_bold('--help')}; the options of this section are global.",
        ".SH OPTIONS",
    ]
    lines += _tagged((_option_tag(option), option.help) for option in cli.options)
    lines.append(".SH COMMANDS")
    for command in cli.commands:
        own = _own_options(cli, command)
        usage = " ".join([_bold(f"{prog} {command.name}")] + [_synopsis_item(o) for o in own + command.positionals])
        lines += [f".SS {command.name}", usage, ".br", _roff(command.help)]
        if command.aliases:
            lines.append(_roff("Also: " + ", ".join(command.aliases) + "."))
        lines += _tagged((_option_tag(o), o.help) for o in command.positionals + own if o.help)
    lines.append(".SH EXIT STATUS")
    lines += _tagged((_bold(str(int(code))), meaning) for code, meaning in EXIT_MEANINGS.items())
    lines.append(".SH ENVIRONMENT")
    lines += _tagged((_bold(name), meaning) for name, meaning in ENVIRONMENT)
    lines.append(".SH FILES")
    lines += _tagged((_italic(path), meaning) for path, meaning in FILES)
    lines.append(".SH SEE ALSO")
    for index, ref in enumerate(SEE_ALSO):
        name, _, section = ref.partition("(")
        comma = "," if index < len(SEE_ALSO) - 1 else ""
        lines.append(f".BR {_roff_literal(name)} ({section}{comma}")
    return "\n".join(lines) + "\n"


# -- bash --------------------------------------------------------------------------------------


def _words(words: Iterable[str]) -> str:
    return " ".join(word for word in words if _SAFE_WORD.match(word))


def _value_cases(scope: str, options: Sequence[Option]) -> list[str]:
    """``case`` arms for the word after an option that takes a value, in ``scope`` (a command
    name, or "" before the command)."""
    arms: list[str] = []
    for option in options:
        if not option.takes_value or not option.flags:
            continue
        pattern = "|".join(f'"{scope}:{flag}"' for flag in option.flags if _SAFE_WORD.match(flag))
        if option.choices:
            reply = f'COMPREPLY=( $(compgen -W "{_words(option.choices)}" -- "$cur") )'
        elif option.wants_path:
            reply = 'compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") )'
        else:
            reply = "COMPREPLY=()"
        arms.append(f"        {pattern}) {reply}; return 0 ;;")
    return arms


def bash_completion(cli: Cli, version: str) -> str:
    """A bash completion script defining ``_<prog>`` and registering it with ``complete -F``."""
    prog = cli.prog
    function = "_" + re.sub(r"\W", "_", prog)
    global_values = [flag for o in cli.options if o.takes_value for flag in o.flags if _SAFE_WORD.match(flag)]
    commands = [name for c in cli.commands for name in (c.name, *c.aliases)]
    value_arms = _value_cases("", cli.options)
    # per command: its options (for a word that starts with "-"), else its arguments' choices
    word_arms = [
        f'        "") options="{_words(f for o in cli.options for f in o.flags)}" words="{_words(commands)}" ;;'
    ]
    for command in cli.commands:
        names = "|".join(f'"{name}"' for name in (command.name, *command.aliases))
        for name in (command.name, *command.aliases):
            value_arms += _value_cases(name, command.options)
        options = _words(f for o in command.options for f in o.flags)
        choices = _words(c for p in command.positionals for c in p.choices)
        word_arms.append(f'        {names}) options="{options}" words="{choices}" ;;')
    # the value of a global option given before the command is not the command
    skip = [f"            {'|'.join(global_values)}) (( i++ )) ;;"] if global_values else []
    lines = [
        f"# bash completion for {prog} {version}, generated from its parser: `{prog} completion bash`",
        f"{function}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" word command="" options="" words="" i',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        '        word="${COMP_WORDS[i]}"',
        '        case "$word" in',
        *skip,
        "            -*) ;;",
        '            *) command="$word"; break ;;',
        "        esac",
        "    done",
        '    case "$command:$prev" in',
        *value_arms,
        "    esac",
        '    case "$command" in',
        *word_arms,
        "    esac",
        '    [[ "$cur" == -* ]] && words="$options"',
        '    COMPREPLY=( $(compgen -W "$words" -- "$cur") )',
        "}",
        f"complete -F {function} {prog}",
    ]
    return "\n".join(lines) + "\n"


# -- zsh ---------------------------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_text(text: str) -> str:
    """A help text or message inside an _arguments spec: brackets and colons escaped."""
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_specs(options: Sequence[Option], positionals: Sequence[Option]) -> list[str]:
    specs: list[str] = []
    for option in options:
        exclusive = f"({' '.join(option.flags)})" if len(option.flags) > 1 else ""
        if any(flag in ("-h", "--help", "--version") for flag in option.flags):
            exclusive = "(- *)"
        value = ""
        if option.metavar is not None:
            if option.choices:
                action = "(" + " ".join(c for c in option.choices if _SAFE_WORD.match(c)) + ")"
            else:
                action = "_files" if option.wants_path else " "
            value = f":{_zsh_text(option.metavar)}:{action}"
        for flag in option.flags:
            joined = "=" if value and flag.startswith("--") else ""
            specs.append(_zsh_quote(f"{exclusive}{flag}{joined}[{_zsh_text(option.help)}]{value}"))
    for positional in positionals:
        colon = "::" if positional.optional else ":"
        action = "_files" if positional.wants_path else "_nothing"  # not " ": that hides the options
        if positional.choices:
            action = "(" + " ".join(c for c in positional.choices if _SAFE_WORD.match(c)) + ")"
        specs.append(_zsh_quote(f"{colon}{_zsh_text(positional.metavar or '')}:{action}"))
    return specs


def zsh_completion(cli: Cli, version: str) -> str:
    """A zsh completion function file (``_<prog>``, for a folder of ``$fpath``)."""
    prog = cli.prog
    function = "_" + re.sub(r"\W", "_", prog)
    described = [
        _zsh_quote(f"{_zsh_text(name)}:{command.help}")
        for command in cli.commands
        for name in (command.name, *command.aliases)
    ]
    top = [*_zsh_specs(cli.options, ()), "'1:command:->command'", "'*:: :->argument'"]
    arms: list[str] = []
    for command in cli.commands:
        specs = _zsh_specs(command.options, command.positionals)
        names = "|".join((command.name, *command.aliases))
        arms.append(f"                ({names}) _arguments -s \\")
        arms += [f"                    {spec} \\" for spec in specs]
        arms.append("                    ;;")
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog} {version}, generated from its parser: `{prog} completion zsh`",
        "",
        f"{function}() {{",
        '    local curcontext="$curcontext" state line',
        "    typeset -A opt_args",
        "    local -a commands",
        "    commands=(",
        *(f"        {item}" for item in described),
        "    )",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in top[:-1]),
        f"        {top[-1]}",
        "    case $state in",
        f"        (command) _describe -t commands '{prog} command' commands ;;",
        "        (argument)",
        f'            curcontext="${{curcontext%:*:*}}:{prog}-$line[1]:"',
        "            case $line[1] in",
        *arms,
        "            esac",
        "            ;;",
        "    esac",
        "}",
        "",
        f'{function} "$@"',
    ]
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash_completion, "zsh": zsh_completion}
