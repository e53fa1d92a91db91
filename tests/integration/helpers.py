"""A real pair for engine tests: a `local` files tree and a `dir` bucket in a tmp folder,
loaded from a real TOML config, synced by the real engine."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.config import PairConfig, load_config
from syncd.engine.sync import RunOptions, sync_pair
from syncd.index.store import Store
from syncd.models import Base, Report
from syncd.paths import TEMP_PREFIX as TMP_PREFIX
from syncd.remotes.dirbucket import DirBucket


@dataclass
class PairEnv:
    root: Path
    extra: str = ""
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def bucket_dir(self) -> Path:
        return self.root / "bucket"

    def config_text(self) -> str:
        return (
            '[daemon]\nstate_dir = "state"\n\n[users.t]\n'
            'files = { type = "local", path = "files" }\n'
            'bucket = { type = "dir", path = "bucket" }\n' + self.extra
        )

    def pair(self) -> PairConfig:
        cfg = self.root / "syncd.toml"
        cfg.write_text(self.config_text())
        return load_config(cfg).pairs[0]

    @property
    def bucket(self) -> DirBucket:
        return DirBucket(self.bucket_dir)

    def sync(self, **options: Any) -> Report:
        def progress(name: str, data: dict[str, object]) -> None:
            self.events.append((name, data))

        return sync_pair(self.pair(), RunOptions(**options), progress)

    # -- files side ----------------------------------------------------------------------------

    def write_a(self, path: str, data: bytes, mtime_s: float | None = None) -> None:
        target = self.files / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if mtime_s is not None:
            os.utime(target, (mtime_s, mtime_s))

    def read_a(self, path: str) -> bytes:
        return (self.files / path).read_bytes()

    def tree_a(self) -> dict[str, bytes]:
        out = {}
        for p in self.files.rglob("*"):
            if p.is_file():
                out[p.relative_to(self.files).as_posix()] = p.read_bytes()
        return out

    # -- bucket side ---------------------------------------------------------------------------

    def write_b(self, key: str, data: bytes, mtime_ns: int = 1_600_000_000_000_000_000) -> None:
        self.bucket.write(
            key, io.BytesIO(data), size=len(data), mtime_ns=mtime_ns, content_hash=hashlib.sha256(data).hexdigest()
        )

    def read_b(self, key: str) -> bytes:
        with self.bucket.open_read(key) as stream:
            return stream.read()

    def tree_b(self) -> dict[str, bytes]:
        return {e.path: self.read_b(e.path) for e in self.bucket.list()}

    # -- trash and index -----------------------------------------------------------------------

    @property
    def state(self) -> Path:
        return self.root / "state" / "t" / "default"

    def trash_a(self) -> list[bytes]:
        trash = self.state / "trash-files"
        return [p.read_bytes() for p in trash.rglob("*") if p.is_file()] if trash.exists() else []

    def trash_b(self) -> list[bytes]:
        bucket = self.bucket
        out = []
        for entry in bucket.trashed():
            with bucket.open_read(entry.path) as stream:
                out.append(stream.read())
        return out

    def bases(self) -> dict[str, Base]:
        store = Store.open(self.state / "index.db")
        try:
            return store.load_bases()
        finally:
            store.close()

    def temp_leftovers(self) -> list[Path]:
        return [p for p in self.files.rglob(f"{TMP_PREFIX}*")]


def all_versions(env: PairEnv) -> Iterator[bytes]:
    """Every content anywhere: both trees and both trashes."""
    yield from env.tree_a().values()
    yield from env.tree_b().values()
    yield from env.trash_a()
    yield from env.trash_b()


@contextmanager
def ram_folder(fallback: Path, env: str, prefix: str) -> Iterator[Path]:
    """A fresh folder in RAM when there is one (``$env``, else ``/dev/shm``), removed afterwards;
    else ``fallback``. For tests whose runs fsync every write but whose crashes are not power
    losses: RAM changes nothing they check and spares the fsyncs."""
    ram = Path(os.environ.get(env, "/dev/shm"))
    if not (ram.is_dir() and os.access(ram, os.W_OK)):
        yield fallback
        return
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=ram))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
