"""The one renderer of ``syncd now``: the same lines from in-process events and daemon lines."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from syncd import progress
from syncd.control import result_from_json, result_to_json
from syncd.display import size
from syncd.models import Outcome
from syncd.outcomes import RunResult
from syncd.progress import NowRenderer, RunProgress, naming, report_line, summary

PAIR = "alice/default"
DONE = RunResult(PAIR, Outcome.OK, seconds=0.5, done={"copy": 2}, bytes_moved=3 << 20)


def _feed(render: NowRenderer, result: RunResult) -> None:
    with render:
        progress = render.progress_for(PAIR)
        progress("applying", {"actions": 2})
        progress("done", {"action": "copy     files -> bucket a.txt"})
        progress("error", {"path": "b\x1b[2J.txt", "error": "refused"})
        render.result(result)


def test_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    _feed(NowRenderer(as_json=False, verbose=True, dry_run=False, bar=False), DONE)
    out, err = capsys.readouterr()
    assert out == "alice/default: ok: 2 copy; 3.0 MiB in 0.50s\n"
    assert err.splitlines() == [
        "alice/default: 2 action(s) to run",
        "alice/default: copy     files -> bucket a.txt",
        "alice/default: error b\\x1b[2J.txt: refused",  # escaped: a name cannot clear the screen
    ]


def test_json_lines_keep_exact_names(capsys: pytest.CaptureFixture[str]) -> None:
    _feed(NowRenderer(as_json=True, verbose=False, dry_run=False), DONE)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["applying", "done", "error", "report"]
    assert lines[2]["path"] == "b\x1b[2J.txt" and lines[-1] == report_line(DONE)


def test_a_result_through_the_daemon_renders_as_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    result = RunResult(
        PAIR,
        Outcome.ITEM_ERRORS,
        message="1 item(s) failed",
        errors=(("b.txt", "refused"),),
        error_count=1,
        skipped=(("a\nb", "unsafe"),),
        skipped_count=1,
        skipped_new=(("a\nb", "unsafe"),),
        plan=("copy a",),
    )
    for as_json in (False, True):
        shown = []
        for each in (result, result_from_json(json.loads(json.dumps(result_to_json(result))))):
            NowRenderer(as_json=as_json, verbose=False, dry_run=True, bar=False).result(each)
            shown.append(capsys.readouterr())
        assert shown[0] == shown[1]
    NowRenderer(as_json=False, verbose=False, dry_run=True, bar=False).result(result)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "alice/default: plan (1 actions, nothing changed):",
        "  copy a",
        "alice/default: dry run, item-errors: 1 action(s) planned, nothing changed; 1 failed; 1 name(s) skipped",
    ]
    assert err.splitlines() == ["alice/default: skipped a\\nb: unsafe", "alice/default: 1 item(s) failed"]


def test_a_run_without_a_report_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    refused = RunResult.unreported(PAIR, Outcome.PAUSED, "paused; `syncd resume alice/default` first")
    NowRenderer(as_json=False, verbose=False, dry_run=False, bar=False).result(refused)
    out, err = capsys.readouterr()
    assert out == "" and err == "syncd: error: alice/default: paused; `syncd resume alice/default` first\n"


def test_daemon_waits_are_said(capsys: pytest.CaptureFixture[str]) -> None:
    render = NowRenderer(as_json=False, verbose=False, dry_run=False, bar=False)
    render.event({"event": "joined", "pair": PAIR, "reason": "now"})
    render.event({"event": "listing", "pair": PAIR})
    assert capsys.readouterr().err == "alice/default: joined the run in progress\n"


def test_the_bar_takes_events_and_results(capsys: pytest.CaptureFixture[str]) -> None:
    _feed(NowRenderer(as_json=False, verbose=False, dry_run=False, bar=True), DONE)
    assert "alice/default: ok: 2 copy" in capsys.readouterr().out


def test_small_helpers() -> None:
    assert [size(n) for n in (512, 1536, 5 << 20, 3 << 30, 5 << 40)] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "5120.0 GiB",
    ]
    assert naming(PAIR, f"{PAIR}: held") == f"{PAIR}: held" and naming(PAIR, "held") == f"{PAIR}: held"
    assert naming(PAIR, f"{PAIR} files: gone") == f"{PAIR} files: gone"
    assert summary(RunResult(PAIR, Outcome.RETRY)) == "alice/default: retry: nothing done; 0 B in 0.00s"


def test_run_progress_counts_files_bytes_rate_and_the_current_file() -> None:
    count = RunProgress()
    count.take({"event": "applying", "actions": 4, "bytes": 4 << 20}, now=100.0)
    count.take({"event": "done", "action": "copy     files -> bucket a", "path": "a", "bytes": 1 << 20}, now=101.0)
    count.take({"event": "error", "path": "b", "error": "refused"}, now=101.5)
    assert (count.done, count.total, count.bytes_done, count.current) == (2, 4, 1 << 20, "b")
    assert count.line(102.0) == "2/4 files, 1.0 MiB of 4.0 MiB, 512.0 KiB/s"
    assert count.units == ((1 << 20) + 2, (4 << 20) + 4)
    deletes = RunProgress()
    deletes.take({"event": "applying", "actions": 3, "bytes": 0}, now=0.0)
    deletes.take({"event": "done", "action": "delete   on bucket x"}, now=1.0)  # an older daemon: no path
    assert deletes.line(1.0) == "1/3 files" and deletes.current == "delete   on bucket x"


def test_the_current_file_is_the_last_started_one_still_in_flight() -> None:
    count = RunProgress()
    count.take({"event": "applying", "actions": 3, "bytes": 3}, now=0.0)
    count.take({"event": "start", "action": "copy     files -> bucket a", "path": "a"}, now=0.1)
    assert count.current == "a" and count.done == 0  # in flight, before anything ended
    count.take({"event": "start", "action": "copy     files -> bucket b", "path": "b"}, now=0.2)
    count.take({"event": "start", "action": "copy     files -> bucket c", "path": "c"}, now=0.3)
    count.take({"event": "done", "path": "c", "bytes": 1}, now=0.4)
    assert count.current == "b"  # c ended: the latest started one still running
    count.take({"event": "error", "path": "b", "error": "refused"}, now=0.5)
    assert count.current == "a" and count.done == 2
    count.take({"event": "done", "path": "a", "bytes": 1}, now=0.6)
    assert count.current == "a" and not count.running  # none in flight: the one that ended last


def test_the_bar_names_a_file_as_soon_as_it_starts() -> None:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    render = NowRenderer(as_json=False, verbose=False, dry_run=False, bar=True, console=console)
    with render:
        progress = render.progress_for(PAIR)
        progress("applying", {"actions": 1, "bytes": 5 << 30})
        progress("start", {"action": "copy     files -> bucket big\x1b[2J.iso", "path": "big\x1b[2J.iso"})
        assert render._bar is not None
        render._bar.refresh()
        drawn = screen.getvalue()
        assert "0/1 files" in drawn and "big\\x1b[2J.iso" in drawn and "\x1b[2J" not in drawn


def test_the_bar_shows_counts_bytes_rate_eta_and_the_current_file_and_verbose_prints_above_it() -> None:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    render = NowRenderer(as_json=False, verbose=True, dry_run=False, bar=True, console=console)
    with render:
        progress = render.progress_for(PAIR)
        progress("applying", {"actions": 3, "bytes": 3 << 20})
        progress(
            "done",
            {"action": "copy     files -> bucket docs/a\x1b[2J.txt", "path": "docs/a\x1b[2J.txt", "bytes": 1 << 20},
        )
        assert render._bar is not None
        render._bar.refresh()
        drawn = screen.getvalue()
        assert "alice/default syncing" in drawn and "1/3 files, 1.0 MiB of 3.0 MiB, " in drawn and "/s" in drawn
        assert "docs/a\\x1b[2J.txt" in drawn and "\x1b[2J" not in drawn  # the current file, escaped
        assert "alice/default: copy     files -> bucket docs/a\\x1b[2J.txt\n" in drawn  # -v: above the bar
        assert re.search(r"(\d+|-):(\d\d|--):(\d\d|--) docs", drawn)  # the ETA column (unknown until timed)


class _InterruptedAfterFirstWrite(io.StringIO):
    """A stderr on which the second write raises, as SIGTERM's handler does in the main thread
    when the signal lands between two writes."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise KeyboardInterrupt
        return super().write(text)


def test_a_line_reaches_stderr_whole_even_when_a_signal_lands_right_after_its_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _InterruptedAfterFirstWrite()
    monkeypatch.setattr(sys, "stderr", stream)
    progress.say("alice/default: copy     files -> bucket a\x1b[2J.txt")
    assert stream.getvalue() == "alice/default: copy     files -> bucket a\\x1b[2J.txt\n"
