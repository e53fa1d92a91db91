"""Plain data that crosses layers: listings, plans, reports.

Frozen dataclasses and enums only; no I/O, no library objects.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Side(enum.Enum):
    """Side A is the user's files (Nextcloud, Pydio, a directory); side B is the bucket."""

    A = "files"
    B = "bucket"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


class Mode(enum.Enum):
    TWO_WAY = "two-way"
    UPLOAD_ONLY = "upload-only"  # A -> B; never deletes or overwrites without a trash copy on B
    DOWNLOAD_ONLY = "download-only"  # B -> A


class ConflictPolicy(enum.Enum):
    KEEP_BOTH = "keep-both"
    NEWER = "newer"
    PREFER_FILES = "prefer-files"
    PREFER_BUCKET = "prefer-bucket"


class Entry(NamedTuple):
    """What one listing says of one file.

    ``etag`` is the remote's opaque fingerprint: it changes whenever the content or the
    metadata changes, and it is only ever compared with etags of the same remote.
    ``mtime_ns`` is the file's modification time as that remote keeps it.
    ``content_hash`` is a lowercase hex SHA-256, when the remote knows it without reading.
    (A NamedTuple, not a frozen dataclass: listings make one per file, and it is built three
    times faster; it is just as immutable and typed.)
    """

    path: str
    size: int
    mtime_ns: int
    etag: str
    content_hash: str | None = None
    inode: int | None = None
    remote_id: str | None = None


class Base(NamedTuple):
    """The index row of a path: what both sides agreed on after its last successful sync.
    (A NamedTuple like :class:`Entry`: every sync loads one per file.)"""

    path: str
    size: int
    content_hash: str | None
    a_etag: str
    b_etag: str
    a_mtime_ns: int
    b_mtime_ns: int
    a_inode: int | None = None
    b_remote_id: str | None = None


class ActionKind(enum.Enum):
    COPY = "copy"  # copy `path` from `src` to the other side (create or overwrite)
    DELETE = "delete"  # remove `path` on `side` (into that side's trash)
    MOVE = "move"  # rename `path` to `dest` on `side` (a rename seen on the other side)
    CONFLICT = "conflict"  # both changed: resolve by `policy`, keeping every version
    RECORD = "record"  # both sides agree already: write the base, move no bytes
    FORGET = "forget"  # gone from both sides: drop the base
    SKIP = "skip"  # cannot be synced safely (name clash, unsafe name): reported, not done


@dataclass(frozen=True, slots=True)
class Action:
    """One decision of the planner. ``side`` is where the change lands (for COPY: the
    destination; for CONFLICT: the side whose version loses the name)."""

    kind: ActionKind
    path: str
    side: Side | None = None
    dest: str | None = None
    reason: str = ""

    def describe(self) -> str:
        where = f" on {self.side.value}" if self.side else ""
        if self.kind is ActionKind.COPY and self.side:
            where = f" {self.side.other.value} -> {self.side.value}"
        target = f" -> {self.dest}" if self.dest else ""
        why = f"  ({self.reason})" if self.reason else ""
        return f"{self.kind.value:<8}{where} {self.path}{target}{why}"


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]

    def counts(self) -> Counter[str]:
        return Counter(a.kind.value for a in self.actions)

    def deletes(self) -> list[Action]:
        return [a for a in self.actions if a.kind is ActionKind.DELETE]

    @property
    def changes(self) -> list[Action]:
        """Actions that touch a side (everything but RECORD/FORGET/SKIP)."""
        quiet = {ActionKind.RECORD, ActionKind.FORGET, ActionKind.SKIP}
        return [a for a in self.actions if a.kind not in quiet]


class Outcome(enum.Enum):
    """How a run of one pair ended. The engine reports the first five; the last three end a
    run that has no report: refused before it started, or stopped between two actions.
    :data:`syncd.outcomes.OUTCOME_EXIT` gives each its exit code."""

    OK = "ok"
    ITEM_ERRORS = "item-errors"
    ABORTED = "aborted"  # a guard refused the plan: nothing changed
    FATAL = "fatal"  # the pair cannot run until an admin acts
    RETRY = "retry"  # a remote was unreachable or failed mid-listing: nothing changed, next run retries
    LOCKED = "locked"  # another run of the pair holds its lock: this one did not start
    PAUSED = "paused"  # the daemon has the pair paused: this run did not start
    INTERRUPTED = "interrupted"  # stopped between two actions (Ctrl-C, SIGTERM, the daemon stopping)


@dataclass(slots=True)
class Report:
    """What one run did. Mutable while the run goes on; returned when it ends."""

    pair: str
    outcome: Outcome = Outcome.OK
    done: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bytes_moved: int = 0
    deferred: int = 0  # actions left for later: their path's retry backoff has not run out
    message: str = ""
    plan: Plan | None = None
