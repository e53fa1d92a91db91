"""Running a plan's actions against the two remotes (I/O).

Each action runs in a worker thread and returns what to record; the calling thread commits
that to the index right after the action succeeded (the index holds only finished work).
Overwritten and deleted versions go to the losing side's trash first; every write is
verified (size, and hash when known) by the remote before it is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from syncd.errors import ChangedWhileReading, FatalError
from syncd.models import Action, ActionKind, Base, Entry, Side
from syncd.remotes.base import Remote

Checkpoint = Callable[[str], None]


@dataclass(slots=True)
class Done:
    """What a finished action asks the index to record."""

    action: Action
    put: list[Base] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    history: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    bytes_moved: int = 0


def make_base(path: str, a: Entry, b: Entry, content_hash: str | None = None) -> Base:
    return Base(
        path=path,
        size=a.size,
        content_hash=content_hash or a.content_hash or b.content_hash,
        a_etag=a.etag,
        b_etag=b.etag,
        a_mtime_ns=a.mtime_ns,
        b_mtime_ns=b.mtime_ns,
        a_inode=a.inode,
        b_remote_id=b.remote_id,
    )


def _pair(side: Side, mine: Entry, theirs: Entry) -> tuple[Entry, Entry]:
    """(A entry, B entry) from an entry of ``side`` and one of the other side."""
    return (mine, theirs) if side is Side.A else (theirs, mine)


class Applier:
    def __init__(
        self,
        remotes: Mapping[Side, Remote],
        listings: Mapping[Side, Mapping[str, Entry]],
        bases: Mapping[str, Base],
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.remotes = remotes
        self.listings = listings
        self.bases = bases
        self.checkpoint: Checkpoint = checkpoint or (lambda _stage: None)

    # -- primitives ------------------------------------------------------------------------

    def copy(
        self, path: str, src_side: Side, src: Entry, dest_path: str | None = None, replaces: str | None = None
    ) -> Entry:
        """Copy ``src`` from ``src_side`` to ``dest_path`` (default ``path``) on the other side:
        create-only, or an atomic overwrite of the version whose etag is ``replaces``. The
        target verifies size and hash before it commits; the source is checked not to have
        changed while it was read. :returns: the new entry on the other side."""
        source, target = self.remotes[src_side], self.remotes[src_side.other]
        with source.open_read(path) as stream:
            written = target.write(
                dest_path or path,
                stream,
                size=src.size,
                mtime_ns=src.mtime_ns,
                content_hash=src.content_hash,
                if_match=replaces,
                create_only=replaces is None,
            )
        # A local file can be rewritten in place while it is read (a server serves one version
        # per GET): re-check it when no hash from the listing already verified the bytes.
        if src.content_hash is None and source.capabilities.local_path and source.stat(path).etag != src.etag:
            raise ChangedWhileReading(path)
        return written

    # -- actions ---------------------------------------------------------------------------

    def run(self, action: Action) -> Done:
        handler = {
            ActionKind.COPY: self._copy,
            ActionKind.DELETE: self._delete,
            ActionKind.MOVE: self._move,
            ActionKind.CONFLICT: self._conflict,
            ActionKind.RECORD: self._record,
            ActionKind.FORGET: self._forget,
        }[action.kind]
        return handler(action)

    def _copy(self, action: Action) -> Done:
        assert action.side is not None
        to, src_side = action.side, action.side.other
        src = self.listings[src_side][action.path]
        done = Done(action)
        existing = self.listings[to].get(action.path)
        if existing is not None:  # an overwrite: keep the old version first, then replace it
            where = self.remotes[to].keep_version(action.path, if_match=existing.etag)
            done.history.append(("kept", action.path, to.value, where))
            self.checkpoint("copy:kept-old-version")
        new = self.copy(action.path, src_side, src, replaces=existing.etag if existing else None)
        a, b = _pair(src_side, src, new)
        done.put.append(make_base(action.path, a, b, new.content_hash))
        done.history.append(("copy", action.path, to.value, action.reason))
        done.bytes_moved = src.size
        return done

    def _delete(self, action: Action) -> Done:
        assert action.side is not None
        entry = self.listings[action.side][action.path]
        where = self.remotes[action.side].trash(action.path, if_match=entry.etag)
        return Done(
            action,
            drop=[action.path],
            history=[("delete", action.path, action.side.value, f"{action.reason}; kept in {where}")],
        )

    def _move(self, action: Action) -> Done:
        assert action.side is not None and action.dest is not None
        renamed_on = action.side.other
        old = self.listings[action.side][action.path]
        moved = self.remotes[action.side].move(action.path, action.dest, if_match=old.etag)
        a, b = _pair(renamed_on, self.listings[renamed_on][action.dest], moved)
        base = self.bases[action.path]
        return Done(
            action,
            put=[make_base(action.dest, a, b, base.content_hash)],
            drop=[action.path],
            history=[("move", action.path, action.side.value, f"-> {action.dest} ({action.reason})")],
        )

    def _conflict(self, action: Action) -> Done:
        """Keep both: the loser's version moves to the conflict-copy name on its side, the
        winner's version is copied to the path there, and the conflict copy is copied to the
        winner's side. A crash between steps leaves states the next run resolves."""
        assert action.side is not None and action.dest is not None
        loser, winner = action.side, action.side.other
        lost = self.listings[loser][action.path]
        kept = self.listings[winner][action.path]
        copy_on_loser = self.remotes[loser].move(action.path, action.dest, if_match=lost.etag)
        self.checkpoint("conflict:moved")
        new_on_loser = self.copy(action.path, winner, kept)
        self.checkpoint("conflict:copied")
        lost_as_copy = copy_on_loser._replace(
            size=lost.size, mtime_ns=lost.mtime_ns, content_hash=lost.content_hash or copy_on_loser.content_hash
        )
        copy_on_winner = self.copy(action.dest, loser, lost_as_copy)
        a1, b1 = _pair(winner, kept, new_on_loser)
        a2, b2 = _pair(loser, lost_as_copy, copy_on_winner)
        return Done(
            action,
            put=[
                make_base(action.path, a1, b1, new_on_loser.content_hash),
                make_base(action.dest, a2, b2, copy_on_winner.content_hash),
            ],
            history=[("conflict", action.path, loser.value, action.dest)],
            bytes_moved=kept.size + lost.size,
        )

    def _record(self, action: Action) -> Done:
        a, b = self.listings[Side.A][action.path], self.listings[Side.B][action.path]
        return Done(action, put=[make_base(action.path, a, b)])

    def _forget(self, action: Action) -> Done:
        return Done(action, drop=[action.path])


