"""The man page and the bash/zsh completions follow the parser (syncd.shell_docs).

Each is checked by the tool that reads it: groff/man render the page without a warning,
bash and zsh parse the scripts, bash's completion is called as bash calls it (COMP_WORDS), and
zsh's is typed into an interactive zsh on a pseudo-terminal.
A missing tool skips its test here and fails it in CI (CI=true), where .ci/docs.sh installs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from syncd import __version__
from syncd.cli import build_parser, main
from syncd.outcomes import ExitCode
from syncd.shell_docs import EXIT_MEANINGS, Cli, bash_completion, describe, man_page, zsh_completion


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (bash .ci/docs.sh installs it)")
        pytest.skip(f"{name} is not installed")
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands, read from argparse itself (not through shell_docs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _cli() -> Cli:
    return describe(build_parser())


def _complete(script: Path, *words: str) -> list[str]:
    """What bash completes for the command line ``words`` (the last one being typed)."""
    bash = _tool("bash")
    line = " ".join(f"'{word}'" for word in words)
    call = f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _syncd"
    program = f'source "$1"; {call}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    done = subprocess.run(
        [bash, "--norc", "-c", program, "bash", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return [word for word in done.stdout.splitlines() if word]


@pytest.fixture
def bash_script(tmp_path: Path) -> Path:
    script = tmp_path / "syncd.bash"
    script.write_text(bash_completion(_cli(), __version__))
    return script


def test_every_command_and_option_appears_in_the_page_and_both_completions() -> None:
    parser = build_parser()
    cli = _cli()
    page, bash, zsh = man_page(cli, __version__), bash_completion(cli, __version__), zsh_completion(cli, __version__)
    commands = _subcommands(parser)
    assert {"now", "status", "run", "install-service", "completion", "man"} <= set(commands)
    assert [command.name for command in cli.commands] == list(commands)
    for name, sub in commands.items():
        assert f".SS {name}\n" in page, name
        assert f'"{name}")' in bash, name
        assert f"'{name}:" in zsh and f"({name}) _arguments" in zsh, name
        for action in sub._actions:
            for flag in action.option_strings:
                roff_flag = flag.replace("-", "\\-")
                assert flag in bash and (f"{flag}[" in zsh or f"{flag}=[" in zsh), (name, flag)
                if flag not in ("-h", "--help", "--config"):  # the global ones are listed once, at the top
                    assert f"\\fB{roff_flag}\\fR" in page.split(f".SS {name}\n")[1].split(".SS ")[0], (name, flag)


def test_every_exit_code_is_in_the_page() -> None:
    assert set(EXIT_MEANINGS) == set(ExitCode)
    page = man_page(_cli(), __version__)
    for code in ExitCode:
        assert f".TP\n\\fB{int(code)}\\fR\n" in page


def test_the_man_page_renders_without_a_warning(tmp_path: Path) -> None:
    page = tmp_path / "syncd.1"
    page.write_text(man_page(_cli(), __version__))
    groff = _tool("groff")
    done = subprocess.run(
        [groff, "-man", "-ww", "-z", "-Tutf8", str(page)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    man = _tool("man")
    shown = subprocess.run(
        [man, "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
    )
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    text = shown.stdout
    assert "syncd - two-way sync" in text
    assert "syncd install-service [--prefix DIR] [--dry-run] [--libuplink FILE]" in text
    assert "EXIT STATUS" in text and "130" in text


def test_bash_completes_commands_options_and_values(bash_script: Path) -> None:
    bash = _tool("bash")
    syntax = subprocess.run([bash, "-n", str(bash_script)], capture_output=True, text=True, timeout=60, check=False)
    assert syntax.returncode == 0, syntax.stderr
    assert _complete(bash_script, "syncd", "no") == ["now"]
    assert _complete(bash_script, "syncd", "--config", "/etc/x.toml", "st") == ["status"]
    assert _complete(bash_script, "syncd", "now", "--dr") == ["--dry-run"]
    assert _complete(bash_script, "syncd", "run", "--log-format", "") == ["plain", "json"]
    assert _complete(bash_script, "syncd", "completion", "") == ["bash", "zsh"]
    assert _complete(bash_script, "syncd", "install-service", "--d") == ["--dry-run"]
    assert "--libuplink" in _complete(bash_script, "syncd", "install-service", "--")
    assert _complete(bash_script, "syncd", "log", "-n", "") == []  # a number: nothing to offer
    assert set(_complete(bash_script, "syncd", "")) == {command.name for command in _cli().commands}


def test_bash_completes_a_file_after_config(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "syncd.toml").write_text("")
    assert _complete(bash_script, "syncd", "--config", str(tmp_path / "syncd.t")) == [str(tmp_path / "syncd.toml")]
    assert _complete(bash_script, "syncd", "now", "--config", str(tmp_path / "syncd.t")) == [
        str(tmp_path / "syncd.toml")
    ]


def test_zsh_reads_the_completion(tmp_path: Path) -> None:
    zsh = _tool("zsh")
    script = tmp_path / "_syncd"
    script.write_text(zsh_completion(_cli(), __version__))
    done = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert script.read_text().startswith("#compdef syncd\n")


# Drives an interactive zsh on a pseudo-terminal (zsh/zpty): each line is typed, then a key bound
# to a widget that completes the word and appends the resulting line to a file.
ZSH_DRIVER = r"""
zmodload zsh/zpty
out=$1 fdir=$2; shift 2
zpty z 'zsh -f -i'
zpty -w z "fpath=($fdir \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z 'probe() { zle complete-word; print -r -- "$BUFFER" >> '$out'; BUFFER=; zle accept-line }'
zpty -w z 'zle -N probe; bindkey "^T" probe'
for line in "$@"; do zpty -w -n z "$line"$'\x14'; done
zpty -w z exit
for i in {1..600}; do [[ -f $out && $(wc -l < $out) -ge $# ]] && break; sleep 0.1; done
zpty -d z
"""


def test_zsh_completes_commands_options_and_values(tmp_path: Path) -> None:
    zsh = _tool("zsh")
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "_syncd").write_text(zsh_completion(_cli(), __version__))
    (tmp_path / "syncd.toml").write_text("")
    driver, out = tmp_path / "driver.zsh", tmp_path / "completed"
    driver.write_text(ZSH_DRIVER)
    typed = {
        "syncd no": "syncd now ",
        "syncd now --dr": "syncd now --dry-run ",
        "syncd completion z": "syncd completion zsh ",
        "syncd run --log-format j": "syncd run --log-format json ",
        f"syncd now --config {tmp_path}/syncd.t": f"syncd now --config {tmp_path}/syncd.toml ",
        "syncd install-s": "syncd install-service ",
    }
    done = subprocess.run(
        [zsh, "-f", str(driver), str(out), str(functions), *typed],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == list(typed.values())


def test_awkward_help_texts_stay_text(tmp_path: Path) -> None:
    """Quotes, brackets, colons, backslashes and a leading dot in a help text break none of the three."""
    parser = argparse.ArgumentParser(prog="syncd", description="Sync: it's [all] here.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    odd = sub.add_parser("odd", help=".starts with a dot: it's 'quoted' [x] \\ back")
    odd.add_argument("--path", type=Path, help="a \\path with: colons] and 100%% 'quotes'")
    odd.add_argument("--mode", choices=("a", "b"), help="one of [a, b]")
    cli = describe(parser)
    assert cli.commands[0].options[1].help == "a \\path with: colons] and 100% 'quotes'"
    page = man_page(cli, "1.0")
    assert "\n\\&.starts with a dot" in page and "\\e" in page
    (tmp_path / "odd.1").write_text(page)
    (tmp_path / "odd.bash").write_text(bash_completion(cli, "1.0"))
    (tmp_path / "_odd").write_text(zsh_completion(cli, "1.0"))
    groff = _tool("groff")
    done = subprocess.run(
        [groff, "-man", "-ww", "-Tutf8", str(tmp_path / "odd.1")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "" and ".starts with a dot: it's 'quoted' [x] \\ back" in done.stdout.replace("‐", "-")
    for shell, name in (("bash", "odd.bash"), ("zsh", "_odd")):
        run = subprocess.run(
            [_tool(shell), "-n", str(tmp_path / name)], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0 and run.stderr == "", (shell, run.stderr)
    assert _complete(tmp_path / "odd.bash", "syncd", "odd", "--mode", "") == ["a", "b"]


def test_the_commands_print_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["man"]) == ExitCode.OK
    assert capsys.readouterr().out == man_page(_cli(), __version__)
    assert main(["completion", "bash"]) == ExitCode.OK
    assert capsys.readouterr().out == bash_completion(_cli(), __version__)
    assert main(["completion", "zsh"]) == ExitCode.OK
    assert capsys.readouterr().out == zsh_completion(_cli(), __version__)
    with pytest.raises(SystemExit) as usage:
        main(["completion", "fish"])
    assert usage.value.code == ExitCode.USAGE
