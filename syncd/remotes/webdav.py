"""The ``webdav`` remote: Nextcloud, Pydio Cells, or any WebDAV server.

Server quirks are presets (data): ``nextcloud`` uses Nextcloud's own atomic PUT with
``X-OC-MTime``/``OC-Checksum``/``If-Match``, chunked upload v2 for big files, ``oc:fileid`` and
``oc:checksums``, the server trash bin, and folder ETags that cover their subtree
(:meth:`WebDavRemote.list_changed` re-lists only changed folders). ``generic`` (and ``pydio``)
write to a temporary name, check the size, then MOVE into place, keep the mtime and hash in a
dead property where the server stores them, and trash into ``.syncd-trash/``.

This module is the facade; the work is done by one module per responsibility::

    _webdav_session.py   transport + preset + folder cache + PROPFIND + error mapping (shared)
    _webdav_http.py      the transport: retries, 401 stops, 429 closes the host's gate
    _webdav_throttle.py  the per-origin gate a 429 closes, shared by every remote of the process
    _webdav_errors.py    what an error answer means (item, transient, fatal), decided once
    _webdav_presets.py   what each kind of server does, as data, and Nextcloud's name rules
    _webdav_capabilities.py  Nextcloud's OCS capabilities (name rules, chunking, bulk upload)
    _webdav_folders.py   folders known to exist; MKCOL once, parents first, race-tolerant
    _webdav_state.py     small files in the pair's state folder; the refused-credentials marker
    _webdav_listing.py   list() and list_changed()
    _webdav_upload.py    one PUT (Nextcloud), or temp name + MOVE (generic servers)
    _webdav_chunked.py   Nextcloud chunked upload v2 and its resume ledger
    _webdav_bulk.py      Nextcloud bulk upload: many small new files in one POST
    _webdav_trash.py     trash, keep_version, purge (Nextcloud trash bin ledger)

Config::

    files = { type = "webdav", url = "https://cloud.example.com/remote.php/dav/files/alice/",
              username = "alice", password_file = "/etc/syncd/secrets/alice.webdav" }
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Literal
from urllib.parse import urlsplit

import msgspec

from syncd.errors import ChangedWhileReading, ContentMismatch, FatalError, ItemError, TransientError
from syncd.models import Entry
from syncd.remotes import _webdav_bulk
from syncd.remotes._webdav_body import HashMismatch, ResponseReader, ShortData
from syncd.remotes._webdav_capabilities import read_capabilities
from syncd.remotes._webdav_chunked import ChunkedUploader
from syncd.remotes._webdav_listing import DavLister
from syncd.remotes._webdav_presets import PRESETS, Preset, parent_of
from syncd.remotes._webdav_session import DavSession
from syncd.remotes._webdav_state import RefusedCredentials
from syncd.remotes._webdav_trash import DavTrash
from syncd.remotes._webdav_upload import PlainUploader, conditions
from syncd.remotes.base import BatchLimits, Capabilities, NewFile, TreeListing
from syncd.remotes.bucket_trash import TrashedVersion
from syncd.remotes.settings import OpenContext, RemoteSettings, read_secret

log = logging.getLogger("syncd.remotes.webdav")

MiB = 1 << 20


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


class WebDavRemote:
    """A file tree on a WebDAV server. See the module docstring for the presets."""

    def __init__(self, settings: Settings, password: str, ctx: OpenContext) -> None:
        self.name = ctx.label
        self.settings = settings
        self.session = DavSession(settings, password, ctx)
        self.capabilities = self._capabilities()
        self._lister = DavLister(self.session)
        self._plain = PlainUploader(self.session)
        self._chunked = ChunkedUploader(self.session, self._plain)
        self._trash = DavTrash(self.session, self._lister)

    def __repr__(self) -> str:
        return f"WebDavRemote({self.settings.url!r}, user={self.settings.username!r}, preset={self.preset.name!r})"

    @property
    def preset(self) -> Preset:
        return self.session.preset

    # -- opening ------------------------------------------------------------------------

    def connect(self) -> None:
        """Check the root and credentials; detect the server kind when preset is "auto".

        :raises FatalError: credentials refused, or the root folder does not exist.
        """
        root = self._lister.read_root()
        # WsgiDAV (4.4) unquotes the Destination header before parsing it as a URL, so a "?"
        # in a MOVE target cuts the name there: such names are refused up front.
        # WsgiDAV itself sends no Server header; its usual WSGI server is Cheroot.
        software = self.session.transport.server_software.lower()
        self.session.no_question_mark = "wsgidav" in software or "cheroot" in software
        if self.settings.preset == "auto":
            kind = "nextcloud" if root.fileid is not None or self._status_php_says_nextcloud() else "generic"
            self.session.preset = PRESETS[kind]
            self.capabilities = self._capabilities()
        if self.preset.name == "nextcloud":
            self.session.server = read_capabilities(self.session)
        log.info("%s: WebDAV preset %s", self.name, self.preset.name)

    def _status_php_says_nextcloud(self) -> bool:
        transport = self.session.transport
        if "/remote.php/" not in transport.base_path:
            return False
        url = transport.absolute(transport.base_path.split("/remote.php/")[0] + "/status.php")
        try:
            response = transport.request("GET", url)
            info = response.json() if response.status_code == 200 else {}
        except (TransientError, ValueError):
            return False
        return isinstance(info, dict) and "installed" in info and "productname" in info

    def _capabilities(self) -> Capabilities:
        return Capabilities(
            hashes=frozenset(),  # only files uploaded with a SHA-256 carry one (oc:checksums)
            hashes_are_claims=True,  # oc:checksums is stored as the uploader sent it, never checked
            mtime_precision_ns=1_000_000_000,  # X-OC-MTime and getlastmodified are whole seconds
            case_insensitive=False,
            unicode_normalizing=self.preset.unicode_normalizing,
            empty_dirs=True,
            conditional_writes=self.preset.conditional_writes,
            server_side_move=True,
            tree_etags=self.preset.tree_etags,
        )

    # -- listing -------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Every file under ``prefix`` (syncd's own temp and trash names left out).

        :raises FatalError: the root is gone or the credentials are refused.
        :raises TransientError: the listing could not be completed (never a short listing).
        """
        return self._lister.list(prefix)

    def list_changed(self, known_folder_etags: Mapping[str, str]) -> TreeListing:
        """List only what changed since ``known_folder_etags`` (see :meth:`DavLister.list_changed`)."""
        return self._lister.list_changed(known_folder_etags)

    # -- one file ------------------------------------------------------------------------

    def folder_totals(self, folders: Collection[str]) -> dict[str, tuple[str, int]]:
        """See :class:`syncd.remotes.base.SupportsFolderTotals` (Nextcloud's ``oc:size``)."""
        return self._lister.folder_totals(folders)

    def stat(self, path: str) -> Entry:
        """:raises NotFound: no file at ``path``."""
        return self.session.stat(path)

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        """The file's bytes, streamed. A cut connection raises TransientError from read().

        :raises NotFound:
        """
        transport = self.session.transport
        # identity: the exact bytes, so Content-Length can be checked (rclone gzips otherwise).
        response = transport.request(
            "GET", self.session.url(path), headers={"Accept-Encoding": "identity"}, stream=True
        )
        if response.status_code != 200:
            self.session.raise_for(response, path, "read")
        stream = io.BufferedReader(ResponseReader(response), buffer_size=1 << 16)
        try:
            yield stream
        finally:
            stream.close()

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
        self.session.check_name(path)
        self.session.folders.ensure(parent_of(path))
        try:
            if self._chunks(size):
                entry = self._chunked.write(path, data, size, mtime_ns, content_hash, if_match, create_only)
            elif self.preset.direct_put:
                entry = self._plain.write_direct(
                    path, data, size, mtime_ns, content_hash, conditions(if_match, create_only)
                )
            else:
                return self._plain.write_via_temp(path, data, size, mtime_ns, content_hash, if_match, create_only)
        except ShortData as exc:
            raise ChangedWhileReading(path, str(exc)) from exc
        except HashMismatch as exc:
            raise ContentMismatch(path, str(exc)) from exc
        return entry if entry is not None else self.stat(path)

    def _chunks(self, size: int) -> bool:
        """Whether a file of ``size`` bytes goes up by chunked upload."""
        threshold = self.settings.chunked_threshold
        threshold = self.settings.chunk_size if threshold is None else threshold
        chunked = self.preset.chunked_v2 and self.session.server.chunking and self.session.user_root is not None
        return chunked and size > threshold

    # -- delete, trash, move -------------------------------------------------------------

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        """Remove ``path`` (on Nextcloud it still lands in the server's trash bin).

        :raises NotFound: :raises PreconditionFailed:
        """
        self.session.delete(path, if_match=if_match)

    def trash(self, path: str, *, if_match: str | None = None) -> str:
        """Nextcloud: DELETE (the server's trash bin keeps it). Others: MOVE into ``.syncd-trash/``."""
        return self._trash.trash(path, if_match)

    def keep_version(self, path: str, *, if_match: str | None = None) -> str:
        """Keep the current version before an overwrite (see :meth:`DavTrash.keep_version`).

        :raises NotFound: :raises PreconditionFailed:
        """
        return self._trash.keep_version(path, if_match)

    def trashed_versions(self, path: str | None = None) -> builtins.list[TrashedVersion]:
        """Versions syncd keeps in ``.syncd-trash/`` (``syncd restore``; see :meth:`DavTrash.versions`)."""
        return self._trash.versions(path)

    def stat_trashed(self, key: str) -> Entry:
        return self.session.stat(key)

    def open_trashed(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self.open_read(key)

    def purge_trash(self, older_than: datetime) -> int:
        """Delete versions syncd trashed before ``older_than``. On Nextcloud only trash bin items
        syncd itself put there are touched (by file id), never the user's own deletions.
        Chunked uploads of ours left unfinished for a day are removed too."""
        purged = self._trash.purge(older_than)
        if self.preset.chunked_v2 and self.session.user_root is not None:
            self._chunked.sweep()
        return purged

    def name_problem(self, path: str) -> str | None:
        """Why this server cannot store a file at ``path`` (one line), or None. Pure: on
        Nextcloud the rules are the ones its capabilities published when the remote connected."""
        return self.session.name_problem(path)

    def prepare_folders(self, folders: Collection[str]) -> None:
        """Create each of ``folders`` and its missing parents, parents first, one MKCOL each,
        before the parallel writes into them start (see :meth:`FolderCache.prepare`).

        :raises FatalError: credentials refused. :raises TransientError: the server is gone.
        """
        self.session.folders.prepare(folders)

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Rename on the server (no data moves). :raises NotFound: :raises PreconditionFailed:"""
        self.session.check_name(dst)
        self.session.folders.ensure(parent_of(dst))
        self.session.move_request(src, dst, overwrite=False, if_match=if_match)
        return self.stat(dst)

    # -- bulk upload of small new files (SupportsBatchCreate) ----------------------------

    def batch_limits(self) -> BatchLimits | None:
        """Nextcloud's bulk upload limits when its capabilities announce it, else None."""
        return _webdav_bulk.batch_limits(self.session)

    def accepts_in_batch(self, path: str, size: int) -> bool:
        """Only files in folders this remote created in this run: the bulk endpoint overwrites."""
        return _webdav_bulk.accepts_in_batch(self.session, path, size)

    def create_batch(self, files: Sequence[NewFile]) -> builtins.list[Entry | ItemError]:
        """Create ``files`` in one bulk request (see :func:`_webdav_bulk.create_batch`)."""
        return _webdav_bulk.create_batch(self.session, files)

    def close(self) -> None:
        self.session.transport.close()


def open_remote(settings: Settings, ctx: OpenContext) -> WebDavRemote:
    """Open (and check) a WebDAV remote.

    :raises FatalError: bad credentials (also, without sending anything, credentials this
        server refused before: see :class:`RefusedCredentials`) or a missing root.
    :raises TransientError: the server is unreachable, or throttles this host (429).
    """
    password = read_secret(file=settings.password_file, env=settings.password_env, what=f"{ctx.label} WebDAV password")
    refused = RefusedCredentials(ctx.state_dir, settings.url, settings.username)
    when = refused.refused_at(password)
    if when is not None:
        raise FatalError(
            f"{ctx.label}: the WebDAV server refused the credentials of user {settings.username!r} at "
            f"{when:%Y-%m-%d %H:%M:%S}; not retried until the password changes (each try counts toward "
            "Nextcloud's lockout of this host's address); set a new password or app password"
        )
    remote = WebDavRemote(settings, password, ctx)
    remote.session.transport.on_refused = lambda: refused.record(password)
    try:
        remote.connect()
    except BaseException:
        remote.close()
        raise
    return remote
