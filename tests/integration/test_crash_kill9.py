"""``kill -9`` a real ``syncd now`` process at random moments, many times, then let it finish.

A files tree of 3,000 small files and three of 1, 3 and 5 MB is synced with a ``dir`` bucket
by ``python -m syncd --config X now --force --json`` in a subprocess, killed with SIGKILL at a
random moment of its run. The moment is drawn in one of three ways:

* ``early``: a random delay before the apply phase (start-up, listing, hashing);
* ``apply``: after a random number of the planned actions are done (the JSON progress stream
  says how many), plus a random fraction of an action's time, so the kill lands mid-action;
* ``mid-write``: the moment a temp file of a download of a large object appears in the files
  tree: the kill interrupts a write for sure.

Between runs, "someone else" adds, edits, deletes and renames files on both sides (edits on
the files side replace the file, as most editors do). After every attempt:

* nothing lost: every copy of every version present on either side before the attempt (live
  or trashed) is still there after it, live, as a conflict copy, or in a trash;
* nothing half-written: every file at a real name on the files side and every bucket object
  (live or trashed) holds a complete version this test wrote (its SHA-256 is one the test
  made), and every object's bytes match its sidecar's size and ``DirBucket.hash``; a temp
  file of a killed write is never synced (no bucket key, no index path names one);
* a run that was not killed exited 0.

Then a run to completion must converge (both sides hold the same paths with the same bytes,
the index holds exactly those paths) and a last run must do nothing.

``CI`` set: at least 20 kills; otherwise 5. Every loop is bounded in count and time.
``SYNCD_CRASH_SEED`` replays a run (the seed is printed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncd.config import PairConfig, load_config
from syncd.engine.sync import RunOptions, sync_pair
from syncd.index.store import Store
from syncd.models import Base, Outcome
from syncd.paths import TEMP_PREFIX as TMP_PREFIX
from syncd.remotes import local
from syncd.remotes.base import known_or_read_hash
from syncd.remotes.dirbucket import DirBucket
from tests.integration.helpers import ram_folder

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KILLS = 20 if os.environ.get("CI") else 5
MAX_ATTEMPTS = 3 * KILLS  # an attempt whose run ends before the kill is not a kill
BUDGET_S = 900.0  # the whole kill loop
WAIT_S = 120.0  # the longest wait for one moment to kill at
RUN_TIMEOUT_S = 300.0  # a run that is let finish
SMALL_FILES = 3000
BIG_FILES_MB = (1, 3, 5)
DOWNLOADS = "from-bucket"  # where the bucket side's new objects land on the files side


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests(*trees: dict[str, bytes]) -> Counter[str]:
    return Counter(sha256(data) for tree in trees for data in tree.values())


@dataclass
class Attempt:
    """One ``syncd now`` process and what its JSON progress stream said so far."""

    proc: subprocess.Popen[bytes]
    started: float
    events: list[dict[str, object]] = field(default_factory=list)
    actions: int | None = None  # set when the apply phase starts
    applying_at: float | None = None
    done: int = 0
    done_at: list[float] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == "applying":
                self.actions, self.applying_at = int(str(event["actions"])), time.monotonic()
            elif event.get("event") == "done":
                self.done += 1
                self.done_at.append(time.monotonic())

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        """Poll until ``condition`` holds. :returns: False if the process ended first."""
        end = time.monotonic() + timeout
        while self.running() and not condition() and time.monotonic() < end:
            time.sleep(0.001)
        return self.running() and condition()

    def action_time(self) -> float:
        """The mean time of one action so far (0.01 s before any is done)."""
        if self.applying_at is None or not self.done_at:
            return 0.01
        return (self.done_at[-1] - self.applying_at) / len(self.done_at)

    def kill(self) -> bool:
        """SIGKILL the process if it still runs. :returns: whether the kill ended it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self.finish_reading()
        return rc == -signal.SIGKILL

    def finish_reading(self) -> None:
        if self.reader is not None:
            self.reader.join(timeout=30)

    def report(self) -> dict[str, object]:
        reports = [e for e in self.events if e.get("event") == "report"]
        assert len(reports) == 1, f"expected one report, got {self.events[-3:]}"
        return reports[0]


@dataclass
class Snapshot:
    files: dict[str, bytes]  # real names only
    bucket: dict[str, bytes]
    trash: Counter[str]  # digests of the versions in both trashes
    leftovers: list[str]  # temp files of killed writes in the files tree

    def copies(self) -> Counter[str]:
        return digests(self.files, self.bucket) + self.trash


