"""Errors as Nextcloud's Sabre server answers them: an HTTP status and a ``d:error`` XML body."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

DAV_NS = "DAV:"
SABRE_NS = "http://sabredav.org/ns"
# Nextcloud writes its extra error elements as ``<o:retry xmlns:o="o:">``: a namespace literally named "o:".
OC_ERROR_NS = "o:"

SABRE = "Sabre\\DAV\\Exception\\"
NC_SABRE = "OCA\\DAV\\Connector\\Sabre\\Exception\\"
GENERIC = "Sabre\\DAV\\Exception"
BAD_REQUEST = SABRE + "BadRequest"
CONFLICT = SABRE + "Conflict"
FORBIDDEN = SABRE + "Forbidden"
INSUFFICIENT_STORAGE = SABRE + "InsufficientStorage"
METHOD_NOT_ALLOWED = SABRE + "MethodNotAllowed"
NOT_AUTHENTICATED = SABRE + "NotAuthenticated"
NOT_FOUND = SABRE + "NotFound"
NOT_IMPLEMENTED = SABRE + "NotImplemented"
PRECONDITION_FAILED = SABRE + "PreconditionFailed"
RANGE_NOT_SATISFIABLE = SABRE + "RequestedRangeNotSatisfiable"
FILE_LOCKED = NC_SABRE + "FileLocked"
INVALID_PATH = NC_SABRE + "InvalidPath"
TOO_MANY_REQUESTS = NC_SABRE + "TooManyRequests"
LOCKED_EXCEPTION = "OCP\\Lock\\LockedException"
INVALID_ARGUMENT = "InvalidArgumentException"

XML_CONTENT_TYPE = "application/xml; charset=utf-8"


@dataclass
class HttpError(Exception):
    """An error answer. ``exception`` and ``message`` go into the Sabre XML body.

    ``header`` names the request header that failed a precondition (``<s:header>``), ``hint`` is
    Nextcloud's ``<o:hint>``, and ``retry_reason`` adds Nextcloud's ``<o:retry>false</o:retry>`` and
    ``<o:reason>`` (sent with InvalidPath). ``headers`` are extra response headers (e.g. the ETag of
    the resource whose precondition failed).
    """

    status: int
    message: str
    exception: str = GENERIC
    header: str | None = None
    hint: str | None = None
    retry_reason: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> bytes:
        return sabre_error(
            self.status,
            self.message,
            self.exception,
            header=self.header,
            hint=self.hint,
            retry_reason=self.retry_reason,
        )


def sabre_error(
    status: int,
    message: str,
    exception: str,
    *,
    header: str | None = None,
    hint: str | None = None,
    retry_reason: bool = False,
) -> bytes:
    """The ``d:error`` body Sabre writes (``status`` is not part of it; kept for the old signature)."""
    del status
    root = ET.Element(f"{{{DAV_NS}}}error")
    ET.SubElement(root, f"{{{SABRE_NS}}}exception").text = exception
    ET.SubElement(root, f"{{{SABRE_NS}}}message").text = message or None
    if header is not None:
        ET.SubElement(root, f"{{{SABRE_NS}}}header").text = header
    if retry_reason:
        ET.SubElement(root, f"{{{OC_ERROR_NS}}}retry").text = "false"
        ET.SubElement(root, f"{{{OC_ERROR_NS}}}reason").text = message
    if hint is not None:
        ET.SubElement(root, f"{{{OC_ERROR_NS}}}hint").text = hint
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root) + b"\n"


def not_found(message: str) -> HttpError:
    return HttpError(404, message, NOT_FOUND)


def invalid_path(message: str) -> HttpError:
    return HttpError(400, message, INVALID_PATH, retry_reason=True)


def file_locked(path: str) -> HttpError:
    return HttpError(423, f'"/{path}" is locked', FILE_LOCKED)


def precondition_failed(message: str, header: str, etag: str | None = None) -> HttpError:
    headers = {"ETag": f'"{etag}"'} if etag is not None else {}
    return HttpError(412, message, PRECONDITION_FAILED, header=header, headers=headers)