def changed_paths(action: Action) -> list[tuple[Side, str]]:
    """The (side, path) pairs a finished action changed."""
    if action.side is None:
        return []
    if action.kind in (ActionKind.COPY, ActionKind.DELETE):
        return [(action.side, action.path)]
    if action.kind is ActionKind.MOVE and action.dest:
        return [(action.side, action.path), (action.side, action.dest)]
    if action.kind is ActionKind.CONFLICT and action.dest:
        return [(action.side, action.path), (action.side, action.dest), (action.side.other, action.dest)]
    return []


def run_actions(
    applier: Applier,
    actions: list[Action],
    workers: int,
    on_done: Callable[[Done], None],
    on_error: Callable[[Action, Exception], None],
) -> None:
    """Run ``actions`` with at most ``workers`` at once; call back in this thread as each ends.
    Item and transient errors (and any unexpected error of one action) are handed to
    ``on_error`` and the rest go on; a fatal error or an interrupt stops the run."""
    pending = iter(actions)
    in_flight: dict[Future[Done], Action] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            for action in pending:
                in_flight[pool.submit(applier.run, action)] = action
                if len(in_flight) >= workers:
                    _collect(in_flight, on_done, on_error, wait_all=False)
            _collect(in_flight, on_done, on_error, wait_all=True)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _collect(
    in_flight: dict[Future[Done], Action],
    on_done: Callable[[Done], None],
    on_error: Callable[[Action, Exception], None],
    *,
    wait_all: bool,
) -> None:
    while in_flight:
        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in finished:
            action = in_flight.pop(future)
            try:
                done = future.result()
            except FatalError:
                raise
            except Exception as exc:  # item, transient, or an OS error no remote mapped
                on_error(action, exc)
            else:
                on_done(done)
        if not wait_all:
            return
