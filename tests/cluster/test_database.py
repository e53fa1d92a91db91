"""The cluster's statements on a real PostgreSQL database, without daemons: requests folding
into the waiting job, a dead daemon's jobs put back in line (a newer request for the pair
folding into them), its waiting jobs moved to the shared line, the status view."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from procrastinate import App, SyncPsycopgConnector
from procrastinate.schema import SchemaManager

from syncd.cluster.database import ClusterDatabase
from syncd.cluster.jobs import QUEUE, TASK_NAME, home_queue, job_args, merged_args
from syncd.scheduler import RunRequest

pytestmark = pytest.mark.postgres
KEY = "alice/default"


@pytest.fixture
def db(cluster_db: str) -> Iterator[tuple[App, ClusterDatabase]]:
    app = App(connector=SyncPsycopgConnector(conninfo=cluster_db, min_size=1, max_size=2))
    app.open()
    database = ClusterDatabase(app.connector.pool)  # type: ignore[attr-defined]
    database.create_schema(SchemaManager.get_schema())
    database.create_schema(SchemaManager.get_schema())  # a second daemon's start: nothing to do
    try:
        yield app, database
    finally:
        app.close()


def defer(app: App, request: RunRequest, queue: str = QUEUE) -> int:
    task = app.configure_task(TASK_NAME, lock=KEY, queueing_lock=KEY, queue=queue)
    return int(task.defer(**job_args(KEY, request)))


def jobs(database: ClusterDatabase) -> dict[int, tuple[str, str, dict[str, object]]]:
    with database.pool.connection() as conn:
        rows = conn.execute("SELECT id, status::text, queue_name, args FROM procrastinate_jobs").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def take(database: ClusterDatabase, job_id: int, *, heartbeat_age_s: float) -> None:
    """As a worker would: mark the job doing, owned by a worker last heard of that long ago."""
    with database.pool.connection() as conn:
        worker = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) "
            "VALUES (now() - make_interval(secs => %s)) RETURNING id",
            (heartbeat_age_s,),
        ).fetchone()
        assert worker is not None
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s", (worker[0], job_id)
        )


def test_a_request_folds_into_the_waiting_job_with_its_hints(db: tuple[App, ClusterDatabase]) -> None:
    app, database = db
    first = defer(app, RunRequest("watch", hints=frozenset({"a"})))
    new = job_args(KEY, RunRequest("watch", hints=frozenset({"b"})))
    assert database.fold_into_waiting(KEY, lambda waiting: merged_args(waiting, new)) == first
    assert jobs(database)[first][2]["hints"] == ["a", "b"]
    take(database, first, heartbeat_age_s=0)
    assert database.fold_into_waiting(KEY, lambda waiting: merged_args(waiting, new)) is None  # none waits now


def test_a_dead_daemons_run_goes_back_in_line_and_a_newer_request_joins_it(
    db: tuple[App, ClusterDatabase],
) -> None:
    app, database = db
    running = defer(app, RunRequest("schedule"), queue=home_queue("h0"))
    take(database, running, heartbeat_age_s=60)
    run_id = database.run_started(KEY, "h0", 123, running, "schedule")
    waiting = defer(app, RunRequest("watch", hints=frozenset({"x"})), queue=home_queue("h0"))
    assert database.recover_stalled(15) == [(running, KEY)]
    after = jobs(database)
    assert after[running][0] == "todo" and after[running][1] == QUEUE  # its place in line, the shared line
    assert after[running][2]["hints"] is None and after[running][2]["reason"] == "schedule+watch"
    assert after[waiting][0] == "aborted"
    with database.pool.connection() as conn:
        assert conn.execute("SELECT outcome FROM syncd_cluster_runs WHERE id = %s", (run_id,)).fetchone() == ("lost",)
    assert database.recover_stalled(15) == []  # nothing stalled any more


def test_a_live_daemons_run_stays_and_its_line_is_kept(db: tuple[App, ClusterDatabase]) -> None:
    app, database = db
    database.heartbeat("h1", 1)
    running = defer(app, RunRequest("schedule"), queue=home_queue("h1"))
    take(database, running, heartbeat_age_s=1)
    waiting = defer(app, RunRequest("now"), queue=home_queue("h1"))
    assert database.recover_stalled(15) == []
    assert jobs(database)[running][0] == "doing" and jobs(database)[waiting][1] == home_queue("h1")
    database.leave("h1")  # a clean stop hands its waiting jobs over at once
    assert jobs(database)[waiting][1] == QUEUE


def test_a_silent_daemons_waiting_jobs_move_to_the_shared_line(db: tuple[App, ClusterDatabase]) -> None:
    app, database = db
    waiting = defer(app, RunRequest("now"), queue=home_queue("gone"))
    database.recover_stalled(15)
    assert jobs(database)[waiting][1] == QUEUE


def test_a_pair_goes_to_the_line_of_the_live_daemon_that_ran_it_last(db: tuple[App, ClusterDatabase]) -> None:
    _app, database = db
    assert database.queue_for(KEY, 15) == QUEUE  # never ran
    database.run_ended(database.run_started(KEY, "h1", 1, None, "now"), {"outcome": "ok"})
    assert database.queue_for(KEY, 15) == QUEUE  # h1 never said it is alive
    database.heartbeat("h1", 1)
    assert database.queue_for(KEY, 15) == home_queue("h1")
    view = database.pairs_view()[KEY]
    assert view["last_host"] == "h1" and view["running_on"] is None
    database.run_started(KEY, "h2", 2, None, "watch")
    assert database.pairs_view()[KEY]["running_on"] == "h2"
    assert database.pairs_view()[KEY]["last_host"] == "h1"


def test_the_run_log_forgets_old_ended_runs(db: tuple[App, ClusterDatabase]) -> None:
    _app, database = db
    old = database.run_started(KEY, "h1", 1, None, "now")
    database.run_ended(old, {"outcome": "ok"})
    open_old = database.run_started("bob/default", "h1", 1, None, "now")  # its daemon may still run it
    recent = database.run_started(KEY, "h2", 2, None, "now")
    with database.pool.connection() as conn:
        conn.execute(
            "UPDATE syncd_cluster_runs SET started_at = now() - interval '31 days' WHERE id IN (%s, %s)",
            (old, open_old),
        )
    assert database.prune(30) == 1
    with database.pool.connection() as conn:
        left = {row[0] for row in conn.execute("SELECT id FROM syncd_cluster_runs").fetchall()}
    assert left == {open_old, recent}


def test_the_schema_is_made_once_by_concurrent_starts(cluster_db: str) -> None:
    """Two daemons starting together: the advisory lock makes one create, the other find it."""
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        app = App(connector=SyncPsycopgConnector(conninfo=cluster_db, min_size=1, max_size=1))
        app.open()
        try:
            ClusterDatabase(app.connector.pool).create_schema(SchemaManager.get_schema())  # type: ignore[attr-defined]
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            app.close()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with psycopg.connect(cluster_db) as conn:
        assert conn.execute("SELECT to_regclass('syncd_cluster_runs') IS NOT NULL").fetchone() == (True,)


def test_a_job_a_daemon_cannot_run_waits_in_another_live_daemons_line(db: tuple[App, ClusterDatabase]) -> None:
    """A pair only some hosts reach: the daemon that cannot run it sends it to the home line of
    another live daemon, a different one at each attempt, never to its own and never to a silent
    one (in the shared line an idle daemon that cannot run it takes it back first)."""
    from syncd.cluster.coordinator import STALLED_S, ClusterCoordinator

    _, database = db
    for host in ("h0", "h1", "h2"):
        database.heartbeat(host, 1)
    with database.pool.connection() as conn:
        conn.execute("UPDATE syncd_cluster_hosts SET seen_at = now() - interval '1 hour' WHERE host = 'h1'")
    assert database.live_hosts(STALLED_S) == ["h0", "h2"]
    coordinator = ClusterCoordinator.__new__(ClusterCoordinator)  # only its db and host are read
    coordinator.db, coordinator.host = database, "h2"
    assert [coordinator._retry_queue(attempt) for attempt in range(3)] == [home_queue("h0")] * 3
    coordinator.host = "h1"
    assert [coordinator._retry_queue(attempt) for attempt in range(3)] == [
        home_queue("h0"),
        home_queue("h2"),
        home_queue("h0"),
    ]
    database.leave("h0")
    database.leave("h2")
    assert coordinator._retry_queue(0) == QUEUE  # no other daemon alive: the shared line
