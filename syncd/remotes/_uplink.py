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
the library are raised as :class:`UplinkError` subclasses defined here; the
Storj remote maps them onto syncd's own error tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import threading
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

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

# 256 KiB: large enough to amortise the ctypes call, small enough to bound memory.
DEFAULT_CHUNK_SIZE: Final = 256 * 1024

_MAX_EMPTY_READS: Final = 1000
_EOF: Final = -1  # stdio EOF: uplink-c's "end of download stream" code
_ENV_LIBRARY: Final = "SYNCD_LIBUPLINK"
_INSTALL_HINT: Final = (
    "run `bash packaging/libuplink/build.sh`, `pip install storj-uplink==0.2.0` (x86-64), "
    f"or set {_ENV_LIBRARY}=/path/to/libuplink.so"
)
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_BUILT_LIBRARY: Final = _REPO_ROOT / "packaging" / "libuplink" / "build" / "libuplink.so"


# --------------------------------------------------------------------------- errors


class UplinkLibraryError(OSError):
    """libuplink.so could not be found or loaded."""


class UplinkError(Exception):
    """An error reported by libuplink; ``code`` is the uplink-c error code."""

    code: int = 0x02
    name: str = "internal"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"uplink {self.name} (0x{self.code:02x}): {self.message}"


class InternalError(UplinkError):
    """Anything uplink-c does not classify: network failures, dial errors, bugs."""

    code, name = 0x02, "internal"


class CanceledError(UplinkError):
    code, name = 0x03, "canceled"


class InvalidHandleError(UplinkError):
    code, name = 0x04, "invalid_handle"


class LimitExceededError(UplinkError):
    """Base of the rate and quota errors: retrying later may help."""

    name = "limit_exceeded"


class TooManyRequestsError(LimitExceededError):
    code, name = 0x05, "too_many_requests"


class BandwidthLimitExceededError(LimitExceededError):
    code, name = 0x06, "bandwidth_limit_exceeded"


class StorageLimitExceededError(LimitExceededError):
    code, name = 0x07, "storage_limit_exceeded"


class SegmentsLimitExceededError(LimitExceededError):
    code, name = 0x08, "segments_limit_exceeded"


class PermissionDeniedError(UplinkError):
    """The access grant or API key does not allow this (or is unknown/revoked)."""

    code, name = 0x09, "permission_denied"


class BucketNameInvalidError(UplinkError):
    code, name = 0x10, "bucket_name_invalid"


class BucketAlreadyExistsError(UplinkError):
    code, name = 0x11, "bucket_already_exists"


class BucketNotEmptyError(UplinkError):
    code, name = 0x12, "bucket_not_empty"


class NotFoundError(UplinkError):
    """Base of bucket-not-found and object-not-found."""

    name = "not_found"


class BucketNotFoundError(NotFoundError):
    code, name = 0x13, "bucket_not_found"


class ObjectKeyInvalidError(UplinkError):
    code, name = 0x20, "object_key_invalid"


class ObjectNotFoundError(NotFoundError):
    code, name = 0x21, "object_not_found"


class UploadDoneError(UplinkError):
    code, name = 0x22, "upload_done"


class FailedPreconditionError(UplinkError):
    """A conditional write found its condition false (syncd extension, not uplink-c)."""

    code, name = 0x1001, "failed_precondition"


class DeadlineExceededError(UplinkError):
    """A call did not return within the deadline of its project (syncd extension, not
    uplink-c): the satellite or a node kept the connection open without answering."""

    code, name = 0x1002, "timeout"


class InvalidAccessError(UplinkError):
    """A serialized access grant that cannot be parsed (raised by Access.parse)."""

    name = "invalid_access"


