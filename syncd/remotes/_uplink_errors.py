"""The errors of the libuplink binding (:mod:`syncd.remotes._uplink`): one class per uplink-c
error code, so the Storj remote can map each onto syncd's own error tree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

_EOF: Final = -1  # stdio EOF: uplink-c's "end of download stream" code


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
