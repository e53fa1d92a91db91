"""How the worker pool runs a plan's actions (syncd.engine.apply.run_actions), with a stand-in
applier whose actions end when the test says: what starts while what is in flight."""

from __future__ import annotations

import threading
from typing import Any, cast

from syncd.engine.apply import Applier, Done, run_actions
from syncd.errors import TransientError
from syncd.models import Action, ActionKind

PATIENCE_S = 1.0  # how long an action waits for a start that must not come (only a bug's start comes)


class Server:
    """Actions against a server that stopped answering: ``first`` fails at once (its deadline
    passed), the others wait a moment for another action to start beside them, then fail too."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.started_beside: dict[str, set[str]] = {}
        self.started = threading.Condition(self.lock)

    def run(self, action: Action) -> Done:
        with self.lock:
            self.started_beside[action.path] = set(self.running)
            self.running.add(action.path)
            self.started.notify_all()
            if action.path != self.first:
                self.started.wait_for(lambda: len(self.started_beside) > 2, timeout=PATIENCE_S)
            self.running.discard(action.path)
        raise TransientError(f"{action.path}: the server did not answer in time")


def test_after_a_transient_failure_nothing_new_starts_beside_the_units_in_flight() -> None:
    server = Server(first="a1")
    actions = [Action(ActionKind.COPY, f"a{n}") for n in range(1, 5)]
    errors: list[str] = []
    run_actions(cast(Applier, server), actions, 2, lambda _d: None, lambda a, _e: errors.append(a.path))
    assert sorted(errors) == ["a1", "a2", "a3", "a4"]
    # a1 failed at once while a2 was in flight: a3 waits for a2 to end, then probes alone
    assert server.started_beside["a3"] == set(), server.started_beside
    assert server.started_beside["a4"] == set(), server.started_beside


def test_a_success_ends_the_probing() -> None:
    done: list[str] = []
    outcomes: dict[str, Any] = {"b1": TransientError("late"), "b2": None, "b3": None, "b4": None}
    both = threading.Barrier(2, timeout=30)  # broken (an error) unless two run at once

    class Pool:
        def run(self, action: Action) -> Done:
            if action.path in ("b3", "b4"):  # after the probe b2 succeeded: two at once again
                both.wait()
            result = outcomes[action.path]
            if isinstance(result, Exception):
                raise result
            return Done(action)

    actions = [Action(ActionKind.COPY, f"b{n}") for n in range(1, 5)]
    run_actions(cast(Applier, Pool()), actions, 2, lambda d: done.append(d.action.path), lambda _a, _e: None)
    assert sorted(done) == ["b2", "b3", "b4"]


def test_each_unit_is_announced_in_the_calling_thread_before_its_end() -> None:
    events: list[tuple[str, str]] = []
    threads: set[str] = set()

    class Pool:
        def run(self, action: Action) -> Done:
            return Done(action)

    def started(action: Action) -> None:
        threads.add(threading.current_thread().name)
        events.append(("start", action.path))

    actions = [Action(ActionKind.COPY, f"s{n}") for n in range(6)]
    run_actions(
        cast(Applier, Pool()),
        actions,
        3,
        lambda d: events.append(("done", d.action.path)),
        lambda _a, _e: None,
        on_start=started,
    )
    assert threads == {threading.current_thread().name}
    for action in actions:
        assert events.index(("start", action.path)) < events.index(("done", action.path)), events
    assert sum(kind == "start" for kind, _ in events) == 6
