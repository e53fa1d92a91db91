"""`syncd now` on a terminal, as an admin sees it: a real process on a pseudo-terminal.

The bar is redrawn by rich on its own clock, so what a test can hold it to is what shows on
some frame of a run long enough to be drawn: counts, bytes and rate, and (with -v) every
action printed above it, then the summary once the bar is gone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.cli_helpers import SYNCD_MODULE, on_terminal, write_local_pair

FILES = 300
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tree(files: Path) -> None:
    for i in range(FILES):
        folder = files / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03d}.bin").write_bytes(bytes([i % 256]) * 32768)


def _assert_shown(screen: str, pair: str) -> None:
    text = ANSI.sub("", screen)
    actions = re.findall(rf"{re.escape(pair)}: copy     files -> bucket d\d/f\d{{3}}\.bin", text)
    assert len(set(actions)) == FILES, text[-3000:]  # -v: every action, above the bar
    assert re.search(rf"\d+/{FILES} files, [\d.]+ (KiB|MiB) of 9\.4 MiB, [\d.]+ (B|KiB|MiB|GiB)/s", text), text[-3000:]
    assert f"{pair}: ok: {FILES} copy; 9.4 MiB in " in text


def test_now_verbose_on_a_terminal_prints_actions_above_a_bar_with_bytes_and_rate(tmp_path: Path) -> None:
    config = write_local_pair(tmp_path)
    tree(tmp_path / "files")
    code, screen = on_terminal([*SYNCD_MODULE, "--config", str(config), "now", "-v"], cwd=tmp_path)
    assert code == 0, screen[-3000:]
    _assert_shown(screen, "alice/default")
