"""Model-based test of the engine: random programs of outside changes and syncs, with crashes.

A pair with a real ``local`` files side and a real ``dir`` bucket lives in a temp folder.
Between syncs, "someone else" creates, edits, touches, deletes and renames files on either
side (the files side directly in the folder, the bucket side through ``DirBucket``), using a
small pool of names that includes case clashes (``a.txt``/``A.txt``) and both Unicode forms of
one name (NFC/NFD), and contents from a tiny alphabet so identical content is common.
A sync may be cut short by a simulated kill at a random checkpoint (a ``BaseException`` the
engine does not catch, so the unflushed batch of finished actions is not recorded), with a
random batch size, so both "recorded" and "done but not recorded" actions are exercised.

Checked after every sync (see DESIGN.md, invariants 1-6, 8, 10, 13, 18):

* no version is lost: every copy of every content present before the run (live on a side or
  in a trash) is still present after it, live, as a conflict copy, or in a trash. Copies are
  counted (a multiset): the engine only ever adds copies or moves them to a trash, so one
  content held by two different paths is two copies, and losing one of them is a failure;
* nothing half-written: no temp file is left in the files tree, and every bucket object's
  bytes match the size and SHA-256 in its sidecar (live and trashed);
* a guard that aborts a run changed nothing;
* a complete two-way run did what the decision table says, path by path (predicted from the
  index and both sides before the run by a small oracle written apart from the planner):
  one-sided changes win, modify beats delete, the same content on both sides moves no bytes
  and is no conflict, a real conflict keeps the policy's winner under the name and (keep-both)
  the loser as a conflict copy on both sides, and a path changed on neither side is left alone;
* after a run that was not cut short: a second run has nothing to do, both sides hold the
  same paths with the same bytes, and the index holds exactly those paths (size and hash).

A crashed run is followed, at the latest at the next ``sync`` step, by a normal run that must
converge with no manual step. Profiles: ``tests/model/conftest.py`` (``HYPOTHESIS_PROFILE=ci``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

import syncd.engine.sync as engine_sync
from syncd.config import PairConfig, load_config
from syncd.engine.sync import RunOptions, sync_pair
from syncd.index.store import Store
from syncd.models import ActionKind, Base, ConflictPolicy, Mode, Outcome, Report, Side
from syncd.paths import TEMP_PREFIX as TMP_PREFIX
from syncd.remotes.dirbucket import DirBucket
from tests.model.conftest import model_settings

# A fixed clock for conflict-copy names. It lies before today, so the trash purge (which
# compares it with the real dates of trashed versions) never purges anything during a test.
NOW = datetime(2026, 1, 2, 3, 4, 5)

NFC = "caf\u00e9.txt"
NFD = "cafe\u0301.txt"
# No name is a folder of another ("d" is never a file), so every name fits on both sides.
NAMES = ("a.txt", "A.txt", "b", ".h", NFC, NFD, "d/x.txt", "d/X.txt", "d/e/y")
CONTENTS = st.lists(st.sampled_from(b"ab"), max_size=3).map(bytes)  # 15 contents, b"" included


class SimulatedKill(BaseException):
    """Raised from the engine's checkpoint: the process "dies" there. Not an ``Exception``
    (the engine would treat it as an error and record its batch) nor a ``KeyboardInterrupt``
    (the engine flushes its batch on ^C): like a kill, nothing after this point runs."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Variant:
    policy: str = "keep-both"
    mode: str = "two-way"


@dataclass
class World:
    """Everything both sides hold: live files (bytes and mtimes) and every trashed version."""

    files: dict[str, bytes]
    bucket: dict[str, bytes]
    mtimes: dict[tuple[Side, str], int]
    trash: Counter[bytes]

    def copies(self) -> Counter[bytes]:
        return Counter(self.files.values()) + Counter(self.bucket.values()) + self.trash

    def side(self, side: Side) -> dict[str, bytes]:
        return self.files if side is Side.A else self.bucket


