"""Fencing: a run of a pair in a cluster holds a PostgreSQL session advisory lock on the pair.

procrastinate's job lock keeps two *jobs* of a pair from running at once, but a daemon alive
and out of touch with the database for :data:`syncd.cluster.coordinator.STALLED_S` has its job
put back in line and run elsewhere while its own run goes on. The fence makes that impossible:

* a run starts only once its daemon holds ``pg_try_advisory_lock(pair_lock_id(key))`` on a
  connection of its own, held for the whole run; a daemon that cannot take it does not run.
* the holder sends ``SELECT 1`` on that connection every :data:`KEEPALIVE_S`; when one fails,
  or none answered for :data:`LOST_AFTER_S` (a partition: the query hangs), the fence is lost
  and the run stops before its next action (:meth:`PairFence.held`). Both bounds are well under
  the 15 s after which a silent daemon's job is run elsewhere.
* the server drops the session of a silent client after its TCP keep-alives fail
  (:data:`SERVER_KEEPALIVE`, ~11 s), and with it the lock: until then nobody else runs the pair.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("syncd.cluster")

KEEPALIVE_S = 2.0
LOST_AFTER_S = 8.0  # no answer for this long: the run stops (< STALLED_S, 15 s)
CONNECT_TIMEOUT_S = 5
# the server's side: a partitioned holder's session (and its lock) ends after 5 + 3 * 2 s
SERVER_KEEPALIVE = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"


def pair_lock_id(key: str) -> int:
    """The advisory lock id of pair ``key``: a signed 64-bit hash (PostgreSQL's bigint)."""
    digest = hashlib.sha256(f"syncd-pair:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PairFence:
    """The advisory lock of one pair for one run, on its own connection, kept alive by a thread."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.lost = threading.Event()  # set once the lock can no longer be vouched for
        self.why = ""
        self.last_ok = time.monotonic()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another session holds it. :raises psycopg.Error: no connection."""
        import psycopg

        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            application_name=f"syncd fence {self.key}"[:63],
        )
        try:
            conn.execute(SERVER_KEEPALIVE)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (pair_lock_id(self.key),)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not (row and row[0]):
            conn.close()
            return False
        self.conn, self.last_ok = conn, time.monotonic()
        self.thread = threading.Thread(target=self._keep_alive, name=f"fence {self.key}", daemon=True)
        self.thread.start()
        return True

    def held(self) -> bool:
        """Whether this daemon may go on with the run: the lock's connection answered lately."""
        if not self.lost.is_set() and time.monotonic() - self.last_ok > LOST_AFTER_S:
            self._lose(f"its database connection did not answer for {LOST_AFTER_S:.0f}s")
        return not self.lost.is_set()

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.why = why
            self.lost.set()
            log.error("lost the cluster lock of the pair (%s): its run stops", why, extra={"pair": self.key})

    def _keep_alive(self) -> None:
        """Ping until :meth:`release` or a failed ping; then end the session (its lock with it)."""
        conn = self.conn
        assert conn is not None
        try:
            while not self.done.wait(KEEPALIVE_S):
                try:
                    conn.execute("SELECT 1")
                except Exception as exc:  # the connection ended: the server no longer holds the lock for us
                    self._lose(f"its database connection failed: {exc}")
                    return
                self.last_ok = time.monotonic()
        finally:
            self._close(conn)

    def _close(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Give the lock back (closing the session ends it, whatever else fails)."""
        try:
            if not self.lost.is_set():
                conn.execute("SELECT pg_advisory_unlock(%s)", (pair_lock_id(self.key),))
        except Exception as exc:  # the session is gone, and its lock with it
            log.debug("fence of %s: unlock failed: %s", self.key, exc)
        finally:
            conn.close()

    def release(self) -> None:
        """Give the lock back: the keep-alive thread ends the session as it stops. A ping that
        hangs keeps it past :data:`CONNECT_TIMEOUT_S`: the session then ends once the ping returns."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(CONNECT_TIMEOUT_S)
