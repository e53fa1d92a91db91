"""What every part of the webdav remote shares: one :class:`DavSession` per remote.

It holds the transport, the server's preset and capabilities, the folders known to exist,
and the helpers the listing, upload, chunked-upload, bulk-upload and trash modules build on:
URLs, PROPFIND, the mapping of a PROPFIND answer or a write answer to an :class:`Entry`, and
the mapping of error answers to syncd's error tree.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import requests

from syncd.errors import FatalError, NotFound, PreconditionFailed, TransientError, UnsafePath
from syncd.models import Entry
from syncd.paths import check_key
from syncd.remotes._webdav_capabilities import ServerCapabilities
from syncd.remotes._webdav_errors import http_error
from syncd.remotes._webdav_folders import FolderCache
from syncd.remotes._webdav_http import RetryPolicy, Transport, iter_body
from syncd.remotes._webdav_presets import META_VERSION, PRESETS, Preset
from syncd.remotes._webdav_xml import DavResource, IncompleteMultistatus, parse_multistatus, propfind_body
from syncd.remotes.settings import OpenContext
from syncd.times import clamp_ns

if TYPE_CHECKING:
    from syncd.remotes.webdav import Settings


@dataclass(frozen=True, slots=True)
class UserRoot:
    """Where a Nextcloud user's DAV endpoints are: ``<prefix>/remote.php/dav/files/<user>/``."""

    user: str
    prefix: str  # decoded server path before "/remote.php/" ("" or e.g. "/nextcloud")

    def dav_path(self, tail: str) -> str:
        """The decoded server path of ``/remote.php/dav/<tail>`` (uploads, trashbin, bulk)."""
        return f"{self.prefix}/remote.php/dav/{tail}"

    def server_path(self, tail: str) -> str:
        """The decoded server path of ``<tail>`` below Nextcloud's root (``ocs/...``, ``status.php``)."""
        return f"{self.prefix}/{tail}"


