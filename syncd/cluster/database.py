"""The cluster's own tables, next to procrastinate's, and every statement on them.

* ``syncd_cluster_paused``: the pairs paused cluster-wide, and which daemon was asked; read
  when a job starts and by status.
* ``syncd_cluster_indexes``: the latest snapshot of each pair's index (zlib), with its
  generation and the daemon that saved it (:mod:`syncd.cluster.indexes`). Written only on the
  session that holds the pair's fence, so a daemon that lost the pair can never overwrite the
  snapshot of the daemon that took it over.
* ``syncd_cluster_runs``: the run log. The job itself writes a row when it starts a run and
  ends it when the run ends (times from the database's clock, one clock for every host). A
  row whose daemon died stays without an end; stalled-job recovery marks it ``lost``.

A scheduled run is deferred once per firing cluster-wide by procrastinate's own periodic
defer (its ``procrastinate_periodic_defers`` row and the job in one statement, keyed by the
pair and the firing's time): the first daemon to fire defers, the others find it done.

Stalled jobs (their worker's heartbeat is too old: the daemon died or hangs) are put back
in line by :meth:`ClusterDatabase.recover_stalled`, one daemon at a time (a transaction
advisory lock): two daemons retrying one job, one of them after another daemon took it
again, would run it twice at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from syncd.cluster.jobs import QUEUE, TASK_NAME, home_queue, merged_args

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# pg_advisory locks: any two numbers no other code of this database uses
SCHEMA_LOCK = 0x5959_4E43_0001
RECOVERY_LOCK = 0x5959_4E43_0002

TABLES = """
CREATE TABLE IF NOT EXISTS syncd_cluster_runs (
    id bigserial PRIMARY KEY,
    pair text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    job_id bigint,
    reason text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz,
    outcome text,
    result jsonb
);
CREATE INDEX IF NOT EXISTS syncd_cluster_runs_pair_idx ON syncd_cluster_runs (pair, id);
CREATE INDEX IF NOT EXISTS syncd_cluster_runs_job_idx ON syncd_cluster_runs (job_id);
CREATE INDEX IF NOT EXISTS syncd_cluster_runs_started_idx ON syncd_cluster_runs (started_at);
CREATE TABLE IF NOT EXISTS syncd_cluster_pairs (
    pair text PRIMARY KEY,
    last_host text,
    last_ended_at timestamptz,
    last_outcome text,
    running_on text,
    running_since timestamptz
);
CREATE TABLE IF NOT EXISTS syncd_cluster_hosts (
    host text PRIMARY KEY,
    pid integer NOT NULL,
    seen_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS syncd_cluster_paused (
    pair text PRIMARY KEY,
    host text NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS syncd_cluster_runs_open_idx ON syncd_cluster_runs (pair) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS syncd_cluster_indexes (
    pair text PRIMARY KEY,
    generation bigint NOT NULL,
    host text NOT NULL,
    saved_at timestamptz NOT NULL,
    data bytea NOT NULL
);
"""


def psycopg_url(url: str) -> str:
    """A libpq URL: SQLAlchemy's ``postgresql+psycopg://`` spelling (the index's) accepted too."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.partition('+')[0]}{sep}{rest}" if sep else url


def where(url: str) -> str:
    """host:port/db of ``url``, never its password, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}{parts.path or ''}"


PAUSED = "SELECT pair, host, extract(epoch FROM since) FROM syncd_cluster_paused"


def _pauses(rows: Iterable[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    return {key: {"by": host, "since": float(since)} for key, host, since in rows}


def read_pauses(url: str, timeout_s: float) -> dict[str, dict[str, Any]]:
    """The pairs paused cluster-wide (as :meth:`ClusterDatabase.paused`), read on a connection
    of its own: ``syncd status`` when no daemon answers. Before any daemon made the tables,
    none is paused.

    :raises psycopg.Error: the database could not be reached (within ``timeout_s``) or read.
    """
    with psycopg.connect(psycopg_url(url), connect_timeout=max(2, round(timeout_s)), autocommit=True) as conn:
        try:
            return _pauses(conn.execute(PAUSED).fetchall())
        except psycopg.errors.UndefinedTable:
            return {}


class ClusterDatabase:
    """Statements on the cluster's tables through a psycopg pool (procrastinate's own)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def create_schema(self, procrastinate_schema: str) -> None:
        """Create procrastinate's schema (once: the first daemon) and ours, one daemon at a time."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if not (row and row[0]):
                conn.execute(procrastinate_schema)  # procrastinate's own SQL file
            conn.execute(TABLES)

    def fold_into_waiting(self, queueing_lock: str, merge: Any) -> int | None:
        """Merge a request into the job waiting under ``queueing_lock``: ``merge(args)`` gives
        the new args (None: they cannot share a run). The job's id, or None when no job waits
        any more (a worker took it meanwhile: defer again) or the two cannot share a run."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT id, args FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo' FOR UPDATE",
                (queueing_lock,),
            ).fetchone()
            if row is None:
                return None
            args = merge(row[1])
            if args is None:
                return None
            if args != row[1]:
                conn.execute("UPDATE procrastinate_jobs SET args = %s WHERE id = %s", (Jsonb(args), row[0]))
            return int(row[0])

    def run_started(self, key: str, host: str, pid: int, job_id: int | None, reason: str) -> int:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO syncd_cluster_runs (pair, host, pid, job_id, reason) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (key, host, pid, job_id, reason),
            ).fetchone()
            conn.execute(
                "INSERT INTO syncd_cluster_pairs (pair, running_on, running_since) VALUES (%s, %s, clock_timestamp()) "
                "ON CONFLICT (pair) DO UPDATE SET running_on = excluded.running_on, "
                "running_since = excluded.running_since",
                (key, host),
            )
        assert row is not None
        return int(row[0])

    def run_ended(self, run_id: int, result: dict[str, Any]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE syncd_cluster_runs SET ended_at = clock_timestamp(), outcome = %s, result = %s "
                "WHERE id = %s RETURNING pair, host, ended_at",
                (str(result.get("outcome")), Jsonb(result), run_id),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE syncd_cluster_pairs SET last_host = %s, last_ended_at = %s, last_outcome = %s, "
                    "running_on = NULL, running_since = NULL WHERE pair = %s",
                    (row[1], row[2], str(result.get("outcome")), row[0]),
                )

    def prune(self, keep_days: float) -> int:
        """Forget the runs that ended more than ``keep_days`` ago; how many."""
        with self.pool.connection() as conn:
            cursor = conn.execute(
                "DELETE FROM syncd_cluster_runs WHERE started_at < now() - make_interval(days => %s) "
                "AND (ended_at IS NOT NULL OR outcome IS NOT NULL)",
                (int(keep_days),),
            )
            return cursor.rowcount

    def job_result(self, job_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(the job's status, or None once deleted; the result of its last ended run, if any)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT status::text FROM procrastinate_jobs WHERE id = %(job)s), "
                "(SELECT result FROM syncd_cluster_runs WHERE job_id = %(job)s AND ended_at IS NOT NULL "
                "ORDER BY id DESC LIMIT 1)",
                {"job": job_id},
            ).fetchone()
        if row is None:
            return None, None
        return row[0], row[1]

    def heartbeat(self, host: str, pid: int) -> None:
        """This daemon is alive: the jobs of the pairs it ran last wait in its own line."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO syncd_cluster_hosts (host, pid, seen_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (host) DO UPDATE SET pid = excluded.pid, seen_at = excluded.seen_at",
                (host, pid),
            )

    def leave(self, host: str) -> None:
        """This daemon stops: its waiting jobs go to the shared line at once."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM syncd_cluster_hosts WHERE host = %s", (host,))
            conn.execute(
                "UPDATE procrastinate_jobs SET queue_name = %s WHERE status = 'todo' AND queue_name = %s",
                (QUEUE, home_queue(host)),
            )

    def live_hosts(self, alive_s: float) -> list[str]:
        """The daemons whose heartbeat is younger than ``alive_s``, by name."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT host FROM syncd_cluster_hosts WHERE seen_at > now() - make_interval(secs => %s) ORDER BY host",
                (alive_s,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def queue_for(self, key: str, alive_s: float) -> str:
        """The line for a new job of pair ``key``: the home line of the daemon that ran it last
        while that daemon is alive, else the shared line."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT last.host FROM (SELECT host FROM syncd_cluster_runs WHERE pair = %s ORDER BY id DESC LIMIT 1) "
                "last JOIN syncd_cluster_hosts h ON h.host = last.host "
                "WHERE h.seen_at > now() - make_interval(secs => %s)",
                (key, alive_s),
            ).fetchone()
        return QUEUE if row is None else home_queue(str(row[0]))

    def recover_stalled(self, stalled_s: float) -> list[tuple[int, str]]:
        """Put back in the shared line every syncd job whose worker sent no heartbeat for
        ``stalled_s`` seconds (or is gone), and mark its open run ``lost``; move the waiting
        jobs of daemons silent that long to the shared line. When a newer request for the
        pair waits already (its queueing lock), it folds into the stalled job, which keeps its
        place in line, and ends ``aborted`` (two waiting jobs may not share a queueing lock).
        Returns (job id, pair key) of each; nothing when another daemon is recovering now."""
        recovered = []
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (RECOVERY_LOCK,)).fetchone()
            if not (row and row[0]):
                return []
            stalled = conn.execute(
                "SELECT j.id, j.lock, j.queueing_lock, j.args FROM procrastinate_jobs j "
                "LEFT JOIN procrastinate_workers w ON w.id = j.worker_id "
                "WHERE j.status = 'doing' AND j.task_name = %s "
                "AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => %s)) "
                "FOR UPDATE OF j",
                (TASK_NAME, stalled_s),
            ).fetchall()
            for job_id, key, lock, args in stalled:
                waiting = conn.execute(
                    "SELECT id, args FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo' FOR UPDATE",
                    (lock,),
                ).fetchone()
                if waiting is not None:  # it joins the stalled one, which keeps its place in line
                    both = merged_args(args, waiting[1]) or args
                    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", (waiting[0],))
                    conn.execute("UPDATE procrastinate_jobs SET args = %s WHERE id = %s", (Jsonb(both), job_id))
                conn.execute("SELECT procrastinate_retry_job_v2(%s, now(), NULL, %s, NULL)", (job_id, QUEUE))
                conn.execute(
                    "UPDATE syncd_cluster_runs SET outcome = 'lost' WHERE job_id = %s AND ended_at IS NULL", (job_id,)
                )
                conn.execute(
                    "UPDATE syncd_cluster_pairs SET running_on = NULL, running_since = NULL WHERE pair = %s", (key,)
                )
                recovered.append((int(job_id), str(key)))
            conn.execute(  # the waiting jobs of daemons gone silent go to the shared line
                "UPDATE procrastinate_jobs SET queue_name = %(shared)s WHERE status = 'todo' "
                "AND task_name = %(task)s AND queue_name <> %(shared)s AND queue_name NOT IN "
                "(SELECT %(shared)s || '@' || host FROM syncd_cluster_hosts "
                "WHERE seen_at > now() - make_interval(secs => %(alive)s))",
                {"shared": QUEUE, "task": TASK_NAME, "alive": stalled_s},
            )
        return recovered

    def current_job(self, key: str) -> int | None:
        """The job of pair ``key`` waiting or running now, if any."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT id FROM procrastinate_jobs WHERE lock = %s AND status IN ('todo', 'doing') "
                "ORDER BY status = 'doing' DESC, id LIMIT 1",
                (key,),
            ).fetchone()
        return None if row is None else int(row[0])

    def pairs_view(self) -> dict[str, dict[str, Any]]:
        """Per pair: the host of its last ended run and when it ended; the host running it now
        (one row per pair, kept by the runs: the run log itself may be long)."""
        view: dict[str, dict[str, Any]] = {}
        with self.pool.connection() as conn:
            for key, last_host, ended, outcome, running_on, since in conn.execute(
                "SELECT pair, last_host, extract(epoch FROM last_ended_at), last_outcome, running_on, "
                "extract(epoch FROM running_since) FROM syncd_cluster_pairs"
            ):
                view[key] = {
                    "last_host": last_host,
                    "last_ended_at": None if ended is None else float(ended),
                    "last_outcome": outcome,
                    "running_on": running_on,
                    "running_since": None if since is None else float(since),
                }
        return view

    def pause(self, keys: list[str], host: str) -> None:
        """Pause ``keys`` for every daemon (a pause already there keeps its host and time)."""
        with self.pool.connection() as conn, conn.transaction():
            for key in keys:
                conn.execute(
                    "INSERT INTO syncd_cluster_paused (pair, host) VALUES (%s, %s) ON CONFLICT (pair) DO NOTHING",
                    (key, host),
                )

    def resume(self, keys: list[str]) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM syncd_cluster_paused WHERE pair = ANY(%s)", (keys,))

    def paused_by(self, key: str) -> str | None:
        """The daemon asked to pause ``key``, or None when it is not paused."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT host FROM syncd_cluster_paused WHERE pair = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def paused(self) -> dict[str, dict[str, Any]]:
        """Every pair paused cluster-wide: the daemon asked, and since when (epoch seconds)."""
        with self.pool.connection() as conn:
            return _pauses(conn.execute(PAUSED).fetchall())


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """The cluster's snapshot of a pair's index: its generation, who saved it and when (epoch
    seconds, the database's clock); ``data`` (zlib) only when it was asked for."""

    generation: int
    host: str
    saved_at: float
    data: bytes | None


