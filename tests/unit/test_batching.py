"""Batches of small new files. First, table tests of the pure choices made before a plan's
actions run: which folders each side must hold first (:func:`folders_to_prepare`) and which
small new files go into which batch (:func:`choose_batches`), with listings built by hand.
Then the engine itself, with a remote that batches: batches formed, failures retried alone,
changed sources failing alone, and the same counts, index rows and progress as without."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

import syncd.engine.sync as engine_sync
from syncd.config import PairConfig
from syncd.engine.apply import Accepts, choose_batches, folders_to_prepare
from syncd.errors import FatalError, ItemError, TransientError
from syncd.models import Action, ActionKind, Entry, Outcome, Side
from syncd.remotes.base import BatchLimits, NewFile, Remote
from syncd.remotes.dirbucket import DirBucket
from syncd.remotes.local import LocalRemote
from tests.integration.helpers import PairEnv

A, B = Side.A, Side.B
COPY, DELETE, MOVE, CONFLICT, RECORD = (
    ActionKind.COPY,
    ActionKind.DELETE,
    ActionKind.MOVE,
    ActionKind.CONFLICT,
    ActionKind.RECORD,
)
LIMITS = BatchLimits(max_files=3, max_file_bytes=100, max_batch_bytes=250)


def copy_to(side: Side, path: str) -> Action:
    return Action(COPY, path, side=side)


def entry(path: str, size: int) -> Entry:
    return Entry(path=path, size=size, mtime_ns=0, etag=f"e-{path}")


def listings(a: Mapping[str, int], b: Mapping[str, int]) -> dict[Side, dict[str, Entry]]:
    return {A: {p: entry(p, n) for p, n in a.items()}, B: {p: entry(p, n) for p, n in b.items()}}


def accept_all(_path: str, _size: int) -> bool:
    return True


def choose(
    actions: list[Action],
    on_b: Mapping[str, int],
    on_a: Mapping[str, int] | None = None,
    limits: Mapping[Side, BatchLimits] | None = None,
    accepts: Accepts = accept_all,
) -> tuple[list[list[str]], list[str]]:
    """Batches (as lists of paths) and singles (paths) for copies from B to A by default."""
    chosen_limits = {A: LIMITS} if limits is None else limits
    chosen = choose_batches(
        actions, listings(on_a or {}, on_b), chosen_limits, {side: accepts for side in chosen_limits}
    )
    assert all(len(batch.actions) > 1 for batch in chosen.batches)
    return [[a.path for a in batch.actions] for batch in chosen.batches], [a.path for a in chosen.singles]


# -- folders_to_prepare -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action(COPY, "a/b/c.txt", side=A), {A: {"a/b"}, B: set()}),
        (Action(COPY, "top.txt", side=B), {A: set(), B: set()}),  # the root exists
        (Action(MOVE, "old/x.txt", side=B, dest="new/deep/x.txt"), {A: set(), B: {"new/deep"}}),
        (
            Action(CONFLICT, "d/f.txt", side=A, dest="d/f (conflicted copy).txt"),
            {A: {"d"}, B: {"d"}},  # the loser's copy on A, the winner under the name, the copy on B
        ),
        (Action(DELETE, "gone/x.txt", side=A), {A: set(), B: set()}),
        (Action(RECORD, "same/x.txt"), {A: set(), B: set()}),
    ],
    ids=["copy", "copy-at-root", "move-destination", "conflict-both-copies", "delete", "record"],
)
def test_folders_to_prepare_are_the_parents_of_what_is_written(action: Action, expected: dict[Side, set[str]]) -> None:
    assert folders_to_prepare([action]) == expected


def test_folders_to_prepare_are_collected_once_per_side() -> None:
    actions = [copy_to(A, "x/1.txt"), copy_to(A, "x/2.txt"), copy_to(B, "x/3.txt"), copy_to(A, "x/y/4.txt")]
    assert folders_to_prepare(actions) == {A: {"x", "x/y"}, B: {"x"}}


# -- choose_batches -----------------------------------------------------------------------------


def test_small_new_files_make_one_batch() -> None:
    actions = [copy_to(A, f"d/{n}.txt") for n in range(3)]
    assert choose(actions, {a.path: 10 for a in actions}) == ([["d/0.txt", "d/1.txt", "d/2.txt"]], [])


@pytest.mark.parametrize(
    ("sizes", "batches", "singles"),
    [
        # max_files = 3: the 4th file opens a second batch, which a 5th fills to two
        ([1, 1, 1, 1, 1], [["f0", "f1", "f2"], ["f3", "f4"]], []),
        # a second batch of one file is no batch: that file goes alone
        ([1, 1, 1, 1], [["f0", "f1", "f2"]], ["f3"]),
        # max_batch_bytes = 250: 100 + 100 fit, the third 100 does not
        ([100, 100, 100, 100], [["f0", "f1"], ["f2", "f3"]], []),
        # exactly the byte limit still fits
        ([100, 100, 50], [["f0", "f1", "f2"]], []),
        # max_file_bytes = 100: a bigger file goes alone, the others still batch
        ([10, 101, 10], [["f0", "f2"]], ["f1"]),
        # empty files batch too
        ([0, 0], [["f0", "f1"]], []),
        # one file alone is no batch
        ([10], [], ["f0"]),
    ],
    ids=["file-limit", "lone-leftover", "byte-limit", "byte-limit-exact", "size-cut", "empty-files", "lone-file"],
)
def test_batches_are_filled_in_plan_order_within_the_limits(
    sizes: list[int], batches: list[list[str]], singles: list[str]
) -> None:
    actions = [copy_to(A, f"f{n}") for n in range(len(sizes))]
    assert choose(actions, {f"f{n}": size for n, size in enumerate(sizes)}) == (batches, singles)


def test_only_create_only_copies_are_batched() -> None:
    """A path listed on the target is an overwrite: it keeps its old version and its If-Match."""
    actions = [copy_to(A, "new1"), copy_to(A, "exists"), copy_to(A, "new2")]
    got = choose(actions, {"new1": 1, "exists": 1, "new2": 1}, on_a={"exists": 5})
    assert got == ([["new1", "new2"]], ["exists"])


def test_other_actions_are_never_batched_and_keep_their_order() -> None:
    actions = [
        Action(DELETE, "del", side=A),
        copy_to(A, "n1"),
        Action(MOVE, "old", side=A, dest="moved"),
        copy_to(A, "n2"),
        Action(CONFLICT, "c", side=A, dest="c (conflicted copy)"),
        Action(RECORD, "r"),
        copy_to(A, "n3"),
    ]
    got = choose(actions, {"n1": 1, "n2": 1, "n3": 1, "c": 1, "r": 1, "moved": 1}, on_a={"del": 1, "old": 1})
    assert got == ([["n1", "n2", "n3"]], ["del", "old", "c", "r"])


def test_a_path_the_remote_does_not_accept_goes_alone() -> None:
    asked: list[tuple[str, int]] = []

    def only_in_new(path: str, size: int) -> bool:
        asked.append((path, size))
        return path.startswith("new/")

    actions = [copy_to(A, "new/1"), copy_to(A, "old/2"), copy_to(A, "new/3"), copy_to(A, "big"), copy_to(A, "over")]
    got = choose(
        actions, {"new/1": 1, "old/2": 2, "new/3": 3, "big": 500, "over": 1}, on_a={"over": 1}, accepts=only_in_new
    )
    assert got == ([["new/1", "new/3"]], ["old/2", "big", "over"])
    assert asked == [("new/1", 1), ("old/2", 2), ("new/3", 3)]  # asked last: never for a file batched by no rule


def test_a_side_without_limits_never_batches() -> None:
    actions = [copy_to(B, "x"), copy_to(B, "y")]
    assert choose(actions, {}, on_a={"x": 1, "y": 1}) == ([], ["x", "y"])  # limits only for A
    assert choose(actions, {}, on_a={"x": 1, "y": 1}, limits={}) == ([], ["x", "y"])


def test_each_side_fills_its_own_batches() -> None:
    actions = [copy_to(A, "a1"), copy_to(B, "b1"), copy_to(A, "a2"), copy_to(B, "b2"), copy_to(B, "b3")]
    chosen = choose_batches(
        actions,
        listings({"b1": 1, "b2": 1, "b3": 1}, {"a1": 1, "a2": 1}),
        {A: LIMITS, B: BatchLimits(max_files=2, max_file_bytes=10, max_batch_bytes=10)},
        {A: accept_all, B: accept_all},
    )
    assert [(batch.side, [a.path for a in batch.actions]) for batch in chosen.batches] == [
        (B, ["b1", "b2"]),
        (A, ["a1", "a2"]),
    ]
    assert [a.path for a in chosen.singles] == ["b3"]


def test_a_batch_limit_of_one_file_makes_no_batches() -> None:
    actions = [copy_to(A, "x"), copy_to(A, "y")]
    one = BatchLimits(max_files=1, max_file_bytes=100, max_batch_bytes=100)
    assert choose(actions, {"x": 1, "y": 1}, limits={A: one}) == ([], ["x", "y"])


# -- the engine with a remote that batches ------------------------------------------------------
# A real `local` files tree and a real `dir` bucket (tests/integration/helpers.py); one side is
# wrapped so that it batches, by writing each file of a batch through the wrapped remote.


class BatchingRemote:
    """A remote that creates batches by writing each file through ``inner`` (create-only), and
    accepts in a batch only files in the folders ``prepare_folders`` was given, like WebDAV."""

    def __init__(
        self,
        inner: Remote,
        limits: BatchLimits,
        *,
        refuse: frozenset[str] = frozenset(),
        fail_batches: int = 0,
        batch_error: Exception | None = None,
        hashless: bool = False,
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.refuse = refuse  # paths a batch answers with an item error
        self.fail_batches = fail_batches  # how many batches fail as a whole first
        self.batch_error = batch_error or TransientError("injected: the batch request failed")
        self.hashless = hashless  # entries without a hash, as Nextcloud's bulk upload lists them
        self.prepared: list[list[str]] = []
        self.batches: list[list[str]] = []
        self.single_writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare_folders(self, folders: Collection[str]) -> None:
        self.prepared.append(list(folders))

    def batch_limits(self) -> BatchLimits | None:
        return self.limits

    def accepts_in_batch(self, path: str, size: int) -> bool:
        parent = path.rpartition("/")[0]
        return any(parent in folders for folders in self.prepared)

    def create_batch(self, files: Sequence[NewFile]) -> list[Entry | ItemError]:
        self.batches.append([f.path for f in files])
        if self.fail_batches > 0:
            self.fail_batches -= 1
            raise self.batch_error
        answers: list[Entry | ItemError] = []
        for f in files:
            if f.path in self.refuse:
                answers.append(ItemError(f.path, "refused by the test's batch"))
                continue
            assert hashlib.sha256(f.data).hexdigest() == f.content_hash
            written = self.inner.write(
                f.path,
                io.BytesIO(f.data),
                size=len(f.data),
                mtime_ns=f.mtime_ns,
                content_hash=f.content_hash,
                create_only=True,
            )
            answers.append(written._replace(content_hash=None) if self.hashless else written)
        return answers

    def write(self, path: str, data: BinaryIO, **kwargs: Any) -> Entry:
        self.single_writes.append(path)
        return self.inner.write(path, data, **kwargs)


SMALL = BatchLimits(max_files=3, max_file_bytes=1000, max_batch_bytes=10_000)


@pytest.fixture
def env(tmp_path: Path) -> PairEnv:
    made = PairEnv(tmp_path / "batched")
    made.files.mkdir(parents=True)
    return made


def batching(monkeypatch: pytest.MonkeyPatch, side: Side, **options: Any) -> list[BatchingRemote]:
    """Wrap ``side``'s remote of every run from now on; :returns: the wrappers made, per run."""
    made: list[BatchingRemote] = []
    real_open = engine_sync.open_remotes

    def open_batching(pair: PairConfig, **how: Any) -> dict[Side, Remote]:
        remotes = real_open(pair, **how)
        wrapper = BatchingRemote(remotes[side], options.pop("limits", SMALL), **options)
        made.append(wrapper)
        remotes[side] = wrapper  # type: ignore[assignment]  # a Remote by delegation
        return remotes

    monkeypatch.setattr(engine_sync, "open_remotes", open_batching)
    return made


