"""A bucket (optionally under a key prefix) on any S3 API, through boto3.

* Keys are ``<prefix><path>``; the prefix (e.g. ``alice/``) is invisible to the engine.
* Each object carries user metadata ``mtime`` (``X-Amz-Meta-Mtime``: seconds since the
  epoch with a nanosecond fraction, rclone's s3 convention, so both tools agree on times),
  ``sha256`` (hex) and, for multipart uploads, ``md5chksum`` (base64, as rclone writes it).
* Listing: ListObjectsV2 pages carry no user metadata, so mtime and hash come from a
  local metadata cache (SQLite in the pair's state dir) keyed by the object's listed
  fingerprint (S3 ETag, size, LastModified second). Only objects that are new or changed
  since the cache saw them get a HEAD (in parallel, ``concurrency`` at a time), so a
  no-change listing costs the ListObjectsV2 pages only. Objects syncd writes are put in
  the cache at once, so they need no HEAD either.
* Uploads up to ``part_size`` are one PutObject (atomic); larger ones are multipart, read
  part by part (memory: ``part_size`` x (``concurrency`` + 1) at most), verified (size and
  SHA-256) while streaming, and aborted on any failure. The object appears on commit only.
* Moves and kept versions are server-side: CopyObject (multipart UploadPartCopy above
  5 GiB), then DeleteObject for a move. Trash is a ``.syncd-trash/<date>/<time>/`` prefix.
* Conditional writes: the S3 gateways we test (Storj gateway-st, ``rclone serve s3``) do
  not honour ``If-Match`` on PutObject, so ``if_match``/``create_only`` are checked with a
  HEAD just before the commit (narrows the race, does not close it) and the capability
  is not declared.
* The etag is opaque: a digest of the S3 ETag and size, the same from list, HEAD and
  write (LastModified is left out: servers report it differently in list and HEAD). So a
  metadata-only change by another tool (same bytes, new ``mtime``) is not seen until the
  content changes; syncd's own writes update the cache, so they are always seen.

The metadata keys, times and cache are :mod:`syncd.remotes._s3_metadata`; multipart uploads
and copies are :mod:`syncd.remotes._s3_multipart`.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal, NoReturn, TypeVar

import botocore.exceptions as bexc
import msgspec

from syncd import __version__
from syncd.errors import (
    ContentMismatch,
    FatalError,
    ItemError,
    NotFound,
    PreconditionFailed,
    TransientError,
    UnsafePath,
)
from syncd.models import Entry
from syncd.remotes._s3_clients import client_key, s3_client
from syncd.remotes._s3_metadata import (
    MTIME_KEY,
    SHA256_KEY,
    Listed,
    MetaCache,
    claimed_sha256,
    format_mtime,
    parse_mtime,
)
from syncd.remotes._s3_multipart import (
    COPY_LIMIT,
    GiB,
    MiB,
    copy_in_parts,
    error_code,
    multipart_upload,
    read_part,
)
from syncd.remotes.base import (
    CHUNK,
    SHA256,
    TRASH_PREFIX,
    Capabilities,
    check_precondition,
)
from syncd.remotes.bucket_trash import BucketTrash
from syncd.remotes.settings import OpenContext, RemoteSettings, read_secret

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

USER_AGENT = f"syncd/{__version__}"
STORJ_ENDPOINT = "https://gateway.storjshare.io"
PRESETS: dict[str, tuple[int, int]] = {  # preset -> (part size, concurrency)
    "generic": (16 * MiB, 4),
    "storj": (64 * MiB, 2),  # Storj's segment size: one part per segment
}

_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
    "AllAccessDisabled",
    "AccountProblem",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "InternalError",
    "TooManyRequests",
    "RequestLimitExceeded",
    "OperationAborted",
}

T = TypeVar("T")


class Settings(RemoteSettings, frozen=True):
    type: Literal["s3"]
    bucket: Annotated[str, msgspec.Meta(min_length=3, max_length=63)]
    endpoint: str | None = None  # https://...; None: AWS (generic) or Gateway-MT (storj)
    prefix: str = ""
    region: str = "us-east-1"
    access_key_id_file: Path | None = None
    access_key_id_env: str | None = None
    secret_access_key_file: Path | None = None
    secret_access_key_env: str | None = None
    preset: Literal["generic", "storj"] = "generic"
    part_size: Annotated[int, msgspec.Meta(ge=5 * MiB, le=5 * GiB)] | None = None  # bytes
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=32)] | None = None  # parts / HEADs in flight
    verify_tls: bool = True
    create_bucket: bool = False
    path_style: bool = True
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0  # seconds, connect and read
    retries: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3  # attempts per request (botocore)

    def __post_init__(self) -> None:
        prefix = self.prefix
        if prefix.startswith("/") or "//" in prefix or ".." in prefix.split("/"):
            raise ValueError("prefix: must be a relative key prefix such as 'alice/'")
        if prefix and not prefix.endswith("/"):
            msgspec.structs.force_setattr(self, "prefix", prefix + "/")
        if self.endpoint is not None and not re.match(r"^https?://[^/\s]+", self.endpoint):
            raise ValueError("endpoint: must be an http:// or https:// URL")
        if self.access_key_id_file is None and self.access_key_id_env is None:
            raise ValueError("access_key_id_file: set access_key_id_file or access_key_id_env")
        if self.secret_access_key_file is None and self.secret_access_key_env is None:
            raise ValueError("secret_access_key_file: set secret_access_key_file or secret_access_key_env")

    @property
    def resolved_endpoint(self) -> str | None:
        if self.endpoint is None and self.preset == "storj":
            return STORJ_ENDPOINT
        return self.endpoint


def open_remote(settings: Settings, ctx: OpenContext) -> S3Remote:
    """Open and check an S3 remote. :raises FatalError: bad credentials or missing bucket."""
    key_id = read_secret(
        file=settings.access_key_id_file, env=settings.access_key_id_env, what=f"{ctx.label} S3 access key id"
    )
    secret = read_secret(
        file=settings.secret_access_key_file,
        env=settings.secret_access_key_env,
        what=f"{ctx.label} S3 secret access key",
    )
    part_size, concurrency = PRESETS[settings.preset]
    return S3Remote(
        endpoint=settings.resolved_endpoint,
        bucket=settings.bucket,
        access_key_id=key_id,
        secret_access_key=secret,
        prefix=settings.prefix,
        region=settings.region,
        part_size=settings.part_size or part_size,
        concurrency=settings.concurrency or concurrency,
        verify_tls=settings.verify_tls,
        create_bucket=settings.create_bucket,
        path_style=settings.path_style,
        timeout=settings.timeout,
        retries=settings.retries,
        cache_dir=ctx.state_dir,
        label=ctx.label,
    )


# --------------------------------------------------------------------------- remote


class S3Remote(BucketTrash):
    def __init__(
        self,
        *,
        endpoint: str | None,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "",
        region: str = "us-east-1",
        part_size: int = 16 * MiB,
        concurrency: int = 4,
        verify_tls: bool = True,
        create_bucket: bool = False,
        path_style: bool = True,
        timeout: float = 60.0,
        retries: int = 3,
        cache_dir: Path | None = None,
        label: str = "s3",
    ) -> None:
        self.name = label
        self.bucket = bucket
        self.endpoint = endpoint
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.part_size = part_size
        self.concurrency = max(1, concurrency)
        self.copy_limit = COPY_LIMIT  # CopyObject up to this size, multipart copy above
        # the SHA-256 is custom metadata: another writer of the bucket may set any value
        self.capabilities = Capabilities(
            hashes=frozenset({SHA256}), hashes_are_claims=True, mtime_precision_ns=1, server_side_move=True
        )
        self._where = endpoint or "AWS S3"
        # Every request is bounded (timeout per connect and read, `retries` attempts in all);
        # the client is shared with other remotes of the same settings (see _s3_clients).
        self._timeout, self._attempts = timeout, retries
        key = client_key(
            endpoint=endpoint,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            verify_tls=verify_tls,
            path_style=path_style,
            timeout=timeout,
            attempts=retries,
            max_pool_connections=max(10, 2 * self.concurrency + 2),
            user_agent_extra=USER_AGENT,
        )
        self.client: S3Client = s3_client(key, secret_access_key)
        cache_path = None
        if cache_dir is not None:
            ident = hashlib.sha256(f"{endpoint}|{bucket}".encode()).hexdigest()[:12]
            cache_path = cache_dir / f"s3-meta-{ident}.sqlite"
        self._cache = MetaCache(cache_path)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        try:
            self._check_bucket(create_bucket)
        except BaseException:
            self.close()
            raise

    # -- plumbing --------------------------------------------------------------------------

    def _check_bucket(self, create: bool) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except bexc.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                self._raise(exc, "")
            if not create:
                raise FatalError(f"{self.name}: bucket {self.bucket!r} does not exist at {self._where}") from exc
        except Exception as exc:
            self._raise(exc, "")
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except bexc.ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou",):
                self._raise(exc, "")

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="s3")
            return self._pool

    def _key(self, path: str) -> str:
        return self.prefix + path

    def _raise(self, exc: Exception, path: str) -> NoReturn:
        """Translate a boto3/botocore error into syncd's tree (no secrets in messages)."""
        if isinstance(exc, bexc.ClientError):
            code = error_code(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = str(exc.response.get("Error", {}).get("Message", "") or code)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(path) from exc
            if code == "NoSuchBucket":
                raise FatalError(f"{self.name}: bucket {self.bucket!r} does not exist at {self._where}") from exc
            if code in ("PreconditionFailed", "412") or status == 412:
                raise PreconditionFailed(path) from exc
            if code in _AUTH_CODES or status in (401, 403):
                raise FatalError(
                    f"{self.name}: {self._where} refused access to bucket {self.bucket!r} ({code}): "
                    "check the access key id, the secret and the key's permissions"
                ) from exc
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                raise TransientError(f"{self.name}: {self._where}: {code} {message}".strip()) from exc
            if code in ("KeyTooLongError", "InvalidObjectName"):
                raise UnsafePath(path, f"S3 refuses this key: {message}") from exc
            raise ItemError(path, f"{code}: {message}") from exc
        if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
            raise FatalError(f"{self.name}: no S3 credentials") from exc
        if isinstance(exc, bexc.ParamValidationError):
            raise ItemError(path, str(exc)) from exc
        if isinstance(exc, bexc.ConnectTimeoutError | bexc.ReadTimeoutError | TimeoutError):
            # Silent, not refused: a hung server or a dropped route. Worth a retry later.
            raise TransientError(
                f"{self.name}: {self._where} did not answer within {self._timeout:g} s "
                f"({self._attempts} attempt(s)): {type(exc).__name__}"
            ) from exc
        if isinstance(exc, bexc.BotoCoreError | OSError):
            # Connection refused/reset, a body cut short: worth a retry.
            raise TransientError(f"{self.name}: {self._where} unreachable: {type(exc).__name__}") from exc
        raise exc

    def _call(self, path: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (bexc.ClientError, bexc.BotoCoreError, OSError) as exc:
            self._raise(exc, path)

    def _entry(self, path: str, listed: Listed, mtime_ns: int | None, sha: str | None) -> Entry:
        return Entry(
            path=path,
            size=listed.size,
            mtime_ns=mtime_ns if mtime_ns is not None else listed.modified * 1_000_000_000,
            etag=hashlib.sha256(listed.fingerprint.encode()).hexdigest()[:32],
            content_hash=sha,
        )

    def _head(self, path: str) -> tuple[Listed, Mapping[str, str]]:
        key = self._key(path)
        head = self._call(path, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        listed = Listed(key, int(head["ContentLength"]), _unquote(head.get("ETag", "")), _secs(head["LastModified"]))
        return listed, {k.lower(): v for k, v in head.get("Metadata", {}).items()}

    def _stat_and_cache(self, path: str) -> Entry:
        listed, meta = self._head(path)
        mtime_ns, sha = parse_mtime(meta.get(MTIME_KEY, "")), claimed_sha256(meta)
        self._cache.put_many([(listed.key, listed.fingerprint, mtime_ns, sha)])
        return self._entry(path, listed, mtime_ns, sha)

    # -- reading ---------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Stream ListObjectsV2 pages; HEAD only objects the metadata cache does not know."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), PaginationConfig={"PageSize": 1000})
        try:
            for page in pages:
                listed = []
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    path = key[len(self.prefix) :]
                    if not key.startswith(self.prefix) or key.endswith("/") or path.startswith(TRASH_PREFIX):
                        continue
                    etag = _unquote(obj.get("ETag", ""))
                    listed.append(Listed(key, int(obj["Size"]), etag, _secs(obj["LastModified"])))
                yield from self._resolve_page(listed)
        except (bexc.ClientError, bexc.BotoCoreError, OSError) as exc:
            self._raise(exc, prefix)

    def _resolve_page(self, listed: Sequence[Listed]) -> Iterator[Entry]:
        known = self._cache.get_many([item.key for item in listed])
        misses = [item for item in listed if known.get(item.key, ("",))[0] != item.fingerprint]
        heads: dict[str, Future[tuple[Listed, Mapping[str, str]] | None]] = {
            item.key: self.pool.submit(self._head_or_none, item.key[len(self.prefix) :]) for item in misses
        }
        fresh: list[tuple[str, str, int | None, str | None]] = []
        try:
            for item in listed:
                path = item.key[len(self.prefix) :]
                if item.key in heads:
                    got = heads[item.key].result()
                    if got is None:  # deleted between the listing and the HEAD
                        continue
                    current, meta = got
                    mtime_ns, sha = parse_mtime(meta.get(MTIME_KEY, "")), claimed_sha256(meta)
                    fresh.append((item.key, current.fingerprint, mtime_ns, sha))
                    yield self._entry(path, current, mtime_ns, sha)
                else:
                    _, mtime_ns, sha = known[item.key]
                    yield self._entry(path, item, mtime_ns, sha)
        finally:
            for future in heads.values():
                future.cancel()
            self._cache.put_many(fresh)

    def _head_or_none(self, path: str) -> tuple[Listed, Mapping[str, str]] | None:
        try:
            return self._head(path)
        except NotFound:
            return None

    def stat(self, path: str) -> Entry:
        return self._stat_and_cache(path)

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        key = self._key(path)
        response = self._call(path, lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        body = response["Body"]
        try:
            with io.BufferedReader(_MappedRead(body, path, self), buffer_size=CHUNK) as reader:
                yield reader
        finally:
            body.close()

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
        want = content_hash.lower() if content_hash else None
        meta = {MTIME_KEY: format_mtime(mtime_ns)}
        if size <= self.part_size:
            digest = hashlib.sha256()
            buffer, _ = read_part(data, path, size, exact=True, digests=(digest,))
            if want is not None and digest.hexdigest() != want:
                raise ContentMismatch(path)
            meta[SHA256_KEY] = digest.hexdigest()
            self._check_precondition(path, if_match=if_match, create_only=create_only)
            key = self._key(path)
            self._call(
                path,
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=buffer, ContentLength=size, Metadata=meta
                ),
            )
        else:  # a check first too, not to send a large file in vain (the last check is what counts)
            self._check_precondition(path, if_match=if_match, create_only=create_only)
            multipart_upload(self, path, data, size, meta, want, if_match=if_match, create_only=create_only)
        return self._stat_and_cache(path)

    def _check_precondition(self, path: str, *, if_match: str | None, create_only: bool) -> Entry | None:
        return check_precondition(self, path, if_match=if_match, create_only=create_only)

    def delete(self, path: str, *, if_match: str | None = None) -> None:
        # DeleteObject succeeds on a missing key: look first, so NotFound is reported.
        current = self.stat(path)
        if if_match is not None and current.etag != if_match:
            raise PreconditionFailed(path)
        key = self._key(path)
        self._call(path, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        self._cache.drop(key)

    def _copy(self, src: str, dst: str, size: int, s3_etag: str) -> None:
        src_key, dst_key = self._key(src), self._key(dst)
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": src_key}
        if size <= self.copy_limit:
            kwargs: dict[str, Any] = {"CopySourceIfMatch": f'"{s3_etag}"'} if s3_etag else {}
            self._call(
                src,
                lambda: self.client.copy_object(
                    Bucket=self.bucket, Key=dst_key, CopySource=source, MetadataDirective="COPY", **kwargs
                ),
            )
            return
        _, meta = self._head(src)
        if not copy_in_parts(self, src, dst, size, meta):
            # The server has no UploadPartCopy (Storj gateway-st): copy through this host,
            # streamed and verified like any upload.
            self._copy_through(src, dst, size, meta)

    def _copy_through(self, src: str, dst: str, size: int, meta: Mapping[str, str]) -> None:
        mtime_ns = parse_mtime(meta.get(MTIME_KEY, ""))
        if mtime_ns is None:
            mtime_ns = self.stat(src).mtime_ns
        with self.open_read(src) as stream:
            self.write(dst, stream, size=size, mtime_ns=mtime_ns, content_hash=claimed_sha256(meta))

    def move(self, src: str, dst: str, *, if_match: str | None = None) -> Entry:
        """Server-side copy + delete; refuses to replace an existing ``dst``."""
        listed, _ = self._head(src)
        current = self._entry(src, listed, None, None)
        if if_match is not None and current.etag != if_match:
            raise PreconditionFailed(src)
        self._check_precondition(dst, if_match=None, create_only=True)
        self._copy(src, dst, listed.size, listed.s3_etag)
        moved = self._stat_and_cache(dst)
        src_key = self._key(src)
        self._call(src, lambda: self.client.delete_object(Bucket=self.bucket, Key=src_key))
        self._cache.drop(src_key)
        return moved

    def copy_object(self, src: str, dst: str, *, if_match: str | None) -> None:
        """A server-side copy (no data transfer), metadata included."""
        listed, _ = self._head(src)
        if if_match is not None and self._entry(src, listed, None, None).etag != if_match:
            raise PreconditionFailed(src)
        self._copy(src, dst, listed.size, listed.s3_etag)

    def trash_objects(self) -> Iterator[tuple[str, int]]:
        # Collected first: a caller deleting while a listing streams could disturb its cursor.
        found: list[tuple[str, int]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(TRASH_PREFIX)):
                found += [(obj["Key"][len(self.prefix) :], int(obj["Size"])) for obj in page.get("Contents", [])]
        except (bexc.ClientError, bexc.BotoCoreError, OSError) as exc:
            self._raise(exc, TRASH_PREFIX)
        return iter(found)

    def delete_trashed(self, key: str) -> None:
        """One DeleteObject, no HEAD first: a key already gone is no error here."""
        full = self._key(key)
        self._call(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._cache.close()  # the client is shared (_s3_clients): not closed here


# --------------------------------------------------------------------------- helpers


def _unquote(etag: str) -> str:
    return etag.strip().strip('"')


def _secs(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


class _MappedRead(io.RawIOBase):
    """A GetObject body whose errors surface as syncd errors."""

    def __init__(self, body: Any, path: str, remote: S3Remote) -> None:
        super().__init__()
        self._body = body
        self._path = path
        self._remote = remote

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            chunk: bytes = self._body.read(len(buffer))
        except (bexc.BotoCoreError, OSError) as exc:
            self._remote._raise(exc, self._path)
        buffer[: len(chunk)] = chunk
        return len(chunk)