_ERRORS_BY_CODE: Final[Mapping[int, type[UplinkError]]] = {
    cls.code: cls
    for cls in (
        InternalError,
        CanceledError,
        InvalidHandleError,
        TooManyRequestsError,
        BandwidthLimitExceededError,
        StorageLimitExceededError,
        SegmentsLimitExceededError,
        PermissionDeniedError,
        BucketNameInvalidError,
        BucketAlreadyExistsError,
        BucketNotEmptyError,
        BucketNotFoundError,
        ObjectKeyInvalidError,
        ObjectNotFoundError,
        UploadDoneError,
        FailedPreconditionError,
        DeadlineExceededError,
    )
}


def _error_for(code: int, message: str) -> UplinkError:
    cls = _ERRORS_BY_CODE.get(code)
    if cls is None:  # a code from a newer library: keep it, classify as internal
        if code == _EOF and not message:
            # uplink-c reports any io.EOF so, without a message; outside a download's
            # end it is a connection that closed under a call.
            message = "the connection closed (EOF)"
        return InternalError(message, code=code)
    return cls(message)


# --------------------------------------------------------------------------- C types


class _Handle(ctypes.Structure):
    _fields_ = [("_handle", ctypes.c_size_t)]


class _Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int32), ("message", ctypes.c_char_p)]


class _Config(ctypes.Structure):
    _fields_ = [
        ("user_agent", ctypes.c_char_p),
        ("dial_timeout_milliseconds", ctypes.c_int32),
        ("temp_directory", ctypes.c_char_p),
    ]


class _Bucket(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("created", ctypes.c_int64)]


class _SystemMetadata(ctypes.Structure):
    _fields_ = [
        ("created", ctypes.c_int64),
        ("expires", ctypes.c_int64),
        ("content_length", ctypes.c_int64),
    ]


class _CustomMetadataEntry(ctypes.Structure):
    # POINTER(c_char), not c_char_p: keys and values are length-delimited bytes.
    _fields_ = [
        ("key", ctypes.POINTER(ctypes.c_char)),
        ("key_length", ctypes.c_size_t),
        ("value", ctypes.POINTER(ctypes.c_char)),
        ("value_length", ctypes.c_size_t),
    ]


class _CustomMetadata(ctypes.Structure):
    _fields_ = [("entries", ctypes.POINTER(_CustomMetadataEntry)), ("count", ctypes.c_size_t)]


class _Object(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_char_p),
        ("is_prefix", ctypes.c_bool),
        ("system", _SystemMetadata),
        ("custom", _CustomMetadata),
    ]


class _UploadOptions(ctypes.Structure):
    _fields_ = [("expires", ctypes.c_int64)]


class _DownloadOptions(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_int64), ("length", ctypes.c_int64)]


class _ListObjectsOptions(ctypes.Structure):
    _fields_ = [
        ("prefix", ctypes.c_char_p),
        ("cursor", ctypes.c_char_p),
        ("recursive", ctypes.c_bool),
        ("system", ctypes.c_bool),
        ("custom", ctypes.c_bool),
    ]


_HandleP = ctypes.POINTER(_Handle)
_ErrorP = ctypes.POINTER(_Error)
_ObjectP = ctypes.POINTER(_Object)


def _result(name: str, value_name: str, value_type: Any) -> type[ctypes.Structure]:
    # Every uplink-c result is {value; UplinkError *error}.
    return type(name, (ctypes.Structure,), {"_fields_": [(value_name, value_type), ("error", _ErrorP)]})


_AccessResult = _result("_AccessResult", "access", _HandleP)
_ProjectResult = _result("_ProjectResult", "project", _HandleP)
_BucketResult = _result("_BucketResult", "bucket", ctypes.POINTER(_Bucket))
_ObjectResult = _result("_ObjectResult", "object", _ObjectP)
_UploadResult = _result("_UploadResult", "upload", _HandleP)
_DownloadResult = _result("_DownloadResult", "download", _HandleP)
_WriteResult = _result("_WriteResult", "bytes_written", ctypes.c_size_t)
_ReadResult = _result("_ReadResult", "bytes_read", ctypes.c_size_t)
_StringResult = _result("_StringResult", "string", ctypes.c_char_p)

_s = ctypes.c_char_p  # shorthand for the many `const char *` arguments


