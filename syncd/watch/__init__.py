"""Local changes -> debounced, hinted runs. A trigger, never a decision.

Every side whose remote lives on this machine (``local`` trees and ``dir`` buckets, i.e.
``capabilities.local_path``) gets its ``root`` watched, every folder of every pair on one
inotify instance read by one thread (:mod:`syncd.watch.inotify`)
(:class:`~syncd.remotes.base.SupportsLocalPath`). Events become keys relative to that
root (for a ``dir`` bucket: the key named by the object's sidecar);
after ``quiet_s`` seconds without a new event for a pair (or ``max_delay_s`` after its first
one, so a steady stream of writes cannot starve it) the pair gets one run hinted with those
keys. Too many keys at once, a deleted bucket object (its key is gone with its sidecar), or
lost events (inotify queue overflow, watch limit) ask for a full run instead, and say so in
the log.

Echoes: syncd's own writes are seen too. Temp names (``.syncd-tmp-*``), trash and state
folders are ignored outright; the rest costs at most one hinted run that finds both sides
equal to the index and does nothing — and a run that does nothing writes nothing, so it can
never feed a loop.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from syncd.config import PairConfig
from syncd.engine.scans import MARKER
from syncd.paths import RESERVED_PREFIXES, TEMP_PREFIX
from syncd.remotes import remote_module
from syncd.remotes.base import local_root
from syncd.remotes.settings import OpenContext, RemoteSettings
from syncd.watch.inotify import Inotify

log = logging.getLogger("syncd.watch")

WATCHED_TYPES = frozenset({"local", "dir"})  # remote types whose settings name a local folder
BUCKET_TYPES = frozenset({"dir"})  # of those, the ones laid out as a bucket (keys in sidecars)
MAX_HINTS = 2000  # more dirty keys than this: a full listing is cheaper than stat'ing each

# fire(pair_key, keys or None for a full run, why)
Fire = Callable[[str, frozenset[str] | None, str], None]


@dataclass(slots=True)
class _Dirty:
    keys: set[str] = field(default_factory=set)
    full: str | None = None  # why a full run is needed, if it is
    first: float = 0.0
    last: float = 0.0


class Debouncer:
    """Collects dirty keys per pair and fires once the pair has been quiet for ``quiet_s``."""

    def __init__(self, fire: Fire, quiet_s: float = 2.0, max_delay_s: float = 30.0) -> None:
        self.fire = fire
        self.quiet_s = quiet_s
        self.max_delay_s = max(max_delay_s, quiet_s)
        self.dirty: dict[str, _Dirty] = {}
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="watch-debounce", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(timeout=5)

    def add(self, pair_key: str, key: str) -> None:
        with self.cond:
            dirty = self._touch(pair_key)
            if dirty.full is None:
                dirty.keys.add(key)
                if len(dirty.keys) > MAX_HINTS:
                    dirty.full, dirty.keys = f"more than {MAX_HINTS} changed paths", set()
            self.cond.notify_all()

    def add_full(self, pair_key: str, why: str) -> None:
        with self.cond:
            dirty = self._touch(pair_key)
            dirty.full, dirty.keys = dirty.full or why, set()
            self.cond.notify_all()

    def pending(self, pair_key: str) -> int:
        with self.cond:
            dirty = self.dirty.get(pair_key)
            return 0 if dirty is None else len(dirty.keys) + (dirty.full is not None)

    def _touch(self, pair_key: str) -> _Dirty:
        now = time.monotonic()
        dirty = self.dirty.get(pair_key)
        if dirty is None:
            dirty = self.dirty[pair_key] = _Dirty(first=now)
        dirty.last = now
        return dirty

    def _due(self, now: float) -> tuple[list[tuple[str, _Dirty]], float | None]:
        due, next_at = [], None
        for key, dirty in list(self.dirty.items()):
            at = min(dirty.last + self.quiet_s, dirty.first + self.max_delay_s)
            if at <= now:
                due.append((key, self.dirty.pop(key)))
            else:
                next_at = at if next_at is None else min(next_at, at)
        return due, next_at

    def _loop(self) -> None:
        while True:
            with self.cond:
                if self.closed:
                    return
                due, next_at = self._due(time.monotonic())
                if not due:
                    self.cond.wait(None if next_at is None else max(0.01, next_at - time.monotonic()))
                    continue
            for pair_key, dirty in due:
                try:
                    if dirty.full is not None:
                        self.fire(pair_key, None, dirty.full)
                    else:
                        self.fire(pair_key, frozenset(dirty.keys), f"{len(dirty.keys)} changed path(s)")
                except Exception:  # the trigger must survive whatever the run request does
                    log.exception("could not request a run", extra={"pair": pair_key})


@dataclass(frozen=True, slots=True)
class WatchedRoot:
    pair: PairConfig
    side: str  # "files" or "bucket"
    root: Path
    bucket_layout: bool


def watched_roots(pair: PairConfig) -> list[WatchedRoot]:
    """The folders of ``pair`` that live on this machine. Only ``local``/``dir`` sides are
    opened (cheap, no network); the remote's own capabilities say whether it is watchable."""
    roots = []
    for side, settings in (("files", pair.files), ("bucket", pair.bucket)):
        if settings.type not in WATCHED_TYPES:
            continue
        root = _local_root(pair, side, settings)
        if root is not None:
            roots.append(WatchedRoot(pair, side, root, settings.type in BUCKET_TYPES))
    return roots


