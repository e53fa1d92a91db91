"""Running a plan's actions against the two remotes (I/O).

Each action runs in a worker thread and returns what to record; the calling thread commits
that to the index right after the action succeeded (the index holds only finished work).
Overwritten and deleted versions go to the losing side's trash first; every write is
verified (size, and hash when known) by the remote before it is committed.

Before the actions run, the folders they write into are created once per side (remotes with
``SupportsPrepareFolders``), and small new files bound for a remote with
``SupportsBatchCreate`` are grouped into batches (:func:`choose_batches`, pure): a batch is one
unit of work in the pool, its files are read whole and checked first, and every file the batch
did not create is retried alone through the single-file path before it counts as an error.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import BinaryIO

from syncd.bwlimit import Bandwidth, Direction, Limiter, throttled
from syncd.engine.moves import move
from syncd.errors import ChangedWhileReading, ContentMismatch, FatalError, ItemError, TransientError
from syncd.models import Action, ActionKind, Base, Entry, Side
from syncd.remotes.base import (
    CHUNK,
    BatchLimits,
    NewFile,
    Remote,
    SupportsBatchCreate,
    SupportsPrepareFolders,
    SupportsSyncWrites,
    sha256_stream,
)

log = logging.getLogger("syncd.engine")

Checkpoint = Callable[[str], None]


@dataclass(slots=True)
class Done:
    """What a finished action asks the index to record."""

    action: Action
    put: list[Base] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    history: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    bytes_moved: int = 0


@dataclass(frozen=True, slots=True)
class NewFilesBatch:
    """Small new files to create on ``side`` in one request: one unit of work in the pool."""

    side: Side
    actions: tuple[Action, ...]


@dataclass(slots=True)
class BatchOutcome:
    """What a batch did, per action: ``done`` as recorded, ``failed`` reported as they are,
    ``retry`` run again alone through the single-file path."""

    done: list[Done] = field(default_factory=list)
    failed: list[tuple[Action, Exception]] = field(default_factory=list)
    retry: list[Action] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchChoice:
    batches: tuple[NewFilesBatch, ...]
    singles: tuple[Action, ...]  # every action in no batch, in plan order


Accepts = Callable[[str, int], bool]
Work = Action | NewFilesBatch


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


def _copied(done: Done, src: Entry, new: Entry, sent_hash: str | None = None) -> Done:
    """Record a finished COPY of ``src`` that became ``new`` on the action's side: the one
    way both the single-file path and a batch record it (same base, history, bytes).
    ``sent_hash``: the SHA-256 of the bytes sent, when the target's entry carries none."""
    action = done.action
    assert action.side is not None
    a, b = _pair(action.side.other, src, new)
    done.put.append(make_base(action.path, a, b, new.content_hash or sent_hash))
    done.history.append(("copy", action.path, action.side.value, action.reason))
    done.bytes_moved = src.size
    return done


