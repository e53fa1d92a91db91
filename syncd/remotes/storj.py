"""A Storj bucket (optionally under a key prefix) through libuplink, natively.

* Keys are ``<prefix><path>``; the prefix (e.g. ``alice/``) is invisible to the engine.
* Each object carries custom metadata ``rclone:mtime`` (RFC 3339 with nanoseconds, UTC,
  the same key rclone uses, so both tools agree on times) and ``syncd:sha256`` (hex).
* Uploads are atomic (an object appears only on commit), streamed in bounded chunks,
  and verified (size, hash) before the commit; a failed one is aborted.
* Downloads larger than one part (16 MiB) are fetched ``download_parts`` parts at once with
  our libuplink build (read ahead, in order, at most parts x 16 MiB in memory); an object
  replaced meanwhile fails the download (ChangedWhileReading) rather than mix versions.
* Moves and kept versions are server-side (move / copy). Trash is a ``.syncd-trash/<date>/<time>/`` key prefix.
* ``create_only`` is atomic with our libuplink build: the satellite refuses the commit
  when the key exists (If-None-Match: *, ``syncd_upload_object_if_absent``), and no stat
  is needed. Storj has no If-Match, so ``if_match`` (and ``create_only`` on a stock
  uplink-c library) is checked with a stat just before the commit, which narrows but does
  not close the race; the ``conditional_writes`` capability is therefore not declared.
* An etag is derived from what a listing shows (creation time, size and syncd's
  metadata): it changes whenever an object is replaced by syncd, and for objects
  written by other tools whenever their creation second or size changes.
* Every call that may wait on the network has a deadline (our libuplink build): ``timeout``
  seconds, plus, for a call that moves data, the time its bytes need at ``min_speed``. A
  satellite or node that keeps a connection open without answering ends the call with a
  TransientError (the run stops, the next one resumes), never a hung run.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO, Literal, NoReturn, TypeVar

import msgspec

from syncd import __version__
from syncd.errors import (
    ChangedWhileReading,
    ContentMismatch,
    FatalError,
    ItemError,
    NotFound,
    PreconditionFailed,
    TransientError,
    UnsafePath,
)
from syncd.models import Entry
from syncd.remotes import _uplink as uplink
from syncd.remotes.base import (
    CHUNK,
    SHA256,
    TRASH_PREFIX,
    Capabilities,
    check_precondition,
)
from syncd.remotes.bucket_trash import BucketTrash
from syncd.remotes.settings import OpenContext, RemoteSettings, read_secret
from syncd.times import clamp_ns

MTIME_KEY = "rclone:mtime"
SHA256_KEY = "syncd:sha256"
USER_AGENT = f"syncd/{__version__}"

T = TypeVar("T")
KiB = 1024

log = logging.getLogger("syncd.remotes.storj")

# How uplink words a TLS peer whose node ID is not the one asked for.
_PEER_ID_MISMATCH = "peer ID did not match requested ID"
# ... and a satellite (or node) that cannot be reached or went away mid-call.
_NETWORK_SIGNS = ("connector failed", "connection refused", "connection reset", "i/o timeout", "no such host")
EARLY_CHECK_BYTES = 8 << 20  # above this, preconditions are also checked before the upload starts
# A download larger than this is fetched in parts of it, `download_parts` at once (our libuplink):
# 16 MiB keeps 4 parts at 64 MiB, one upload segment's worth, at 64 requests to the satellite per GiB.
DOWNLOAD_PART_BYTES = 16 << 20
# The most one read of a download returns. Its caller writes what it got in one write(), and the
# kernel caches a write in folios as large as the write: 1 MiB writes take high-order free memory,
# which a VM with free page reporting (Firecracker, most clouds) has handed back to its host, so
# every page of it faults in again there. 1 GiB written in 1 MiB pieces cost 1.2 s of system time
# here, in 256 KiB pieces 0.2 s (as rclone's 64 KiB writes); a piece also stays in the CPU cache
# between the copy out of Go, the hash and the write.
DOWNLOAD_READ_BYTES = 256 * KiB


class Settings(RemoteSettings, frozen=True):
    """An access grant, or an API key + satellite address + passphrase (a grant is derived)."""

    type: Literal["storj"]
    bucket: Annotated[str, msgspec.Meta(min_length=3, max_length=63)]
    access_grant_file: Path | None = None
    access_grant_env: str | None = None
    satellite_address: str | None = None  # "<node id>@host:port", e.g. "12EayRS2...@us1.storj.io:7777"
    api_key_file: Path | None = None
    api_key_env: str | None = None
    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    prefix: str = ""  # e.g. "alice/": the pair's files live under it
    create_bucket: bool = False  # create the bucket when missing (else it is a fatal error)
    dial_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 20.0  # seconds
    # Segments (up to 64 MiB each) of one large upload held in memory at once: 1 keeps a
    # transfer near 64 MiB whatever the file's size; more overlap segments (faster on
    # fast links) at 64 MiB each.
    upload_segments: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    # Parts (16 MiB each) of one large download fetched at once, each over its own node
    # connections, and held in memory until read in order; 1: one stream, no read-ahead.
    download_parts: Annotated[int, msgspec.Meta(ge=1, le=16)] = 4
    # Deadlines: a call to the satellite or a node may take `timeout` seconds, plus, when
    # it moves data, the time its bytes need at `min_speed` KiB/s (a call of an upload may
    # wait for its segments in flight: 64 MiB each). A slower call is abandoned as dead.
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0  # seconds
    min_speed: Annotated[int, msgspec.Meta(ge=1)] = 32  # KiB/s

    def __post_init__(self) -> None:
        self._check_credentials()
        prefix = self.prefix
        if prefix.startswith("/") or "//" in prefix or ".." in prefix.split("/"):
            raise ValueError("prefix: must be a relative key prefix such as 'alice/'")
        # "alice" and "alice/" mean the same folder; never match "alice2/...".
        if prefix and not prefix.endswith("/"):
            msgspec.structs.force_setattr(self, "prefix", prefix + "/")

    def _check_credentials(self) -> None:
        grant = self.access_grant_file is not None or self.access_grant_env is not None
        parts = {
            "satellite_address": self.satellite_address is not None,
            "api_key_file or api_key_env": self.api_key_file is not None or self.api_key_env is not None,
            "passphrase_file or passphrase_env": self.passphrase_file is not None or self.passphrase_env is not None,
        }
        if grant and any(parts.values()):
            raise ValueError("give either an access grant or satellite_address + API key + passphrase, not both")
        if not grant and any(parts.values()) and not all(parts.values()):
            missing = ", ".join(name for name, given in parts.items() if not given)
            raise ValueError(f"satellite_address, an API key and a passphrase go together: missing {missing}")
        address = self.satellite_address
        if address is not None and not re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{40,60}@[^\s@/]+:\d{1,5}", address):
            raise ValueError("satellite_address: expected '<node id>@host:port' (e.g. 12EayRS...@us1.storj.io:7777)")


def open_remote(settings: Settings, ctx: OpenContext) -> StorjRemote:
    """Open a Storj remote (a missing bucket or a refused grant shows at the first listing,
    which every run makes before any change). :raises FatalError: bad credentials."""
    if settings.satellite_address is not None:
        api_key = read_secret(file=settings.api_key_file, env=settings.api_key_env, what=f"{ctx.label} Storj API key")
        passphrase = read_secret(
            file=settings.passphrase_file, env=settings.passphrase_env, what=f"{ctx.label} Storj passphrase"
        )
        grant = request_grant(
            settings.satellite_address, api_key, passphrase, label=ctx.label, timeout=settings.timeout
        )
    else:
        grant = read_secret(
            file=settings.access_grant_file, env=settings.access_grant_env, what=f"{ctx.label} Storj access grant"
        )
    return StorjRemote(
        grant,
        settings.bucket,
        prefix=settings.prefix,
        create_bucket=settings.create_bucket,
        dial_timeout=settings.dial_timeout,
        upload_segments=settings.upload_segments,
        download_parts=settings.download_parts,
        timeout=settings.timeout,
        min_speed=settings.min_speed * KiB,
        label=ctx.label,
    )


def request_grant(
    satellite_address: str, api_key: str, passphrase: str, *, label: str, timeout: float | None = None
) -> str:
    """Derive a serialized access grant (asks the satellite for the project's salt).

    :raises FatalError: refused key or bad address.
    :raises TransientError: unreachable, or no answer within ``timeout`` seconds.
    """
    try:
        with uplink.Access.request(satellite_address, api_key, passphrase, timeout=timeout) as access:
            return access.serialize()
    except uplink.UplinkLibraryError as exc:
        raise FatalError(f"{label}: {exc}") from exc
    except uplink.PermissionDeniedError as exc:
        raise FatalError(f"{label}: the satellite refused the API key ({exc.message})") from exc
    except uplink.UplinkError as exc:
        _map_error(exc, "", label, satellite=satellite_address)


# --------------------------------------------------------------------------- times


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def format_mtime(mtime_ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, trailing zeros trimmed (Go's RFC3339Nano, as rclone)."""
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{base}{fraction}Z"


def parse_mtime(text: str) -> int | None:
    """Nanoseconds since the epoch from an RFC 3339 time, or None if it is not one."""
    match = _RFC3339.match(text.strip())
    if not match:
        return None
    whole, fraction, zone = match.groups()
    try:
        when = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    nanos = int((fraction or "").ljust(9, "0"))
    return clamp_ns(int(when.timestamp()) * 1_000_000_000 + nanos)


# --------------------------------------------------------------------------- errors


def _map_error(exc: uplink.UplinkError, path: str, label: str, *, satellite: str = "") -> NoReturn:
    """Translate a libuplink error into syncd's tree, keeping the original chained."""
    if isinstance(exc, uplink.InternalError) and _PEER_ID_MISMATCH in exc.message:
        # uplink-c has no code for it. Retrying cannot help: the grant names another
        # satellite than the one answering at its address (or the address is wrong).
        where = f" at {satellite.partition('@')[2]}" if satellite else ""
        raise FatalError(
            f"{label}: the server{where} is not the satellite the access grant was made for "
            "(its node ID differs): use a grant or satellite address for this satellite"
        ) from exc
    if isinstance(exc, uplink.PermissionDeniedError):
        what = f" for {path!r}" if path else ""
        raise FatalError(
            f"{label}: permission denied{what}: the access grant does not allow this "
            f"(a read-only or restricted grant?): {exc.message}"
        ) from exc
    if isinstance(exc, uplink.ObjectNotFoundError):
        raise NotFound(path) from exc
    if isinstance(exc, uplink.ObjectKeyInvalidError):
        raise UnsafePath(path, f"Storj refuses this key: {exc.message}") from exc
    if isinstance(exc, uplink.DeadlineExceededError):
        # A connection that stays open with nobody answering: gone for now, not refused.
        raise TransientError(f"{label}: Storj network not answering: {exc.message}") from exc
    if isinstance(exc, uplink.InternalError) and any(sign in exc.message for sign in _NETWORK_SIGNS):
        raise TransientError(f"{label}: Storj network unreachable: {exc.message}") from exc
    if isinstance(exc, uplink.TooManyRequestsError | uplink.CanceledError | uplink.InternalError):
        # Internal covers dial and network failures: worth a retry, never a deletion.
        raise TransientError(f"{label}: {exc}") from exc
    if isinstance(
        exc,
        uplink.BucketNotFoundError
        | uplink.PermissionDeniedError
        | uplink.InvalidAccessError
        | uplink.LimitExceededError
        | uplink.BucketNameInvalidError,
    ):
        raise FatalError(f"{label}: {exc}") from exc
    raise ItemError(path, str(exc)) from exc


# --------------------------------------------------------------------------- remote


class StorjRemote(BucketTrash):
    """A bucket (under ``prefix``) as a remote; see the module doc.

    A download larger than ``download_part_size`` bytes is fetched ``download_parts`` parts
    at once (our libuplink build). ``timeout`` (seconds) and ``min_speed`` (bytes per second) bound every call that may
    wait on the network (None: unbounded, as uplink-c is); a call past its deadline raises
    TransientError.
    """

    def __init__(
        self,
        access_grant: str,
        bucket: str,
        *,
        prefix: str = "",
        create_bucket: bool = False,
        dial_timeout: float | None = None,
        upload_segments: int = 1,
        download_parts: int = 4,
        download_part_size: int = DOWNLOAD_PART_BYTES,
        timeout: float | None = 60.0,
        min_speed: int = 32 * KiB,
        label: str = "storj",
    ) -> None:
        self.name = label
        self.download_parts = download_parts
        self.download_part_size = download_part_size
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        # the SHA-256 is custom metadata: another writer of the bucket may set any value
        self.capabilities = Capabilities(
            hashes=frozenset({SHA256}), hashes_are_claims=True, mtime_precision_ns=1, server_side_move=True
        )
        self._access: uplink.Access | None = None
        self._project: uplink.Project | None = None
        self._satellite = ""
        try:
            self._connect(access_grant, create_bucket, dial_timeout, upload_segments, timeout, min_speed)
        except BaseException:
            self.close()
            raise

    def _connect(
        self,
        grant: str,
        create_bucket: bool,
        dial_timeout: float | None,
        upload_segments: int,
        timeout: float | None,
        min_speed: int,
    ) -> None:
        try:
            self._access = uplink.Access.parse(grant)
        except uplink.UplinkLibraryError as exc:
            raise FatalError(f"{self.name}: {exc}") from exc
        except uplink.UplinkError as exc:
            _map_error(exc, "", self.name)
        self._satellite = self._access.satellite_address
        try:
            # No satellite round trip here unless the bucket is to be created: the first
            # listing (always before any change) reports a missing bucket or a bad grant.
            self._project = self._access.open_project(
                user_agent=USER_AGENT,
                dial_timeout=dial_timeout,
                segments_in_flight=upload_segments,
                timeout=timeout,
                min_rate=min_speed,
            )
            if timeout is not None and not self._project.bounded:
                log.warning(
                    "%s: %s has no call deadlines (not syncd's libuplink build): a satellite that "
                    "stops answering can hang a run",
                    self.name,
                    uplink.library_path(),
                )
            if create_bucket:
                self._project.ensure_bucket(self.bucket)
        except uplink.UplinkError as exc:
            self._fail(exc, "")

    # -- plumbing --------------------------------------------------------------------------

    @property
    def project(self) -> uplink.Project:
        if self._project is None:
            raise FatalError(f"{self.name}: remote is closed")
        return self._project

    def _key(self, path: str) -> str:
        return self.prefix + path

    def _fail(self, exc: uplink.UplinkError, path: str) -> NoReturn:
        if isinstance(exc, uplink.BucketNotFoundError):
            raise FatalError(f"{self.name}: bucket {self.bucket!r} does not exist") from exc
        _map_error(exc, path, self.name, satellite=self._satellite)

    def _call(self, path: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except uplink.UplinkError as exc:
            self._fail(exc, path)

    def _entry(self, path: str, info: uplink.ObjectInfo) -> Entry:
        return Entry(
            path=path,
            size=info.content_length,
            mtime_ns=self._mtime(info),
            etag=_etag(info),
            content_hash=_sha256(info.custom),
        )

    @staticmethod
    def _mtime(info: uplink.ObjectInfo) -> int:
        parsed = parse_mtime(info.custom.get(MTIME_KEY, ""))
        if parsed is not None:
            return parsed
        # An object written by a tool that keeps no mtime: its upload time stands in.
        created = info.created or datetime.fromtimestamp(0, UTC)
        return int(created.timestamp()) * 1_000_000_000

    # -- reading ---------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Stream a recursive listing; a failure part-way raises, never truncates."""
        # uplink lists whole "folders" only (keys are encrypted per path segment), so
        # a prefix that does not end in "/" is listed from its folder and filtered here.
        wanted = self._key(prefix)
        folder = wanted[: wanted.rfind("/") + 1]
        iterator = self.project.list_objects(self.bucket, prefix=folder, recursive=True)
        try:
            for info in iterator:
                if not info.key.startswith(wanted):
                    continue
                path = info.key[len(self.prefix) :]
                # Keys ending in "/" are folder markers made by other tools, not files.
                if info.is_prefix or path.endswith("/") or path.startswith(TRASH_PREFIX):
                    continue
                yield self._entry(path, info)
        except uplink.UplinkError as exc:
            self._fail(exc, prefix)
        finally:
            iterator.close()

    def stat(self, path: str) -> Entry:
        info = self._call(path, lambda: self.project.stat_object(self.bucket, self._key(path)))
        return self._entry(path, info)

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        download = self._call(
            path,
            lambda: self.project.open_download(
                self.bucket, self._key(path), parts=self.download_parts, part_size=self.download_part_size
            ),
        )
        with download, _PieceReader(_MappedRead(download, path, self.name)) as reader:
            yield reader

    # -- writing ---------------------------------------------------------------------------

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
        if not path or path.endswith("/"):
            raise UnsafePath(path, "not a file key")
        # The satellite checks create_only itself when the library can ask it to.
        atomic_create = create_only and if_match is None and self.project.conditional_create
        if size > EARLY_CHECK_BYTES:  # not to send a large file in vain; the last check is what counts
            self._check_precondition(path, if_match=if_match, create_only=create_only)
        try:
            with self.project.open_upload(self.bucket, self._key(path), if_absent=atomic_create) as upload:
                digest = _send(upload, path, data, size)
                if content_hash is not None and digest != content_hash.lower():
                    raise ContentMismatch(path)
                upload.set_custom_metadata({MTIME_KEY: format_mtime(mtime_ns), SHA256_KEY: digest})
                # Last check right before the object becomes visible (see module doc).
                self._check_precondition(path, if_match=if_match, create_only=create_only and not atomic_create)
                info = upload.commit()
        except uplink.FailedPreconditionError as exc:
            raise PreconditionFailed(path, "already exists") from exc
        except uplink.UplinkError as exc:
            self._fail(exc, path)
        return self._entry(path, info)

    def _check_precondition(self, path: str, *, if_match: str | None, create_only: bool) -> Entry | None:
        return check_precondition(self, path, if_match=if_match, create_only=create_only)

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        if if_match is not None:
            self._check_precondition(path, if_match=if_match, create_only=False)
        deleted = self._call(path, lambda: self.project.delete_object(self.bucket, self._key(path)))
        if deleted is None:
            raise NotFound(path)

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Server-side rename; refuses to replace an existing ``dst``."""
        self._check_precondition(src, if_match=if_match, create_only=False)
        self._check_precondition(dst, if_match=None, create_only=True)
        self._call(src, lambda: self.project.move_object(self.bucket, self._key(src), self.bucket, self._key(dst)))
        return self.stat(dst)

    def copy_object(self, src: str, dst: str, *, if_match: str | None) -> None:
        """A server-side copy (no data transfer), metadata included."""
        self._check_precondition(src, if_match=if_match, create_only=False)
        self._call(src, lambda: self.project.copy_object(self.bucket, self._key(src), self.bucket, self._key(dst)))

    def trash_objects(self) -> Iterator[tuple[str, int]]:
        # Collected first: a caller deleting while a listing streams could disturb its cursor.
        found: list[tuple[str, int]] = []
        iterator = self.project.list_objects(self.bucket, prefix=self._key(TRASH_PREFIX), system=True, custom=False)
        try:
            for info in iterator:
                found.append((info.key[len(self.prefix) :], info.content_length or 0))
        except uplink.UplinkError as exc:
            self._fail(exc, TRASH_PREFIX)
        finally:
            iterator.close()
        return iter(found)

    def close(self) -> None:
        project, access = self._project, self._access
        self._project = self._access = None
        try:
            if project is not None:
                project.close()
        except uplink.UplinkError:
            pass  # closing is best effort: connections are dropped either way
        finally:
            if access is not None:
                access.close()


# --------------------------------------------------------------------------- helpers


def _sha256(custom: Mapping[str, str]) -> str | None:
    value = custom.get(SHA256_KEY, "").strip().lower()
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else None


def _etag(info: uplink.ObjectInfo) -> str:
    """An opaque fingerprint from what list and stat both return (see module doc)."""
    parts = [
        str(int(info.created.timestamp()) if info.created else 0),
        str(info.content_length),
        info.custom.get(SHA256_KEY, ""),
        info.custom.get(MTIME_KEY, ""),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _send(upload: uplink.Upload, path: str, data: BinaryIO, size: int) -> str:
    """Stream exactly ``size`` bytes to ``upload``; returns their SHA-256.

    :raises ChangedWhileReading: the source gave fewer or more bytes than ``size``.
    """
    digest = hashlib.sha256()
    sent = 0
    while True:
        # Ask for one byte past the end so that a longer source is noticed.
        chunk = data.read(min(CHUNK, size - sent + 1))
        if not chunk:
            break
        sent += len(chunk)
        if sent > size:
            raise ChangedWhileReading(path, f"expected {size} bytes, got more")
        digest.update(chunk)
        upload.write(chunk)
    if sent != size:
        raise ChangedWhileReading(path, f"expected {size} bytes, got {sent}")
    return digest.hexdigest()


class _PieceReader(io.BufferedReader):
    """A download read in pieces of at most DOWNLOAD_READ_BYTES: ``read(n)`` returns fewer
    than ``n`` bytes before the end (as a raw stream may; callers read until ``b""``), each
    piece copied once, from the library straight into the bytes returned."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__(raw, buffer_size=DOWNLOAD_READ_BYTES)

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            return super().read()
        # With nothing buffered, read1 reads once from the raw stream into the new bytes.
        return self.read1(min(size, DOWNLOAD_READ_BYTES))


class _MappedRead(io.RawIOBase):
    """A download whose errors surface as syncd errors (reads happen in the caller)."""

    def __init__(self, download: uplink.Download, path: str, label: str) -> None:
        super().__init__()
        self._download = download
        self._path = path
        self._label = label

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self._download.readinto(buffer)
        except uplink.FailedPreconditionError as exc:  # a part read ahead found another version
            raise ChangedWhileReading(self._path, "replaced while it was being downloaded") from exc
        except uplink.UplinkError as exc:
            _map_error(exc, self._path, self._label)