def _local_root(pair: PairConfig, side: str, settings: RemoteSettings) -> Path | None:
    ctx = OpenContext(label=f"{pair.key} {side}", state_dir=pair.state_dir)
    remote = remote_module(settings.type).open_remote(settings, ctx)
    try:
        return local_root(remote)
    finally:
        remote.close()


def bucket_key(path: str) -> str | None:
    """The key of a ``dir`` bucket object from its sidecar (``<id>.json``); None for data
    files, lock files and sidecars that are gone."""
    if not path.endswith(".json"):
        return None
    try:
        with open(path, "rb") as sidecar:
            key = json.load(sidecar).get("key")
    except (OSError, ValueError):
        return None
    return key if isinstance(key, str) else None


class _Handler:
    """Turns one root's changes into dirty keys of its pair (runs on the inotify thread)."""

    def __init__(
        self,
        watched: WatchedRoot,
        debouncer: Debouncer,
        ignored: Sequence[str],
        counter: Callable[[str], None],
        broken: Callable[[WatchedRoot, str], None],
    ) -> None:
        self.watched = watched
        self.broken = broken
        self.debouncer = debouncer
        self.ignored = tuple(ignored)
        self.counter = counter
        self.root = str(watched.root)

    def skip(self, folder: str) -> bool:
        """Folders not to watch: syncd's state folder, the trash."""
        if folder.startswith(self.ignored) or (folder + os.sep).startswith(self.ignored):
            return True
        rel = folder[len(self.root) + 1 :].replace(os.sep, "/") + "/"
        return not self.watched.bucket_layout and rel.startswith(RESERVED_PREFIXES)

    def change(self, path: str, kind: str) -> None:
        if path.startswith(self.ignored) or not path.startswith(self.root + os.sep):
            return
        rel = path[len(self.root) + 1 :]
        if self.watched.bucket_layout:
            self._bucket_path(path, rel, kind)
            return
        if os.path.basename(rel).startswith(TEMP_PREFIX) or rel.startswith(RESERVED_PREFIXES):
            return
        key = rel.replace(os.sep, "/")
        if not self.watched.pair.excludes(key):
            self.counter(self.watched.pair.key)
            self.debouncer.add(self.watched.pair.key, key)

    def lost(self, why: str) -> None:
        """The tree is no longer watched whole (a folder it could not watch, its root gone)."""
        self.broken(self.watched, why)
        self.debouncer.add_full(self.watched.pair.key, why)

    def _bucket_path(self, path: str, rel: str, kind: str) -> None:
        if not rel.endswith(".json"):
            return  # data files, folders and the bucket lock: the sidecar rename is the commit
        key = bucket_key(path)
        if key is None:
            if kind in ("deleted", "moved_from"):
                # an object vanished and its key went with its sidecar: only a listing can tell
                self.debouncer.add_full(self.watched.pair.key, "an object was deleted in the bucket folder")
            return
        if key == MARKER or key.startswith(RESERVED_PREFIXES) or self.watched.pair.excludes(key):
            return
        self.counter(self.watched.pair.key)
        self.debouncer.add(self.watched.pair.key, key)


