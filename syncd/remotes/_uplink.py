"""Thin, typed ctypes binding over libuplink (the uplink-c C ABI).

Only what syncd needs: access grants, projects, buckets, and streaming
object upload / download / stat / list / delete / move. Every C result is
released with its ``uplink_free_*`` function before the Python call returns
(or, for long-lived handles, on ``close()``), and data moves in bounded
chunks: nothing here ever holds a whole object in memory.

The library is found at ``$SYNCD_LIBUPLINK``, else at
``packaging/libuplink/build/libuplink.so`` in the source tree (our build),
else inside an installed ``storj-uplink`` wheel (uplink-c as Storj builds
it, x86-64 only; it lacks our ``syncd_*`` extensions, among them the
deadlines that bound every call that waits on the network). Errors from
the library are raised as :class:`UplinkError` subclasses; the Storj remote
maps them onto syncd's own error tree.

This module loads the library and holds access grants; the rest lives in
``_uplink_errors`` (the error classes), ``_uplink_abi`` (C structures, function
signatures, C-to-Python values) and ``_uplink_project`` (projects, uploads,
downloads). Callers import everything from here.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Final, Self

from syncd.remotes._uplink_abi import (
    ENV_LIBRARY,
    INSTALL_HINT,
    BucketInfo,
    ObjectInfo,
    _Api,
    _Config,
    _dec,
    _enc,
    _error_copy,
    _milliseconds,
)
from syncd.remotes._uplink_errors import (
    BandwidthLimitExceededError,
    BucketAlreadyExistsError,
    BucketNameInvalidError,
    BucketNotEmptyError,
    BucketNotFoundError,
    CanceledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidAccessError,
    InvalidHandleError,
    LimitExceededError,
    NotFoundError,
    ObjectKeyInvalidError,
    ObjectNotFoundError,
    PermissionDeniedError,
    SegmentsLimitExceededError,
    StorageLimitExceededError,
    TooManyRequestsError,
    UplinkError,
    UplinkLibraryError,
    UploadDoneError,
)
from syncd.remotes._uplink_project import DEFAULT_CHUNK_SIZE, Download, Project, Upload

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Access",
    "BandwidthLimitExceededError",
    "BucketAlreadyExistsError",
    "BucketInfo",
    "BucketNameInvalidError",
    "BucketNotEmptyError",
    "BucketNotFoundError",
    "CanceledError",
    "DeadlineExceededError",
    "Download",
    "FailedPreconditionError",
    "InternalError",
    "InvalidAccessError",
    "InvalidHandleError",
    "LimitExceededError",
    "NotFoundError",
    "ObjectInfo",
    "ObjectKeyInvalidError",
    "ObjectNotFoundError",
    "PermissionDeniedError",
    "Project",
    "SegmentsLimitExceededError",
    "StorageLimitExceededError",
    "TooManyRequestsError",
    "UplinkError",
    "UplinkLibraryError",
    "Upload",
    "UploadDoneError",
    "library_path",
    "load_library",
]

_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_BUILT_LIBRARY: Final = _REPO_ROOT / "packaging" / "libuplink" / "build" / "libuplink.so"


class _Loaded:
    """The process-wide loaded library (a holder, so no `global` is needed)."""

    api: _Api | None = None
    lock = threading.Lock()


def library_path() -> Path:
    """Where libuplink is loaded from: $SYNCD_LIBUPLINK, else our build, else the wheel's."""
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return Path(env)
    if _BUILT_LIBRARY.is_file():
        return _BUILT_LIBRARY
    return _wheel_library() or _BUILT_LIBRARY


