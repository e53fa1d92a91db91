"""The ``webdav`` remote: Nextcloud, Pydio Cells, or any WebDAV server.

Server quirks are presets (data): ``nextcloud`` uses Nextcloud's own atomic PUT with
``X-OC-MTime``/``OC-Checksum``/``If-Match``, chunked upload v2 for big files, ``oc:fileid`` and
``oc:checksums``, the server trash bin, and folder ETags that cover their subtree
(:meth:`WebDavRemote.list_changed` re-lists only changed folders). ``generic`` (and ``pydio``)
write to a temporary name, check the size, then MOVE into place, keep the mtime and hash in a
dead property where the server stores them, and trash into ``.syncd-trash/``.

Config::

    files = { type = "webdav", url = "https://cloud.example.com/remote.php/dav/files/alice/",
              username = "alice", password_file = "/etc/syncd/secrets/alice.webdav" }
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import posixpath
import re
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, NoReturn
from urllib.parse import urlsplit

import msgspec
import requests

from syncd.errors import (
    ChangedWhileReading,
    FatalError,
    ItemError,
    NotFound,
    PreconditionFailed,
    TransientError,
    UnsafePath,
)
from syncd.models import Entry
from syncd.paths import check_key
from syncd.remotes._webdav_body import HashMismatch, ResponseReader, ShortData, SizedBody, consume
from syncd.remotes._webdav_http import Body, RetryPolicy, Transport, iter_body
from syncd.remotes._webdav_xml import (
    GENERIC_PROPS,
    NEXTCLOUD_PROPS,
    DavResource,
    IncompleteMultistatus,
    parse_multistatus,
    parse_multistatus_errors,
    propfind_body,
    proppatch_body,
    sabre_message,
)
from syncd.remotes.base import TRASH_PREFIX, Capabilities, TreeListing, known_or_read_hash, trash_date, trash_key
from syncd.remotes.settings import OpenContext, RemoteSettings, read_secret

log = logging.getLogger("syncd.remotes.webdav")

MiB = 1 << 20
TMP_PREFIX = ".syncd-tmp-"
NEXTCLOUD_MAX_NAME = 250
META_VERSION = "syncd1"
# Nextcloud's answers to a name it refuses (400 InvalidPath, 403 Forbidden for ".htaccess").
NAME_EXCEPTIONS = ("Sabre\\Exception\\InvalidPath", "Sabre\\Exception\\Forbidden")


# A sync lists right after it connects: the root read to connect serves the listing if it is
# this fresh. Were it stale, the etag kept is the older one and the next sync re-lists.
ROOT_REUSE_S = 2.0

class Settings(RemoteSettings, frozen=True):
    """A WebDAV tree. ``url`` is the folder that holds the user's files (for Nextcloud:
    ``https://host/remote.php/dav/files/USER/``)."""

    type: Literal["webdav"]
    url: str
    username: str
    password_file: Path | None = None
    password_env: str | None = None
    preset: Literal["auto", "nextcloud", "pydio", "generic"] = "auto"
    verify_tls: bool = True
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0  # seconds without progress on one request
    retries: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5  # tries per request, the first included
    max_retry_wait: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0  # seconds, cap on one backoff/Retry-After
    chunk_size: Annotated[int, msgspec.Meta(ge=1024, le=5 * 1024 * MiB)] = 10 * MiB  # Nextcloud chunked upload
    chunked_threshold: Annotated[int, msgspec.Meta(ge=0)] | None = None  # bigger files are chunked; None: chunk_size
    depth_infinity: bool | None = None  # None: the preset decides (generic tries it, falls back)
    # Nextcloud keeps overwritten versions itself (files_versions app); false: copy into .syncd-trash/
    nextcloud_versions: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("url: must not hold credentials; use username and password_file/password_env")
        if parts.query or parts.fragment:
            raise ValueError("url: must not have a query or fragment")
        if not self.url.endswith("/"):
            msgspec.structs.force_setattr(self, "url", self.url + "/")


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