class Watcher:
    """One inotify instance (one thread) for every watched root of every pair; ``state``
    says per pair what is watched, ``watched`` which sides, ``lost_at`` when events of the
    pair were last lost (the watcher cannot vouch for the pair until its next full run)."""

    def __init__(
        self,
        fire: Fire,
        *,
        quiet_s: float = 2.0,
        max_delay_s: float = 30.0,
        ignored: Iterable[Path] = (),
        counter: Callable[[str], None] | None = None,
    ) -> None:
        self.debouncer = Debouncer(self._fire(fire), quiet_s, max_delay_s)
        self.ignored = [str(p) + os.sep for p in ignored]
        self.counter = counter or (lambda _key: None)
        self.inotify: Inotify | None = None
        self.state: dict[str, str] = {}
        self.watched: dict[str, frozenset[str]] = {}  # pair key -> sides watched ("files", "bucket")
        self.lost_at: dict[str, float] = {}
        self.pairs: list[PairConfig] = []
        self.lock = threading.Lock()

    def _fire(self, fire: Fire) -> Fire:
        def fired(key: str, hints: frozenset[str] | None, why: str) -> None:
            if hints is None:  # a full run: the watcher cannot vouch for this pair until it ran
                self.lost_at[key] = time.time()
            fire(key, hints, why)

        return fired

    def start(self, pairs: Sequence[PairConfig]) -> None:
        self.debouncer.start()
        self.set_pairs(pairs)

    def set_pairs(self, pairs: Sequence[PairConfig]) -> None:
        """(Re)build every watch for ``pairs`` (at start and on reload)."""
        with self.lock:
            if self.inotify is not None:  # rebuilt: what changed meanwhile was not seen
                self.lost_at.update(dict.fromkeys(self.watched, time.time()))
            self._stop_inotify()
            self.pairs = list(pairs)
            self.state, self.watched = {}, {}
            try:
                inotify = Inotify(self._events_lost)
            except OSError as exc:
                log.error("cannot watch files (%s): full runs on schedule only", exc.strerror or exc)
                self.state = {p.key: f"not watched: {exc.strerror or exc}" for p in pairs}
                return
            for pair in pairs:
                self.state[pair.key] = self._watch_pair(inotify, pair)
            inotify.start()
            self.inotify = inotify

    def _watch_pair(self, inotify: Inotify, pair: PairConfig) -> str:
        try:
            roots = watched_roots(pair)
        except Exception as exc:  # a broken side is the run's business to report
            log.warning("not watched: %s", exc, extra={"pair": pair.key})
            return f"not watched: {exc}"
        if not roots:
            return "not watchable (no side on this machine): scheduled runs only"
        watched = []
        for root in roots:
            if not root.root.is_dir():
                log.warning("%s folder %s does not exist: not watched", root.side, root.root, extra={"pair": pair.key})
                continue
            handler = _Handler(root, self.debouncer, self.ignored, self.counter, self._broken)
            try:
                inotify.add_tree(str(root.root), handler.change, handler.lost, handler.skip)
            except OSError as exc:
                return self._watch_failed(pair, root, exc)
            watched.append(root.side)
        self.watched[pair.key] = frozenset(watched)
        return f"watching {', '.join(watched)}" if watched else "not watched: folders missing"

    def _watch_failed(self, pair: PairConfig, root: WatchedRoot, exc: OSError) -> str:
        self.watched.pop(pair.key, None)
        advice = ""
        if exc.errno in (errno.ENOSPC, errno.EMFILE):
            advice = " (raise fs.inotify.max_user_watches / max_user_instances)"
        log.error(
            "cannot watch %s: %s%s; falling back to full runs",
            root.root,
            exc.strerror or exc,
            advice,
            extra={"pair": pair.key},
        )
        self.debouncer.add_full(pair.key, f"watch failed: {exc.strerror or exc}")
        return f"watch failed{advice}: full runs on schedule"

    def _broken(self, root: WatchedRoot, why: str) -> None:
        """``root`` is no longer watched whole: its side is not vouched for until a reload."""
        key = root.pair.key
        log.warning("%s no longer watched whole (%s): full runs on schedule", root.side, why, extra={"pair": key})
        self.watched[key] = self.watched.get(key, frozenset()) - {root.side}
        self.state[key] = f"{root.side} not watched whole ({why}): full runs on schedule"

    def _events_lost(self, message: str) -> None:
        log.warning("file events were lost (%s); full runs for every watched pair", message)
        for pair in self.pairs:
            if self.state.get(pair.key, "").startswith("watching"):
                self.debouncer.add_full(pair.key, "file events were lost")

    def watches(self) -> int:
        """The folders watched, over every pair."""
        inotify = self.inotify
        return 0 if inotify is None else inotify.watches()

    def alive(self) -> bool:
        inotify = self.inotify
        return inotify is None or inotify.alive()

    def check(self) -> None:
        """Called periodically: a reader thread that died means lost events."""
        if not self.alive():
            log.error("the file watcher stopped; restarting it and running every pair in full")
            self.set_pairs(self.pairs)
            for pair in self.pairs:
                self.debouncer.add_full(pair.key, "the watcher restarted")

    def _stop_inotify(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None

    def stop(self) -> None:
        with self.lock:
            self._stop_inotify()
        self.debouncer.close()
