"""Table tests of the pure planner: every row of DESIGN.md's decision table, every policy
and mode, rename detection and name clashes. No I/O: entries are built by hand."""

from __future__ import annotations

from datetime import datetime

import pytest

from syncd.engine.plan import Folding, PlanSettings, plan
from syncd.models import Action, ActionKind, Base, ConflictPolicy, Entry, Mode, Side

NOW = datetime(2026, 11, 25, 1, 30, 0)
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
B_MTIME = 1_764_000_000_123_456_789  # a bucket version's mtime, and the conflict copy's stamp from it
B_STAMP = f"{datetime.fromtimestamp(B_MTIME // 10**9):%Y-%m-%d %H%M%S}"


def entry(
    path: str, etag: str, h: str | None = H1, size: int = 10, mtime: int = 1000, inode: int | None = None
) -> Entry:
    return Entry(path=path, size=size, mtime_ns=mtime, etag=etag, content_hash=h, inode=inode)


def base(path: str = "f.txt", h: str | None = H1, size: int = 10, inode: int | None = None) -> Base:
    return Base(
        path=path, size=size, content_hash=h, a_etag="a0", b_etag="b0", a_mtime_ns=1000, b_mtime_ns=1000, a_inode=inode
    )


def run(bases: list[Base], a: list[Entry], b: list[Entry], **settings: object) -> list[Action]:
    result = plan(
        {x.path: x for x in bases},
        {x.path: x for x in a},
        {x.path: x for x in b},
        PlanSettings(**settings),  # type: ignore[arg-type]
        NOW,
    )
    return list(result.actions)


def only(actions: list[Action]) -> Action:
    assert len(actions) == 1, actions
    return actions[0]


# -- the decision table, row by row -------------------------------------------------------------


def test_same_same_does_nothing() -> None:
    assert run([base()], [entry("f.txt", "a0")], [entry("f.txt", "b0")]) == []


def test_changed_on_files_copies_to_bucket() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H2)], [entry("f.txt", "b0")]))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.B)


def test_changed_on_bucket_copies_to_files() -> None:
    action = only(run([base()], [entry("f.txt", "a0")], [entry("f.txt", "b1", H2)]))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.A)


def test_vanished_on_files_deletes_on_bucket() -> None:
    action = only(run([base()], [], [entry("f.txt", "b0")]))
    assert (action.kind, action.side) == (ActionKind.DELETE, Side.B)


def test_vanished_on_bucket_deletes_on_files() -> None:
    action = only(run([base()], [entry("f.txt", "a0")], []))
    assert (action.kind, action.side) == (ActionKind.DELETE, Side.A)


def test_vanished_on_both_forgets_the_base() -> None:
    assert only(run([base()], [], [])).kind is ActionKind.FORGET


def test_changed_on_both_to_same_content_records_without_copying() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H2)], [entry("f.txt", "b1", H2)]))
    assert action.kind is ActionKind.RECORD


def test_changed_on_both_differently_is_a_conflict() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H2)], [entry("f.txt", "b1", H3, mtime=B_MTIME)]))
    assert action.kind is ActionKind.CONFLICT
    assert action.side is Side.B  # keep-both: the bucket's version becomes the conflict copy
    assert action.dest == f"f (conflicted copy {B_STAMP}).txt"  # dated by its own mtime, as Nextcloud does


def test_a_conflict_copy_with_no_usable_mtime_is_dated_by_the_run() -> None:
    for mtime in (0, -1, 10**30):
        action = only(run([base()], [entry("f.txt", "a1", H2)], [entry("f.txt", "b1", H3, mtime=mtime)]))
        assert action.dest == "f (conflicted copy 2026-11-25 013000).txt", mtime


def test_deleted_on_files_modified_on_bucket_restores_the_modified_version() -> None:
    action = only(run([base()], [], [entry("f.txt", "b1", H2)]))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.A)
    assert "modify wins" in action.reason


def test_modified_on_files_deleted_on_bucket_restores_the_modified_version() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H2)], []))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.B)


def test_no_base_present_on_both_same_content_records() -> None:
    assert only(run([], [entry("f.txt", "a", H1)], [entry("f.txt", "b", H1)])).kind is ActionKind.RECORD


def test_no_base_present_on_both_different_content_is_a_conflict() -> None:
    assert only(run([], [entry("f.txt", "a", H1)], [entry("f.txt", "b", H2)])).kind is ActionKind.CONFLICT


def test_unknown_hash_with_equal_size_is_never_assumed_identical() -> None:
    action = only(run([], [entry("f.txt", "a", None)], [entry("f.txt", "b", H1)]))
    assert action.kind is ActionKind.CONFLICT


def test_new_file_on_one_side_is_copied() -> None:
    assert only(run([], [entry("n.txt", "a")], [])).side is Side.B
    assert only(run([], [], [entry("n.txt", "b")])).side is Side.A


def test_mtime_only_change_records_and_moves_no_bytes() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H1, mtime=2000)], [entry("f.txt", "b0")]))
    assert action.kind is ActionKind.RECORD


# -- policies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "kind", "side"),
    [
        (ConflictPolicy.KEEP_BOTH, ActionKind.CONFLICT, Side.B),
        (ConflictPolicy.PREFER_FILES, ActionKind.COPY, Side.B),
        (ConflictPolicy.PREFER_BUCKET, ActionKind.COPY, Side.A),
        (ConflictPolicy.NEWER, ActionKind.COPY, Side.B),  # the files version is newer: it goes to the bucket
    ],
)
def test_conflict_policies(policy: ConflictPolicy, kind: ActionKind, side: Side) -> None:
    a = entry("f.txt", "a1", H2, mtime=5000)
    b = entry("f.txt", "b1", H3, mtime=4000)
    action = only(run([base()], [a], [b], policy=policy))
    assert (action.kind, action.side) == (kind, side)


