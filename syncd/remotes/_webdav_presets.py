"""What each kind of WebDAV server does, as data, and the names such a server refuses.

A preset never changes behaviour by class: the remote asks its fields (``direct_put``,
``chunked_v2``, ...). Key helpers shared by every part of the webdav remote live here too.
"""

from __future__ import annotations

import posixpath
import unicodedata
from dataclasses import dataclass

from syncd.paths import TEMP_PREFIX
from syncd.remotes._webdav_xml import GENERIC_PROPS, NEXTCLOUD_PROPS
from syncd.remotes.base import TRASH_PREFIX

META_VERSION = "syncd1"  # the version of our dead property's text
MAX_NAME_BYTES = 250  # Nextcloud: "Filename is too long" (400) above this
PART_NAME_LIMIT = 228  # longest file name whose upload's .part name fits ext4 (see file_name_problem)


@dataclass(frozen=True, slots=True)
class Preset:
    """What a kind of server does, as data."""

    name: str
    props: tuple[str, ...]  # what PROPFIND asks for
    direct_put: bool  # PUT is atomic and honours If-Match / If-None-Match: * (no temp name + MOVE)
    chunked_v2: bool  # /remote.php/dav/uploads/ chunked upload
    server_trash: bool  # DELETE keeps the version in the server's trash bin
    tree_etags: bool  # a folder's etag changes when anything below it changes
    depth_infinity: bool  # try PROPFIND Depth: infinity (falls back to a Depth 1 walk)
    dead_props: bool  # keep mtime and hash in our own dead property (PROPPATCH)
    nextcloud_names: bool  # refuse names Nextcloud refuses, before sending anything
    conditional_writes: bool
    unicode_normalizing: bool = False


PRESETS: dict[str, Preset] = {
    "nextcloud": Preset(
        "nextcloud",
        NEXTCLOUD_PROPS,
        direct_put=True,
        chunked_v2=True,
        server_trash=True,
        tree_etags=True,
        depth_infinity=False,
        dead_props=False,
        nextcloud_names=True,
        conditional_writes=True,
        unicode_normalizing=True,
    ),
    # Pydio Cells /dav/: plain WebDAV as far as syncd relies on it; no Depth infinity.
    "pydio": Preset(
        "pydio",
        GENERIC_PROPS,
        direct_put=False,
        chunked_v2=False,
        server_trash=False,
        tree_etags=False,
        depth_infinity=False,
        dead_props=True,
        nextcloud_names=False,
        conditional_writes=False,
    ),
    "generic": Preset(
        "generic",
        GENERIC_PROPS,
        direct_put=False,
        chunked_v2=False,
        server_trash=False,
        tree_etags=False,
        depth_infinity=True,
        dead_props=True,
        nextcloud_names=False,
        conditional_writes=False,
    ),
}


@dataclass(frozen=True, slots=True)
class NameRules:
    """The names a Nextcloud server refuses: the configurable part as its capabilities publish
    it (``files.forbidden_filename*``; these defaults are Nextcloud's own when it publishes
    none), compared case-insensitively as Nextcloud compares them, plus what it refuses
    although no capability lists it (control characters, names over 250 bytes, and file
    names too long for the ``.part`` name its upload writes first).

    Accepted on purpose (Nextcloud 31 stores them as given): leading/trailing spaces, a
    trailing dot, ``con``, ``desktop.ini``, and ``: | * ? " < > # % + & = ; '``.
    """

    forbidden_names: frozenset[str] = frozenset({".htaccess"})
    forbidden_basenames: frozenset[str] = frozenset()
    forbidden_characters: frozenset[str] = frozenset({"\\", "/"})
    forbidden_extensions: frozenset[str] = frozenset({".part", ".filepart"})

    def path_problem(self, path: str) -> str | None:
        """Why Nextcloud refuses to store a file at ``path`` (any of its segments), or None."""
        segments = path.split("/")
        for segment in segments:
            problem = self.name_problem(segment)
            if problem is not None:
                return problem
        return file_name_problem(segments[-1])

    def name_problem(self, name: str) -> str | None:
        """Why Nextcloud refuses ``name`` for a file or a folder, or None."""
        lowered = name.lower()
        if name.strip() in ("", ".", ".."):
            return f"the name {name!r} is refused by Nextcloud"
        if len(_stored(name)) > MAX_NAME_BYTES:
            return f"a name of {len(_stored(name))} bytes is over Nextcloud's limit of {MAX_NAME_BYTES} bytes"
        if lowered in self.forbidden_names:
            return f'"{name}" is a reserved name on this Nextcloud'
        basename = lowered[: lowered.find(".", 1)] if lowered.find(".", 1) > 0 else lowered
        if basename in self.forbidden_basenames:
            return f'"{basename}" is a reserved name on this Nextcloud'
        if any(ord(char) < 32 for char in name):
            return "a name holding a newline, tab or other control character is refused by Nextcloud"
        for char in sorted(self.forbidden_characters):
            if char in name:
                return f"the character {char!r} is not allowed in names on this Nextcloud"
        for extension in sorted(self.forbidden_extensions):
            if lowered.endswith(extension):
                return f'names ending in "{extension}" are refused by this Nextcloud'
        return None


def file_name_problem(name: str) -> str | None:
    """Nextcloud writes a file as ``<name>.ocTransferId<random>.part`` first, then renames it:
    on ext4 (255 bytes a name) a name over 228 bytes makes that temporary name too long, and
    the upload fails with a 500 (plain PUT and chunked MOVE alike)."""
    length = len(_stored(name))
    if length > PART_NAME_LIMIT:
        return (
            f"a file name of {length} bytes cannot be stored by Nextcloud (at most {PART_NAME_LIMIT}): "
            "its upload writes a temporary '<name>.ocTransferId<n>.part' that is over its disk's "
            "255-byte limit (HTTP 500)"
        )
    return None


def _stored(name: str) -> bytes:
    """A name as Nextcloud stores it: NFC, UTF-8."""
    return unicodedata.normalize("NFC", name).encode()


def is_internal(key: str) -> bool:
    """syncd's own names: its trash folder and temp uploads, never shown in listings."""
    return (
        key == TRASH_PREFIX.rstrip("/")
        or key.startswith(TRASH_PREFIX)
        or posixpath.basename(key).startswith(TEMP_PREFIX)
    )


def parent_of(key: str) -> str:
    """The folder holding ``key`` ("" for the root)."""
    return posixpath.dirname(key.rstrip("/"))


def join_key(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name
