"""Small JSON files the webdav remote keeps in the pair's state folder (ledgers, markers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

JsonObject = dict[str, object]
T = TypeVar("T")


class JsonFile:
    """A small JSON object in the pair's state folder, replaced atomically.

    Parallel writers of one remote share one instance: :meth:`update` reads, changes and
    saves under a lock, so two threads never lose each other's change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> JsonObject:
        """The object, or {} when the file is missing or unreadable (it is only a cache/ledger)."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def update(self, change: Callable[[JsonObject], T]) -> T:
        """Apply ``change`` to the object in place and save it. :returns: what ``change`` returns."""
        with self._lock:
            data = self.load()
            before = json.dumps(data, sort_keys=True)
            result = change(data)
            if json.dumps(data, sort_keys=True) != before:
                self._save(data)
            return result

    def _save(self, value: JsonObject) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(f".{threading.get_ident()}.tmp")
        temp.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")
        temp.replace(self.path)