@dataclass
class Expected:
    """What a complete two-way run must leave, path by path, predicted from the index (the
    base) and both sides before the run: DESIGN.md's decision table, written independently
    of the planner."""

    content: dict[str, bytes | None] = field(default_factory=dict)  # on both sides; None: on neither
    losers: dict[str, bytes] = field(default_factory=dict)  # conflicts: path -> the losing version
    quiet: set[str] = field(default_factory=set)  # changed on neither side: no bytes may move


def winner(policy: ConflictPolicy, before: World, path: str) -> Side:
    if policy is ConflictPolicy.PREFER_BUCKET:
        return Side.B
    if policy is ConflictPolicy.NEWER:
        return Side.B if before.mtimes[Side.B, path] > before.mtimes[Side.A, path] else Side.A
    return Side.A  # keep-both keeps the files side's version under the name; prefer-files


def expect_two_way(before: World, bases: dict[str, Base], policy: ConflictPolicy) -> Expected:
    out = Expected()
    for path in sorted(set(before.files) | set(before.bucket) | set(bases)):
        base = bases.get(path)
        if base is not None and base.content_hash is None:
            continue  # the base does not say what the content was: nothing to predict
        version = {side: before.side(side).get(path) for side in Side}
        changed = {
            side: (data is not None) if base is None else (data is None or sha256(data) != base.content_hash)
            for side, data in version.items()
        }
        a, b = version[Side.A], version[Side.B]
        if not changed[Side.A] and not changed[Side.B]:
            out.quiet.add(path)
            out.content[path] = a
        elif not changed[Side.B]:
            out.content[path] = a  # files side changed (or deleted): it wins
        elif not changed[Side.A]:
            out.content[path] = b
        elif a is None or b is None or a == b:
            out.content[path] = b if a is None else a  # modify beats delete; same content: no conflict
        else:
            win = winner(policy, before, path)
            out.content[path] = version[win]
            lost = version[win.other]
            assert lost is not None
            out.losers[path] = lost
    return out