class Rig:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.files = root / "files"
        self.config = root / "syncd.toml"
        self.config.write_text(
            '[daemon]\nstate_dir = "state"\n\n[users.k]\n'
            'files = { type = "local", path = "files" }\n'
            'bucket = { type = "dir", path = "bucket" }\n',
            encoding="utf-8",
        )
        self.pair: PairConfig = load_config(self.config).pairs[0]
        self.bucket = DirBucket(root / "bucket")
        self.known: set[str] = set()  # every version this test ever wrote
        self.serial = 0
        # Every mtime this test sets lies in the past (a day ago, one second apart), as a
        # user's files do: a kill between a temp file's utime and its commit leaves a temp
        # the sweep can judge (future mtimes: see test_an_abandoned_temp_file_with_a_future_mtime_is_swept).
        self.clock = time.time_ns() - 86400 * 10**9
        self.big_download_pending = False

    # -- writing, as someone else ----------------------------------------------------------------

    def content(self, size: int | None = None) -> bytes:
        data = self.rng.randbytes(self.rng.randint(0, 2000) if size is None else size)
        self.known.add(sha256(data))
        return data

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def put_file(self, rel: str, data: bytes) -> None:
        """Write a file as most editors save: a new file renamed over the old one."""
        path = self.files / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f"~editor-{self.next_serial()}")
        scratch.write_bytes(data)
        self.clock += 1_000_000_007
        os.utime(scratch, ns=(self.clock, self.clock))
        os.replace(scratch, path)

    def put_object(self, key: str, data: bytes) -> None:
        self.clock += 1_000_000_007
        self.bucket.write(key, io.BytesIO(data), size=len(data), mtime_ns=self.clock)

    def populate(self) -> None:
        for i in range(SMALL_FILES):
            self.put_file(f"d{i % 30:02d}/s{i % 7}/f{i:04d}.txt", self.content())
        for i, megabytes in enumerate(BIG_FILES_MB):
            self.put_file(f"big/b{i}.bin", self.content(megabytes << 20))

    def outside_changes(self, now: Snapshot) -> Counter[str]:
        """A few changes on both sides while syncd is down.
        :returns: the copies of every version after them (``now``'s, updated)."""
        rng = self.rng
        files, bucket = dict(now.files), dict(now.bucket)
        for rel in rng.sample(sorted(files), min(3, len(files))):  # edits
            files[rel] = self.content()
            self.put_file(rel, files[rel])
        for rel in rng.sample(sorted(files), min(2, len(files))):
            (self.files / rel).unlink()
            del files[rel]
        if files:
            src = rng.choice(sorted(files))
            dst = f"{src}.renamed{self.next_serial()}"
            os.rename(self.files / src, self.files / dst)
            files[dst] = files.pop(src)
        for _ in range(rng.randint(0, 60)):  # new files keep the apply phase busy
            rel = f"new/n{self.next_serial()}.txt"
            files[rel] = self.content()
            self.put_file(rel, files[rel])
        if rng.random() < 0.3:
            rel = f"big/b{rng.randrange(len(BIG_FILES_MB))}.bin"
            files[rel] = self.content(rng.randint(1, 5) << 20)
            self.put_file(rel, files[rel])
        for key in rng.sample(sorted(bucket), min(2, len(bucket))):  # overwrites
            bucket[key] = self.content()
            self.put_object(key, bucket[key])
        for key in rng.sample(sorted(bucket), min(2, len(bucket))):
            self.bucket.delete(key)
            del bucket[key]
        if bucket:
            src = rng.choice(sorted(bucket))
            dst = f"{src}.moved{self.next_serial()}"
            self.bucket.move(src, dst)
            bucket[dst] = bucket.pop(src)
        for _ in range(3):
            key = f"{DOWNLOADS}/o{self.next_serial()}.txt"
            bucket[key] = self.content()
            self.put_object(key, bucket[key])
        self.big_download_pending = rng.random() < 0.5
        if self.big_download_pending:  # a download long enough to be killed mid-write
            key = f"{DOWNLOADS}/big{self.next_serial()}.bin"
            bucket[key] = self.content(rng.randint(2, 5) << 20)
            self.put_object(key, bucket[key])
        return digests(files, bucket) + now.trash

    # -- looking -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        files: dict[str, bytes] = {}
        leftovers: list[str] = []
        for folder, _dirs, names in os.walk(self.files):
            for name in names:
                full = Path(folder, name)
                rel = full.relative_to(self.files).as_posix()
                if name.startswith(TMP_PREFIX):
                    leftovers.append(rel)
                else:
                    files[rel] = full.read_bytes()
        trash: Counter[str] = Counter()
        for folder, _dirs, names in os.walk(self.pair.state_dir / "trash-files"):
            for name in names:
                trash[sha256(Path(folder, name).read_bytes())] += 1
        trash.update(digests(self.read_objects(trashed=True)))
        return Snapshot(files, self.read_objects(trashed=False), trash, leftovers)

    def read_objects(self, *, trashed: bool) -> dict[str, bytes]:
        out = {}
        for entry in self.bucket.trashed() if trashed else self.bucket.list():
            with self.bucket.open_read(entry.path) as stream:
                data = stream.read()
            assert len(data) == entry.size, f"object {entry.path!r}: {len(data)} bytes, its sidecar says {entry.size}"
            claimed = known_or_read_hash(self.bucket, entry.path)
            assert sha256(data) == claimed, f"object {entry.path!r}: bytes do not match its hash"
            out[entry.path] = data
        return out

    def bases(self) -> dict[str, Base]:
        store = Store.open(self.pair.index_path)
        try:
            return store.load_bases()
        finally:
            store.close()

    def check_whole(self, snap: Snapshot) -> None:
        """Nothing half-written is visible under a real name, and no temp file is synced."""
        for side, tree in (("files", snap.files), ("bucket", snap.bucket)):
            for path, data in tree.items():
                assert sha256(data) in self.known, f"{side} {path!r}: bytes no one wrote (half-written?)"
                assert TMP_PREFIX not in path, f"{side}: a temp file was synced: {path!r}"
        assert set(snap.trash) <= self.known, "a trashed version holds bytes no one wrote"
        assert not [p for p in self.bases() if TMP_PREFIX in p], "a temp file is in the index"

    # -- running syncd -------------------------------------------------------------------------

    def start(self) -> Attempt:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(self.config), "now", "--force", "--json"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        attempt = Attempt(proc, time.monotonic())
        attempt.reader = threading.Thread(target=attempt.read, daemon=True)
        attempt.reader.start()
        return attempt

    def run_to_end(self) -> Attempt:
        attempt = self.start()
        try:
            attempt.proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if attempt.running():
                attempt.kill()
        attempt.finish_reading()
        return attempt

    def temp_file_appeared(self) -> bool:
        try:
            return any(e.name.startswith(TMP_PREFIX) for e in os.scandir(self.files / DOWNLOADS))
        except FileNotFoundError:
            return False

    def kill_at_random(self, attempt: Attempt, early_s: float) -> tuple[str, bool]:
        """Wait for a random moment of ``attempt`` and kill it there.
        :returns: how the moment was drawn, and whether the kill ended the process."""
        roll = self.rng.random()
        if roll < 0.25:
            mode = "early"
            time.sleep(self.rng.uniform(0.05, early_s))
        elif roll < 0.45 and self.big_download_pending:
            mode = "mid-write"
            attempt.wait_for(self.temp_file_appeared)
        else:
            mode = "apply"
            if attempt.wait_for(lambda: attempt.actions is not None):
                target = self.rng.randint(0, attempt.actions or 0)
                attempt.wait_for(lambda: attempt.done >= target)
                time.sleep(self.rng.uniform(0, 2 * attempt.action_time()))
        return mode, attempt.kill()