def index_snapshot(conn: psycopg.Connection[Any], key: str, known: int) -> IndexSnapshot | None:
    """The snapshot of pair ``key``, its data only if its generation is not ``known`` (the one
    the asking daemon's index was last the same as: a daemon whose index is current reads a few
    bytes; generations only grow, but a database made anew starts them again); None when no
    daemon saved one. :raises psycopg.Error:"""
    row = conn.execute(
        "SELECT generation, host, extract(epoch FROM saved_at), CASE WHEN generation <> %s THEN data END "
        "FROM syncd_cluster_indexes WHERE pair = %s",
        (known, key),
    ).fetchone()
    if row is None:
        return None
    return IndexSnapshot(int(row[0]), str(row[1]), float(row[2]), None if row[3] is None else bytes(row[3]))


def save_index_snapshot(conn: psycopg.Connection[Any], key: str, host: str, data: bytes) -> int:
    """Save ``data`` as the newest snapshot of pair ``key``: its generation, one above the last.
    ``conn`` is the session holding the pair's fence: while it lives no other daemon runs the
    pair, so this run's index is the newest, and once it ended nothing is saved.
    :raises psycopg.Error:"""
    row = conn.execute(
        "INSERT INTO syncd_cluster_indexes (pair, generation, host, saved_at, data) VALUES (%s, 1, %s, now(), %s) "
        "ON CONFLICT (pair) DO UPDATE SET generation = syncd_cluster_indexes.generation + 1, "
        "host = excluded.host, saved_at = excluded.saved_at, data = excluded.data RETURNING generation",
        (key, host, data),
    ).fetchone()
    assert row is not None
    return int(row[0])