class Applier:
    def __init__(
        self,
        remotes: Mapping[Side, Remote],
        listings: Mapping[Side, Mapping[str, Entry]],
        bases: Mapping[str, Base],
        checkpoint: Checkpoint | None = None,
        bandwidth: Bandwidth | None = None,
    ) -> None:
        self.remotes = remotes
        self.bandwidth = bandwidth or {}  # bwlimit: every stream moved between the sides pays its way's
        self.listings = listings
        self.bases = bases
        self.checkpoint: Checkpoint = checkpoint or (lambda _stage: None)

    # -- primitives ------------------------------------------------------------------------

    def limits(self, src_side: Side) -> Sequence[Limiter]:
        """The limiters a stream read from ``src_side`` pays: up to the bucket, or down to the files."""
        return self.bandwidth.get(Direction.UP if src_side is Side.A else Direction.DOWN, ())

    def copy(
        self, path: str, src_side: Side, src: Entry, dest_path: str | None = None, replaces: str | None = None
    ) -> Entry:
        """Copy ``src`` from ``src_side`` to ``dest_path`` (default ``path``) on the other side:
        create-only, or an atomic overwrite of the version whose etag is ``replaces``. The
        target verifies size and hash before it commits; the source is checked not to have
        changed while it was read. :returns: the new entry on the other side."""
        source = self.remotes[src_side]
        try:
            written = self._write_from(src_side, path, src, dest_path, replaces)
        except ContentMismatch:
            if src.content_hash is None or not source.capabilities.hashes_are_claims:
                raise
            # The hash was metadata another writer set, and the bytes disagree with it: read
            # them again; bytes that hash the same twice are the truth, and are copied as such.
            with source.open_read(path) as stream:
                actual = sha256_stream(throttled(stream, self.limits(src_side)))[0]
            if actual == src.content_hash:
                raise  # the claim holds: the first read was damaged; the next run tries again
            log.warning(
                "%r on %s does not have the SHA-256 its metadata claims: copied by its bytes", path, src_side.value
            )
            written = self._write_from(src_side, path, src._replace(content_hash=actual), dest_path, replaces)
        _check_local_source(source, path, src)
        return written

    def _write_from(self, src_side: Side, path: str, src: Entry, dest_path: str | None, replaces: str | None) -> Entry:
        with self.remotes[src_side].open_read(path) as stream:
            return self.remotes[src_side.other].write(
                dest_path or path,
                throttled(stream, self.limits(src_side)),
                size=src.size,
                mtime_ns=src.mtime_ns,
                content_hash=src.content_hash,
                if_match=replaces,
                create_only=replaces is None,
            )

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
        return _copied(done, src, new)

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
        moved = move(self.remotes[action.side], action.path, action.dest, if_match=old.etag)
        a, b = _pair(renamed_on, self.listings[renamed_on][action.dest], moved.entry)
        base = self.bases[action.path]
        return Done(
            action,
            put=[make_base(action.dest, a, b, base.content_hash)],
            drop=[action.path],
            history=[("move", action.path, action.side.value, f"-> {action.dest} ({action.reason})")],
            bytes_moved=moved.bytes_copied,
        )

    def _conflict(self, action: Action) -> Done:
        """Keep both: the loser's version moves to the conflict-copy name on its side, the
        winner's version is copied to the path there, and the conflict copy is copied to the
        winner's side. A crash between steps leaves states the next run resolves."""
        assert action.side is not None and action.dest is not None
        loser, winner = action.side, action.side.other
        lost = self.listings[loser][action.path]
        kept = self.listings[winner][action.path]
        moved_on_loser = move(self.remotes[loser], action.path, action.dest, if_match=lost.etag)
        copy_on_loser = moved_on_loser.entry
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
            bytes_moved=kept.size + lost.size + moved_on_loser.bytes_copied,
        )

    # -- a batch of new files ----------------------------------------------------------------

    def create_new_files(self, batch: NewFilesBatch) -> BatchOutcome:
        """Create the batch's files on ``batch.side`` in one request (``SupportsBatchCreate``).

        Each source is read whole and checked first: a file that is not the listed version
        fails alone (``failed``: ChangedWhileReading), as does one whose read raised an item
        error; one whose read failed otherwise goes to ``retry``. The files the remote did not
        create, or all of them when the request failed as a whole, go to ``retry``: the
        caller runs each alone through the single-file path.

        :raises FatalError: credentials refused (the run stops).
        """
        outcome = BatchOutcome()
        members: list[tuple[Action, Entry, NewFile]] = []
        for action in batch.actions:
            try:
                src, new_file = self._read_new_file(action)
            except FatalError:
                raise
            except ContentMismatch:  # not the hash listed: alone, the single path tells a lie from a change
                outcome.retry.append(action)
            except ItemError as exc:  # the source is gone or changed: alone it would fail the same way
                outcome.failed.append((action, exc))
            except Exception as exc:  # transient, or an OS error: the single path decides
                log.info("%s: reading it for a batch failed (%s); it is tried alone", action.path, exc)
                outcome.retry.append(action)
            else:
                members.append((action, src, new_file))
        if members:
            self._send_batch(batch.side, members, outcome)
        return outcome

    def _read_new_file(self, action: Action) -> tuple[Entry, NewFile]:
        """Read the source of a batched COPY whole and check it is the listed version.

        :raises ChangedWhileReading: another size or SHA-256 than the listing's, or a local
            file rewritten while it was read. :raises NotFound: the source is gone.
        """
        assert action.side is not None
        src_side = action.side.other
        src, source = self.listings[src_side][action.path], self.remotes[src_side]
        with source.open_read(action.path) as stream:
            data = _read_at_most(throttled(stream, self.limits(src_side)), src.size + 1)
        if len(data) != src.size:
            got = f"more than {src.size}" if len(data) > src.size else str(len(data))
            raise ChangedWhileReading(action.path, f"{got} bytes read where the listing said {src.size}")
        digest = hashlib.sha256(data).hexdigest()
        if src.content_hash is not None and digest != src.content_hash.lower():
            raise ContentMismatch(action.path, "its bytes do not have the listed SHA-256")
        _check_local_source(source, action.path, src)
        return src, NewFile(path=action.path, data=data, mtime_ns=src.mtime_ns, content_hash=digest)

    def _send_batch(self, side: Side, members: list[tuple[Action, Entry, NewFile]], outcome: BatchOutcome) -> None:
        """One ``create_batch`` request; each answer becomes its action's Done or a retry."""
        target = self.remotes[side]
        assert isinstance(target, SupportsBatchCreate)
        try:
            answers = target.create_batch([new_file for _, _, new_file in members])
        except FatalError:
            raise
        except Exception as exc:  # transient (or a remote's bug): nothing in the answer is trusted
            log.info("a batch of %d new files on %s failed (%s); each is tried alone", len(members), side.value, exc)
            outcome.retry.extend(action for action, _, _ in members)
            return
        if len(answers) != len(members):  # a broken promise of the remote: trust none of it
            log.warning("a batch of %d new files got %d answers; each is tried alone", len(members), len(answers))
            outcome.retry.extend(action for action, _, _ in members)
            return
        for (action, src, new_file), answer in zip(members, answers, strict=True):
            if isinstance(answer, ItemError):
                log.info("%s: not created by its batch (%s); it is tried alone", action.path, answer.message)
                outcome.retry.append(action)
            else:  # the hash read here: a single write's entry carries the one it sent
                outcome.done.append(_copied(Done(action), src, answer, new_file.content_hash))

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


