"""Multipart transfers of the S3 remote (:mod:`syncd.remotes.s3`): uploads larger than a part,
read part by part (memory: ``part_size`` x (``concurrency`` + 1) at most), verified (size and
SHA-256) while streaming and aborted on any failure; and server-side copies above the
CopyObject limit (UploadPartCopy)."""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from contextlib import suppress
from typing import TYPE_CHECKING, Any, BinaryIO

import botocore.exceptions as bexc

from syncd.errors import ChangedWhileReading, ContentMismatch
from syncd.remotes._s3_metadata import MD5_KEY, SHA256_KEY
from syncd.remotes.base import CHUNK

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

    from syncd.remotes.s3 import S3Remote

MiB = 1 << 20
GiB = 1 << 30
MAX_PARTS = 10_000
COPY_LIMIT = 5 * GiB  # largest single CopyObject
COPY_PART = 512 * MiB


def error_code(exc: bexc.ClientError) -> str:
    """The S3 error code of a client error ("NoSuchKey", "404", ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def multipart_upload(
    remote: S3Remote,
    path: str,
    data: BinaryIO,
    size: int,
    meta: dict[str, str],
    want: str | None,
    *,
    if_match: str | None,
    create_only: bool,
) -> None:
    """Upload ``size`` bytes of ``data`` as a multipart upload, part by part (at most
    ``remote.concurrency`` parts in flight), verified (size, and ``want`` when given) before
    the commit, and aborted on any failure: the object appears on commit only.

    :raises ChangedWhileReading: :raises ContentMismatch: :raises PreconditionFailed:
    """
    key = remote._key(path)
    part_size = max(remote.part_size, math.ceil(size / MAX_PARTS / MiB) * MiB)
    if want is not None:
        meta[SHA256_KEY] = want
    created = remote._call(
        path, lambda: remote.client.create_multipart_upload(Bucket=remote.bucket, Key=key, Metadata=meta)
    )
    upload_id = created["UploadId"]
    digest = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    sent = 0
    in_flight: list[tuple[int, Future[str]]] = []
    parts: list[CompletedPartTypeDef] = []
    completed = False
    try:
        number = 0
        while sent < size:
            number += 1
            length = min(part_size, size - sent)
            buffer, got = read_part(data, path, length, exact=False, digests=(digest, md5))
            if got != length:
                raise ChangedWhileReading(path, f"expected {size} bytes, got {sent + got}")
            sent += got
            if len(in_flight) >= remote.concurrency:  # bounded: wait for the oldest part
                done_number, future = in_flight.pop(0)
                parts.append({"PartNumber": done_number, "ETag": future.result()})
            in_flight.append((number, remote.pool.submit(_upload_part, remote, path, key, upload_id, number, buffer)))
        if data.read(1):
            raise ChangedWhileReading(path, f"expected {size} bytes, got more")
        for done_number, future in in_flight:
            parts.append({"PartNumber": done_number, "ETag": future.result()})
        in_flight = []
        if want is not None and digest.hexdigest() != want:
            raise ContentMismatch(path)
        remote._check_precondition(path, if_match=if_match, create_only=create_only)
        remote._call(
            path,
            lambda: remote.client.complete_multipart_upload(
                Bucket=remote.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
        )
        completed = True
    finally:
        if not completed:
            abort_upload(remote, key, upload_id, [future for _, future in in_flight])
    if want is None:
        # The hash is known only now: record it in place (server-side, metadata only).
        meta[SHA256_KEY] = digest.hexdigest()
        meta[MD5_KEY] = base64.b64encode(md5.digest()).decode()
        if size <= remote.copy_limit:
            remote._call(
                path,
                lambda: remote.client.copy_object(
                    Bucket=remote.bucket,
                    Key=key,
                    CopySource={"Bucket": remote.bucket, "Key": key},
                    Metadata=meta,
                    MetadataDirective="REPLACE",
                ),
            )


def abort_upload(remote: S3Remote, key: str, upload_id: str, in_flight: Sequence[Future[Any]]) -> None:
    """Abort a multipart upload after its parts in flight settle (best effort: the
    server expires abandoned uploads anyway)."""
    for future in in_flight:
        future.cancel()
    for future in in_flight:
        with suppress(Exception):
            future.result()
    with suppress(Exception):
        remote.client.abort_multipart_upload(Bucket=remote.bucket, Key=key, UploadId=upload_id)


def _upload_part(remote: S3Remote, path: str, key: str, upload_id: str, number: int, buffer: io.BytesIO) -> str:
    length = buffer.getbuffer().nbytes
    response = remote._call(
        path,
        lambda: remote.client.upload_part(
            Bucket=remote.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=buffer, ContentLength=length
        ),
    )
    buffer.close()
    return response["ETag"]


def copy_in_parts(remote: S3Remote, src: str, dst: str, size: int, meta: Mapping[str, str]) -> bool:
    """Copy ``src`` to ``dst`` server-side with UploadPartCopy (for objects above the
    CopyObject limit), ``meta`` as the copy's metadata.

    :returns: False when the server has no UploadPartCopy (nothing was copied).
    """
    dst_key = remote._key(dst)
    source: CopySourceTypeDef = {"Bucket": remote.bucket, "Key": remote._key(src)}
    created = remote._call(
        dst, lambda: remote.client.create_multipart_upload(Bucket=remote.bucket, Key=dst_key, Metadata=dict(meta))
    )
    upload_id = created["UploadId"]
    step = COPY_PART if remote.copy_limit >= COPY_LIMIT else max(5 * MiB, remote.copy_limit)
    ranges = [(start, min(start + step, size) - 1) for start in range(0, size, step)]

    def part(number: int, first: int, last: int) -> CompletedPartTypeDef:
        response = remote.client.upload_part_copy(
            Bucket=remote.bucket,
            Key=dst_key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource=source,
            CopySourceRange=f"bytes={first}-{last}",
        )
        return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

    completed = False
    try:
        futures = [remote.pool.submit(part, i + 1, a, b) for i, (a, b) in enumerate(ranges)]
        parts = [future.result() for future in futures]
        remote._call(
            dst,
            lambda: remote.client.complete_multipart_upload(
                Bucket=remote.bucket, Key=dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
        )
        completed = True
    except bexc.ClientError as exc:
        if error_code(exc) not in ("NotImplemented", "501"):
            remote._raise(exc, src)
    except (bexc.BotoCoreError, OSError) as exc:
        remote._raise(exc, src)
    finally:
        if not completed:
            abort_upload(remote, dst_key, upload_id, [])
    return completed


def read_part(
    data: BinaryIO,
    path: str,
    length: int,
    *,
    exact: bool,
    digests: tuple[Any, ...] = (),
) -> tuple[io.BytesIO, int]:
    """Read up to ``length`` bytes into memory, updating ``digests`` as it goes.

    :returns: (buffer at offset 0, bytes read).
    :raises ChangedWhileReading: with ``exact``, the source did not give exactly ``length``.
    """
    buffer = io.BytesIO()
    got = 0
    while got < length:
        chunk = data.read(min(CHUNK, length - got))
        if not chunk:
            break
        got += len(chunk)
        buffer.write(chunk)
        for extra in digests:
            extra.update(chunk)
    if exact:
        if got != length:
            raise ChangedWhileReading(path, f"expected {length} bytes, got {got}")
        if data.read(1):
            raise ChangedWhileReading(path, f"expected {length} bytes, got more")
    buffer.seek(0)
    return buffer, got
