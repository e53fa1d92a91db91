"""Pure rules: key validation, excludes, conflict-copy names, safety guards."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.engine.conflicts import conflict_copy_name
from syncd.engine.safety import check_mass_delete, check_side_not_empty
from syncd.errors import SideLooksEmpty, TooManyDeletes, UnsafePath
from syncd.models import Action, ActionKind, Plan, Side
from syncd.paths import DEFAULT_EXCLUDES, Excludes, check_key, clash_key, excluded_among

WHEN = datetime(2026, 11, 25, 9, 5, 7)


@pytest.mark.parametrize("key", ["a.txt", "dir/sub/file", "ümlaut/日本.txt", "x" * 255, "a b/c;d#e?.f"])
def test_safe_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("../x", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("a\\b", "backslash"),
        ("nul\x00", "control"),
        ("new\nline", "control"),
        ("a//b", "''"),
        ("./a", "'.'"),
        ("x" * 256, "longer than 255"),
        ("bad\udcff", "UTF-8"),
    ],
)
def test_unsafe_keys(key: str, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        check_key(key)


def test_clash_key_folds_only_what_the_side_folds() -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    assert clash_key(nfc, fold_case=False, fold_unicode=True) == clash_key(nfd, fold_case=False, fold_unicode=True)
    assert clash_key(nfc, fold_case=False, fold_unicode=False) != clash_key(nfd, fold_case=False, fold_unicode=False)
    assert clash_key("A.txt", fold_case=True, fold_unicode=False) == "a.txt"


def test_default_excludes_cover_office_and_os_litter() -> None:
    excluded = Excludes(DEFAULT_EXCLUDES)
    for path in ("a/b.part", ".~lock.doc.odt#", "x/Thumbs.db", ".DS_Store", "d/desktop.ini", "~$report.docx"):
        assert excluded(path), path
    for path in ("report.docx", "part.txt", "a/lock.txt"):
        assert not excluded(path), path


def test_excludes_match_folders_and_paths() -> None:
    excluded = Excludes(["node_modules", "build/*.o"])
    assert excluded("web/node_modules/x/y.js")
    assert excluded("build/main.o") and not excluded("src/build/main.o")


SEGMENTS = ["a", "b.part", "node_modules", "build", "x.o", ".syncd-trash", ".syncd-tmp-1", "~$r", "Thumbs.db", "c d"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join), max_size=40),
    st.lists(st.sampled_from(["node_modules", "build/*.o", "*.o", "a/b.part", "c*", "b", "[ab]"]), max_size=3),
)
def test_excludes_among_many_paths_say_what_each_path_says_alone(paths: list[str], extra: list[str]) -> None:
    excluded = Excludes([*DEFAULT_EXCLUDES, *extra])
    assert excluded.among(paths) == {p for p in paths if Excludes(excluded.patterns)(p)}
    assert excluded_among(excluded, paths) == excluded_among(excluded.__call__, paths)


def test_conflict_copy_names_follow_nextcloud() -> None:
    assert conflict_copy_name("docs/a.txt", WHEN) == "docs/a (conflicted copy 2026-11-25 090507).txt"
    assert conflict_copy_name("archive.tar.gz", WHEN) == "archive.tar (conflicted copy 2026-11-25 090507).gz"
    assert conflict_copy_name(".bashrc", WHEN) == ".bashrc (conflicted copy 2026-11-25 090507)"
    assert conflict_copy_name("Makefile", WHEN) == "Makefile (conflicted copy 2026-11-25 090507)"
    taken = {"a (conflicted copy 2026-11-25 090507).txt", "a (conflicted copy 2026-11-25 090507 2).txt"}
    assert conflict_copy_name("a.txt", WHEN, taken) == "a (conflicted copy 2026-11-25 090507 3).txt"


def deletes(n: int) -> Plan:
    return Plan(tuple(Action(ActionKind.DELETE, f"f{i}", side=Side.B) for i in range(n)))


def test_mass_delete_guard_counts_against_the_ratio() -> None:
    check_mass_delete(deletes(5), base_count=10, max_ratio=0.5)
    with pytest.raises(TooManyDeletes, match="deletes 6 of 10"):
        check_mass_delete(deletes(6), base_count=10, max_ratio=0.5)
    check_mass_delete(deletes(9), base_count=10, max_ratio=0.9)
    moves = Plan(tuple(Action(ActionKind.MOVE, f"f{i}", side=Side.B, dest=f"g{i}") for i in range(10)))
    check_mass_delete(moves, base_count=10)


def test_empty_side_guard() -> None:
    check_side_not_empty(0, {Side.A: 0, Side.B: 0})  # first sync of an empty pair is fine
    check_side_not_empty(3, {Side.A: 3, Side.B: 1})
    with pytest.raises(SideLooksEmpty, match="files side lists no files"):
        check_side_not_empty(3, {Side.A: 0, Side.B: 3})