def written_paths(action: Action) -> list[tuple[Side, str]]:
    """The (side, path) pairs where an action creates or overwrites a file."""
    if action.side is None:
        return []
    if action.kind is ActionKind.COPY:
        return [(action.side, action.path)]
    if action.kind is ActionKind.MOVE and action.dest:
        return [(action.side, action.dest)]
    if action.kind is ActionKind.CONFLICT and action.dest:
        return [(action.side, action.dest), (action.side, action.path), (action.side.other, action.dest)]
    return []


def folders_to_prepare(actions: Iterable[Action]) -> dict[Side, set[str]]:
    """Per side, the parent folder of every path the actions create or overwrite there
    (the root left out: it exists). Pure."""
    folders: dict[Side, set[str]] = {Side.A: set(), Side.B: set()}
    for action in actions:
        for side, path in written_paths(action):
            parent = posixpath.dirname(path)
            if parent:
                folders[side].add(parent)
    return folders


def sync_writes(remotes: Mapping[Side, Remote]) -> None:
    """Make what the finished actions changed durable on each remote that defers it
    (``SupportsSyncWrites``): called before a batch of them is recorded in the index, so the
    index never names a change that a power loss could take back (invariant 2).

    :raises TransientError: a disk reported an error; the batch must not be recorded.
    """
    for remote in remotes.values():
        if isinstance(remote, SupportsSyncWrites):
            remote.sync_writes()


def prepare_target_folders(remotes: Mapping[Side, Remote], actions: Iterable[Action]) -> None:
    """Create the folders the actions write into, once per side, on remotes that can
    (``SupportsPrepareFolders``), before parallel writers race to create them.

    :raises FatalError: credentials refused. :raises TransientError: the server is gone.
    """
    for side, folders in folders_to_prepare(actions).items():
        remote = remotes[side]
        if folders and isinstance(remote, SupportsPrepareFolders):
            remote.prepare_folders(sorted(folders))


def batch_settings(remotes: Mapping[Side, Remote]) -> tuple[dict[Side, BatchLimits], dict[Side, Accepts]]:
    """The batch limits and ``accepts_in_batch`` of each side that can batch now."""
    limits: dict[Side, BatchLimits] = {}
    accepts: dict[Side, Accepts] = {}
    for side, remote in remotes.items():
        if isinstance(remote, SupportsBatchCreate) and (found := remote.batch_limits()) is not None:
            limits[side], accepts[side] = found, remote.accepts_in_batch
    return limits, accepts


def choose_batches(
    actions: Sequence[Action],
    listings: Mapping[Side, Mapping[str, Entry]],
    limits: Mapping[Side, BatchLimits],
    accepts: Mapping[Side, Accepts],
) -> BatchChoice:
    """Which actions go into which batch. Pure, given an ``accepts`` that sends no request.

    A COPY goes into a batch on its target side when that side has ``limits``, nothing is
    listed at its path there (a batch can only create), its source's size is at most
    ``max_file_bytes``, and ``accepts(path, size)`` (asked last). Batches fill in plan
    order up to ``max_files`` and ``max_batch_bytes``; one that would hold a single file is
    no batch: alone, the file costs one request too, and its write can be create-only.
    """
    filling: dict[Side, tuple[list[Action], int]] = {}
    closed: list[NewFilesBatch] = []
    for action in actions:
        size = _batch_size(action, listings, limits, accepts)
        if size is None:
            continue
        assert action.side is not None
        limit = limits[action.side]
        members, total = filling.get(action.side, ([], 0))
        if members and (len(members) >= limit.max_files or total + size > limit.max_batch_bytes):
            closed.append(NewFilesBatch(action.side, tuple(members)))
            members, total = [], 0
        members.append(action)
        filling[action.side] = (members, total + size)
    closed.extend(NewFilesBatch(side, tuple(members)) for side, (members, _) in filling.items())
    batches = tuple(batch for batch in closed if len(batch.actions) > 1)
    batched = {action for batch in batches for action in batch.actions}
    return BatchChoice(batches, tuple(action for action in actions if action not in batched))


