"""Foreign objects whose hash metadata lies, one named case each (issue 11).

The state machine (``test_stateful.py``) plants such objects at random; these are the cases
the issue names, kept as plain tests so a regression reads as one sentence. Each builds the
same pair as the machine (a local tree and a ``dir`` bucket in RAM) and reuses its helpers
and checks: after the run, both sides hold the same bytes, no version is lost, the index
holds the hashes of the bytes, and a second run does nothing.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from syncd.models import Outcome, Report
from tests.model.test_stateful import Env, SyncModel, Variant

X, Y, Z = b"the local file", b"THE LOCAL FILE", b"another size altogether"  # len(X) == len(Y)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(model_root: Path) -> SyncModel:
    """A fresh pair (keep-both, two-way) driven through the state machine's helpers."""
    return SyncModel(Env(model_root, Variant()))


def foreign_put(model: SyncModel, path: str, data: bytes, claimed: str) -> None:
    """Another writer puts ``data`` at ``path`` with metadata claiming ``claimed``."""
    model.bucket.write(path, io.BytesIO(data), size=len(data), mtime_ns=model.tick())
    model.plant_claim(path, claimed)


def settled_sync(model: SyncModel) -> Report:
    """One complete run, with every check the machine makes after a run that was not cut short."""
    model.sync_and_check(force=True, crash_at=None, batch=200)
    report = model.run_sync(force=False)
    assert report.outcome is Outcome.OK, report
    return report


def test_same_size_lookalike_claiming_the_synced_hash_is_copied_by_its_bytes(model: SyncModel) -> None:
    """Synced X; the bucket's object becomes Y (same size) whose metadata still claims X's
    hash: an edit on the bucket. Y reaches the files side; X stays in the files' trash."""
    model.files_write("a.txt", X)
    settled_sync(model)
    foreign_put(model, "a.txt", Y, sha256(X))
    settled_sync(model)
    world = model.world()
    assert world.files["a.txt"] == world.bucket["a.txt"] == Y
    assert world.trash[X] >= 1
    assert model.bases()["a.txt"].content_hash == sha256(Y)


def test_same_size_lookalike_new_on_both_sides_is_a_conflict(model: SyncModel) -> None:
    """X new on the files side, Y (same size) new on the bucket claiming X's hash: not the
    same content, so keep-both keeps X under the name and Y as a conflict copy, both sides."""
    model.files_write("a.txt", X)
    foreign_put(model, "a.txt", Y, sha256(X))
    settled_sync(model)
    world = model.world()
    assert world.files == world.bucket
    assert world.files["a.txt"] == X
    assert sorted(world.files.values()) == sorted([X, Y])


def test_other_size_with_a_hash_matching_neither_converges(model: SyncModel) -> None:
    """Synced X; the bucket's object becomes Z (another size) whose claim matches neither X
    nor Z: the download is checked against the bytes, not the claim, and does not fail."""
    model.files_write("a.txt", X)
    settled_sync(model)
    foreign_put(model, "a.txt", Z, sha256(b"matches nothing"))
    settled_sync(model)
    world = model.world()
    assert world.files["a.txt"] == world.bucket["a.txt"] == Z
    assert model.bases()["a.txt"].content_hash == sha256(Z)


def test_other_size_new_on_both_sides_keeps_both(model: SyncModel) -> None:
    """X new on the files side, Z on the bucket claiming X's hash: a conflict whose download
    used to fail "content does not match its hash" on every run."""
    model.files_write("a.txt", X)
    foreign_put(model, "a.txt", Z, sha256(X))
    settled_sync(model)
    world = model.world()
    assert world.files == world.bucket
    assert sorted(world.files.values()) == sorted([X, Z])


def test_lying_claim_moved_to_a_vanished_path_is_no_rename(model: SyncModel) -> None:
    """Synced X at a.txt; on the bucket a.txt goes and b.txt appears holding Y but claiming
    X's hash (what a rename would look like): the bytes say it is a new file, so the files
    side deletes a.txt (kept in its trash) and gets Y at b.txt, not X renamed."""
    model.files_write("a.txt", X)
    settled_sync(model)
    model.bucket.delete("a.txt")
    foreign_put(model, "b.txt", Y, sha256(X))
    settled_sync(model)
    world = model.world()
    assert world.files == world.bucket == {"b.txt": Y}
    assert world.trash[X] >= 1


def test_identical_bytes_behind_a_lying_claim_are_no_conflict(model: SyncModel) -> None:
    """X new on both sides, the bucket's metadata claiming some other hash: identical content
    is never a conflict (DESIGN 3), whatever the metadata says. The sizes are equal, so only
    the bytes can tell."""
    model.files_write("a.txt", X)
    foreign_put(model, "a.txt", X, sha256(b"matches nothing"))
    report = model.run_sync(force=True)
    assert report.plan is not None
    assert [a.kind.value for a in report.plan.actions] == ["record"], [a.describe() for a in report.plan.actions]
    world = model.world()
    assert world.files == world.bucket == {"a.txt": X}


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(Y, id="same-size-edit"),
        pytest.param(Z, id="other-size-edit"),
    ],
)
def test_unchanged_bytes_behind_a_claim_of_change_do_not_beat_an_edit(model_root: Path, edit: bytes) -> None:
    """prefer-bucket. Synced X; the files side edits it; another writer re-puts the bucket's
    X unchanged, its metadata claiming some other hash. Only the files side changed the
    bytes: the edit must reach the bucket. Believing the claim makes it a conflict the bucket
    wins: the stale X takes the name back on the files side, the edit only in its trash."""
    model = SyncModel(Env(model_root, Variant(policy="prefer-bucket")))
    model.files_write("a.txt", X)
    settled_sync(model)
    model.files_write("a.txt", edit)
    foreign_put(model, "a.txt", X, sha256(b"matches nothing"))
    model.run_sync(force=True)
    world = model.world()
    assert world.files == world.bucket == {"a.txt": edit}