def fill_bucket(env: PairEnv) -> dict[str, bytes]:
    """Six small files in two folders and one at the root, in the bucket only."""
    files = {f"d{d}/f{n}.txt": f"file {d}-{n}".encode() * (n + 1) for d in (1, 2) for n in range(3)}
    files["top.txt"] = b"at the root"
    for path, data in files.items():
        env.write_b(path, data)
    return files


def base_rows(env: PairEnv) -> dict[str, tuple[object, ...]]:
    """The index rows, with each side's etag checked against that side's listing now (etags
    and inodes differ between two trees; everything else must be equal)."""
    listed_a = {e.path: e for e in LocalRemote(env.files, trash_dir=env.root / "unused-trash").list()}
    listed_b = {e.path: e for e in env.bucket.list()}
    rows = {}
    for path, base in env.bases().items():
        assert (base.a_etag, base.a_inode) == (listed_a[path].etag, listed_a[path].inode)
        assert base.b_etag == listed_b[path].etag
        rows[path] = (base.size, base.content_hash, base.a_mtime_ns, base.b_mtime_ns)
    return rows


def test_small_new_files_go_in_batches_recorded_like_single_copies(
    env: PairEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = fill_bucket(env)
    plain = PairEnv(tmp_path / "plain")  # the same tree, synced without batches
    plain.files.mkdir(parents=True)
    fill_bucket(plain)
    plain_report = plain.sync()
    made = batching(monkeypatch, Side.A)

    report = env.sync()

    assert report.outcome is Outcome.OK and not report.errors
    assert report.done == plain_report.done == {"copy": 7}
    assert report.bytes_moved == plain_report.bytes_moved == sum(len(d) for d in files.values())
    wrapper = made[0]
    assert wrapper.prepared == [["d1", "d2"]]  # once, before any write
    assert sorted(wrapper.batches) == [["d1/f0.txt", "d1/f1.txt", "d1/f2.txt"], ["d2/f0.txt", "d2/f1.txt", "d2/f2.txt"]]
    assert wrapper.single_writes == ["top.txt"]  # the root was not created by this run
    assert env.tree_a() == files
    assert base_rows(env) == base_rows(plain)
    done_events = sorted(str(data["action"]).split()[4] for name, data in env.events if name == "done")
    assert done_events == sorted(files)  # one progress event per file
    assert env.sync().done == {}  # nothing left to do


def test_a_file_a_batch_did_not_create_is_retried_alone(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    files = fill_bucket(env)
    made = batching(monkeypatch, Side.A, refuse=frozenset({"d1/f1.txt"}))
    report = env.sync()
    assert report.outcome is Outcome.OK and report.done == {"copy": 7}
    assert sorted(made[0].single_writes) == ["d1/f1.txt", "top.txt"]
    assert env.tree_a() == files


def test_a_batch_failing_as_a_whole_is_retried_file_by_file(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    files = fill_bucket(env)
    made = batching(monkeypatch, Side.A, fail_batches=1)
    report = env.sync()
    assert report.outcome is Outcome.OK and report.done == {"copy": 7}
    failed_batch = made[0].batches[0]
    assert sorted(made[0].single_writes) == sorted([*failed_batch, "top.txt"])
    assert env.tree_a() == files


def test_a_file_failing_alone_too_is_one_item_error(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_bucket(env)
    made = batching(monkeypatch, Side.A, refuse=frozenset({"d2/f0.txt"}))
    real_write = LocalRemote.write

    def refusing_write(self: LocalRemote, path: str, data: BinaryIO, **kwargs: Any) -> Entry:
        if path == "d2/f0.txt":
            raise ItemError(path, "refused alone too")
        return real_write(self, path, data, **kwargs)

    monkeypatch.setattr(LocalRemote, "write", refusing_write)
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    assert report.errors == [("d2/f0.txt", "d2/f0.txt: refused alone too")]
    assert report.done == {"copy": 6}
    assert sorted(made[0].single_writes) == ["d2/f0.txt", "top.txt"]


def test_a_bucket_file_read_as_other_bytes_leaves_its_batch(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing's size and SHA-256 are checked before a file joins its batch. A file of
    another size fails alone (the next run takes it); one whose bytes do not have the hash
    its metadata claims goes alone, where the single path reads it twice and copies its bytes
    (a bucket's hash is a claim: see ``Capabilities.hashes_are_claims``)."""
    files = fill_bucket(env)
    made = batching(monkeypatch, Side.A)
    real_open = DirBucket.open_read

    @contextmanager
    def open_other_version(self: DirBucket, path: str) -> Iterator[BinaryIO]:
        if path == "d1/f1.txt":
            yield io.BytesIO(files[path].upper())  # same size, other bytes
        elif path == "d2/f2.txt":
            yield io.BytesIO(files[path] + b"grown")
        else:
            with real_open(self, path) as stream:
                yield stream

    monkeypatch.setattr(DirBucket, "open_read", open_other_version)
    report = env.sync()
    assert report.outcome is Outcome.ITEM_ERRORS
    errors = dict(report.errors)
    assert sorted(errors) == ["d2/f2.txt"]
    assert "bytes read where the listing said" in errors["d2/f2.txt"]
    assert sorted(made[0].batches) == [["d1/f0.txt", "d1/f2.txt"], ["d2/f0.txt", "d2/f1.txt"]]
    # d1/f1: the first write refuses bytes without the listed hash, the second takes them;
    # the grown d2/f2 is not retried
    assert sorted(made[0].single_writes) == ["d1/f1.txt", "d1/f1.txt", "top.txt"]
    assert set(env.tree_a()) == set(files) - {"d2/f2.txt"}
    assert env.read_a("d1/f1.txt") == files["d1/f1.txt"].upper()


def test_a_local_file_rewritten_while_read_fails_alone(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local source with no hash in its listing is re-checked after it was read whole."""
    files = {f"new/{n}.txt": f"local file {n}".encode() for n in range(4)}
    for path, data in files.items():
        env.write_a(path, data, mtime_s=1_600_000_000)
    made = batching(monkeypatch, Side.B)
    real_open = LocalRemote.open_read

    @contextmanager
    def open_then_rewrite(self: LocalRemote, path: str) -> Iterator[BinaryIO]:
        with real_open(self, path) as stream:
            yield stream
        if path == "new/2.txt":  # same size, new bytes and mtime: only the re-check sees it
            env.write_a(path, b"LOCAL FILE 2", mtime_s=1_700_000_000)

    monkeypatch.setattr(LocalRemote, "open_read", open_then_rewrite)
    report = env.sync()
    assert [path for path, _ in report.errors] == ["new/2.txt"]
    assert made[0].batches == [["new/0.txt", "new/1.txt"]]  # new/3.txt, left alone in a second batch, went alone
    assert made[0].single_writes == ["new/3.txt"]
    assert env.tree_b() == {p: d for p, d in files.items() if p != "new/2.txt"}
    monkeypatch.undo()
    env.sync()
    assert env.read_b("new/2.txt") == b"LOCAL FILE 2"


def test_a_batch_records_the_hash_of_the_bytes_it_read(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new local file's listing has no hash, and Nextcloud's bulk upload stores none; the
    index still gets the SHA-256 of the bytes sent, as from a single write's entry."""
    files = {f"new/{n}.txt": f"local file {n}".encode() for n in range(3)}
    for path, data in files.items():
        env.write_a(path, data)
    made = batching(monkeypatch, Side.B, hashless=True)
    assert env.sync().done == {"copy": 3}
    assert made[0].batches == [sorted(files)]
    assert {path: base.content_hash for path, base in env.bases().items()} == {
        path: hashlib.sha256(data).hexdigest() for path, data in files.items()
    }


def test_a_server_gone_during_a_batch_stops_the_run_as_a_retry(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_bucket(env)
    batching(monkeypatch, Side.A, fail_batches=99)

    def gone(self: LocalRemote, path: str, data: BinaryIO, **kwargs: Any) -> Entry:
        raise TransientError("injected: the server is gone")

    monkeypatch.setattr(LocalRemote, "write", gone)
    report = env.sync()
    assert report.outcome is Outcome.RETRY
    assert env.tree_a() == {}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(FatalError("injected: credentials refused"), Outcome.FATAL), (TransientError("gone"), Outcome.RETRY)],
    ids=["fatal", "transient"],
)
def test_a_failure_preparing_folders_stops_the_run_before_any_write(
    env: PairEnv, monkeypatch: pytest.MonkeyPatch, error: Exception, outcome: Outcome
) -> None:
    fill_bucket(env)

    def failing(self: BatchingRemote, folders: Collection[str]) -> None:
        raise error

    monkeypatch.setattr(BatchingRemote, "prepare_folders", failing)
    batching(monkeypatch, Side.A)
    report = env.sync()
    assert report.outcome is outcome
    assert env.tree_a() == {} and env.bases() == {}


def test_a_fatal_batch_stops_the_run(env: PairEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_bucket(env)
    batching(monkeypatch, Side.A, fail_batches=1, batch_error=FatalError("injected: credentials refused"))
    report = env.sync()
    assert report.outcome is Outcome.FATAL and "credentials refused" in report.message
