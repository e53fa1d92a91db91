"""Listing a WebDAV tree: Depth infinity where the server allows it, else a Depth 1 walk,
and, where folder etags cover their subtree, re-listing only the folders that changed."""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping

from syncd.errors import FatalError, TransientError
from syncd.models import Entry
from syncd.remotes._webdav_presets import is_internal
from syncd.remotes._webdav_session import DavSession
from syncd.remotes._webdav_xml import NEXTCLOUD_PROPS, DavResource
from syncd.remotes.base import TreeListing

log = logging.getLogger("syncd.remotes.webdav")

# A sync lists right after it connects: the root read to connect serves the listing if it is
# this fresh. Were it stale, the etag kept is the older one and the next sync re-lists.
ROOT_REUSE_S = 2.0
FOLDER_TOTAL_PROPS = ("d:resourcetype", "d:getetag", "oc:size")


class DavLister:
    """Lists one remote's tree (see :meth:`list` and :meth:`list_changed`)."""

    def __init__(self, session: DavSession) -> None:
        self._s = session
        self._infinity_ok: bool | None = session.settings.depth_infinity
        self._root_at_connect: DavResource | None = None
        self._connected_at = 0.0

    def read_root(self) -> DavResource:
        """The root folder, read to connect (and kept a moment to serve the first listing).

        :raises FatalError: the root is missing or a file; credentials refused.
        """
        root = self._s.propfind_one("", (*NEXTCLOUD_PROPS, "s:meta"), folder=True)
        if root is None:
            raise self._root_missing()
        if not root.is_dir:
            raise FatalError(f"{self._s.label}: {self._s.settings.url} is a file, not a folder")
        self._root_at_connect = root
        self._connected_at = time.monotonic()
        return root

    def _root_missing(self) -> FatalError:
        return FatalError(f"{self._s.label}: the WebDAV folder {self._s.settings.url} does not exist (HTTP 404)")

    # -- a full listing ------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Every file under ``prefix`` (syncd's own temp and trash names left out).

        :raises FatalError: the root is gone or the credentials are refused.
        :raises TransientError: the listing could not be completed (never a short listing).
        """
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        for entry in self._list_folder_tree(folder):
            if entry.path.startswith(prefix):
                yield entry

    def _list_folder_tree(self, folder: str) -> Iterator[Entry]:
        use_infinity = self._infinity_ok if self._infinity_ok is not None else self._s.preset.depth_infinity
        if use_infinity:
            done = yield from self._list_infinity(folder)
            if done:
                return
        yield from self._walk(folder, {}, None)

    def _list_infinity(self, folder: str) -> Generator[Entry, None, bool]:
        """One Depth: infinity PROPFIND. :returns: False when the server refused it (the caller
        walks instead). Servers that answer infinity as Depth 1 are caught:
        subfolders nobody listed inside are walked."""
        response = self._s.propfind_request(folder, "infinity", self._s.preset.props, folder=True)
        if response is None:
            if folder == "":
                raise self._root_missing()
            return True
        if response.status_code in (400, 403, 501):
            response.close()
            self._infinity_ok = False
            return False
        folders: set[str] = set()
        parents_seen: set[str] = set()
        leftovers: list[str] = []
        for key, resource in self._s.resources(response, folder):
            if key == folder:
                continue
            parents_seen.add(posixpath.dirname(key))
            if resource.is_dir:
                folders.add(key)
                self._s.folders.saw(key)
            elif not is_internal(key):
                yield self._s.entry(key, resource)
            elif self._s.own_leftover(key):
                leftovers.append(key)
        self._sweep(leftovers)
        unexpanded = sorted(f for f in folders - parents_seen if not is_internal(f))
        if unexpanded and not (parents_seen - {folder}):
            # Nothing deeper than one level came back: maybe Depth 1 in disguise. Walk to be sure.
            for sub in unexpanded:
                yield from self._walk(sub, {}, None)
        self._infinity_ok = True
        return True

    def _walk(self, start: str, known: Mapping[str, str], tree: TreeListing | None) -> Iterator[Entry]:
        """Depth 1 PROPFIND per folder; with ``known`` etags, skip folders that did not change."""
        pending = [start]
        while pending:  # bounded by the number of folders on the server
            folder = pending.pop()
            response = self._s.propfind_request(folder, "1", self._s.preset.props, folder=True)
            if response is None:
                self._folder_missing(folder, start)
                return  # the prefix asked for does not exist: nothing below it
            if tree is not None:
                tree.listed.append(folder)
            leftovers: list[str] = []
            for key, resource in self._s.resources(response, folder):
                if key == folder:
                    continue
                if not resource.is_dir:
                    if not is_internal(key):
                        yield self._s.entry(key, resource)
                    elif self._s.own_leftover(key):
                        leftovers.append(key)
                    continue
                self._s.folders.saw(key)
                if not is_internal(key) and not _skip_unchanged(key, resource, known, tree):
                    pending.append(key)
            self._sweep(leftovers)

    def _sweep(self, leftovers: Iterable[str]) -> None:
        """Remove temp uploads a killed run of this pair left (once the listing's answer is read)."""
        for key in leftovers:
            log.info("%s: removing %r, left by a run that was killed mid-upload", self._s.label, key)
            self._s.delete_quietly(key)

    def _folder_missing(self, folder: str, start: str) -> None:
        """A 404 while walking: the root is fatal, a subfolder vanishing mid-walk is transient."""
        if folder == "":
            raise self._root_missing()
        if folder != start:
            raise TransientError(f"{self._s.label}: folder {folder!r} vanished while listing; will list again")

    # -- only what changed ---------------------------------------------------------------

    def list_changed(self, known_folder_etags: Mapping[str, str]) -> TreeListing:
        """List only what changed since ``known_folder_etags`` (from an earlier
        :class:`TreeListing`), where the server's folder etags cover their subtree
        (``capabilities.tree_etags``). Elsewhere it lists everything (nothing is skipped).

        Cost: one PROPFIND for the root, plus one per changed folder.
        :raises TransientError: as :meth:`list`; the caller must not use a partial result.
        """
        tree = TreeListing(entries=iter(()))
        if not self._s.preset.tree_etags:
            tree.entries = self._full_listing_as_tree(tree)
            return tree
        tree.entries = self._changed_entries(known_folder_etags, tree)
        return tree

    def _changed_entries(self, known: Mapping[str, str], tree: TreeListing) -> Iterator[Entry]:
        # The root was just read to connect: its etag serves once, so a quiet sync costs one
        # PROPFIND. Were it stale, the etag kept is the older one and the next run re-lists.
        root, self._root_at_connect = self._root_at_connect, None
        if root is None or time.monotonic() - self._connected_at > ROOT_REUSE_S:
            root = self._s.propfind_one("", self._s.preset.props, folder=True)
        if root is None:
            raise self._root_missing()
        if root.etag is not None:
            tree.folder_etags[""] = root.etag
            if known.get("") == root.etag:
                tree.unchanged.append("")
                _carry_known(known, "", tree.folder_etags)
        if "" not in tree.unchanged:
            yield from self._walk("", known, tree)
        # Folders below an unchanged one are as they were: they exist (no MKCOL to write there).
        for folder in tree.folder_etags:
            self._s.folders.saw(folder)

    def _full_listing_as_tree(self, tree: TreeListing) -> Iterator[Entry]:
        yield from self.list()
        tree.listed.append("")

    def folder_totals(self, folders: Collection[str]) -> dict[str, tuple[str, int]]:
        """The etag and the bytes below (Nextcloud's ``oc:size``) of each of ``folders`` that
        exists, read with one Depth 1 PROPFIND per parent folder (the root's own answer
        covers the root). :raises TransientError: :raises FatalError:"""
        wanted = set(folders)
        parents = {posixpath.dirname(folder) for folder in wanted if folder} | ({""} & wanted)
        found: dict[str, tuple[str, int]] = {}
        for parent in sorted(parents):
            response = self._s.propfind_request(parent, "1", FOLDER_TOTAL_PROPS, folder=True)
            if response is None:
                continue  # gone since: its folders are simply not settled
            for key, resource in self._s.resources(response, parent):
                if key in wanted and resource.is_dir and resource.etag is not None and resource.tree_size is not None:
                    found[key] = (resource.etag, resource.tree_size)
        return found

    # -- syncd's own folders -------------------------------------------------------------

    def list_internal(self, folder: str) -> Iterator[str]:
        """Keys of files below one of syncd's own folders (which :meth:`list` hides)."""
        pending = [folder]
        while pending:
            current = pending.pop()
            response = self._s.propfind_request(current, "1", ("d:resourcetype",), folder=True)
            if response is None:
                continue
            for key, resource in self._s.resources(response, current):
                if key == current:
                    continue
                if resource.is_dir:
                    pending.append(key)
                else:
                    yield key


def _skip_unchanged(key: str, resource: DavResource, known: Mapping[str, str], tree: TreeListing | None) -> bool:
    """Record a listed folder's etag; :returns: True when its subtree is unchanged (skip it)."""
    if tree is None or resource.etag is None:
        return False
    tree.folder_etags[key] = resource.etag
    if known.get(key) != resource.etag:
        return False
    tree.unchanged.append(key)
    _carry_known(known, key, tree.folder_etags)
    return True


def _carry_known(known: Mapping[str, str], folder: str, into: dict[str, str]) -> None:
    """Folders below a skipped one keep the etags the caller knew (they did not change)."""
    prefix = f"{folder}/" if folder else ""
    for key, etag in known.items():
        if key != folder and key.startswith(prefix):
            into[key] = etag
