"""Outcomes, exit codes and run results: one table, one type, one wire form."""

from __future__ import annotations

from collections import Counter

import pytest

from syncd.control import MAX_ITEMS_IN_RESULT, result_from_json, result_to_json
from syncd.errors import ControlError, DaemonUnavailable, ProtocolError, SyncdError
from syncd.models import Action, ActionKind, Outcome, Plan, Report, Side
from syncd.outcomes import OUTCOME_EXIT, ExitCode, RunResult, exit_code


def test_every_outcome_has_its_documented_exit_code() -> None:
    assert set(OUTCOME_EXIT) == set(Outcome)
    documented = {"ok": 0, "item-errors": 1, "aborted": 3, "fatal": 4, "retry": 6, "locked": 5, "paused": 5}
    assert {o.value: int(code) for o, code in OUTCOME_EXIT.items() if o.value in documented} == documented
    assert OUTCOME_EXIT[Outcome.INTERRUPTED] is ExitCode.FATAL  # the daemon stopped under the run
    assert (ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.INTERRUPTED) == (2, 70, 130)


def test_the_highest_exit_code_wins() -> None:
    results = [RunResult("a/x", Outcome.OK), RunResult("a/y", Outcome.RETRY), RunResult("a/z", Outcome.LOCKED)]
    assert exit_code(results) is ExitCode.RETRY
    assert exit_code([]) is ExitCode.OK


def test_control_errors_are_in_the_tree_with_their_exit_codes() -> None:
    assert issubclass(ProtocolError, ControlError) and issubclass(DaemonUnavailable, ControlError)
    assert issubclass(ControlError, SyncdError)
    assert ProtocolError("bad").exit_code == ExitCode.USAGE
    assert ProtocolError("busy", ExitCode.BUSY).exit_code == ExitCode.BUSY
    assert DaemonUnavailable("nobody").exit_code == ExitCode.FATAL


def _report() -> Report:
    report = Report(pair="alice/default", outcome=Outcome.ITEM_ERRORS, message="1 item(s) failed")
    report.done = Counter({"copy": 2})
    report.errors = [("b.txt", "refused")]
    report.skipped = [("z\x01", "unsafe name"), ("a\x02", "unsafe name")]
    report.bytes_moved = 10
    report.plan = Plan((Action(ActionKind.COPY, "a.txt", Side.B),))
    return report


def test_a_result_of_a_report() -> None:
    result = RunResult.of_report(_report(), [("a\x02", "unsafe name")], 1.23456, with_plan=True)
    assert result.reported and result.outcome is Outcome.ITEM_ERRORS and result.seconds == 1.235
    assert result.done == {"copy": 2} and result.error_count == 1 and result.skipped_count == 2
    assert result.skipped == (("a\x02", "unsafe name"), ("z\x01", "unsafe name"))  # sorted
    assert result.plan == (Action(ActionKind.COPY, "a.txt", Side.B).describe(),)
    assert RunResult.of_report(_report(), [], 0, with_plan=False).plan is None


def test_a_result_survives_the_wire() -> None:
    result = RunResult.of_report(_report(), [("a\x02", "unsafe name")], 0.5, with_plan=True)
    assert result_from_json(result_to_json(result)) == result
    refused = RunResult.unreported("bob/default", Outcome.LOCKED, "bob/default: held by pid 7")
    assert result_from_json(result_to_json(refused)) == refused


def test_the_wire_cuts_long_lists_but_keeps_their_totals() -> None:
    many = tuple((f"f{i}", "refused") for i in range(MAX_ITEMS_IN_RESULT + 5))
    result = RunResult("a/x", Outcome.ITEM_ERRORS, errors=many, error_count=len(many))
    read = result_from_json(result_to_json(result))
    assert len(read.errors) == MAX_ITEMS_IN_RESULT and read.error_count == len(many)


def test_a_result_from_an_older_daemon_reads_with_defaults() -> None:
    read = result_from_json({"pair": "a/x", "outcome": "paused", "message": "paused"})
    assert read.outcome is Outcome.PAUSED and read.reported and read.done == {} and read.errors == ()
    with pytest.raises(ValueError):
        result_from_json({"pair": "a/x", "outcome": "exploded"})