class DavSession:
    """One remote's connection state. Thread-safe where parallel writers meet it (the
    transport's pool, the folder cache); the preset is fixed once :meth:`detected` ran."""

    def __init__(self, settings: Settings, password: str, ctx: OpenContext) -> None:
        self.label = ctx.label
        self.settings = settings
        self.ctx = ctx
        self.transport = Transport(
            settings.url,
            settings.username,
            password,
            verify_tls=settings.verify_tls,
            timeout_s=settings.timeout,
            retry=RetryPolicy(attempts=settings.retries, max_wait_s=settings.max_retry_wait),
            label=ctx.label,
        )
        self.preset: Preset = PRESETS["generic" if settings.preset == "auto" else settings.preset]
        self.server = ServerCapabilities.defaults()
        self.user_root = nextcloud_user_root(self.transport.base_path)
        self.folders = FolderCache(self)
        self.no_question_mark = False  # WsgiDAV cannot MOVE to names holding "?"

    # -- what the bulk upload and others build on ---------------------------------------

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the server."""
        return self.transport.origin

    def created_this_run(self, folder: str) -> bool:
        """Whether this remote created ``folder`` (MKCOL answered 201) since it was opened."""
        return self.folders.created_this_run(folder)

    def entry_from_write(
        self, path: str, *, size: int, mtime_ns: int, etag: str, fileid: str | None, sha256: str | None
    ) -> Entry:
        """The entry a later listing shows for a file just written, from the write's answer:
        ``etag`` as the ETag header gave it (a PROPFIND's getetag is the same quoted value),
        ``fileid`` as OC-FileId or oc:fileid gave it (kept as the listing's numeric form),
        ``mtime_ns`` the whole seconds sent as X-OC-MTime."""
        return Entry(
            path=path,
            size=size,
            mtime_ns=mtime_ns // 1_000_000_000 * 1_000_000_000,
            etag=etag,
            content_hash=sha256,
            remote_id=numeric_fileid(fileid),
        )

    # -- URLs and keys -------------------------------------------------------------------

    def url(self, key: str, *, folder: bool = False) -> str:
        return self.transport.url(key, folder=folder)

    def key_of(self, path: str) -> str | None:
        """The key of a decoded href path, or None when it is outside the remote's root."""
        base = self.transport.base_path
        if not (path + "/").startswith(base) and path != base.rstrip("/"):
            return None
        return path[len(base) :].strip("/") if len(path) >= len(base) else ""

    def check_name(self, path: str) -> None:
        """:raises UnsafePath: a key that is unsafe, or that this server refuses."""
        problem = self.name_problem(path)
        if problem is not None:
            raise UnsafePath(path, problem)

    def name_problem(self, path: str) -> str | None:
        """Why this server cannot store a file at ``path`` (one line), or None. Pure: the
        rules were read when the remote connected."""
        try:
            check_key(path)
        except UnsafePath as exc:
            return exc.message
        if self.no_question_mark and "?" in path:
            return "this server (WsgiDAV) cannot rename files to names holding '?'"
        if self.preset.nextcloud_names:
            problem = self.server.name_rules.path_problem(path)
            return None if problem is None else f"Nextcloud refuses this name: {problem}"
        return None

    # -- PROPFIND ------------------------------------------------------------------------

    def propfind_request(
        self, key: str, depth: str, props: tuple[str, ...], *, folder: bool = False
    ) -> requests.Response | None:
        """A streamed PROPFIND. :returns: None on 404; the response for 207 and refusals of
        Depth infinity; :raises: the mapped error otherwise."""
        url = self.url(key, folder=folder)
        body = propfind_body(props)
        response = self.transport.request(
            "PROPFIND", url, headers={"Depth": depth, "Content-Type": "application/xml"}, body=lambda: body, stream=True
        )
        if response.status_code == 207:
            return response
        if response.status_code == 404:
            response.close()
            return None
        if depth == "infinity" and response.status_code in (400, 403, 501):
            return response
        self.raise_for(response, key or "/", "list", listing=True)

    def propfind_one(self, key: str, props: tuple[str, ...], *, folder: bool = False) -> DavResource | None:
        """What a Depth 0 PROPFIND says of ``key``, or None when it does not exist."""
        response = self.propfind_request(key, "0", props, folder=folder)
        if response is None:
            return None
        for got, resource in self.resources(response, key):
            if got == key.strip("/"):
                return resource
        return None

    def resources(self, response: requests.Response, folder: str) -> Iterator[tuple[str, DavResource]]:
        """(key, resource) for each answer of a multistatus, streamed.

        :raises TransientError: the answer was cut short (never a shorter listing).
        """
        try:
            for resource in parse_multistatus(iter_body(response)):
                key = self.key_of(resource.path)
                if key is not None:
                    yield key, resource
        except IncompleteMultistatus as exc:
            raise TransientError(f"{self.label}: listing of {folder or '/'} was cut short ({exc})") from exc
        finally:
            response.close()

    def entry(self, key: str, resource: DavResource) -> Entry:
        """The entry of a listed file."""
        size = resource.size or 0
        mtime_ns = resource.last_modified_ns or 0
        content_hash = sha256_of(resource.checksums)
        meta = parse_meta(resource.meta)
        # Our dead property is trusted only while the file is still the one we described.
        if meta is not None and meta[2] == size and meta[3] == mtime_ns:
            mtime_ns = meta[0]
            content_hash = meta[1] or content_hash
        mtime_ns = clamp_ns(mtime_ns)  # a server may say 9999-12-31
        etag = resource.etag or f'W/"syncd-{size}-{mtime_ns}"'
        return Entry(
            path=key, size=size, mtime_ns=mtime_ns, etag=etag, content_hash=content_hash, remote_id=resource.fileid
        )

    def stat(self, path: str) -> Entry:
        """:raises NotFound: no file at ``path``."""
        resource = self.propfind_one(path, self.preset.props)
        if resource is None or resource.is_dir:
            raise NotFound(path)
        return self.entry(path, resource)

    # -- MOVE, DELETE --------------------------------------------------------------------

    def move_request(self, src: str, dst: str, *, overwrite: bool, if_match: str | None) -> requests.Response:
        """MOVE ``src`` to ``dst`` (its parent is created again once if it vanished).

        :returns: the successful answer (closed). :raises NotFound: ``src`` is missing.
        :raises PreconditionFailed: :raises: the mapped error otherwise.
        """
        headers = {"Destination": self.url(dst), "Overwrite": "T" if overwrite else "F"}
        headers.update(self.source_condition(src, if_match))
        for attempt in range(2):  # a second try only after re-creating a vanished parent
            response = self.transport.request("MOVE", self.url(src), headers=headers)
            if response.status_code in (200, 201, 204):
                response.close()
                return response
            if response.status_code == 409 and attempt == 0:
                response.close()
                self.folders.forget(parent_key(dst))
                self.folders.ensure(parent_key(dst))
                continue
            if response.status_code == 404:
                response.close()
                raise NotFound(src)
            if response.status_code == 403 and self.propfind_one(src, ("d:resourcetype",)) is None:
                response.close()
                raise NotFound(src)  # rclone answers 403 for a missing source
            self.raise_for(response, dst, "move")
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def source_condition(self, src: str, if_match: str | None) -> dict[str, str]:
        """If-Match for the source of a MOVE/COPY. Sabre (Nextcloud) checks it against the
        source; Apache mod_dav checks it against the destination too (412 for a new name),
        so generic servers get a check by PROPFIND instead (not atomic: the capability says so).
        """
        if if_match is None:
            return {}
        if self.preset.conditional_writes:
            return {"If-Match": if_match}
        current = self.propfind_one(src, self.preset.props)
        if current is None:
            raise NotFound(src)
        if current.etag != if_match:
            raise PreconditionFailed(src)
        return {}

    def delete(self, path: str, *, if_match: str | None) -> None:
        """DELETE ``path`` (on Nextcloud it lands in the server's trash bin).

        :raises NotFound: :raises PreconditionFailed:
        """
        headers = {"If-Match": if_match} if if_match else {}
        response = self.transport.request("DELETE", self.url(path), headers=headers)
        if response.status_code not in (200, 204):
            self.raise_for(response, path, "delete")
        response.close()

    def own_leftover(self, key: str) -> bool:
        """Whether ``key`` is a temp upload of this pair left by a run that died: under the
        pair's lock no upload of the pair is in flight (see ``OpenContext.temp_prefix``)."""
        return self.ctx.exclusive and posixpath.basename(key).startswith(self.ctx.temp_prefix)

    def delete_quietly(self, key: str) -> None:
        """DELETE, for cleanup: a failure is left for a later cleanup."""
        with contextlib.suppress(TransientError, FatalError):
            self.transport.request("DELETE", self.url(key)).close()

    def raise_for(self, response: requests.Response, path: str, what: str, *, listing: bool = False) -> NoReturn:
        """Map an unexpected HTTP answer to syncd's error tree (see :func:`http_error`)."""
        if response.status_code == 409:
            self.folders.forget("")  # a parent we believed in is gone
        raise http_error(response, path, what, label=self.label, listing=listing)


def write_answer(
    session: DavSession, path: str, response: requests.Response, *, size: int, mtime_ns: int, sha256: str
) -> Entry | None:
    """The entry of a file just written, from Nextcloud's answer to its PUT or final MOVE
    (``ETag``, ``OC-FileId``, ``X-OC-MTime: accepted``), or None when the answer lacks any of
    them (the caller then asks with a PROPFIND)."""
    etag = response.headers.get("ETag") or response.headers.get("OC-ETag")
    fileid = response.headers.get("OC-FileId")
    if not etag or not fileid or response.headers.get("X-OC-MTime") != "accepted":
        return None
    return session.entry_from_write(path, size=size, mtime_ns=mtime_ns, etag=etag, fileid=fileid, sha256=sha256)


def nextcloud_user_root(base_path: str) -> UserRoot | None:
    """The user's root for a base path ``<prefix>/remote.php/dav/files/<user>/...``."""
    match = re.match(r"^(.*?)/remote\.php/dav/files/([^/]+)/", base_path)
    if match is None:
        return None
    return UserRoot(user=match.group(2), prefix=match.group(1))


def parent_key(key: str) -> str:
    return key.rstrip("/").rpartition("/")[0]


def numeric_fileid(fileid: str | None) -> str | None:
    """Nextcloud's fileid as PROPFIND's ``oc:fileid`` lists it ("7547"), from that form or
    from OC-FileId / ``oc:id`` ("00007547ocqb4w2jwwq5": ``%08d`` + the instance id, which
    always starts with "oc")."""
    if fileid is None:
        return None
    match = re.match(r"\d+", fileid)
    if match is None:
        return fileid
    return str(int(match.group()))


def sha256_of(checksums: tuple[str, ...]) -> str | None:
    """The SHA-256 among ``oc:checksums`` tokens ("SHA256:<hex>"), lowercased."""
    for token in checksums:
        algo, _, value = token.partition(":")
        if algo.upper() == "SHA256" and re.fullmatch(r"[0-9a-fA-F]{64}", value):
            return value.lower()
    return None


def parse_meta(text: str | None) -> tuple[int, str | None, int, int] | None:
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