class WebDavRemote:
    """A file tree on a WebDAV server. See the module docstring for the presets."""

    def __init__(self, settings: Settings, password: str, ctx: OpenContext) -> None:
        self.name = ctx.label
        self.settings = settings
        self._ctx = ctx
        self._root_seen_at_connect: DavResource | None = None
        self._connected_at = 0.0
        self._t = Transport(
            settings.url,
            settings.username,
            password,
            verify_tls=settings.verify_tls,
            timeout_s=settings.timeout,
            retry=RetryPolicy(attempts=settings.retries, max_wait_s=settings.max_retry_wait),
            label=ctx.label,
        )
        self.preset = PRESETS["generic" if settings.preset == "auto" else settings.preset]
        self.capabilities = self._capabilities()
        self._known_dirs: set[str] = {""}  # folders known to exist: no MKCOL before writing there
        self._infinity_ok: bool | None = settings.depth_infinity
        self._dead_props_ok = True  # cleared when the server refuses our dead property
        self._user_root = self._nextcloud_user_root()
        self._no_question_mark = False

    def __repr__(self) -> str:
        return f"WebDavRemote({self.settings.url!r}, user={self.settings.username!r}, preset={self.preset.name!r})"

    # -- opening ------------------------------------------------------------------------

    def connect(self) -> None:
        """Check the root and credentials; detect the server kind when preset is "auto".

        :raises FatalError: credentials refused, or the root folder does not exist.
        """
        root = self._propfind_one("", (*NEXTCLOUD_PROPS, "s:meta"), folder=True)
        if root is None:
            raise FatalError(f"{self.name}: the WebDAV folder {self.settings.url} does not exist (HTTP 404)")
        if not root.is_dir:
            raise FatalError(f"{self.name}: {self.settings.url} is a file, not a folder")
        self._root_seen_at_connect = root
        self._connected_at = time.monotonic()
        # WsgiDAV (4.4) unquotes the Destination header before parsing it as a URL, so a "?"
        # in a MOVE target cuts the name there: such names are refused up front.
        # WsgiDAV itself sends no Server header; its usual WSGI server is Cheroot.
        software = self._t.server_software.lower()
        self._no_question_mark = "wsgidav" in software or "cheroot" in software
        if self.settings.preset == "auto":
            kind = "nextcloud" if root.fileid is not None or self._status_php_says_nextcloud() else "generic"
            self.preset = PRESETS[kind]
            self.capabilities = self._capabilities()
        log.info("%s: WebDAV preset %s", self.name, self.preset.name)

    def _status_php_says_nextcloud(self) -> bool:
        base = self._t.base_path
        if "/remote.php/" not in base:
            return False
        url = self._t.absolute(base.split("/remote.php/")[0] + "/status.php")
        try:
            response = self._t.request("GET", url)
            info = response.json() if response.status_code == 200 else {}
        except (TransientError, ValueError):
            return False
        return isinstance(info, dict) and "installed" in info and "productname" in info

    def _capabilities(self) -> Capabilities:
        return Capabilities(
            hashes=False,  # only files uploaded with a SHA-256 carry one
            mtime_precision_ns=1_000_000_000,  # X-OC-MTime and getlastmodified are whole seconds
            case_insensitive=False,
            unicode_normalizing=self.preset.unicode_normalizing,
            empty_dirs=True,
            conditional_writes=self.preset.conditional_writes,
            server_side_move=True,
            tree_etags=self.preset.tree_etags,
        )

    def _nextcloud_user_root(self) -> tuple[str, str] | None:
        """(user, decoded path of the user's root) for ``.../remote.php/dav/files/<user>/...``."""
        match = re.match(r"^(.*?/remote\.php/dav/files/([^/]+)/)", self._t.base_path)
        if match is None:
            return None
        return match.group(2), match.group(1)

    # -- listing -------------------------------------------------------------------------

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
        use_infinity = self._infinity_ok if self._infinity_ok is not None else self.preset.depth_infinity
        if use_infinity:
            done = yield from self._list_infinity(folder)
            if done:
                return
        yield from self._walk(folder, {}, None)

    def _list_infinity(self, folder: str) -> Generator[Entry, None, bool]:
        """One Depth: infinity PROPFIND. :returns: False when the server refused it (the caller
        walks instead). Servers that answer infinity as Depth 1 are caught:
        subfolders nobody listed inside are walked."""
        response = self._propfind_request(folder, "infinity", self.preset.props, folder=True)
        if response is None:
            if folder == "":
                raise FatalError(f"{self.name}: the WebDAV folder {self.settings.url} does not exist (HTTP 404)")
            return True
        if response.status_code in (400, 403, 501):
            response.close()
            self._infinity_ok = False
            return False
        folders: set[str] = set()
        parents_seen: set[str] = set()
        for key, resource in self._resources(response, folder):
            if key == folder:
                continue
            parents_seen.add(posixpath.dirname(key))
            if resource.is_dir:
                folders.add(key)
                self._known_dirs.add(key)
            elif not _internal(key):
                yield self._entry(key, resource)
        unexpanded = sorted(f for f in folders - parents_seen if not _internal(f))
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
            response = self._propfind_request(folder, "1", self.preset.props, folder=True)
            if response is None:
                self._folder_missing(folder, start)
                return  # the prefix asked for does not exist: nothing below it
            if tree is not None:
                tree.listed.append(folder)
            for key, resource in self._resources(response, folder):
                if key == folder:
                    continue
                if resource.is_dir:
                    self._known_dirs.add(key)
                    if _internal(key):
                        continue
                    if tree is not None and resource.etag is not None:
                        tree.folder_etags[key] = resource.etag
                        if known.get(key) == resource.etag:
                            tree.unchanged.append(key)
                            _carry_known(known, key, tree.folder_etags)
                            continue
                    pending.append(key)
                elif not _internal(key):
                    yield self._entry(key, resource)

    def _folder_missing(self, folder: str, start: str) -> None:
        """A 404 while walking: the root is fatal, a subfolder vanishing mid-walk is transient."""
        if folder == "":
            raise FatalError(f"{self.name}: the WebDAV folder {self.settings.url} does not exist (HTTP 404)")
        if folder != start:
            raise TransientError(f"{self.name}: folder {folder!r} vanished while listing; will list again")

    def list_changed(self, known_folder_etags: Mapping[str, str]) -> TreeListing:
        """List only what changed since ``known_folder_etags`` (from an earlier
        :class:`TreeListing`), where the server's folder etags cover their subtree
        (``capabilities.tree_etags``). Elsewhere it lists everything (nothing is skipped).

        Cost: one PROPFIND for the root, plus one per changed folder.
        :raises TransientError: as :meth:`list`; the caller must not use a partial result.
        """
        tree = TreeListing(entries=iter(()))
        if not self.capabilities.tree_etags:
            tree.entries = self._full_listing_as_tree(tree)
            return tree
        tree.entries = self._changed_entries(known_folder_etags, tree)
        return tree

    def _changed_entries(self, known: Mapping[str, str], tree: TreeListing) -> Iterator[Entry]:
        # The root was just read to connect: its etag serves once, so a quiet sync costs one
        # PROPFIND. Were it stale, the etag kept is the older one and the next run re-lists.
        root, self._root_seen_at_connect = self._root_seen_at_connect, None
        if root is None or time.monotonic() - self._connected_at > ROOT_REUSE_S:
            root = self._propfind_one("", self.preset.props, folder=True)
        if root is None:
            raise FatalError(f"{self.name}: the WebDAV folder {self.settings.url} does not exist (HTTP 404)")
        if root.etag is not None:
            tree.folder_etags[""] = root.etag
            if known.get("") == root.etag:
                tree.unchanged.append("")
                _carry_known(known, "", tree.folder_etags)
                return
        yield from self._walk("", known, tree)

    def _full_listing_as_tree(self, tree: TreeListing) -> Iterator[Entry]:
        yield from self.list()
        tree.listed.append("")

    def _resources(self, response: requests.Response, folder: str) -> Iterator[tuple[str, DavResource]]:
        """(key, resource) for each answer of a multistatus, streamed."""
        try:
            for resource in parse_multistatus(iter_body(response)):
                key = self._key_of(resource.path)
                if key is None:
                    continue
                yield key, resource
        except IncompleteMultistatus as exc:
            raise TransientError(f"{self.name}: listing of {folder or '/'} was cut short ({exc})") from exc
        finally:
            response.close()

    def _key_of(self, path: str) -> str | None:
        base = self._t.base_path
        if not (path + "/").startswith(base) and path != base.rstrip("/"):
            return None
        return path[len(base) :].strip("/") if len(path) >= len(base) else ""

    def _entry(self, key: str, resource: DavResource) -> Entry:
        size = resource.size or 0
        mtime_ns = resource.last_modified_ns or 0
        content_hash = _sha256_of(resource.checksums)
        meta = _parse_meta(resource.meta)
        # Our dead property is trusted only while the file is still the one we described.
        if meta is not None and meta[2] == size and meta[3] == mtime_ns:
            mtime_ns = meta[0]
            content_hash = meta[1] or content_hash
        etag = resource.etag or f'W/"syncd-{size}-{mtime_ns}"'
        return Entry(
            path=key, size=size, mtime_ns=mtime_ns, etag=etag, content_hash=content_hash, remote_id=resource.fileid
        )

    # -- one file ------------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        """:raises NotFound: no file at ``path``."""
        resource = self._propfind_one(path, self.preset.props)
        if resource is None or resource.is_dir:
            raise NotFound(path)
        return self._entry(path, resource)

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        """The file's bytes, streamed. A cut connection raises TransientError from read().

        :raises NotFound:
        """
        # identity: the exact bytes, so Content-Length can be checked (rclone gzips otherwise).
        response = self._t.request("GET", self._t.url(path), headers={"Accept-Encoding": "identity"}, stream=True)
        if response.status_code != 200:
            self._raise_for(response, path, "read")
        reader = ResponseReader(response)
        stream = io_buffered(reader)
        try:
            yield stream
        finally:
            stream.close()

    def hash(self, path: str) -> str:
        """The SHA-256 of the file: the one the server keeps (Nextcloud's ``oc:checksums`` or our
        dead property, both written by syncd after hashing the bytes it sent), else read it."""
        return known_or_read_hash(self, path)

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        path: str,
        data: BinaryIO,
        *,
        size: int,
        mtime_ns: int,
        content_hash: str | None = None,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> Entry:
        """Store ``size`` bytes from ``data`` at ``path`` atomically (see base.Remote.write).

        :raises UnsafePath: a name the server refuses. :raises PreconditionFailed:
        :raises ChangedWhileReading: ``data`` was short or had another hash.
        """
        self._check_name(path)
        self._ensure_folder(_parent(path))
        threshold = self.settings.chunked_threshold
        threshold = self.settings.chunk_size if threshold is None else threshold
        try:
            if self.preset.chunked_v2 and self._user_root is not None and size > threshold:
                self._write_chunked(path, data, size, mtime_ns, content_hash, if_match, create_only)
            elif self.preset.direct_put:
                self._write_direct(path, data, size, mtime_ns, content_hash, if_match, create_only)
            else:
                return self._write_via_temp(path, data, size, mtime_ns, content_hash, if_match, create_only)
        except (ShortData, HashMismatch) as exc:
            raise ChangedWhileReading(path, str(exc)) from exc
        return self.stat(path)

    def _upload_headers(self, mtime_ns: int, content_hash: str | None) -> dict[str, str]:
        headers = {"X-OC-MTime": str(mtime_ns // 1_000_000_000)}
        if content_hash and self.preset.name == "nextcloud":
            headers["OC-Checksum"] = f"SHA256:{content_hash.lower()}"
        return headers

    def _put(
        self, url: str, data: BinaryIO, size: int, headers: dict[str, str], expected: str | None
    ) -> tuple[requests.Response, str]:
        """PUT exactly ``size`` bytes. Retried only when ``data`` can be rewound.

        :returns: the response and the SHA-256 of the bytes sent.
        """
        start = data.tell() if data.seekable() else None
        sent: list[SizedBody] = []

        def body() -> Body:
            if start is not None:
                data.seek(start)
            sent.append(SizedBody(data, size, expected_sha256=expected))
            return sent[-1]

        response = self._t.request("PUT", url, headers=headers, body=body, replayable=start is not None)
        return response, sent[-1].digest.hexdigest()

    def _write_direct(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> None:
        """Nextcloud: its PUT writes a .part and renames it, and honours If-Match."""
        headers = self._upload_headers(mtime_ns, content_hash)
        headers.update(_conditions(if_match, create_only))
        response, _ = self._put(self._t.url(path), data, size, headers, content_hash)
        if response.status_code not in (200, 201, 204):
            self._raise_for(response, path, "write")
        response.close()

    def _write_via_temp(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> Entry:
        """Generic servers: PUT a temp name in the same folder, check its size, MOVE it in place."""
        temp = _join(_parent(path), f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
        try:
            response, digest = self._put(
                self._t.url(temp), data, size, {"X-OC-MTime": str(mtime_ns // 10**9)}, content_hash
            )
            if response.status_code not in (200, 201, 204):
                self._raise_for(response, path, "write")
            response.close()
            uploaded = self._propfind_one(temp, self.preset.props)
            if uploaded is None or uploaded.size != size:
                got = "nothing" if uploaded is None else f"{uploaded.size} bytes"
                raise ChangedWhileReading(path, f"server holds {got} after upload, expected {size}")
            self._set_meta(temp, mtime_ns, digest, uploaded)
            if if_match is not None:
                self._check_current_etag(path, if_match)
            self._move_request(temp, path, overwrite=not create_only, if_match=None, dest_key=path)
        except BaseException:
            self._delete_quietly(temp)
            raise
        return self.stat(path)

    def _set_meta(self, key: str, mtime_ns: int, content_hash: str | None, uploaded: DavResource) -> None:
        """Keep the exact mtime and the hash in a dead property, with the size and server mtime
        they describe (see :meth:`_entry`). Servers that refuse it keep X-OC-MTime at best."""
        if not (self.preset.dead_props and self._dead_props_ok):
            return
        meta = f"{META_VERSION} {mtime_ns} {content_hash or '-'} {uploaded.size} {uploaded.last_modified_ns or 0}"
        response = self._t.request(
            "PROPPATCH",
            self._t.url(key),
            headers={"Content-Type": "application/xml"},
            body=lambda: proppatch_body(meta),
        )
        body = response.content
        if response.status_code != 207 or parse_multistatus_errors(body):
            log.info("%s: server does not keep dead properties; mtimes kept to its own precision", self.name)
            self._dead_props_ok = False

    def _check_current_etag(self, path: str, if_match: str) -> None:
        """Best effort on servers without an atomic conditional rename (capability says so)."""
        current = self._propfind_one(path, self.preset.props)
        if current is None or current.etag != if_match:
            raise PreconditionFailed(path)

    def _write_chunked(
        self,
        path: str,
        data: BinaryIO,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        if_match: str | None,
        create_only: bool,
    ) -> None:
        """Nextcloud chunked upload v2; resumes an interrupted upload of the same content."""
        assert self._user_root is not None
        user = self._user_root[0]
        ledger = _UploadLedger(self._ctx.state_dir / "webdav-uploads.json")
        resume_key = f"{self.settings.url}|{path}|{size}|{content_hash}" if content_hash else None
        upload_id = ledger.get(resume_key) if resume_key else None
        folder = f"{self._user_root[1].split('/remote.php/')[0]}/remote.php/dav/uploads/{user}/"
        dest = {"Destination": self._t.url(path), "OC-Total-Length": str(size)}
        have = self._existing_chunks(folder, upload_id) if upload_id else None
        if have is None:
            upload_id = f"syncd-{uuid.uuid4().hex}"
            response = self._t.request("MKCOL", self._t.absolute(folder + upload_id), headers=dest)
            if response.status_code not in (200, 201):
                self._raise_for(response, path, "start chunked upload")
            response.close()
            have = {}
        assert upload_id is not None
        if resume_key:
            ledger.put(resume_key, upload_id)
        upload_url = self._t.absolute(folder + upload_id)
        digest = hashlib.sha256()
        count = (size + self.settings.chunk_size - 1) // self.settings.chunk_size
        try:
            for number in range(1, count + 1):
                length = min(self.settings.chunk_size, size - (number - 1) * self.settings.chunk_size)
                name = f"{number:05d}"
                last = number == count
                if have.get(name) == length and not last:
                    consume(data, length, digest)  # sent by an earlier, interrupted try
                    continue
                body = SizedBody(data, length, digest=digest, expected_sha256=content_hash if last else None)
                response = self._t.request(
                    "PUT", f"{upload_url}/{name}", headers=dest, body=functools.partial(_same, body), replayable=False
                )
                if response.status_code not in (200, 201, 204):
                    self._raise_for(response, path, f"upload chunk {number}")
                response.close()
            headers = {**dest, **self._upload_headers(mtime_ns, content_hash), **_conditions(if_match, create_only)}
            response = self._t.request("MOVE", f"{upload_url}/.file", headers=headers)
            if response.status_code not in (200, 201, 204):
                self._raise_for(response, path, "finish chunked upload")
            response.close()
        except (ShortData, HashMismatch, ItemError, FatalError):
            self._abandon_upload(upload_url, ledger, resume_key)
            raise
        if resume_key:
            ledger.drop(resume_key)

    def _existing_chunks(self, folder: str, upload_id: str) -> dict[str, int] | None:
        """Chunks of an earlier try that the server still holds, or None if it has none."""
        response = self._t.request(
            "PROPFIND",
            self._t.absolute(folder + upload_id + "/"),
            headers={"Depth": "1", "Content-Type": "application/xml"},
            body=lambda: propfind_body(("d:getcontentlength", "d:resourcetype")),
            stream=True,
        )
        if response.status_code != 207:
            response.close()
            return None
        chunks: dict[str, int] = {}
        try:
            for resource in parse_multistatus(iter_body(response)):
                if not resource.is_dir and resource.size is not None:
                    chunks[posixpath.basename(resource.path)] = resource.size
        except IncompleteMultistatus:
            return None
        finally:
            response.close()
        return chunks

    def _abandon_upload(self, upload_url: str, ledger: _UploadLedger, resume_key: str | None) -> None:
        if resume_key:
            ledger.drop(resume_key)
        with contextlib.suppress(TransientError, FatalError):
            self._t.request("DELETE", upload_url).close()

    # -- delete, trash, move -------------------------------------------------------------

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        """Remove ``path`` (on Nextcloud it still lands in the server's trash bin).

        :raises NotFound: :raises PreconditionFailed:
        """
        headers = {"If-Match": if_match} if if_match else {}
        response = self._t.request("DELETE", self._t.url(path), headers=headers)
        if response.status_code not in (200, 204):
            self._raise_for(response, path, "delete")
        response.close()

    def trash(self, path: str, *, if_match: str | None = None) -> str:
        """Nextcloud: DELETE (the server's trash bin keeps it). Others: MOVE into ``.syncd-trash/``."""
        if self.preset.server_trash:
            fileid = self.stat(path).remote_id
            self.delete(path, if_match=if_match)
            if fileid:
                _TrashLedger(self._ctx.state_dir / "webdav-trash.json").add(fileid, datetime.now())
            return f"Nextcloud trash bin: {path}"
        key = trash_key(path, datetime.now())
        self._ensure_folder(_parent(key))
        self._move_request(path, key, overwrite=False, if_match=if_match, dest_key=key)
        return key

    def keep_version(self, path: str, *, if_match: str | None = None) -> str:
        """Keep the current version before an overwrite. Nextcloud versions overwrites itself
        (files_versions), unless ``nextcloud_versions = false``; elsewhere COPY into ``.syncd-trash/``.

        :raises NotFound: :raises PreconditionFailed:
        """
        current = self.stat(path)
        if if_match is not None and current.etag != if_match:
            raise PreconditionFailed(path)
        if self.preset.server_trash and self.settings.nextcloud_versions:
            return f"Nextcloud file versions: {path}"
        key = trash_key(path, datetime.now())
        self._ensure_folder(_parent(key))
        headers = {"Destination": self._t.url(key), "Overwrite": "F", "Depth": "0"}
        headers.update(self._source_condition(path, if_match))
        response = self._t.request("COPY", self._t.url(path), headers=headers)
        if response.status_code not in (200, 201, 204):
            self._raise_for(response, path, "keep a version")
        response.close()
        return key

    def purge_trash(self, older_than: datetime) -> int:
        """Delete versions syncd trashed before ``older_than``. On Nextcloud only trash bin items
        syncd itself put there are touched (by file id), never the user's own deletions."""
        if self.preset.server_trash:
            return self._purge_nextcloud_trash(older_than)
        return self._purge_own_trash(older_than)

    def _purge_own_trash(self, older_than: datetime) -> int:
        files_by_folder: dict[str, int] = {}
        for key in self._list_internal(TRASH_PREFIX.rstrip("/")):
            when = trash_date(key)
            if when is None or when >= older_than:
                continue
            folder = "/".join(key.split("/")[:3])  # .syncd-trash/<date>/<time>
            files_by_folder[folder] = files_by_folder.get(folder, 0) + 1
        for folder in files_by_folder:
            with contextlib.suppress(NotFound):
                self.delete(folder + "/")
        return sum(files_by_folder.values())

    def _list_internal(self, folder: str) -> Iterator[str]:
        """Keys of files below one of syncd's own folders (which list() hides)."""
        pending = [folder]
        while pending:
            current = pending.pop()
            response = self._propfind_request(current, "1", ("d:resourcetype",), folder=True)
            if response is None:
                continue
            for key, resource in self._resources(response, current):
                if key == current:
                    continue
                if resource.is_dir:
                    pending.append(key)
                else:
                    yield key

    def _purge_nextcloud_trash(self, older_than: datetime) -> int:
        if self._user_root is None:
            return 0
        ledger = _TrashLedger(self._ctx.state_dir / "webdav-trash.json")
        due = ledger.older_than(older_than)
        if not due:
            return 0
        user, user_root = self._user_root
        trash_url = self._t.absolute(f"{user_root.split('/remote.php/')[0]}/remote.php/dav/trashbin/{user}/trash/")
        response = self._t.request(
            "PROPFIND",
            trash_url,
            headers={"Depth": "1", "Content-Type": "application/xml"},
            body=lambda: propfind_body(("d:resourcetype", "oc:fileid")),
            stream=True,
        )
        if response.status_code != 207:
            self._raise_for(response, "(trash bin)", "list trash bin")
        purged = 0
        items = [r for _, r in self._resources_raw(response) if r.fileid in due]
        for item in items:
            delete = self._t.request("DELETE", self._t.absolute(item.path))
            if delete.status_code in (200, 204, 404):
                purged += delete.status_code != 404
                ledger.remove(item.fileid or "")
            delete.close()
        ledger.forget_missing({r.fileid for r in items if r.fileid}, due)
        return purged

    def _resources_raw(self, response: requests.Response) -> Iterator[tuple[str, DavResource]]:
        try:
            for resource in parse_multistatus(iter_body(response)):
                yield resource.path, resource
        except IncompleteMultistatus as exc:
            raise TransientError(f"{self.name}: trash bin listing was cut short ({exc})") from exc
        finally:
            response.close()

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Rename on the server (no data moves). :raises NotFound: :raises PreconditionFailed:"""
        self._check_name(dst)
        self._ensure_folder(_parent(dst))
        self._move_request(src, dst, overwrite=False, if_match=if_match, dest_key=dst)
        return self.stat(dst)

    def _move_request(self, src: str, dst: str, *, overwrite: bool, if_match: str | None, dest_key: str) -> None:
        headers = {"Destination": self._t.url(dst), "Overwrite": "T" if overwrite else "F"}
        headers.update(self._source_condition(src, if_match))
        for attempt in range(2):  # a second try only after re-creating a vanished parent
            response = self._t.request("MOVE", self._t.url(src), headers=headers)
            if response.status_code in (200, 201, 204):
                response.close()
                return
            if response.status_code == 409 and attempt == 0:
                response.close()
                self._known_dirs.discard(_parent(dst))
                self._ensure_folder(_parent(dst))
                continue
            if response.status_code == 404:
                response.close()
                raise NotFound(src)
            if response.status_code == 403 and self._propfind_one(src, ("d:resourcetype",)) is None:
                response.close()
                raise NotFound(src)  # rclone answers 403 for a missing source
            self._raise_for(response, dest_key, "move")

    def _source_condition(self, src: str, if_match: str | None) -> dict[str, str]:
        """If-Match for the source of a MOVE/COPY. Sabre (Nextcloud) checks it against the
        source; Apache mod_dav checks it against the destination too (412 for a new name),
        so generic servers get a check by PROPFIND instead (not atomic: the capability says so).
        """
        if if_match is None:
            return {}
        if self.preset.conditional_writes:
            return {"If-Match": if_match}
        current = self._propfind_one(src, self.preset.props)
        if current is None:
            raise NotFound(src)
        if current.etag != if_match:
            raise PreconditionFailed(src)
        return {}

    def close(self) -> None:
        self._t.close()

    # -- helpers -------------------------------------------------------------------------

    def _check_name(self, path: str) -> None:
        """:raises UnsafePath: a key that is unsafe, or that this server refuses."""
        check_key(path)
        if self._no_question_mark and "?" in path:
            raise UnsafePath(path, "this server (WsgiDAV) cannot rename files to names holding '?'")
        if self.preset.nextcloud_names:
            for segment in path.split("/"):
                problem = nextcloud_name_problem(segment)
                if problem:
                    raise UnsafePath(path, f"Nextcloud refuses this name: {problem}")

    def _ensure_folder(self, folder: str) -> None:
        """MKCOL ``folder`` and its missing parents (cached: no request for known folders)."""
        if folder in self._known_dirs:
            return
        missing = []
        current = folder
        while current not in self._known_dirs:  # bounded by the folder's depth
            missing.append(current)
            current = _parent(current)
        for key in reversed(missing):
            response = self._t.request("MKCOL", self._t.url(key, folder=True))
            if response.status_code in (200, 201, 405):  # 405: it exists already
                response.close()
                self._known_dirs.add(key)
                continue
            if response.status_code == 409:
                # A parent we believed in is gone: forget the cache and start from the root.
                response.close()
                self._known_dirs = {""}
                raise TransientError(f"{self.name}: a parent folder of {folder!r} vanished; will retry")
            self._raise_for(response, key, "create folder")

    def _propfind_request(
        self, key: str, depth: str, props: tuple[str, ...], *, folder: bool = False
    ) -> requests.Response | None:
        """A streamed PROPFIND. :returns: None on 404; the response for 207 and refusals of
        Depth infinity; :raises: the mapped error otherwise."""
        url = self._t.url(key, folder=folder)
        body = propfind_body(props)
        response = self._t.request(
            "PROPFIND", url, headers={"Depth": depth, "Content-Type": "application/xml"}, body=lambda: body, stream=True
        )
        if response.status_code == 207:
            return response
        if response.status_code == 404:
            response.close()
            return None
        if depth == "infinity" and response.status_code in (400, 403, 501):
            return response
        self._raise_for(response, key or "/", "list", listing=True)

    def _propfind_one(self, key: str, props: tuple[str, ...], *, folder: bool = False) -> DavResource | None:
        response = self._propfind_request(key, "0", props, folder=folder)
        if response is None:
            return None
        for got, resource in self._resources(response, key):
            if got == key.strip("/"):
                return resource
        return None

    def _delete_quietly(self, key: str) -> None:
        with contextlib.suppress(TransientError, FatalError):
            self._t.request("DELETE", self._t.url(key)).close()

    def _raise_for(self, response: requests.Response, path: str, what: str, *, listing: bool = False) -> NoReturn:
        """Map an unexpected HTTP answer to syncd's error tree (once, here)."""
        status = response.status_code
        try:
            body = response.content[:4096]
        except (requests.RequestException, RuntimeError):
            body = b""
        response.close()
        exception, message = sabre_message(body)
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 404:
            raise NotFound(path)
        if status == 412:
            raise PreconditionFailed(path)
        if status in (400, 403) and not listing and exception.endswith(NAME_EXCEPTIONS):
            raise UnsafePath(path, f"the server refuses this name ({detail})")
        if status == 403:
            raise FatalError(
                f"{self.name}: the WebDAV server forbids {what} of {path!r} ({detail}); check the account's permissions"
            )
        if status == 507:
            raise FatalError(f"{self.name}: the WebDAV server is out of space or over quota ({detail})")
        if status == 423:
            raise ItemError(path, f"locked on the server ({detail}); will retry")
        if status == 409:
            self._known_dirs = {""}
            raise TransientError(f"{self.name}: {what} {path!r}: a parent folder vanished ({detail})")
        if listing or status >= 500:
            raise TransientError(f"{self.name}: {what} {path!r} failed ({detail})")
        raise ItemError(path, f"{what} failed ({detail})")


def open_remote(settings: Settings, ctx: OpenContext) -> WebDavRemote:
    """Open (and check) a WebDAV remote. :raises FatalError: bad credentials or missing root."""
    password = read_secret(file=settings.password_file, env=settings.password_env, what=f"{ctx.label} WebDAV password")
    remote = WebDavRemote(settings, password, ctx)
    try:
        remote.connect()
    except BaseException:
        remote.close()
        raise
    return remote


def nextcloud_name_problem(name: str) -> str | None:
    """Why Nextcloud 31 refuses ``name`` (one path segment), or None."""
    if name.lower() == ".htaccess":
        return '".htaccess" is a forbidden name'
    if "\\" in name:
        return 'a backslash "\\" is not allowed in names'
    if name.lower().endswith((".part", ".filepart")):
        return '".part" files are reserved for uploads in progress'
    if len(name.encode()) > NEXTCLOUD_MAX_NAME:
        return f"a name is longer than {NEXTCLOUD_MAX_NAME} bytes"
    if name != name.strip():
        return "leading or trailing spaces"
    return None


def io_buffered(reader: ResponseReader) -> BinaryIO:
    return io.BufferedReader(reader, buffer_size=1 << 16)


def _same(body: SizedBody) -> Body:
    """A body factory for a request sent once (a chunk cannot be re-read from a stream)."""
    return body


def _conditions(if_match: str | None, create_only: bool) -> dict[str, str]:
    if create_only:
        return {"If-None-Match": "*"}
    if if_match:
        return {"If-Match": if_match}
    return {}


def _internal(key: str) -> bool:
    """syncd's own names: its trash folder and temp uploads, never shown in listings."""
    return (
        key == TRASH_PREFIX.rstrip("/")
        or key.startswith(TRASH_PREFIX)
        or posixpath.basename(key).startswith(TMP_PREFIX)
    )


def _parent(key: str) -> str:
    return posixpath.dirname(key.rstrip("/"))


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _carry_known(known: Mapping[str, str], folder: str, into: dict[str, str]) -> None:
    """Folders below a skipped one keep the etags the caller knew (they did not change)."""
    prefix = f"{folder}/" if folder else ""
    for key, etag in known.items():
        if key != folder and key.startswith(prefix):
            into[key] = etag


def _sha256_of(checksums: tuple[str, ...]) -> str | None:
    for token in checksums:
        algo, _, value = token.partition(":")
        if algo.upper() == "SHA256" and re.fullmatch(r"[0-9a-fA-F]{64}", value):
            return value.lower()
    return None


def _parse_meta(text: str | None) -> tuple[int, str | None, int, int] | None:
    """(mtime_ns, sha256 or None, size, server mtime ns) from our dead property."""
    if not text:
        return None
    parts = text.split()
    if len(parts) != 5 or parts[0] != META_VERSION:
        return None
    try:
        digest = parts[2] if re.fullmatch(r"[0-9a-f]{64}", parts[2]) else None
        return int(parts[1]), digest, int(parts[3]), int(parts[4])
    except ValueError:
        return None


class _JsonFile:
    """A small JSON object in the pair's state folder, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def save(self, value: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")
        temp.replace(self.path)


class _UploadLedger(_JsonFile):
    """Chunked uploads in progress, so an interrupted one resumes: key -> upload id."""

    def get(self, key: str | None) -> str | None:
        value = self.load().get(key or "")
        return value if isinstance(value, str) else None

    def put(self, key: str, upload_id: str) -> None:
        data = self.load()
        data[key] = upload_id
        self.save(data)

    def drop(self, key: str) -> None:
        data = self.load()
        if data.pop(key, None) is not None:
            self.save(data)


class _TrashLedger(_JsonFile):
    """Nextcloud file ids syncd moved to the server trash bin, with when (local clock)."""

    def add(self, fileid: str, when: datetime) -> None:
        data = self.load()
        data[fileid] = when.isoformat()
        self.save(data)

    def older_than(self, when: datetime) -> set[str]:
        due = set()
        for fileid, stamp in self.load().items():
            try:
                if datetime.fromisoformat(stamp) < when:
                    due.add(fileid)
            except (TypeError, ValueError):
                continue
        return due

    def remove(self, fileid: str) -> None:
        data = self.load()
        if data.pop(fileid, None) is not None:
            self.save(data)

    def forget_missing(self, present: set[str], due: set[str]) -> None:
        """Due items no longer in the trash bin (restored or purged by the server) are forgotten."""
        data = self.load()
        gone = [f for f in due if f not in present and f in data]
        for fileid in gone:
            del data[fileid]
        if gone:
            self.save(data)
