"""Pure path rules: validation, the clash key, exclude patterns. No I/O."""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import itemgetter

from syncd.errors import UnsafePath

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4000

# Names syncd itself uses inside a tree or a bucket; never synced.
TEMP_PREFIX = ".syncd-tmp-"  # a write in progress (local trees, generic WebDAV servers)
RESERVED_PREFIXES = (".syncd-trash/", TEMP_PREFIX)

DEFAULT_EXCLUDES = (
    "*.part",
    "*.partial",
    ".~lock.*#",
    "~$*",
    "Thumbs.db",
    ".DS_Store",
    "desktop.ini",
    ".syncd-trash",
    TEMP_PREFIX + "*",
)


_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path, else raise :class:`UnsafePath`.

    A safe key is relative, uses '/' only, has no empty, '.' or '..' segment, no NUL or other
    control character, no segment over 255 bytes, and encodes to valid UTF-8 (a listing that
    decoded with surrogateescape carries lone surrogates, which are refused here).
    Listings check every key: the common case is a few C-level string tests.
    """
    if (
        key
        and key[0] not in "/."
        and key[-1] != "/"
        and "//" not in key
        and "/." not in key
        and key[1:2] != ":"
        and len(key) <= MAX_PATH_BYTES // 4
        and _CONTROL_OR_BACKSLASH.search(key) is None
        and (len(key) <= MAX_SEGMENT_BYTES // 4 or max(map(len, key.split("/"))) <= MAX_SEGMENT_BYTES // 4)
    ):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise UnsafePath(repr(key), "name is not valid UTF-8") from None
        return key
    return _check_key_slowly(key)


def _check_key_slowly(key: str) -> str:
    if not key:
        raise UnsafePath(repr(key), "empty name")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePath(repr(key), "name is not valid UTF-8") from None
    if len(raw) > MAX_PATH_BYTES:
        raise UnsafePath(key[:80] + "...", f"path longer than {MAX_PATH_BYTES} bytes")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise UnsafePath(key, "absolute path")
    if "\\" in key:
        raise UnsafePath(key, "backslash in name")
    if re.search(r"[\x00-\x1f\x7f]", key):
        raise UnsafePath(repr(key), "control character (NUL, newline, ...) in name")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafePath(key, f"path segment {segment!r} is not allowed")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise UnsafePath(key[:80] + "...", f"a name is longer than {MAX_SEGMENT_BYTES} bytes")
    return key


def is_safe_key(key: str) -> bool:
    try:
        check_key(key)
    except UnsafePath:
        return False
    return True


def clash_key(path: str, *, fold_case: bool, fold_unicode: bool) -> str:
    """The name under which a side that folds case and/or Unicode form stores ``path``."""
    key = unicodedata.normalize("NFC", path) if fold_unicode else path
    return key.casefold() if fold_case else key


class Excludes:
    """Glob patterns matched against every segment (``*.part``) or the whole path
    (``build/*``, patterns holding a '/'). Compiled once into one regex per kind."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        names = [p for p in self.patterns if "/" not in p.strip("/")]
        paths = [p.strip("/") for p in self.patterns if "/" in p.strip("/")]
        self._name_re = _union(names)
        self._path_re = _union(paths)
        self._folders: dict[str, bool] = {}

    def __call__(self, path: str) -> bool:
        """True if ``path`` (or one of its folders) is excluded."""
        if path.startswith(RESERVED_PREFIXES):
            return True
        folder, _, name = path.rpartition("/")
        if self._name_re is not None and self._name_re.match(name):
            return True
        if self._path_re is not None and self._path_re.match(path):
            return True
        return bool(folder) and self._folder_excluded(folder)

    def among(self, paths: Sequence[str]) -> set[str]:
        """The excluded ones of ``paths``, as calling this on each would say, by a few C-level
        ``map`` passes over all of them (names through the name regex, whole paths through
        the path regex) and one call per distinct folder: no Python call per path."""
        out = set(compress(paths, map(str.startswith, paths, repeat(RESERVED_PREFIXES))))
        split = list(map(str.rpartition, paths, repeat("/")))
        if self._name_re is not None:
            out.update(compress(paths, map(self._name_re.match, map(_NAME, split))))
        if self._path_re is not None:
            out.update(compress(paths, map(self._path_re.match, paths)))
        folders = list(map(_FOLDER, split))
        dropped = {folder for folder in set(folders) if folder and self._folder_excluded(folder)}
        if dropped:
            out.update(compress(paths, map(dropped.__contains__, folders)))
        return out

    def _folder_excluded(self, folder: str) -> bool:
        """Memoised per folder: a tree has far fewer folders than files."""
        cached = self._folders.get(folder)
        if cached is None:
            cached = self(folder)
            self._folders[folder] = cached
        return cached


_FOLDER, _NAME = itemgetter(0), itemgetter(2)  # of str.rpartition("/")


def excluded_among(excluded: Callable[[str], bool], paths: Sequence[str]) -> set[str]:
    """Those of ``paths`` that ``excluded`` excludes (in bulk when it is :class:`Excludes`)."""
    if isinstance(excluded, Excludes):
        return excluded.among(paths)
    return set(filter(excluded, paths))


def _union(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
