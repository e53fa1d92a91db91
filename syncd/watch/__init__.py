"""Local changes -> debounced, hinted runs. A trigger, never a decision.

Every side whose remote lives on this machine (``local`` trees and ``dir`` buckets, i.e.
``capabilities.local_path``) gets a recursive watchdog watch on its ``root``
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

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from syncd.config import PairConfig
from syncd.paths import RESERVED_PREFIXES, TEMP_PREFIX
from syncd.remotes import remote_module
from syncd.remotes.base import local_root
from syncd.remotes.settings import OpenContext, RemoteSettings

log = logging.getLogger("syncd.watch")

WATCHED_TYPES = frozenset({"local", "dir"})  # remote types whose settings name a local folder
BUCKET_TYPES = frozenset({"dir"})  # of those, the ones laid out as a bucket (keys in sidecars)
IGNORED_EVENTS = frozenset({"opened", "closed_no_write", "attrib"})  # reads and chmods change no content
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


class _Handler(FileSystemEventHandler):
    """Turns one root's events into dirty keys of its pair (runs on watchdog's thread)."""

    def __init__(
        self, watched: WatchedRoot, debouncer: Debouncer, ignored: Sequence[str], counter: Callable[[str], None]
    ) -> None:
        self.watched = watched
        self.debouncer = debouncer
        self.ignored = tuple(ignored)
        self.counter = counter
        self.root = str(watched.root)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        if event.is_directory and event.event_type in ("modified", "created"):
            return  # a folder's own mtime changes with its files: those have their own events
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self._path(os.fsdecode(path), event)

    def _path(self, path: str, event: FileSystemEvent) -> None:
        if path.startswith(self.ignored) or not path.startswith(self.root + os.sep):
            return
        rel = path[len(self.root) + 1 :]
        if self.watched.bucket_layout:
            self._bucket_path(path, rel, event)
            return
        if os.path.basename(rel).startswith(TEMP_PREFIX) or rel.startswith(RESERVED_PREFIXES):
            return
        key = rel.replace(os.sep, "/")
        if not self.watched.pair.excludes(key):
            self.counter(self.watched.pair.key)
            self.debouncer.add(self.watched.pair.key, key)

    def _bucket_path(self, path: str, rel: str, event: FileSystemEvent) -> None:
        if not rel.endswith(".json"):
            return  # data files and the bucket lock: the sidecar rename is the commit
        key = bucket_key(path)
        if key is None:
            if event.event_type == "deleted" or (event.event_type == "moved" and path == event.src_path):
                # an object vanished and its key went with its sidecar: only a listing can tell
                self.debouncer.add_full(self.watched.pair.key, "an object was deleted in the bucket folder")
            return
        if key.startswith(RESERVED_PREFIXES) or self.watched.pair.excludes(key):
            return
        self.counter(self.watched.pair.key)
        self.debouncer.add(self.watched.pair.key, key)


class _OverflowLog(logging.Handler):
    """watchdog only logs lost events (queue overflow, watches it could not re-add): this
    turns those log lines into full runs for every watched pair."""

    def __init__(self, on_lost: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_lost = on_lost

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower() or "unable to" in message.lower():
            self.on_lost(message)


class Watcher:
    """One observer for every watched root; ``state`` says per pair what is watched."""

    def __init__(
        self,
        fire: Fire,
        *,
        quiet_s: float = 2.0,
        max_delay_s: float = 30.0,
        ignored: Iterable[Path] = (),
        counter: Callable[[str], None] | None = None,
    ) -> None:
        self.debouncer = Debouncer(fire, quiet_s, max_delay_s)
        self.ignored = [str(p) + os.sep for p in ignored]
        self.counter = counter or (lambda _key: None)
        self.observer: BaseObserver | None = None
        self.state: dict[str, str] = {}
        self.pairs: list[PairConfig] = []
        self.lock = threading.Lock()
        self.overflow = _OverflowLog(self._events_lost)

    def start(self, pairs: Sequence[PairConfig]) -> None:
        self.debouncer.start()
        logging.getLogger("watchdog.observers").addHandler(self.overflow)
        self.set_pairs(pairs)

    def set_pairs(self, pairs: Sequence[PairConfig]) -> None:
        """(Re)build every watch for ``pairs`` (at start and on reload)."""
        with self.lock:
            self._stop_observer()
            self.pairs = list(pairs)
            self.state = {}
            observer = Observer()
            for pair in pairs:
                self.state[pair.key] = self._watch_pair(observer, pair)
            observer.start()
            self.observer = observer

    def _watch_pair(self, observer: BaseObserver, pair: PairConfig) -> str:
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
            handler = _Handler(root, self.debouncer, self.ignored, self.counter)
            try:
                observer.schedule(handler, str(root.root), recursive=True)
            except OSError as exc:
                return self._watch_failed(pair, root, exc)
            watched.append(root.side)
        return f"watching {', '.join(watched)}" if watched else "not watched: folders missing"

    def _watch_failed(self, pair: PairConfig, root: WatchedRoot, exc: OSError) -> str:
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

    def _events_lost(self, message: str) -> None:
        log.warning("file events were lost (%s); full runs for every watched pair", message)
        for pair in self.pairs:
            if self.state.get(pair.key, "").startswith("watching"):
                self.debouncer.add_full(pair.key, "file events were lost")

    def alive(self) -> bool:
        observer = self.observer
        return observer is None or bool(observer.is_alive())

    def check(self) -> None:
        """Called periodically: an observer thread that died means lost events."""
        if not self.alive():
            log.error("the file watcher stopped; restarting it and running every pair in full")
            self.set_pairs(self.pairs)
            for pair in self.pairs:
                self.debouncer.add_full(pair.key, "the watcher restarted")

    def _stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None

    def stop(self) -> None:
        with self.lock:
            self._stop_observer()
        self.debouncer.close()
        logging.getLogger("watchdog.observers").removeHandler(self.overflow)