@pytest.fixture
def rig_root(tmp_path: Path) -> Iterator[Path]:
    """A RAM folder when there is one (``/dev/shm`` or ``$SYNCD_CRASH_TMP``): a SIGKILL loses
    no page cache, so RAM changes nothing this test checks, and it spares thousands of fsyncs."""
    with ram_folder(tmp_path, "SYNCD_CRASH_TMP", "syncd-kill9-") as root:
        yield root


def test_kill9_at_random_moments_then_converge(rig_root: Path) -> None:
    seed = int(os.environ.get("SYNCD_CRASH_SEED", random.randrange(1 << 30)))
    print(f"SYNCD_CRASH_SEED={seed}")  # shown on failure: rerun with the same seed
    rig = Rig(rig_root, seed)
    rig.populate()

    kills = attempts = 0
    modes: Counter[str] = Counter()
    early_s = 1.0  # how long the last run took to reach its apply phase
    deadline = time.monotonic() + BUDGET_S
    copies = rig.snapshot().copies()
    while kills < KILLS and attempts < MAX_ATTEMPTS and time.monotonic() < deadline:
        attempts += 1
        attempt = rig.start()
        mode, killed = rig.kill_at_random(attempt, early_s)
        if attempt.applying_at is not None:
            early_s = max(0.1, attempt.applying_at - attempt.started)
        if killed:
            kills += 1
            modes[mode] += 1
        else:
            assert attempt.proc.returncode == 0, f"a run that was not killed failed: {attempt.events[-3:]}"
        after = rig.snapshot()
        lost = copies - after.copies()
        assert not lost, f"attempt {attempts} ({mode}, killed={killed}) lost versions: {dict(lost)}"
        rig.check_whole(after)
        copies = rig.outside_changes(after)
    print(f"{kills} kills in {attempts} attempts: {dict(modes)}")
    assert kills >= KILLS, f"only {kills} kills in {attempts} attempts (wanted {KILLS})"

    # Now let it finish: it must converge, and then have nothing to do.
    final = rig.run_to_end()
    assert final.proc.returncode == 0, final.events[-3:]
    after = rig.snapshot()
    lost = copies - after.copies()
    assert not lost, f"the final run lost versions: {dict(lost)}"
    rig.check_whole(after)
    only_files, only_bucket = after.files.keys() - after.bucket.keys(), after.bucket.keys() - after.files.keys()
    assert not only_files and not only_bucket, (
        f"only on files: {sorted(only_files)[:10]}, only on the bucket: {sorted(only_bucket)[:10]}"
    )
    differ = [p for p in after.files if after.files[p] != after.bucket[p]]
    assert not differ, f"bytes differ: {differ[:10]}"
    assert set(rig.bases()) == set(after.files), "the index does not hold exactly the synced paths"
    idle = rig.run_to_end()
    assert idle.proc.returncode == 0
    report = idle.report()
    assert report["done"] == {} and report["errors"] == [], f"a last run still did something: {report}"

    # The temp files that killed writes left are the pair's own: the runs that recovered, each
    # holding the pair's lock, swept them away at once, so none is left in the user's tree.
    final_state = rig.snapshot()
    assert final_state.leftovers == [], f"temp files of killed writes left in the tree: {final_state.leftovers}"


