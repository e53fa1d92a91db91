"""`syncd now` through a running daemon on a terminal: the same bar, -v lines and summary as
an in-process run (tests/integration/test_cli_terminal.py)."""

from __future__ import annotations

import re

from tests.daemon.conftest import World
from tests.integration.cli_helpers import SYNCD_MODULE, on_terminal
from tests.integration.test_cli_terminal import ANSI, FILES, tree


def test_now_through_the_daemon_shows_the_same_bar_and_summary(world: World) -> None:
    tree(world.alice)  # 300 files beside the world's two
    world.daemon("--first-run-within", "3600")
    code, screen = on_terminal([*SYNCD_MODULE, "--config", str(world.config), "now", "-v", "alice"], cwd=world.base)
    assert code == 0, screen[-3000:]
    text = ANSI.sub("", screen)
    assert "alice/default: copy     files -> bucket readme.txt" in text  # the world's own two files too
    assert re.search(rf"\d+/{FILES + 2} files, ", text), text[-3000:]
    assert re.search(rf"alice/default: ok: {FILES + 2} copy; 9\.4 MiB in ", text), text[-3000:]