def _wheel_library() -> Path | None:
    """libuplink.so shipped in the ``storj-uplink`` wheel, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("storj_uplink")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "libuplink.so"
    return candidate if candidate.is_file() else None


def load_library() -> _Api:
    """Load libuplink once per process (thread-safe)."""
    with _Loaded.lock:
        if _Loaded.api is None:
            path = library_path()
            if not path.is_file():
                raise UplinkLibraryError(f"libuplink not found at {path}: {INSTALL_HINT}")
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise UplinkLibraryError(f"cannot load libuplink from {path}: {exc}: {INSTALL_HINT}") from exc
            _Loaded.api = _Api(lib, path)
        return _Loaded.api


# --------------------------------------------------------------------------- access


class Access:
    """A parsed access grant. Cheap; close() releases it (or the GC does)."""

    def __init__(self, api: _Api, result: Any) -> None:
        self._api = api
        self._result = result
        self._handle = result.access
        self._finalizer = weakref.finalize(self, api.free_access_result, result)

    @classmethod
    def _from_result(cls, api: _Api, result: Any, *, parsing: bool) -> Access:
        exc = _error_copy(result.error)
        if exc is None:
            return cls(api, result)
        api.free_access_result(result)
        # uplink-c has no codes for a malformed grant or API key (both come
        # as "internal"): name them clearly, they are configuration errors.
        if isinstance(exc, InternalError) and exc.code == InternalError.code:
            if parsing:
                raise InvalidAccessError(f"malformed access grant: {exc.message}") from None
            if "api key" in exc.message.lower():
                raise InvalidAccessError(f"invalid API key: {exc.message}") from None
        raise exc

    @classmethod
    def parse(cls, serialized: str) -> Access:
        api = load_library()
        serialized = serialized.strip()
        if not serialized:
            raise InvalidAccessError("malformed access grant: empty string")
        return cls._from_result(api, api.parse_access(_enc(serialized)), parsing=True)

    @classmethod
    def request(cls, satellite_address: str, api_key: str, passphrase: str, *, timeout: float | None = None) -> Access:
        """Derive an access grant from satellite + API key + passphrase (asks the satellite).

        :param timeout: seconds the satellite has to answer (our libuplink build; a
            stock uplink-c library waits as long as the connection stays open, ours 60 s).
        :raises DeadlineExceededError: no answer within ``timeout``.
        """
        api = load_library()
        args = (_enc(satellite_address), _enc(api_key), _enc(passphrase))
        if timeout is not None and api.request_access_within is not None:
            result = api.request_access_within(*args, _milliseconds(timeout))
        else:
            result = api.request_access_with_passphrase(*args)
        return cls._from_result(api, result, parsing=False)

    @property
    def satellite_address(self) -> str:
        return self._string(self._api.access_satellite_address(self._live()))

    def serialize(self) -> str:
        """The grant as text (it carries the encryption key: a secret)."""
        return self._string(self._api.access_serialize(self._live()))

    def _string(self, result: Any) -> str:
        try:
            exc = _error_copy(result.error)
            if exc is not None:
                raise exc
            return _dec(result.string or b"")
        finally:
            self._api.free_string_result(result)

    def open_project(
        self,
        *,
        user_agent: str,
        dial_timeout: float | None = None,
        segments_in_flight: int = 0,
        timeout: float | None = None,
        min_rate: int = 0,
    ) -> Project:
        """Open the project. ``segments_in_flight``: at most that many segments (up to 64 MiB
        each) of one upload are held in memory at once; 0, or a library without our
        extension, keeps uplink's default (up to 10).

        ``timeout`` (seconds) bounds every call of the project that may wait on the
        network, plus, for a call that moves data, the time its bytes need at ``min_rate``
        bytes per second; a call past its deadline raises :class:`DeadlineExceededError`
        and cancels the upload, download or listing it belongs to. It needs our libuplink
        build: with another library calls stay unbounded and ``Project.bounded`` is False.
        """
        config = _Config(
            user_agent=_enc(user_agent),
            dial_timeout_milliseconds=int(dial_timeout * 1000) if dial_timeout else 0,
            temp_directory=None,
        )
        if segments_in_flight > 0 and self._api.config_open_project_tuned is not None:
            result = self._api.config_open_project_tuned(config, self._live(), segments_in_flight)
        else:
            result = self._api.config_open_project(config, self._live())
        exc = _error_copy(result.error)
        if exc is not None:
            self._api.free_project_result(result)
            raise exc
        project = Project(self._api, result)
        if timeout is not None:
            try:
                project.set_limits(timeout, min_rate)
            except BaseException:
                project.close()
                raise
        return project

    def _live(self) -> Any:
        if not self._finalizer.alive:
            raise InvalidHandleError("access is closed")
        return self._handle

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
