"""The three-way planner: base x A x B -> Plan. Pure: no I/O, no clock, no remotes.

For every path in base ∪ A ∪ B, each side is compared with the base only (its etag with the
fingerprint that side had at the last sync; never a time from the other side), giving a state:

========  ===============================================================
ABSENT    no base, not on this side
NEW       no base, on this side
SAME      etag, size and mtime as at the last sync
TOUCHED   one of them differs but the content hash equals the base's (mtime-only change)
CHANGED   one of them differs and the content differs (or is not known)
GONE      had a base, not on this side any more
========  ===============================================================

and the decision table of DESIGN.md maps the pair of states to an action. The fingerprint is
the etag with the size and the side's own mtime: Nextcloud keeps a file's ETag when it is
overwritten within the same second as the write before (seen with another size too).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from syncd.engine.conflicts import conflict_copy_name, conflict_winner
from syncd.models import Action, ActionKind, Base, ConflictPolicy, Entry, Mode, Plan, Side
from syncd.paths import clash_key


class State(enum.Enum):
    ABSENT = "absent"
    NEW = "new"
    SAME = "same"
    TOUCHED = "touched"
    CHANGED = "changed"
    GONE = "gone"


UNCHANGED = (State.SAME, State.TOUCHED)


@dataclass(frozen=True, slots=True)
class Folding:
    """How a side compares names: a side that folds case/Unicode stores clashing names once."""

    case: bool = False
    unicode: bool = False

    @property
    def folds(self) -> bool:
        return self.case or self.unicode


@dataclass(frozen=True, slots=True)
class PlanSettings:
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    mode: Mode = Mode.TWO_WAY
    fold_a: Folding = Folding()
    fold_b: Folding = Folding()
    detect_moves: bool = True
    # Per side: why that side refuses to store a name (None: it takes it). A pure check.
    name_rules: Mapping[Side, Callable[[str], str | None]] = field(default_factory=dict)


def side_state(entry: Entry | None, base: Base | None, side: Side) -> State:
    if base is None:
        return State.ABSENT if entry is None else State.NEW
    if entry is None:
        return State.GONE
    if side is Side.A:
        same = entry.etag == base.a_etag and entry.mtime_ns == base.a_mtime_ns
    else:
        same = entry.etag == base.b_etag and entry.mtime_ns == base.b_mtime_ns
    if same and entry.size == base.size:
        return State.SAME
    if entry.content_hash is not None and entry.content_hash == base.content_hash:
        return State.TOUCHED
    return State.CHANGED


def same_content(a: Entry, b: Entry) -> bool:
    """True only when both hashes are known and equal (sizes first: cheap and decisive)."""
    return a.size == b.size and a.content_hash is not None and a.content_hash == b.content_hash


def plan(
    bases: Mapping[str, Base],
    a: Mapping[str, Entry],
    b: Mapping[str, Entry],
    settings: PlanSettings,
    now: datetime,
    skipped: Mapping[str, str] | None = None,
) -> Plan:
    """Decide every action. ``skipped`` maps paths that cannot be synced to the reason."""
    actions: list[Action] = [Action(ActionKind.SKIP, p, reason=r) for p, r in sorted((skipped or {}).items())]
    moved: set[str] = set()
    if settings.detect_moves:
        for side in (Side.A, Side.B):
            if _mode_allows(settings.mode, side.other, deleting=True):
                move_actions = _detect_moves(bases, a, b, side)
                actions.extend(move_actions)
                moved.update(m.path for m in move_actions)
                moved.update(m.dest for m in move_actions if m.dest)
    taken = a.keys() | b.keys() | bases.keys()
    for path in sorted(taken - moved - _unchanged(bases, a, b)):
        action = _decide(path, bases.get(path), a.get(path), b.get(path), settings, now, taken)
        if action is not None:
            actions.append(action)
    return Plan(tuple(_refuse_clashes(_refuse_names(actions, settings), a, b, settings)))


def _unchanged(bases: Mapping[str, Base], a: Mapping[str, Entry], b: Mapping[str, Entry]) -> set[str]:
    """Paths whose fingerprints on both sides are the ones recorded: nothing to decide for
    them. A set comprehension over the bases, so a no-change sync does no per-file function call."""
    return {
        p
        for p, base in bases.items()
        if (ea := a.get(p)) is not None
        and ea.etag == base.a_etag
        and (eb := b.get(p)) is not None
        and eb.etag == base.b_etag
        and ea.size == base.size
        and eb.size == base.size
        and ea.mtime_ns == base.a_mtime_ns
        and eb.mtime_ns == base.b_mtime_ns
    }


def _mode_allows(mode: Mode, target: Side, *, deleting: bool = False) -> bool:
    """Whether ``mode`` lets a change land on ``target`` (upload-only never deletes on B)."""
    if mode is Mode.TWO_WAY:
        return True
    if mode is Mode.UPLOAD_ONLY:
        return target is Side.B and not deleting
    return target is Side.A


def _copy(path: str, to: Side, reason: str) -> Action:
    return Action(ActionKind.COPY, path, side=to, reason=reason)


def _decide(
    path: str,
    base: Base | None,
    ea: Entry | None,
    eb: Entry | None,
    settings: PlanSettings,
    now: datetime,
    taken: set[str],
) -> Action | None:
    sa, sb = side_state(ea, base, Side.A), side_state(eb, base, Side.B)
    mode = settings.mode

    if sa in UNCHANGED and sb in UNCHANGED:
        touched = State.TOUCHED in (sa, sb)
        return Action(ActionKind.RECORD, path, reason="mtime-only change") if touched else None
    if sa is State.GONE and sb is State.GONE:
        return Action(ActionKind.FORGET, path, reason="deleted on both sides")

    # One side changed, the other did not (or never had it).
    for changed, other, s_changed, s_other in ((Side.A, Side.B, sa, sb), (Side.B, Side.A, sb, sa)):
        if s_other in UNCHANGED or s_other is State.ABSENT:
            if s_changed is State.GONE:
                if _mode_allows(mode, other, deleting=True):
                    return Action(ActionKind.DELETE, path, side=other, reason=f"deleted on {changed.value}")
                if _mode_allows(mode, changed):  # a one-way target lost a file: put it back
                    return _copy(path, changed, f"missing on {changed.value}; {mode.value}: restore it")
                return Action(ActionKind.FORGET, path, reason=f"deleted on {changed.value}; {mode.value}")
            if s_changed in (State.CHANGED, State.NEW):
                if _mode_allows(mode, other):
                    why = "new" if s_changed is State.NEW else "modified"
                    return _copy(path, other, f"{why} on {changed.value}")
                return None

    # Deleted on one side, modified on the other: the modification wins.
    for gone, kept, s_gone, s_kept in ((Side.A, Side.B, sa, sb), (Side.B, Side.A, sb, sa)):
        if s_gone is State.GONE and s_kept in (State.CHANGED, State.NEW):
            if _mode_allows(mode, gone):
                return _copy(path, gone, f"modified on {kept.value}, deleted on {gone.value}: modify wins")
            return Action(ActionKind.FORGET, path, reason=f"deleted on {gone.value}; {mode.value}")

    # Both present and changed (or new on both sides without a base).
    assert ea is not None and eb is not None
    if same_content(ea, eb):
        return Action(ActionKind.RECORD, path, reason="same content on both sides")
    return _resolve_conflict(path, ea, eb, settings, now, taken)


def _resolve_conflict(
    path: str, ea: Entry, eb: Entry, settings: PlanSettings, now: datetime, taken: set[str]
) -> Action:
    if settings.mode is Mode.UPLOAD_ONLY:
        return _copy(path, Side.B, "changed on both sides; upload-only: files win, bucket version to trash")
    if settings.mode is Mode.DOWNLOAD_ONLY:
        return _copy(path, Side.A, "changed on both sides; download-only: bucket wins, files version to trash")
    winner = conflict_winner(settings.policy, ea, eb)
    if settings.policy is ConflictPolicy.KEEP_BOTH:
        dest = conflict_copy_name(path, conflict_stamp(eb if winner is Side.A else ea, now), taken)
        taken.add(dest)
        return Action(
            ActionKind.CONFLICT,
            path,
            side=winner.other,
            dest=dest,
            reason=f"changed on both sides: {winner.other.value} version kept as conflict copy",
        )
    return _copy(
        path,
        winner.other,
        f"changed on both sides: {settings.policy.value}, {winner.other.value} version to trash",
    )


def conflict_stamp(loser: Entry, now: datetime) -> datetime:
    """The time a conflict copy is named for: when the losing version was last modified (as
    Nextcloud's client dates its conflict copies), so the same listings always give the same
    name and a dry run shows the name the real run then uses. A version without a usable time
    (at or before 1970, or past year 9999) is dated by the run's clock ``now``."""
    seconds = loser.mtime_ns // 1_000_000_000
    if seconds <= 0:
        return now
    try:
        return datetime.fromtimestamp(seconds)  # local time, as Nextcloud names them
    except (OverflowError, OSError, ValueError):
        return now


def _detect_moves(
    bases: Mapping[str, Base], a: Mapping[str, Entry], b: Mapping[str, Entry], side: Side
) -> list[Action]:
    """Renames made on ``side``: a path gone there (still unchanged on the other side) and a
    new path there with the same inode+size+mtime or the same content hash."""
    here, there = (a, b) if side is Side.A else (b, a)
    # set algebra first (in C): an unchanged tree costs no loop over the index here
    gone = [
        bases[p]
        for p in sorted((bases.keys() - here.keys()) & there.keys())  # sorted: the same plan every time
        if side_state(there[p], bases[p], side.other) is State.SAME
    ]
    if not gone:
        return []
    by_inode: dict[int, list[Base]] = defaultdict(list)
    by_hash: dict[str, list[Base]] = defaultdict(list)
    for base in gone:
        if side is Side.A and base.a_inode is not None:
            by_inode[base.a_inode].append(base)
        if base.content_hash is not None:
            by_hash[base.content_hash].append(base)
    used: set[str] = set()
    moves: list[Action] = []
    for q in sorted(here.keys() - bases.keys() - there.keys()):
        entry = here[q]
        candidates = [
            *(by_inode.get(entry.inode, []) if entry.inode is not None else []),
            *(by_hash.get(entry.content_hash, []) if entry.content_hash else []),
        ]
        for base in candidates:
            if base.path not in used and _same_file(entry, base, side):
                used.add(base.path)
                moves.append(
                    Action(
                        ActionKind.MOVE,
                        base.path,
                        side=side.other,
                        dest=q,
                        reason=f"renamed on {side.value}",
                    )
                )
                break
    return moves


def _same_file(entry: Entry, base: Base, side: Side) -> bool:
    if entry.size != base.size:
        return False
    if entry.content_hash is not None and base.content_hash is not None:
        return entry.content_hash == base.content_hash
    return side is Side.A and entry.inode == base.a_inode and entry.mtime_ns == base.a_mtime_ns


def _refuse_clashes(
    actions: Iterable[Action], a: Mapping[str, Entry], b: Mapping[str, Entry], settings: PlanSettings
) -> Iterable[Action]:
    """Turn into SKIP any action that would create a name on a side where it is the same name
    as another path there (case or Unicode form): nothing may overwrite a different file."""
    folds = {Side.A: settings.fold_a, Side.B: settings.fold_b}
    listings = {Side.A: a, Side.B: b}
    claimed: dict[Side, dict[str, str]] = {}
    for side, folding in folds.items():
        if folding.folds:
            claimed[side] = {
                clash_key(p, fold_case=folding.case, fold_unicode=folding.unicode): p for p in listings[side]
            }
    for action in actions:
        clash = _clash_of(action, claimed, folds)
        if clash is None:
            yield action
            continue
        side, other = clash
        yield Action(
            ActionKind.SKIP,
            action.path,
            reason=f"name clash on {side.value}: {action.dest or action.path!r} and {other!r} are the same name there",
        )


def _refuse_names(actions: Iterable[Action], settings: PlanSettings) -> Iterable[Action]:
    """Turn into SKIP any action that would create a name a side refuses to store: the
    reason is reported once per run, and the action is not an error retried forever."""
    for action in actions:
        refusal = None
        for side, name in _created_names(action):
            rule = settings.name_rules.get(side)
            problem = rule(name) if rule is not None else None
            if problem is not None:
                refusal = f"{side.value} refuses the name {name!r}: {problem}"
                break
        yield action if refusal is None else Action(ActionKind.SKIP, action.path, reason=refusal)


def _created_names(action: Action) -> list[tuple[Side, str]]:
    if action.kind is ActionKind.COPY and action.side is not None:
        return [(action.side, action.path)]
    if action.kind is ActionKind.MOVE and action.side is not None and action.dest:
        return [(action.side, action.dest)]
    if action.kind is ActionKind.CONFLICT and action.dest:
        return [(Side.A, action.dest), (Side.B, action.dest)]
    return []


def _clash_of(
    action: Action, claimed: dict[Side, dict[str, str]], folds: Mapping[Side, Folding]
) -> tuple[Side, str] | None:
    for side, name in _created_names(action):
        if side not in claimed:
            continue
        folding = folds[side]
        key = clash_key(name, fold_case=folding.case, fold_unicode=folding.unicode)
        holder = claimed[side].get(key)
        if holder is not None and holder != name:
            return side, holder
        claimed[side][key] = name
    return None
