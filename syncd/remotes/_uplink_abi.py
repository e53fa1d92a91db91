"""The uplink-c C ABI for :mod:`syncd.remotes._uplink`: the C structures, the functions with
their argument and result types declared, and the conversions of C values to Python ones.
Every conversion here frees nothing unless it says so."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from syncd.remotes._uplink_errors import UplinkError, UplinkLibraryError, _error_for

ENV_LIBRARY: Final = "SYNCD_LIBUPLINK"
INSTALL_HINT: Final = (
    "run `bash packaging/libuplink/build.sh`, `pip install storj-uplink==0.2.0` (x86-64), "
    f"or set {ENV_LIBRARY}=/path/to/libuplink.so"
)

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

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self._lib = lib
        self.path = path  # where the library was loaded from (for messages)
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
        self.download_object_ahead = self._bind_optional(
            "syncd_download_object_ahead",
            _DownloadResult,
            _HandleP,
            _s,
            _s,
            ctypes.POINTER(_DownloadOptions),
            ctypes.c_int32,
            ctypes.c_int64,
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
                f"{self.path} is not a libuplink with the uplink-c API (it lacks {name}): {INSTALL_HINT}"
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