class _Api:
    """The C functions, with argument and result types declared."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        f = self._bind
        # access
        self.parse_access = f("uplink_parse_access", _AccessResult, _s)
        self.request_access_with_passphrase = f("uplink_request_access_with_passphrase", _AccessResult, _s, _s, _s)
        self.access_satellite_address = f("uplink_access_satellite_address", _StringResult, _HandleP)
        self.access_serialize = f("uplink_access_serialize", _StringResult, _HandleP)
        self.free_access_result = f("uplink_free_access_result", None, _AccessResult)
        self.free_string_result = f("uplink_free_string_result", None, _StringResult)
        self.free_error = f("uplink_free_error", None, _ErrorP)
        # project and buckets
        self.config_open_project = f("uplink_config_open_project", _ProjectResult, _Config, _HandleP)
        self.close_project = f("uplink_close_project", _ErrorP, _HandleP)
        self.free_project_result = f("uplink_free_project_result", None, _ProjectResult)
        self.stat_bucket = f("uplink_stat_bucket", _BucketResult, _HandleP, _s)
        self.ensure_bucket = f("uplink_ensure_bucket", _BucketResult, _HandleP, _s)
        self.free_bucket_result = f("uplink_free_bucket_result", None, _BucketResult)
        # objects
        self.stat_object = f("uplink_stat_object", _ObjectResult, _HandleP, _s, _s)
        self.delete_object = f("uplink_delete_object", _ObjectResult, _HandleP, _s, _s)
        self.free_object_result = f("uplink_free_object_result", None, _ObjectResult)
        self.free_object = f("uplink_free_object", None, _ObjectP)
        self.move_object = f("uplink_move_object", _ErrorP, _HandleP, _s, _s, _s, _s, ctypes.c_void_p)
        self.copy_object = f("uplink_copy_object", _ObjectResult, _HandleP, _s, _s, _s, _s, ctypes.c_void_p)
        self.list_objects = f("uplink_list_objects", _HandleP, _HandleP, _s, ctypes.POINTER(_ListObjectsOptions))
        self.object_iterator_next = f("uplink_object_iterator_next", ctypes.c_bool, _HandleP)
        self.object_iterator_item = f("uplink_object_iterator_item", _ObjectP, _HandleP)
        self.object_iterator_err = f("uplink_object_iterator_err", _ErrorP, _HandleP)
        self.free_object_iterator = f("uplink_free_object_iterator", None, _HandleP)
        # upload
        self.upload_object = f("uplink_upload_object", _UploadResult, _HandleP, _s, _s, ctypes.POINTER(_UploadOptions))
        self.upload_write = f("uplink_upload_write", _WriteResult, _HandleP, ctypes.c_void_p, ctypes.c_size_t)
        self.upload_set_custom_metadata = f("uplink_upload_set_custom_metadata", _ErrorP, _HandleP, _CustomMetadata)
        self.upload_commit = f("uplink_upload_commit", _ErrorP, _HandleP)
        self.upload_abort = f("uplink_upload_abort", _ErrorP, _HandleP)
        self.upload_info = f("uplink_upload_info", _ObjectResult, _HandleP)
        self.free_write_result = f("uplink_free_write_result", None, _WriteResult)
        self.free_upload_result = f("uplink_free_upload_result", None, _UploadResult)
        # syncd extensions, absent from uplink-c builds: None there
        self.upload_object_if_absent = self._bind_optional(
            "syncd_upload_object_if_absent", _UploadResult, _HandleP, _s, _s, ctypes.POINTER(_UploadOptions)
        )
        self.config_open_project_tuned = self._bind_optional(
            "syncd_config_open_project", _ProjectResult, _Config, _HandleP, ctypes.c_int32
        )
        self.project_set_limits = self._bind_optional(
            "syncd_project_set_limits", _ErrorP, _HandleP, ctypes.c_int64, ctypes.c_int64
        )
        self.request_access_within = self._bind_optional(
            "syncd_request_access_with_passphrase", _AccessResult, _s, _s, _s, ctypes.c_int64
        )
        # download
        self.download_object = f(
            "uplink_download_object", _DownloadResult, _HandleP, _s, _s, ctypes.POINTER(_DownloadOptions)
        )
        self.download_read = f("uplink_download_read", _ReadResult, _HandleP, ctypes.c_void_p, ctypes.c_size_t)
        self.download_info = f("uplink_download_info", _ObjectResult, _HandleP)
        self.close_download = f("uplink_close_download", _ErrorP, _HandleP)
        self.free_read_result = f("uplink_free_read_result", None, _ReadResult)
        self.free_download_result = f("uplink_free_download_result", None, _DownloadResult)

    def _bind(self, name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
        try:
            fn = getattr(self._lib, name)
        except AttributeError as exc:
            raise UplinkLibraryError(
                f"{library_path()} is not a libuplink with the uplink-c API (it lacks {name}): {_INSTALL_HINT}"
            ) from exc
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn  # type: ignore[no-any-return]

    def _bind_optional(self, name: str, restype: Any, *argtypes: Any) -> Callable[..., Any] | None:
        return self._bind(name, restype, *argtypes) if hasattr(self._lib, name) else None

    # -- error plumbing

    def take_error(self, err: Any) -> UplinkError | None:
        """Convert a C ``UplinkError *`` to an exception and free it (NULL -> None)."""
        if not err:
            return None
        code = int(err.contents.code)
        raw = err.contents.message
        message = raw.decode("utf-8", "replace") if raw else ""
        self.free_error(err)
        return _error_for(code, message)

    def check(self, err: Any) -> None:
        exc = self.take_error(err)
        if exc is not None:
            raise exc


class _Loaded:
    """The process-wide loaded library (a holder, so no `global` is needed)."""

    api: _Api | None = None
    lock = threading.Lock()


def library_path() -> Path:
    """Where libuplink is loaded from: $SYNCD_LIBUPLINK, else our build, else the wheel's."""
    env = os.environ.get(_ENV_LIBRARY)
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
                raise UplinkLibraryError(f"libuplink not found at {path}: {_INSTALL_HINT}")
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise UplinkLibraryError(f"cannot load libuplink from {path}: {exc}: {_INSTALL_HINT}") from exc
            _Loaded.api = _Api(lib)
        return _Loaded.api


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object (or, in a non-recursive listing, a prefix) as uplink reports it."""

    key: str
    is_prefix: bool
    created: datetime | None
    expires: datetime | None
    content_length: int
    custom: Mapping[str, str] = field(default_factory=dict)


def _milliseconds(seconds: float) -> int:
    # At least 1: 0 would mean "no deadline" to the library.
    return max(1, round(seconds * 1000))


def _enc(text: str) -> bytes:
    # surrogateescape: keys that came from the library as undecodable bytes
    # round-trip unchanged.
    return text.encode("utf-8", "surrogateescape")


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _time(unix: int) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix > 0 else None


def _object_from_c(obj: Any) -> ObjectInfo:
    custom: dict[str, str] = {}
    meta = obj.custom
    for i in range(int(meta.count)):
        entry = meta.entries[i]
        key = ctypes.string_at(entry.key, entry.key_length) if entry.key_length else b""
        value = ctypes.string_at(entry.value, entry.value_length) if entry.value_length else b""
        custom[_dec(key)] = _dec(value)
    return ObjectInfo(
        key=_dec(obj.key or b""),
        is_prefix=bool(obj.is_prefix),
        created=_time(int(obj.system.created)),
        expires=_time(int(obj.system.expires)),
        content_length=int(obj.system.content_length),
        custom=custom,
    )


def _take_object_result(api: _Api, result: Any) -> ObjectInfo:
    """Convert an UplinkObjectResult, always freeing it, raising its error."""
    try:
        exc = _error_copy(result.error)
        if exc is not None:
            raise exc
        return _object_from_c(result.object.contents)
    finally:
        api.free_object_result(result)


def _error_copy(err: Any) -> UplinkError | None:
    """Read a C error without freeing it (it belongs to a result struct)."""
    if not err:
        return None
    raw = err.contents.message
    return _error_for(int(err.contents.code), raw.decode("utf-8", "replace") if raw else "")


def _custom_to_c(custom: Mapping[str, str]) -> tuple[Any, list[Any]]:
    """Build a C UplinkCustomMetadata; the list keeps its buffers alive."""
    entries = (_CustomMetadataEntry * len(custom))()
    keep: list[Any] = [entries]
    for i, (key, value) in enumerate(custom.items()):
        kb, vb = _enc(key), _enc(value)
        kbuf, vbuf = ctypes.create_string_buffer(kb, len(kb)), ctypes.create_string_buffer(vb, len(vb))
        keep += [kbuf, vbuf]
        entries[i].key = ctypes.cast(kbuf, ctypes.POINTER(ctypes.c_char))
        entries[i].key_length = len(kb)
        entries[i].value = ctypes.cast(vbuf, ctypes.POINTER(ctypes.c_char))
        entries[i].value_length = len(vb)
    meta = _CustomMetadata(ctypes.cast(entries, ctypes.POINTER(_CustomMetadataEntry)), len(custom))
    return meta, keep


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


# --------------------------------------------------------------------------- project


class Project:
    """An open project: all object operations go through it. Thread-safe."""

    def __init__(self, api: _Api, result: Any) -> None:
        self._api = api
        self._handle = result.project
        self._bounded = False
        self._finalizer = weakref.finalize(self, _close_project, api, result)

    def close(self) -> None:
        """Close the project's connections and free it; idempotent."""
        if self._finalizer.alive:
            err = self._finalizer()
            if err is not None:
                raise err

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> Any:
        if not self._finalizer.alive:
            raise InvalidHandleError("project is closed")
        return self._handle

    @property
    def bounded(self) -> bool:
        """Whether the project's calls run under deadlines (see :meth:`set_limits`)."""
        return self._bounded

    def set_limits(self, timeout: float, min_rate: int = 0) -> None:
        """Bound the project's calls (see :meth:`Access.open_project`); a no-op with a
        library that lacks our extension (``bounded`` stays False)."""
        if timeout <= 0 or min_rate < 0:
            raise ValueError("timeout must be positive and min_rate not negative")
        if self._api.project_set_limits is None:
            return
        self._api.check(self._api.project_set_limits(self._live(), _milliseconds(timeout), min_rate))
        self._bounded = True

    # -- buckets

    def _bucket(self, fn: Callable[..., Any], name: str) -> BucketInfo:
        result = fn(self._live(), _enc(name))
        try:
            exc = _error_copy(result.error)
            if exc is not None:
                raise exc
            bucket = result.bucket.contents
            return BucketInfo(name=_dec(bucket.name or b""), created=_time(int(bucket.created)))
        finally:
            self._api.free_bucket_result(result)

    def stat_bucket(self, name: str) -> BucketInfo:
        return self._bucket(self._api.stat_bucket, name)

    def ensure_bucket(self, name: str) -> BucketInfo:
        return self._bucket(self._api.ensure_bucket, name)

    # -- objects

    def stat_object(self, bucket: str, key: str) -> ObjectInfo:
        return _take_object_result(self._api, self._api.stat_object(self._live(), _enc(bucket), _enc(key)))

    def delete_object(self, bucket: str, key: str) -> ObjectInfo | None:
        """Delete; returns what was deleted, None when nothing was there."""
        result = self._api.delete_object(self._live(), _enc(bucket), _enc(key))
        if not result.error and not result.object:
            self._api.free_object_result(result)
            return None
        return _take_object_result(self._api, result)

    def move_object(self, bucket: str, key: str, new_bucket: str, new_key: str) -> None:
        """Server-side move (no data transfer)."""
        err = self._api.move_object(self._live(), _enc(bucket), _enc(key), _enc(new_bucket), _enc(new_key), None)
        self._api.check(err)

    def copy_object(self, bucket: str, key: str, new_bucket: str, new_key: str) -> ObjectInfo:
        """Server-side copy (no data transfer); returns the new object."""
        result = self._api.copy_object(self._live(), _enc(bucket), _enc(key), _enc(new_bucket), _enc(new_key), None)
        return _take_object_result(self._api, result)

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        recursive: bool = True,
        system: bool = True,
        custom: bool = True,
        cursor: str = "",
    ) -> Generator[ObjectInfo]:
        """Stream a listing; the C iterator is freed when the generator ends or is closed."""
        options = _ListObjectsOptions(
            prefix=_enc(prefix) if prefix else None,
            cursor=_enc(cursor) if cursor else None,
            recursive=recursive,
            system=system,
            custom=custom,
        )
        it = self._api.list_objects(self._live(), _enc(bucket), ctypes.byref(options))
        try:
            while self._api.object_iterator_next(it):
                item = self._api.object_iterator_item(it)
                if not item:
                    continue
                try:
                    info = _object_from_c(item.contents)
                finally:
                    self._api.free_object(item)
                yield info
            self._api.check(self._api.object_iterator_err(it))
        finally:
            self._api.free_object_iterator(it)

    # -- transfers

    @property
    def conditional_create(self) -> bool:
        """Whether ``open_upload(if_absent=True)`` is available (our libuplink build)."""
        return self._api.upload_object_if_absent is not None

    def open_upload(self, bucket: str, key: str, *, expires: datetime | None = None, if_absent: bool = False) -> Upload:
        """Start an upload. ``if_absent``: the satellite refuses the commit
        (:class:`FailedPreconditionError`) when ``key`` exists by then."""
        options = _UploadOptions(expires=int(expires.timestamp()) if expires else 0)
        start = self._api.upload_object
        if if_absent:
            if self._api.upload_object_if_absent is None:
                raise UplinkLibraryError(f"{library_path()} has no conditional uploads (not syncd's libuplink build)")
            start = self._api.upload_object_if_absent
        result = start(self._live(), _enc(bucket), _enc(key), ctypes.byref(options))
        exc = _error_copy(result.error)
        if exc is not None:
            self._api.free_upload_result(result)
            raise exc
        return Upload(self._api, result)

    def upload(
        self,
        bucket: str,
        key: str,
        source: BinaryIO,
        *,
        custom: Mapping[str, str] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ObjectInfo:
        """Stream ``source`` to a new object version; visible only after commit."""
        with self.open_upload(bucket, key) as upload:
            upload.write_from(source, chunk_size=chunk_size)
            if custom:
                upload.set_custom_metadata(custom)
            return upload.commit()

    def open_download(self, bucket: str, key: str, *, offset: int = 0, length: int = -1) -> Download:
        """A raw binary stream of [offset, offset+length) (length -1: to the end)."""
        options = _DownloadOptions(offset=offset, length=length)
        result = self._api.download_object(self._live(), _enc(bucket), _enc(key), ctypes.byref(options))
        exc = _error_copy(result.error)
        if exc is not None:
            self._api.free_download_result(result)
            raise exc
        return Download(self._api, result)


def _close_project(api: _Api, result: Any) -> UplinkError | None:
    err = api.take_error(api.close_project(result.project))
    api.free_project_result(result)
    return err


# --------------------------------------------------------------------------- upload


class Upload:
    """One object upload. As a context manager, it aborts unless committed."""

    def __init__(self, api: _Api, result: Any) -> None:
        self._api = api
        self._handle = result.upload
        self._done = False
        self._finalizer = weakref.finalize(self, api.free_upload_result, result)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write all of ``data``; returns its length."""
        view = memoryview(data).cast("B")
        if view.readonly and not isinstance(data, bytes):
            # ctypes cannot address other read-only buffers: copy (chunks are small).
            view = memoryview(bytearray(view))
        total = len(view)
        pos = 0
        while pos < total:
            chunk = view[pos:]
            # bytes: addressed in place (no copy); writable buffers: through from_buffer.
            ptr = _address(data, pos) if isinstance(data, bytes) else ctypes.addressof(ctypes.c_char.from_buffer(chunk))
            result = self._api.upload_write(self._live(), ptr, len(chunk))
            try:
                written = int(result.bytes_written)
                exc = _error_copy(result.error)
            finally:
                self._api.free_write_result(result)
            pos += written
            if exc is not None:
                raise exc
            if written == 0:
                raise InternalError("upload write made no progress")
        return total

    def write_from(self, source: BinaryIO, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
        """Copy ``source`` to the upload in chunks through one reused buffer."""
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        total = 0
        while True:
            n = _readinto(source, view)
            if n == 0:
                return total
            self.write(view[:n])
            total += n

    def set_custom_metadata(self, custom: Mapping[str, str]) -> None:
        meta, keep = _custom_to_c(custom)
        err = self._api.upload_set_custom_metadata(self._live(), meta)
        del keep  # the library copied the metadata during the call
        self._api.check(err)

    def commit(self) -> ObjectInfo:
        """Make the object visible; returns its final info."""
        # A commit ends the upload even when it fails: uplink refuses a later abort.
        self._done = True
        self._api.check(self._api.upload_commit(self._live()))
        return _take_object_result(self._api, self._api.upload_info(self._live()))

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._api.check(self._api.upload_abort(self._live()))

    def close(self) -> None:
        """Abort if not committed, then free the upload; idempotent."""
        if not self._finalizer.alive:
            return
        try:
            self.abort()
        finally:
            self._finalizer()

    def _live(self) -> Any:
        if not self._finalizer.alive:
            raise InvalidHandleError("upload is closed")
        return self._handle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            # Abort errors must not hide the original failure.
            with contextlib.suppress(UplinkError):
                self.close()
        else:
            self.close()


def _address(data: bytes, offset: int) -> int:
    """The address of ``data[offset]`` without copying (``data`` must stay alive meanwhile)."""
    base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    assert base is not None
    return base + offset


def _readinto(source: BinaryIO, view: memoryview) -> int:
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        n = readinto(view)
        return int(n or 0)
    data = source.read(len(view))
    view[: len(data)] = data
    return len(data)


# --------------------------------------------------------------------------- download


class Download(io.RawIOBase):
    """A raw, read-only stream over one download; wrap in io.BufferedReader if needed."""

    def __init__(self, api: _Api, result: Any) -> None:
        super().__init__()
        self._api = api
        self._handle = result.download
        self._eof = False
        self._finalizer = weakref.finalize(self, _close_download, api, result)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._eof or len(view) == 0:
            return 0
        if not self._finalizer.alive:
            raise ValueError("read from closed download")
        ptr = ctypes.addressof(ctypes.c_char.from_buffer(view))
        # A read may return neither data nor error (uplink does at segment
        # boundaries); 0 would mean EOF to Python, so read again, a bounded number of times.
        for _ in range(_MAX_EMPTY_READS):
            result = self._api.download_read(self._handle, ptr, len(view))
            try:
                n = int(result.bytes_read)
                exc = _error_copy(result.error)
            finally:
                self._api.free_read_result(result)
            if n or exc is not None:
                break
        else:
            raise InternalError("download read made no progress")
        if exc is not None:
            if exc.code == _EOF:
                self._eof = True
            elif n == 0:
                raise exc
            # Data that came with an error is returned; the error repeats next call.
        return n

    def info(self) -> ObjectInfo:
        if not self._finalizer.alive:
            raise ValueError("download is closed")
        return _take_object_result(self._api, self._api.download_info(self._handle))

    def close(self) -> None:
        err = self._finalizer() if self._finalizer.alive else None
        super().close()
        if err is not None:
            raise err


def _close_download(api: _Api, result: Any) -> UplinkError | None:
    err = api.take_error(api.close_download(result.download))
    api.free_download_result(result)
    return err