def test_newer_policy_lets_the_newer_bucket_version_win() -> None:
    a = entry("f.txt", "a1", H2, mtime=4000)
    b = entry("f.txt", "b1", H3, mtime=5000)
    action = only(run([base()], [a], [b], policy=ConflictPolicy.NEWER))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.A)


def test_modify_beats_delete_whatever_the_policy() -> None:
    for policy in ConflictPolicy:
        action = only(run([base()], [], [entry("f.txt", "b1", H2)], policy=policy))
        assert (action.kind, action.side) == (ActionKind.COPY, Side.A)


def test_conflict_copy_name_never_reuses_an_existing_path() -> None:
    taken = entry(f"f (conflicted copy {B_STAMP}).txt", "x", H3)
    actions = run([base()], [entry("f.txt", "a1", H2), taken], [entry("f.txt", "b1", H3, mtime=B_MTIME)])
    conflict = next(a for a in actions if a.kind is ActionKind.CONFLICT)
    assert conflict.dest == f"f (conflicted copy {B_STAMP} 2).txt"


# -- one-way modes -------------------------------------------------------------------------------


def test_upload_only_never_deletes_in_the_bucket() -> None:
    action = only(run([base()], [], [entry("f.txt", "b0")], mode=Mode.UPLOAD_ONLY))
    assert action.kind is ActionKind.FORGET


def test_upload_only_ignores_bucket_changes_and_restores_missing_objects() -> None:
    assert run([base()], [entry("f.txt", "a0")], [entry("f.txt", "b1", H2)], mode=Mode.UPLOAD_ONLY) == []
    action = only(run([base()], [entry("f.txt", "a0")], [], mode=Mode.UPLOAD_ONLY))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.B)


def test_upload_only_conflict_keeps_files_version_and_trashes_bucket_version() -> None:
    action = only(run([base()], [entry("f.txt", "a1", H2)], [entry("f.txt", "b1", H3)], mode=Mode.UPLOAD_ONLY))
    assert (action.kind, action.side) == (ActionKind.COPY, Side.B)


def test_download_only_never_writes_the_bucket() -> None:
    actions = run([base()], [entry("f.txt", "a1", H2), entry("new.txt", "n")], [], mode=Mode.DOWNLOAD_ONLY)
    assert all(a.side is not Side.B for a in actions), actions


def test_upload_only_does_not_turn_renames_into_bucket_moves() -> None:
    actions = run([base("old.txt")], [entry("new.txt", "a9", H1)], [entry("old.txt", "b0")], mode=Mode.UPLOAD_ONLY)
    assert {(a.kind, a.path) for a in actions} == {(ActionKind.FORGET, "old.txt"), (ActionKind.COPY, "new.txt")}


# -- renames -------------------------------------------------------------------------------------


def test_rename_on_files_by_hash_becomes_a_move_on_bucket() -> None:
    action = only(run([base("old.txt")], [entry("new.txt", "a9", H1)], [entry("old.txt", "b0")]))
    assert (action.kind, action.side, action.path, action.dest) == (ActionKind.MOVE, Side.B, "old.txt", "new.txt")


def test_rename_on_files_by_inode_needs_no_hash() -> None:
    moved = entry("new.txt", "a9", None, inode=77, mtime=1000)
    action = only(run([base("old.txt", inode=77)], [moved], [entry("old.txt", "b0")]))
    assert action.kind is ActionKind.MOVE


def test_rename_on_bucket_becomes_a_move_on_files() -> None:
    action = only(run([base("old.txt")], [entry("old.txt", "a0")], [entry("new.txt", "b9", H1)]))
    assert (action.kind, action.side) == (ActionKind.MOVE, Side.A)


def test_rename_of_a_file_modified_on_the_other_side_is_not_a_move() -> None:
    actions = run([base("old.txt")], [entry("new.txt", "a9", H1)], [entry("old.txt", "b1", H2)])
    assert all(a.kind is not ActionKind.MOVE for a in actions)
    assert {a.kind for a in actions} == {ActionKind.COPY}  # modify wins + the new name is copied


def test_same_size_different_content_is_not_a_move() -> None:
    actions = run([base("old.txt")], [entry("new.txt", "a9", H2)], [entry("old.txt", "b0")])
    assert {a.kind for a in actions} == {ActionKind.COPY, ActionKind.DELETE}


# -- name clashes (invariant 18) -----------------------------------------------------------------


def test_case_clash_on_a_case_insensitive_side_is_skipped_not_overwritten() -> None:
    fold = Folding(case=True)
    actions = run([], [entry("A.txt", "a")], [entry("a.txt", "b", H2)], fold_a=fold)
    by_path = {a.path: a for a in actions}
    assert by_path["a.txt"].kind is ActionKind.SKIP
    assert by_path["A.txt"].kind is ActionKind.COPY  # the bucket is case-sensitive: both can live there


def test_unicode_forms_clash_only_where_a_side_normalises() -> None:
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    plain = run([], [entry(nfc, "a")], [entry(nfd, "b", H2)])
    assert {a.kind for a in plain} == {ActionKind.COPY}
    folded = run([], [entry(nfc, "a")], [entry(nfd, "b", H2)], fold_a=Folding(unicode=True))
    assert {a.path: a.kind for a in folded}[nfd] is ActionKind.SKIP


def test_skipped_paths_are_reported_in_the_plan() -> None:
    result = plan({}, {}, {}, PlanSettings(), NOW, skipped={"../x": "unsafe name"})
    assert [(a.kind, a.path) for a in result.actions] == [(ActionKind.SKIP, "../x")]
