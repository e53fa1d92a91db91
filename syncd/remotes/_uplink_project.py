"""Projects, uploads and downloads of the libuplink binding (:mod:`syncd.remotes._uplink`).

Every C result is released with its ``uplink_free_*`` function before the Python call returns
(or, for long-lived handles, on ``close()``), and data moves in bounded chunks."""

from __future__ import annotations

import contextlib
import ctypes
import io
import weakref
from collections.abc import Callable, Generator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

from syncd.remotes._uplink_abi import (
    BucketInfo,
    ObjectInfo,
    _Api,
    _custom_to_c,
    _dec,
    _DownloadOptions,
    _enc,
    _error_copy,
    _ListObjectsOptions,
    _milliseconds,
    _object_from_c,
    _take_object_result,
    _time,
    _UploadOptions,
)
from syncd.remotes._uplink_errors import (
    _EOF,
    InternalError,
    InvalidHandleError,
    UplinkError,
    UplinkLibraryError,
)

# 256 KiB: large enough to amortise the ctypes call, small enough to bound memory.
DEFAULT_CHUNK_SIZE: Final = 256 * 1024

_MAX_EMPTY_READS: Final = 1000


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
                raise UplinkLibraryError(f"{self._api.path} has no conditional uploads (not syncd's libuplink build)")
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

    @property
    def downloads_ahead(self) -> bool:
        """Whether ``open_download(parts=...)`` fetches parts at once (our libuplink build)."""
        return self._api.download_object_ahead is not None

    def open_download(
        self, bucket: str, key: str, *, offset: int = 0, length: int = -1, parts: int = 1, part_size: int = 0
    ) -> Download:
        """A raw binary stream of [offset, offset+length) (length -1: to the end).

        ``parts`` > 1: up to that many parts of ``part_size`` bytes are fetched at once, each
        over its own connections, and read in order; the download holds at most
        ``parts * part_size`` bytes in memory. A library without our extension reads one
        stream (as does a range no longer than one part)."""
        if parts < 1 or part_size < 0 or (parts > 1 and part_size == 0):
            raise ValueError("parts must be at least 1, with a positive part_size when more")
        options = _DownloadOptions(offset=offset, length=length)
        if parts > 1 and self._api.download_object_ahead is not None:
            result = self._api.download_object_ahead(
                self._live(), _enc(bucket), _enc(key), ctypes.byref(options), parts, part_size
            )
        else:
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
        # A read fills the buffer (our build; uplink-c returns a few KiB per call). It may
        # return neither data nor error (uplink does at segment boundaries); 0 would mean
        # EOF to Python, so read again, a bounded number of times.
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
