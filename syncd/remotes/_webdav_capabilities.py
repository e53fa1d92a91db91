"""What a Nextcloud server publishes about itself (OCS capabilities), read once and parsed.

``GET /ocs/v1.php/cloud/capabilities?format=json`` with ``OCS-APIRequest: true`` (without that
header Nextcloud answers 412 "CSRF check failed"). syncd reads the name rules
(``files.forbidden_filename*``), chunking and bulk upload (``dav``). Any failure means the
documented defaults: a server that publishes nothing still gets Nextcloud's own rules.

The answer is kept in the pair's state folder for :data:`MAX_AGE_S`, so that a sync with
nothing to do stays one request (the root PROPFIND) on most runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from syncd.errors import TransientError
from syncd.remotes._webdav_presets import NameRules
from syncd.remotes._webdav_state import JsonFile, JsonObject

if TYPE_CHECKING:
    from syncd.remotes._webdav_session import DavSession

log = logging.getLogger("syncd.remotes.webdav")

CAPABILITIES_PATH = "ocs/v1.php/cloud/capabilities"
MAX_AGE_S = 3600.0  # an admin's change of the name rules is seen within the hour
clock: Callable[[], float] = time.time  # tests replace it


@dataclass(frozen=True, slots=True)
class ServerCapabilities:
    """The parts of Nextcloud's capabilities syncd uses."""

    name_rules: NameRules = field(default_factory=NameRules)
    bulk_upload: bool = False  # dav.bulkupload "1.0": POST /remote.php/dav/bulk
    chunking: bool = True  # dav.chunking: chunked upload under /remote.php/dav/uploads/
    max_chunk_size: int | None = None  # files.chunked_upload.max_size (bytes)
    published: bool = False  # False: the defaults, the server told nothing

    @classmethod
    def defaults(cls) -> ServerCapabilities:
        """What syncd assumes of a Nextcloud that published nothing (documented defaults)."""
        return cls()


# -- the JSON shape (only what is read; unknown keys are ignored) ---------------------------


class _ChunkedUpload(msgspec.Struct):
    max_size: int | None = None


class _Files(msgspec.Struct):
    forbidden_filenames: list[str] | None = None
    forbidden_filename_basenames: list[str] | None = None
    forbidden_filename_characters: list[str] | None = None
    forbidden_filename_extensions: list[str] | None = None
    blacklisted_files: list[str] | None = None  # before Nextcloud 30
    chunked_upload: _ChunkedUpload | None = None


class _Dav(msgspec.Struct):
    chunking: str | None = None
    bulkupload: str | None = None


class _Capabilities(msgspec.Struct):
    files: _Files | None = None
    dav: _Dav | None = None


class _Data(msgspec.Struct):
    capabilities: _Capabilities


class _Ocs(msgspec.Struct):
    data: _Data


class _Answer(msgspec.Struct):
    ocs: _Ocs


def parse_capabilities(body: bytes) -> ServerCapabilities:
    """The capabilities in an OCS answer body. :raises ValueError: not such an answer."""
    try:
        caps = msgspec.json.decode(body, type=_Answer).ocs.data.capabilities
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not an OCS capabilities answer: {exc}") from exc
    return _from_struct(caps)


def _from_struct(caps: _Capabilities) -> ServerCapabilities:
    files = caps.files or _Files()
    defaults = NameRules()
    names = files.forbidden_filenames if files.forbidden_filenames is not None else files.blacklisted_files
    rules = NameRules(
        forbidden_names=_lowered(names, defaults.forbidden_names),
        forbidden_basenames=_lowered(files.forbidden_filename_basenames, defaults.forbidden_basenames),
        forbidden_characters=defaults.forbidden_characters
        if files.forbidden_filename_characters is None
        else frozenset(files.forbidden_filename_characters),
        forbidden_extensions=_lowered(files.forbidden_filename_extensions, defaults.forbidden_extensions),
    )
    dav = caps.dav or _Dav()
    return ServerCapabilities(
        name_rules=rules,
        bulk_upload=dav.bulkupload == "1.0",
        chunking=dav.chunking is not None,
        max_chunk_size=files.chunked_upload.max_size if files.chunked_upload else None,
        published=True,
    )


def _lowered(values: list[str] | None, default: frozenset[str]) -> frozenset[str]:
    return default if values is None else frozenset(v.lower() for v in values)


# -- reading them ----------------------------------------------------------------------------


def read_capabilities(session: DavSession) -> ServerCapabilities:
    """The server's capabilities: from the state folder when fresh, else one request.
    Never raises for a server that will not tell (the defaults then); credentials refused
    still raise FatalError (from the transport)."""
    user_root = session.user_root
    if user_root is None:
        return ServerCapabilities.defaults()
    cache = _CapabilitiesCache(session)
    cached = cache.get()
    if cached is not None:
        return cached
    transport = session.transport
    url = transport.absolute(user_root.server_path(CAPABILITIES_PATH)) + "?format=json"
    try:
        response = transport.request("GET", url, headers={"OCS-APIRequest": "true", "Accept": "application/json"})
        body = response.content if response.status_code == 200 else b""
        response.close()
        caps = parse_capabilities(body)
    except (TransientError, ValueError) as exc:
        log.info("%s: no capabilities from the server (%s); Nextcloud's default name rules apply", session.label, exc)
        return ServerCapabilities.defaults()
    cache.put(body)
    return caps


class _CapabilitiesCache:
    """The last capabilities answer, per server and user, with when it was read."""

    def __init__(self, session: DavSession) -> None:
        self._file = JsonFile(session.ctx.state_dir / "webdav-capabilities.json")
        self._key = f"{session.origin}|{session.settings.username}"

    def get(self) -> ServerCapabilities | None:
        item = self._file.load().get(self._key)
        if not isinstance(item, dict):
            return None
        read_at, body = item.get("read_at"), item.get("answer")
        if not isinstance(read_at, (int, float)) or not isinstance(body, str) or clock() - read_at > MAX_AGE_S:
            return None
        try:
            return parse_capabilities(body.encode())
        except ValueError:
            return None

    def put(self, body: bytes) -> None:
        # Only what is read is kept (the full answer is ~6 KB of things syncd ignores).
        caps = msgspec.json.decode(body, type=_Answer)
        answer = msgspec.json.encode(caps).decode()

        def change(data: JsonObject) -> None:
            data[self._key] = {"read_at": clock(), "answer": answer}

        self._file.update(change)