class Env:
    """One temp folder for a whole Hypothesis run; every example starts from it cleaned.
    The index template is migrated once, so an example does not pay for Alembic."""

    def __init__(self, root: Path, variant: Variant) -> None:
        self.root = root
        config = root / "syncd.toml"
        config.write_text(
            "[daemon]\n"
            'state_dir = "state"\n'
            "transfers = 1\n"  # one worker: the order of actions, and so every example, is deterministic
            "[users.model]\n"
            'files = { type = "local", path = "files" }\n'
            'bucket = { type = "dir", path = "bucket" }\n'
            f'conflict = "{variant.policy}"\n'
            f'mode = "{variant.mode}"\n'
            "max_delete_ratio = 0.5\n",
            encoding="utf-8",
        )
        (self.pair,) = load_config(config).pairs
        self.template = root / "template.db"
        Store.open(self.template).close()
        assert not Path(f"{self.template}-wal").exists(), "template index not checkpointed"

    def reset(self) -> None:
        for name in ("files", "bucket", "state"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        (self.root / "files").mkdir()
        self.pair.state_dir.mkdir(parents=True)
        shutil.copyfile(self.template, self.pair.index_path)


class SyncModel(RuleBasedStateMachine):
    def __init__(self, env: Env) -> None:
        super().__init__()
        env.reset()
        self.pair: PairConfig = env.pair
        self.files = env.root / "files"
        self.bucket = DirBucket(env.root / "bucket")  # someone else's client of the bucket
        self.clock = 1_700_000_000 * 10**9

    # -- helpers ---------------------------------------------------------------------------

    def tick(self) -> int:
        """A new, unique mtime for every outside change, so an edit always changes the
        local etag (real edits can share an mtime tick and a size: a limit of any mtime-based
        scanner, not what this test is about)."""
        self.clock += 1_000_003
        return self.clock

    def files_paths(self) -> list[str]:
        return sorted(self.read_files())

    def read_files(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for folder, _dirs, names in os.walk(self.files):
            for name in names:
                full = Path(folder, name)
                rel = full.relative_to(self.files).as_posix()
                assert not name.startswith(TMP_PREFIX), f"half-written temp file left in the files tree: {rel}"
                out[rel] = full.read_bytes()
        return out

    def read_bucket(self, *, trashed: bool = False) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for entry in self.bucket.trashed() if trashed else self.bucket.list():
            with self.bucket.open_read(entry.path) as stream:
                data = stream.read()
            assert len(data) == entry.size, f"bucket object {entry.path!r}: {len(data)} bytes, sidecar {entry.size}"
            assert sha256(data) == entry.content_hash, f"bucket object {entry.path!r}: bytes do not match its hash"
            out[entry.path] = data
        return out

    def world(self) -> World:
        trash: Counter[bytes] = Counter(self.read_bucket(trashed=True).values())
        for folder, _dirs, names in os.walk(self.pair.state_dir / "trash-files"):
            for name in names:
                trash[Path(folder, name).read_bytes()] += 1
        files = self.read_files()
        mtimes = {(Side.A, p): (self.files / p).stat().st_mtime_ns for p in files}
        mtimes.update({(Side.B, e.path): e.mtime_ns for e in self.bucket.list()})
        return World(files, self.read_bucket(), mtimes, trash)

    def bases(self) -> dict[str, Base]:
        store = Store.open(self.pair.index_path)
        try:
            return store.load_bases()
        finally:
            store.close()

    def run_sync(self, *, force: bool, crash_at: int | None = None, batch: int = 200) -> Report:
        """One sync; ``crash_at``: die at that checkpoint (1 = the first). ``batch``: how many
        finished actions the engine records at once (no time-based flush: deterministic)."""
        calls = 0

        def checkpoint(stage: str) -> None:
            nonlocal calls
            calls += 1
            if calls == crash_at:
                raise SimulatedKill(stage)

        saved = engine_sync.BATCH_ACTIONS, engine_sync.BATCH_SECONDS  # fails loudly if they are renamed
        engine_sync.BATCH_ACTIONS, engine_sync.BATCH_SECONDS = batch, 1e9
        try:
            return sync_pair(self.pair, RunOptions(force=force, now=NOW, checkpoint=checkpoint))
        finally:
            engine_sync.BATCH_ACTIONS, engine_sync.BATCH_SECONDS = saved

    # -- a start with files on both sides -----------------------------------------------------

    @initialize(
        files=st.dictionaries(st.sampled_from(NAMES), CONTENTS, max_size=5),
        bucket=st.dictionaries(st.sampled_from(NAMES), CONTENTS, max_size=5),
        synced=st.booleans(),
    )
    def start(self, files: dict[str, bytes], bucket: dict[str, bytes], synced: bool) -> None:
        """Both sides start with some files (a name on both is new on both: a record or a
        conflict); most programs then sync once, so later changes meet a base."""
        for name, content in files.items():
            self.files_write(name, content)
        for name, content in bucket.items():
            self.bucket_write(name, content)
        if synced:
            self.sync_and_check(force=True, crash_at=None, batch=200)

    # -- someone else's changes on the files side --------------------------------------------

    @rule(name=st.sampled_from(NAMES), content=CONTENTS)
    def files_write(self, name: str, content: bytes) -> None:
        path = self.files / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)  # in place, as an editor that does not replace the inode
        stamp = self.tick()
        os.utime(path, ns=(stamp, stamp))

    @rule(data=st.data())
    def files_touch(self, data: st.DataObject) -> None:
        if paths := self.files_paths():
            stamp = self.tick()
            os.utime(self.files / data.draw(st.sampled_from(paths)), ns=(stamp, stamp))

    @rule(data=st.data())
    def files_delete(self, data: st.DataObject) -> None:
        if paths := self.files_paths():
            (self.files / data.draw(st.sampled_from(paths))).unlink()

    @rule(data=st.data(), dest=st.sampled_from(NAMES))
    def files_rename(self, data: st.DataObject, dest: str) -> None:
        """``mv src dest`` (replacing ``dest`` if it exists): keeps the inode and mtime."""
        if paths := self.files_paths():
            src = data.draw(st.sampled_from(paths))
            if src != dest:
                (self.files / dest).parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.files / src, self.files / dest)

    # -- someone else's changes on the bucket side ------------------------------------------

    def bucket_paths(self) -> list[str]:
        return sorted(entry.path for entry in self.bucket.list())

    @rule(name=st.sampled_from(NAMES), content=CONTENTS)
    def bucket_write(self, name: str, content: bytes) -> None:
        self.bucket.write(name, io.BytesIO(content), size=len(content), mtime_ns=self.tick())

    @rule(data=st.data())
    def bucket_touch(self, data: st.DataObject) -> None:
        """Re-upload the same bytes with a new mtime: a new etag, the same hash."""
        if paths := self.bucket_paths():
            path = data.draw(st.sampled_from(paths))
            with self.bucket.open_read(path) as stream:
                content = stream.read()
            self.bucket.write(path, io.BytesIO(content), size=len(content), mtime_ns=self.tick())

    @rule(data=st.data())
    def bucket_delete(self, data: st.DataObject) -> None:
        if paths := self.bucket_paths():
            self.bucket.delete(data.draw(st.sampled_from(paths)))

    @rule(data=st.data(), dest=st.sampled_from(NAMES))
    def bucket_move(self, data: st.DataObject, dest: str) -> None:
        paths = self.bucket_paths()
        if paths and dest not in paths:
            self.bucket.move(data.draw(st.sampled_from(paths)), dest)

    @rule(name=st.sampled_from(NAMES), files=CONTENTS, bucket=CONTENTS)
    def both_write(self, name: str, files: bytes, bucket: bytes) -> None:
        """The same name written on both sides between two syncs (the same bytes or not)."""
        self.files_write(name, files)
        self.bucket_write(name, bucket)

    # -- syncs -------------------------------------------------------------------------------

    @rule(force=st.booleans(), batch=st.integers(min_value=1, max_value=3))
    def sync(self, force: bool, batch: int) -> None:
        self.sync_and_check(force=force, crash_at=None, batch=batch)

    @rule(crash_at=st.integers(min_value=1, max_value=5), batch=st.integers(min_value=1, max_value=3))
    def sync_killed(self, crash_at: int, batch: int) -> None:
        """A run killed at its ``crash_at``-th checkpoint (or complete, if it has fewer)."""
        self.sync_and_check(force=True, crash_at=crash_at, batch=batch)

    def teardown(self) -> None:
        """Every program ends with a run that must settle, so a program that ended on a
        killed run checks the recovery too."""
        self.sync_and_check(force=True, crash_at=None, batch=200)

    def sync_and_check(self, *, force: bool, crash_at: int | None, batch: int) -> None:
        before = self.world()
        bases_before = self.bases()
        try:
            report = self.run_sync(force=force, crash_at=crash_at, batch=batch)
        except SimulatedKill as kill:
            event(f"killed at {kill}")
            self.check_nothing_lost(before, self.world())
            return  # the next sync must recover with no manual step (checked there)
        after = self.world()
        self.check_nothing_lost(before, after)
        for kind in sorted(report.done):
            event(f"did {kind}")
        if report.outcome is Outcome.ABORTED:
            event("aborted by a guard")
            assert not force, f"--force run aborted: {report.message}"
            assert after == before, f"a guard aborted the run but something changed: {report.message}"
            assert self.bases() == bases_before, "a guard aborted the run but the index changed"
            return
        assert report.outcome is Outcome.OK, f"{report.outcome}: {report.message} {report.errors}"
        self.check_no_needless_transfer(before, report)
        if self.pair.mode is Mode.TWO_WAY:
            self.check_decisions(before, bases_before, report, after)
        self.check_settled(report)

    # -- checks ------------------------------------------------------------------------------

    @staticmethod
    def check_nothing_lost(before: World, after: World) -> None:
        lost = before.copies() - after.copies()
        assert not lost, f"copies of versions lost by the run: {dict(lost)}\nbefore: {before}\nafter: {after}"

    @staticmethod
    def check_no_needless_transfer(before: World, report: Report) -> None:
        """Identical content is never a conflict and is never copied over itself (DESIGN 3, 13)."""
        assert report.plan is not None
        for action in report.plan.actions:
            if action.kind in (ActionKind.COPY, ActionKind.CONFLICT):
                a, b = before.files.get(action.path), before.bucket.get(action.path)
                assert a is None or a != b, f"identical content on both sides, yet: {action.describe()}"

    def check_decisions(self, before: World, bases: dict[str, Base], report: Report, after: World) -> None:
        """A complete two-way run leaves what the decision table says, path by path."""
        assert report.plan is not None
        plan = "\n  ".join(a.describe() for a in report.plan.actions)
        expected = expect_two_way(before, bases, self.pair.policy)
        for action in report.plan.actions:
            assert action.path not in expected.quiet or action.kind is ActionKind.RECORD, (
                f"{action.path!r} changed on neither side, yet: {action.describe()}"
            )
        for side in Side:
            now = after.side(side)
            for path, content in expected.content.items():
                assert now.get(path) == content, (
                    f"{side.value} {path!r}: expected {content!r}, found {now.get(path)!r}\nplan:\n  {plan}"
                    f"\nbefore: {before}\nbases: {bases}"
                )
        copies = {a.path: a.dest for a in report.plan.actions if a.kind is ActionKind.CONFLICT}
        extra = {p for p in set(after.files) | set(after.bucket) if expected.content.get(p) is None}
        if self.pair.policy is ConflictPolicy.KEEP_BOTH:
            assert set(copies) == set(expected.losers), f"conflicts {sorted(copies)} != {sorted(expected.losers)}"
            for path, dest in copies.items():
                assert dest is not None and "(conflicted copy " in dest and dest not in expected.content, dest
                for side in Side:
                    assert after.side(side).get(dest) == expected.losers[path], f"{side.value} {dest!r}"
            assert extra == set(copies.values()), f"unexpected paths {sorted(extra)}\nplan:\n  {plan}"
        else:
            assert not copies and not extra, f"unexpected paths {sorted(extra)}\nplan:\n  {plan}"

    def check_settled(self, first: Report) -> None:
        second = self.run_sync(force=False)
        planned = [a.describe() for a in second.plan.actions] if second.plan else []
        first_plan = [a.describe() for a in first.plan.actions] if first.plan else []
        assert second.outcome is Outcome.OK, f"second run: {second.outcome}: {second.message} {second.errors}"
        assert not planned and not second.done, f"second run not idle: {planned}\nafter the first run: {first_plan}"
        world = self.world()
        mode = self.pair.mode
        if mode is Mode.TWO_WAY:
            assert world.files == world.bucket, f"sides differ after a complete run: {world}\nplan: {first_plan}"
            bases = self.bases()
            assert set(bases) == set(world.files), f"index {sorted(bases)} != tree {sorted(world.files)}"
            for path, base in bases.items():
                assert base.size == len(world.files[path]), f"index size of {path!r}"
                assert base.content_hash in (None, sha256(world.files[path])), f"index hash of {path!r}"
        elif mode is Mode.UPLOAD_ONLY:
            assert set(world.files) <= set(world.bucket), f"upload-only left files off the bucket: {world}"
        else:
            assert set(world.bucket) <= set(world.files), f"download-only left objects off the files: {world}"


def run_model(root: Path, variant: Variant, base: settings) -> None:
    env = Env(root, variant)
    # Hypothesis accepts any factory of machines; its stub says a class.
    run_state_machine_as_test(lambda: SyncModel(env), settings=base)  # type: ignore[arg-type]


def test_keep_both_two_way(model_root: Path) -> None:
    run_model(model_root, Variant(), model_settings())


@pytest.mark.parametrize(
    "variant",
    [
        Variant(policy="newer"),
        Variant(policy="prefer-bucket"),
        Variant(mode="upload-only"),
        Variant(mode="download-only"),
    ],
    ids=lambda v: f"{v.policy}-{v.mode}",
)
def test_other_policies_and_modes(model_root: Path, variant: Variant) -> None:
    """The same program on the other policies and modes, with a fifth of the examples each."""
    profile = model_settings()
    run_model(model_root, variant, settings(profile, max_examples=max(10, profile.max_examples // 5)))
