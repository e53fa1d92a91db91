"""A no-change scan does no per-file name work for paths the index knows (engine/scan.py):
their names were checked before they were first synced and the bases hold no excluded path,
while every path the index does not know is still checked and filtered."""

from __future__ import annotations

from pathlib import Path

from syncd.engine.scan import Snapshot, list_side, paths_needing_hash
from syncd.models import Base, Entry, Side
from syncd.remotes.local import LocalRemote, local_etag


class CountingExcludes:
    def __init__(self, *patterns: str) -> None:
        self.patterns = patterns
        self.asked: list[str] = []

    def __call__(self, path: str) -> bool:
        self.asked.append(path)
        return any(path.endswith(p) for p in self.patterns)


def base_of(root: Path, path: str) -> Base:
    st = (root / path).lstat()
    etag = local_etag(st)
    return Base(path, st.st_size, None, etag, "b-etag", st.st_mtime_ns, 1, st.st_ino)


def test_known_paths_are_not_checked_again_new_ones_are(tmp_path: Path) -> None:
    for name in ("a.txt", "d/b.txt", "new.txt", "skip.part"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    bases = {p: base_of(tmp_path, p) for p in ("a.txt", "d/b.txt")}
    excluded = CountingExcludes(".part")
    snap = list_side(LocalRemote(tmp_path, trash_dir=tmp_path / "trash"), Side.A, excluded, bases)
    assert sorted(snap.entries) == ["a.txt", "d/b.txt", "new.txt"]
    assert sorted(excluded.asked) == ["new.txt", "skip.part"]  # never a path of the index


def test_an_unsafe_name_the_index_does_not_know_is_still_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad\\name.txt").write_bytes(b"x")
    (tmp_path / "ok.txt").write_bytes(b"y")
    snap = list_side(LocalRemote(tmp_path, trash_dir=tmp_path / "trash"), Side.A, CountingExcludes(), {})
    assert list(snap.entries) == ["ok.txt"]
    assert list(snap.skipped) == ["bad\\name.txt"]


def test_a_new_file_of_a_vanished_files_size_is_hashed_an_unchanged_one_not(tmp_path: Path) -> None:
    (tmp_path / "same.txt").write_bytes(b"unchanged")
    (tmp_path / "renamed.txt").write_bytes(b"12345")
    bases = {
        "same.txt": base_of(tmp_path, "same.txt"),
        "gone.txt": Base("gone.txt", 5, "h", "old-etag", "b", 1, 1, 99),
    }
    snap = list_side(LocalRemote(tmp_path, trash_dir=tmp_path / "trash"), Side.A, CountingExcludes(), bases)
    other = Snapshot(Side.B, {"same.txt": Entry("same.txt", 9, 1, "b-etag")})
    assert paths_needing_hash(snap, other, bases) == ["renamed.txt"]
