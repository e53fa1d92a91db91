"""The trash layout: one place makes and reads ``.syncd-trash/<date>/<time>/<path>``."""

from __future__ import annotations

from datetime import datetime

from syncd.remotes.bucket_trash import (
    due_for_purge,
    moment_folder,
    parse_trash_key,
    trash_key,
    trash_relpath,
    versions_of,
)

WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123)


def test_key_layout_is_the_one_older_syncd_wrote() -> None:
    assert trash_key("a/b c.txt", WHEN) == ".syncd-trash/2026-03-04/050607890123/a/b c.txt"
    assert trash_relpath("x", WHEN) == "2026-03-04/050607890123/x"
    assert moment_folder(trash_key("a/b.txt", WHEN)) == ".syncd-trash/2026-03-04/050607890123"


def test_parse_round_trips_and_refuses_foreign_keys() -> None:
    assert parse_trash_key(trash_key("d/e.txt", WHEN)) == (WHEN, "d/e.txt")
    for foreign in (
        "d/e.txt",
        ".syncd-trash/notes.txt",
        ".syncd-trash/2026-03-04/e.txt",
        ".syncd-trash/2026-13-04/050607890123/e.txt",
        ".syncd-trash/2026-03-04/050607890123/",
    ):
        assert parse_trash_key(foreign) is None, foreign


def test_due_for_purge_keeps_recent_and_foreign_keys() -> None:
    old, new = trash_key("a", datetime(2026, 1, 1)), trash_key("a", datetime(2026, 2, 1))
    assert due_for_purge([old, new, ".syncd-trash/readme.txt"], datetime(2026, 1, 15)) == [old]


def test_versions_of_one_path_oldest_first() -> None:
    later, earlier = trash_key("p.txt", datetime(2026, 5, 2)), trash_key("p.txt", datetime(2026, 5, 1))
    objects = [(later, 2), (trash_key("q.txt", WHEN), 3), (earlier, 1), ("foreign", 9)]
    versions = versions_of(objects, "p.txt")
    assert [(v.key, v.size, v.path) for v in versions] == [(earlier, 1, "p.txt"), (later, 2, "p.txt")]
    assert {v.path for v in versions_of(objects)} == {"p.txt", "q.txt"}
