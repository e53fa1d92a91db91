"""The engine on remotes that cannot move (no ``SupportsMove``): a rename, and the loser of a
keep-both conflict, become copy-then-trash (syncd.engine.moves): the new name is written from
a read of the old one, then the old one goes to the remote's trash, never deleted for good."""

from __future__ import annotations

import io
import os
from typing import Any

from syncd.models import Outcome, Side
from syncd.remotes.base import SupportsMove
from syncd.remotes.dirbucket import DirBucket
from tests.integration.test_run_sync import Recorded, World, store, world  # noqa: F401


class WithoutMove(Recorded):
    """A recorded remote that has every ability of the one it wraps except ``move``."""

    def __getattr__(self, name: str) -> Any:
        if name == "move":
            raise AttributeError(name)
        return super().__getattr__(name)


def test_a_rename_on_a_remote_without_move_is_copy_then_trash(world: World, store: Any) -> None:  # noqa: F811
    world.write_a("a.txt", b"renamed, not lost")
    assert world.sync(store).outcome is Outcome.OK
    os.makedirs(world.files / "docs")
    os.rename(world.files / "a.txt", world.files / "docs" / "b.txt")
    world.remotes[Side.B] = bucket = WithoutMove(world.remotes[Side.B])
    assert not isinstance(bucket, SupportsMove)
    report = world.sync(store)
    assert report.outcome is Outcome.OK, report.message
    assert report.done == {"move": 1}
    assert bucket.called("move") == []
    assert bucket.called("write") == ["docs/b.txt"]  # read from the old name, written anew
    assert bucket.called("trash") == ["a.txt"]  # the old name goes to the trash, not away
    assert world.tree_b() == world.tree_a() == {"docs/b.txt": b"renamed, not lost"}
    trashed = [e.path for e in DirBucket(world.root / "bucket").trashed()]
    assert len(trashed) == 1 and trashed[0].endswith("/a.txt")
    assert set(store.load_bases()) == {"docs/b.txt"}
    again = world.sync(store)
    assert again.outcome is Outcome.OK and again.done == {}


def test_a_conflict_on_remotes_without_move_keeps_both_versions(world: World, store: Any) -> None:  # noqa: F811
    world.write_a("a.txt", b"base")
    assert world.sync(store).outcome is Outcome.OK
    world.write_a("a.txt", b"edited in the files")
    bucket_side = world.remotes[Side.B]
    old = bucket_side.stat("a.txt")
    bucket_side.write("a.txt", io.BytesIO(b"edited in the bucket!"), size=21, mtime_ns=old.mtime_ns, if_match=old.etag)
    world.remotes[Side.A] = files = WithoutMove(world.remotes[Side.A])
    world.remotes[Side.B] = bucket = WithoutMove(bucket_side)
    report = world.sync(store)
    assert report.outcome is Outcome.OK, report.message
    assert report.done == {"conflict": 1}
    assert files.called("move") == bucket.called("move") == []
    tree = world.tree_a()
    assert tree == world.tree_b()
    assert sorted(tree.values()) == [b"edited in the bucket!", b"edited in the files"]
    (copy,) = (path for path in tree if path != "a.txt")
    assert "conflicted copy" in copy
    again = world.sync(store)
    assert again.outcome is Outcome.OK and again.done == {}


def test_a_copy_then_trash_move_counts_the_bytes_it_copied(world: World, store: Any) -> None:  # noqa: F811
    """A rename copies the file through this host where the remote cannot move: its bytes count
    in the run's bytes moved like any copy's; a server-side move moves none."""
    world.write_a("big.txt", b"x" * 5000)
    world.write_a("small.txt", b"y" * 70)
    assert world.sync(store).outcome is Outcome.OK
    os.rename(world.files / "small.txt", world.files / "small-renamed.txt")
    served = world.sync(store)  # the bucket moves it server-side
    assert served.done == {"move": 1} and served.bytes_moved == 0
    os.rename(world.files / "big.txt", world.files / "big-renamed.txt")
    world.remotes[Side.B] = WithoutMove(world.remotes[Side.B])
    report = world.sync(store)
    assert report.outcome is Outcome.OK, report.message
    assert report.done == {"move": 1} and report.bytes_moved == 5000 == _planned(world)


def test_a_conflict_on_remotes_without_move_counts_the_losers_copy(world: World, store: Any) -> None:  # noqa: F811
    world.write_a("c.txt", b"base")
    assert world.sync(store).outcome is Outcome.OK
    world.write_a("c.txt", b"A" * 300)
    bucket_side = world.remotes[Side.B]
    old = bucket_side.stat("c.txt")
    bucket_side.write("c.txt", io.BytesIO(b"B" * 40), size=40, mtime_ns=old.mtime_ns, if_match=old.etag)
    world.remotes[Side.A] = WithoutMove(world.remotes[Side.A])
    world.remotes[Side.B] = WithoutMove(bucket_side)
    report = world.sync(store)
    assert report.outcome is Outcome.OK and report.done == {"conflict": 1}, report.message
    # the winner copied to the loser's side, the loser's copy to the winner's side (340), and the
    # loser renamed to its conflict-copy name by a copy on its own side: its size once more
    (lost,) = (data for path, data in world.tree_a().items() if path != "c.txt")
    assert report.bytes_moved == 340 + len(lost)
    assert _planned(world) == report.bytes_moved  # the progress bar's total: it ends at 100%, not past it


def _planned(world: World) -> object:  # noqa: F811
    """The bytes the last run's ``applying`` event announced."""
    return [data for event, data in world.events if event == "applying"][-1]["bytes"]
