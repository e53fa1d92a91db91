"""`syncd restore`: a version comes back from syncd's trash (a local tree's trash folder, a
bucket's .syncd-trash/) to its side, the present file is kept first, and the next sync
carries it over; the command's errors are one line with a documented exit code."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from syncd.lock import pair_lock
from syncd.outcomes import ExitCode
from tests.integration.cli_helpers import syncd
from tests.integration.helpers import PairEnv


@pytest.fixture
def env(tmp_path: Path) -> PairEnv:
    env = PairEnv(tmp_path)
    env.pair()  # writes syncd.toml
    return env


def _config(env: PairEnv) -> Path:
    return env.root / "syncd.toml"


def _pause() -> None:
    """Trash moments are named to the microsecond: make two versions' moments differ clearly."""
    time.sleep(0.01)


def test_overwritten_version_comes_back_from_the_local_trash(env: PairEnv) -> None:
    env.write_a("docs/a.txt", b"version one")
    env.sync()
    _pause()
    env.write_b("docs/a.txt", b"version two from the bucket")  # the bucket's edit overwrites A's file
    env.sync()
    assert env.read_a("docs/a.txt") == b"version two from the bucket"
    done = syncd(_config(env), "restore", "docs/a.txt", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    row = json.loads(done.stdout)
    assert (row["pair"], row["side"], row["path"], row["size"]) == ("t/default", "files", "docs/a.txt", 11)
    assert row["replaced_kept_at"]  # the present version went to the trash first
    assert env.read_a("docs/a.txt") == b"version one"
    assert b"version two from the bucket" in env.trash_a()
    env.sync()  # the next sync carries it to the bucket
    assert env.read_b("docs/a.txt") == b"version one"


def test_deleted_file_comes_back_from_the_bucket_trash(env: PairEnv) -> None:
    env.write_a("gone.txt", b"precious")
    env.write_a("stays.txt", b"a side never lists empty here (the empty-side guard)")
    env.sync()
    (env.files / "gone.txt").unlink()
    env.sync()
    assert "gone.txt" not in env.tree_b()
    done = syncd(_config(env), "restore", "/gone.txt", "t/default")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "restored gone.txt on t/default bucket" in done.stdout
    assert "kept in the trash" not in done.stdout  # nothing was there to keep
    assert env.read_b("gone.txt") == b"precious"
    env.sync()
    assert env.read_a("gone.txt") == b"precious"
    again = syncd(_config(env), "restore", "gone.txt")  # it is there now: kept, then replaced
    assert again.returncode == ExitCode.OK, again.stderr
    assert "kept in the trash: .syncd-trash/" in again.stdout


def test_at_picks_the_newest_version_at_or_before_it_and_list_shows_all(env: PairEnv) -> None:
    env.write_a("n.txt", b"one")
    env.sync()
    for content in (b"two", b"three"):
        _pause()
        env.write_b("n.txt", content)
        env.sync()  # A's version goes to A's trash each time
    listed = syncd(_config(env), "restore", "n.txt", "--list", "--json")
    assert listed.returncode == ExitCode.OK, listed.stderr
    versions = json.loads(listed.stdout)
    assert [v["size"] for v in versions] == [3, 3] and all(v["side"] == "files" for v in versions)
    first = versions[0]["trashed_at"]
    done = syncd(_config(env), "restore", "n.txt", "--at", first.replace("T", " "))
    assert done.returncode == ExitCode.OK, done.stderr
    assert env.read_a("n.txt") == b"one"
    human = syncd(_config(env), "restore", "n.txt", "--list")
    assert human.returncode == ExitCode.OK and human.stdout.count("t/default files") == 3  # the replaced one too


def test_list_with_at_shows_only_what_restore_at_could_bring_back_and_marks_its_pick(env: PairEnv) -> None:
    env.write_a("m.txt", b"one")
    env.sync()
    for content in (b"two!", b"three", b"four"):
        _pause()
        env.write_b("m.txt", content)
        env.sync()  # A's version goes to A's trash each time: one (3 B), two! (4 B), three (5 B)
    every = json.loads(syncd(_config(env), "restore", "m.txt", "--list", "--json").stdout)
    assert [(v["size"], v["chosen"]) for v in every] == [(3, False), (4, False), (5, True)]  # the newest
    second = every[1]["trashed_at"].replace("T", " ")
    listed = syncd(_config(env), "restore", "m.txt", "--list", "--json", "--at", second)
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert [(v["size"], v["chosen"]) for v in json.loads(listed.stdout)] == [(3, False), (4, True)]
    human = syncd(_config(env), "restore", "m.txt", "--list", "--at", second).stdout.splitlines()
    assert [line.split("  ")[2] for line in human[:2]] == ["3 bytes", "4 bytes"], human
    assert "<- restore brings this one back" in human[1] and "<-" not in human[0]
    assert human[2] == "(1 newer than --at, not shown)"
    none = syncd(_config(env), "restore", "m.txt", "--list", "--at", "2000-01-01")
    assert none.returncode == ExitCode.OK
    assert none.stdout == "no versions in syncd's trash trashed at or before 2000-01-01 23:59:59 (3 newer)\n"
    done = syncd(_config(env), "restore", "m.txt", "--at", second, "--json")  # brings back what the list marked
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["size"] == 4 and env.read_a("m.txt") == b"two!"


def test_as_copy_leaves_the_present_file_alone(env: PairEnv) -> None:
    env.write_a("r.txt", b"old")
    env.sync()
    _pause()
    env.write_b("r.txt", b"new")
    env.sync()
    done = syncd(_config(env), "restore", "r.txt", "--as-copy", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    copy = json.loads(done.stdout)["restored_as"]
    assert copy.startswith("r (restored ") and copy.endswith(").txt")
    assert env.read_a("r.txt") == b"new" and env.read_a(copy) == b"old"
    twice = syncd(_config(env), "restore", "r.txt", "--as-copy")
    assert twice.returncode == ExitCode.ITEM_ERRORS and "already exists" in twice.stderr


def test_errors_are_one_line_with_their_exit_code(env: PairEnv) -> None:
    env.write_a("x.txt", b"x")
    env.write_a("stays.txt", b"s")
    env.sync()
    missing = syncd(_config(env), "restore", "nothing.txt")
    assert missing.returncode == ExitCode.ITEM_ERRORS
    assert missing.stderr.strip().count("\n") == 0 and "no version of 'nothing.txt'" in missing.stderr
    bad_time = syncd(_config(env), "restore", "x.txt", "--at", "yesterday-ish")
    assert bad_time.returncode == ExitCode.USAGE and "not a time" in bad_time.stderr
    bad_path = syncd(_config(env), "restore", "../etc/passwd")
    assert bad_path.returncode == ExitCode.USAGE
    unknown = syncd(_config(env), "restore", "x.txt", "nobody")
    assert unknown.returncode == ExitCode.FATAL and "no pair 'nobody'" in unknown.stderr
    (env.files / "x.txt").unlink()
    env.sync()
    too_early = syncd(_config(env), "restore", "x.txt", "--at", "2000-01-01")
    assert too_early.returncode == ExitCode.ITEM_ERRORS and "(1 newer)" in too_early.stderr
    with pair_lock(env.state, "t/default"):  # a sync of the pair is running
        busy = syncd(_config(env), "restore", "x.txt")
    assert busy.returncode == ExitCode.BUSY and "another sync of this pair is running" in busy.stderr
    assert "x.txt" not in env.tree_b()


def test_a_path_in_the_trash_of_two_pairs_must_be_named(tmp_path: Path) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text(
        '[daemon]\nstate_dir = "state"\n'
        '[users.a]\nfiles = { type = "local", path = "fa" }\nbucket = { type = "dir", path = "ba" }\n'
        '[users.b]\nfiles = { type = "local", path = "fb" }\nbucket = { type = "dir", path = "bb" }\n'
    )
    for user in ("a", "b"):
        (tmp_path / f"f{user}").mkdir()
        (tmp_path / f"f{user}" / "same.txt").write_text(user)
        (tmp_path / f"f{user}" / "stays.txt").write_text(user)
        assert syncd(config, "now", user).returncode == ExitCode.OK
        (tmp_path / f"f{user}" / "same.txt").unlink()
        assert syncd(config, "now", user).returncode == ExitCode.OK
    ambiguous = syncd(config, "restore", "same.txt")
    assert ambiguous.returncode == ExitCode.USAGE and "name one as USER/PAIR" in ambiguous.stderr
    named = syncd(config, "restore", "same.txt", "b")
    assert named.returncode == ExitCode.OK, named.stderr
    assert not (tmp_path / "fa" / "same.txt").exists()


def test_a_deleted_folder_comes_back_file_by_file_and_present_files_are_left(env: PairEnv) -> None:
    for name in ("docs/a.txt", "docs/sub/b.txt", "docs/c.txt"):
        env.write_a(name, f"first {name}".encode())
    env.write_a("stays.txt", b"a side never lists empty here (the empty-side guard)")
    env.sync()
    _pause()
    env.write_a("docs/c.txt", b"second c")  # an edit: the bucket's first version goes to its trash
    env.sync()
    for name in ("docs/a.txt", "docs/sub/b.txt", "docs/c.txt"):
        (env.files / name).unlink()
    env.write_a("docs/sub/b.txt", b"a new b, written since")  # present again: must be left alone
    env.sync()
    assert "docs/a.txt" not in env.tree_b() and env.read_b("docs/sub/b.txt") == b"a new b, written since"

    listed = syncd(_config(env), "restore", "docs", "--list", "--json")
    assert listed.returncode == ExitCode.OK, listed.stderr
    rows = json.loads(listed.stdout)
    chosen = {row["path"]: row["size"] for row in rows if row["chosen"]}
    assert chosen == {"docs/a.txt": 16, "docs/c.txt": 8, "docs/sub/b.txt": 20}  # c: its newest version

    done = syncd(_config(env), "restore", "/docs/")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "restored 2 file(s) under docs/ on t/default bucket; 1 present, left as they are" in done.stdout
    assert "left docs/sub/b.txt as it is" in done.stdout
    assert env.read_b("docs/a.txt") == b"first docs/a.txt" and env.read_b("docs/c.txt") == b"second c"
    assert env.read_b("docs/sub/b.txt") == b"a new b, written since"
    env.sync()
    assert env.tree_a() == env.tree_b()
    assert env.read_a("docs/a.txt") == b"first docs/a.txt"


def test_a_folder_restore_as_copies_keeps_present_files_and_says_what_it_did(env: PairEnv) -> None:
    env.write_a("f/x.txt", b"x one")
    env.write_a("stays.txt", b"s")
    env.sync()
    _pause()
    env.write_a("f/x.txt", b"x two")
    env.sync()
    done = syncd(_config(env), "restore", "f", "--as-copy", "--json")
    assert done.returncode == ExitCode.OK, done.stderr
    report = json.loads(done.stdout)
    assert report["folder"] == "f" and report["present"] == [] and report["failed"] == []
    (row,) = report["restored"]
    assert row["restored_as"].startswith("f/x (restored ") and row["restored_as"].endswith(").txt")
    assert env.read_b("f/x.txt") == b"x two" and env.read_b(row["restored_as"]) == b"x one"
    missing = syncd(_config(env), "restore", "nothing-here")
    assert missing.returncode == ExitCode.ITEM_ERRORS and "no version of 'nothing-here'" in missing.stderr