# -- the sweep of temp files that killed writes left -------------------------------------------


def leftover(path: Path, data: bytes = b"the first part of a download") -> Path:
    """What a write killed mid-way leaves: ``.syncd-tmp-<12 hex>`` beside its target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_abandoned_temp_files_are_swept_and_fresh_ones_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temp file nothing has touched for ``STALE_TEMP_S`` is garbage of a dead run: the next
    run removes it, so it does not stay in a user's (Nextcloud) tree; a younger one may be a
    write in flight (another pair on an overlapping tree) and is left alone. Neither is synced."""
    rig = Rig(tmp_path, seed=1)
    rig.put_file("docs/kept.txt", rig.content())
    assert sync_pair(rig.pair, RunOptions()).outcome is Outcome.OK  # the slow first run (a new index)
    monkeypatch.setattr(local, "STALE_TEMP_S", 1.5)
    old = leftover(rig.files / "docs" / f"{TMP_PREFIX}0123456789ab")
    time.sleep(1.6)  # real time: the sweep may judge age by mtime or by ctime
    fresh = leftover(rig.files / "docs" / f"{TMP_PREFIX}ba9876543210")
    report = sync_pair(rig.pair, RunOptions())  # lists within a fraction of a second
    assert report.outcome is Outcome.OK, report.message
    assert not old.exists(), "an abandoned temp file was left in the tree"
    assert fresh.exists(), "a temp file younger than STALE_TEMP_S (maybe a write in flight) was removed"
    assert rig.snapshot().bucket.keys() == {"docs/kept.txt"}


def test_a_temp_file_about_to_be_committed_is_not_swept(tmp_path: Path) -> None:
    """``write()`` fills its temp file, sets its mtime to the source's (a year ago, say), then
    links it into place. A listing in between (``syncd check``, another pair on an overlapping
    tree) must not take it for garbage: it was written a moment ago."""
    files = tmp_path / "files"
    temp = leftover(files / f"{TMP_PREFIX}0123456789ab", b"all the bytes, verified, about to be linked")
    year_ago = time.time_ns() - 365 * 86400 * 10**9
    os.utime(temp, ns=(year_ago, year_ago))  # what write() does just before its commit
    list(local.LocalRemote(files, trash_dir=tmp_path / "trash").list())
    assert temp.exists(), "the temp file of a write in flight was removed by a listing"


def test_an_abandoned_temp_file_with_a_future_mtime_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "STALE_TEMP_S", 0.5)
    files = tmp_path / "files"
    temp = leftover(files / f"{TMP_PREFIX}0123456789ab")
    next_year = time.time_ns() + 365 * 86400 * 10**9
    os.utime(temp, ns=(next_year, next_year))  # the source's mtime, from a skewed clock
    time.sleep(0.6)
    list(local.LocalRemote(files, trash_dir=tmp_path / "trash").list())
    assert not temp.exists(), "an abandoned temp file was left in the tree"