def _batch_size(
    action: Action,
    listings: Mapping[Side, Mapping[str, Entry]],
    limits: Mapping[Side, BatchLimits],
    accepts: Mapping[Side, Accepts],
) -> int | None:
    """The size of a COPY that may be batched, or None."""
    if action.kind is not ActionKind.COPY or action.side is None:
        return None
    limit = limits.get(action.side)
    src = listings[action.side.other].get(action.path)
    if limit is None or src is None or action.path in listings[action.side]:
        return None
    if src.size > min(limit.max_file_bytes, limit.max_batch_bytes):
        return None
    return src.size if accepts[action.side](action.path, src.size) else None


def _check_local_source(source: Remote, path: str, src: Entry) -> None:
    """A local file can be rewritten in place while it is read (a server serves one version
    per GET): re-check it when no hash from the listing already verified the bytes.

    :raises ChangedWhileReading:
    """
    if src.content_hash is None and source.capabilities.local_path and source.stat(path).etag != src.etag:
        raise ChangedWhileReading(path)


def _read_at_most(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream`` (fewer only at its end)."""
    pieces: list[bytes] = []
    left = limit
    while left > 0 and (piece := stream.read(min(CHUNK, left))):
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def run_actions(
    applier: Applier,
    actions: Sequence[Action],
    workers: int,
    on_done: Callable[[Done], None],
    on_error: Callable[[Action, Exception], None],
    batches: Sequence[NewFilesBatch] = (),
    on_start: Callable[[Action], None] | None = None,
) -> None:
    """Run ``batches`` and ``actions`` with at most ``workers`` units at once; call back in
    this thread, per action, as each ends (``on_start``: as each unit starts, with its action
    or a batch's first one). Item and transient errors (and any unexpected
    error of one action) are handed to ``on_error`` and the rest go on; a batch's files it
    did not create are queued to run alone first; a fatal error or an interrupt stops the run.

    After a transient failure nothing new starts while units are in flight, then one unit
    probes alone until one ends otherwise: against a server that stopped answering, the
    units in flight end together at their deadline (and the caller's rule for failures in a
    row stops the run), instead of new units each waiting a deadline of their own.
    """
    limit = max(1, workers)
    queue: deque[Work] = deque(batches)  # batches first: the biggest units start early
    queue.extend(actions)
    in_flight: dict[Future[Done | BatchOutcome], Work] = {}
    probing = False
    with ThreadPoolExecutor(max_workers=limit) as pool:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < (1 if probing else limit):
                    work = queue.popleft()
                    in_flight[pool.submit(_perform, applier, work)] = work
                    if on_start is not None:  # the pool has a thread for each unit in flight
                        on_start(work.actions[0] if isinstance(work, NewFilesBatch) else work)
                for work, result in _finished(in_flight):
                    probing = isinstance(result, TransientError)
                    _report(work, result, queue, on_done, on_error)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _perform(applier: Applier, work: Work) -> Done | BatchOutcome:
    if isinstance(work, NewFilesBatch):
        return applier.create_new_files(work)
    return applier.run(work)


def _finished(
    in_flight: dict[Future[Done | BatchOutcome], Work],
) -> Iterator[tuple[Work, Done | BatchOutcome | Exception]]:
    """Wait for at least one unit to end; yield each ended one with its result or error.

    :raises FatalError: from a unit (the run stops).
    """
    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for future in finished:
        work = in_flight.pop(future)
        try:
            result: Done | BatchOutcome | Exception = future.result()
        except FatalError:
            raise
        except Exception as exc:  # item, transient, or an OS error no remote mapped
            result = exc
        yield work, result


def _report(
    work: Work,
    result: Done | BatchOutcome | Exception,
    queue: deque[Work],
    on_done: Callable[[Done], None],
    on_error: Callable[[Action, Exception], None],
) -> None:
    """Hand one ended unit to the callbacks, per action; a batch's retries go first in line."""
    if isinstance(work, NewFilesBatch):
        if not isinstance(result, BatchOutcome):  # the batch itself broke: each goes alone
            log.warning("a batch of %d new files failed (%s); each is tried alone", len(work.actions), result)
            queue.extendleft(reversed(work.actions))
            return
        for done in result.done:
            on_done(done)
        for action, exc in result.failed:
            on_error(action, exc)
        queue.extendleft(reversed(result.retry))
    elif isinstance(result, Exception):
        on_error(work, result)
    else:
        assert isinstance(result, Done)
        on_done(result)
