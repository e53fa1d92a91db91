"""DAV building blocks the endpoints share: Sabre's precondition checks, the Destination header,
the headers of downloads, the 207 answer and the Depth it lists, and the requests to the apps'
views of a user's items (trash bin, versions)."""

from __future__ import annotations

import math
import mimetypes
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, ClassVar, Self
from urllib.parse import quote, unquote, urlsplit

from .errors import BAD_REQUEST, INVALID_ARGUMENT, XML_CONTENT_TYPE, HttpError, not_found, precondition_failed
from .props import PropValue, collection, d, encode_path, http_date, multistatus, requested_props, response
from .transport import Request, Response
from .tree import split_path

if TYPE_CHECKING:
    from .server import NextcloudServer

DAV_HEADER = (
    "1, 3, extended-mkcol, access-control, calendarserver-principal-property-search, nc-paginate, "
    "nextcloud-checksum-update, nc-calendar-search, nc-enable-birthday-calendar"
)
LEGACY_DAV_HEADER = "1, 3, extended-mkcol, nextcloud-checksum-update"
ALLOW_COLLECTION = "OPTIONS, GET, HEAD, DELETE, PROPFIND, PUT, PROPPATCH, COPY, MOVE, REPORT"
ALLOW_FILE = ALLOW_COLLECTION + ", PATCH"
MIMETYPES = {"txt": "text/plain", "bin": "application/x-bin", "md": "text/markdown", "ini": "text/plain"}
FILES_PREFIX = "/remote.php/dav/files/"
LEGACY_PREFIX = "/remote.php/webdav/"


def mimetype(name: str) -> str:
    extension = name.rsplit(".", 1)[-1].lower() if "." in name.strip(".") else ""
    return MIMETYPES.get(extension) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def content_type_header(mime: str) -> tuple[str, str]:
    """Nextcloud sends text types as ``Content-type: text/plain;charset=UTF-8``, others as ``Content-Type``."""
    if mime.startswith("text/"):
        return "Content-type", f"{mime};charset=UTF-8"
    return "Content-Type", mime


def content_disposition(name: str) -> str:
    encoded = quote(name, safe="")
    return f"attachment; filename*=UTF-8''{encoded}; filename=\"{encoded}\""


def multistatus_answer(answers: list[ET.Element], *, dav: str = DAV_HEADER) -> Response:
    body = multistatus(answers)
    return Response(207, body, [("Content-Type", XML_CONTENT_TYPE), ("DAV", dav)], gzip=True)


def lists_members(request: Request) -> bool:
    """Whether a PROPFIND asks for a collection's members too: any Depth but 0 (none means 1)."""
    return (request.header("Depth") or "1").strip() != "0"


def parse_unix_time(value: str | None, header: str) -> tuple[int | None, HttpError | None]:
    """X-OC-MTime / X-OC-CTime: (seconds, None), (None, the 500 Nextcloud answers) or (None, None)."""
    if value is None:
        return None, None
    try:
        number = float(value.strip())
    except ValueError:
        return None, HttpError(500, f"{header} header must be an integer (unix timestamp).", INVALID_ARGUMENT)
    if not math.isfinite(number) or int(number) <= 0:
        return None, HttpError(500, f"{header} header must be a valid positive integer", INVALID_ARGUMENT)
    return int(number), None


def check_conditions(request: Request, etag: str | None, *, reading: bool = False, mtime: int = 0) -> Response | None:
    """Sabre's If-Match / If-None-Match / If-Modified-Since on the resource (``etag`` None: missing).

    :returns: a 304 answer for a read whose copy is current, else None.
    :raises HttpError: 412 when a condition fails.
    """
    quoted = None if etag is None else f'"{etag}"'
    if_match = request.header("If-Match")
    if if_match is not None:
        if quoted is None:
            raise precondition_failed("An If-Match header was specified and the resource did not exist", "If-Match")
        tags = [tag.strip() for tag in if_match.split(",")]
        if "*" not in tags and quoted not in tags:
            raise precondition_failed(
                "An If-Match header was specified, but none of the specified ETags matched.", "If-Match", etag
            )
    if_none = request.header("If-None-Match")
    if if_none is not None and quoted is not None:
        tags = [tag.strip() for tag in if_none.split(",")]
        message = "An If-None-Match header was specified, but the ETag matched (or * was specified)."
        if "*" in tags:
            raise precondition_failed(message, "If-None-Match")
        if quoted in tags:
            if reading:
                return Response(304, b"", [("ETag", quoted)])
            raise precondition_failed(message, "If-None-Match", etag)
    since = request.header("If-Modified-Since")
    if reading and since is not None and if_none is None and quoted is not None:
        try:
            limit = parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return None
        if mtime <= limit:
            return Response(304, b"", [("Last-Modified", http_date(mtime))])
    return None


def parse_destination(request: Request) -> tuple[str | None, list[str]]:
    """The Destination header as (owner, parts from the owner's root); owner None: not a files URL.

    :raises HttpError: 400 without a Destination header.
    """
    destination = request.header("Destination")
    if not destination:
        raise HttpError(400, "The destination header was not supplied", BAD_REQUEST)
    path = unquote(urlsplit(destination).path)
    if path.startswith(LEGACY_PREFIX):
        return request.user, [p for p in path[len(LEGACY_PREFIX) :].split("/") if p]
    if not path.startswith(FILES_PREFIX):
        return None, []
    owner, _, rest = path[len(FILES_PREFIX) :].partition("/")
    return owner, [p for p in rest.split("/") if p]


class AppRequest:
    """A request to an app's DAV view of its user's items, ``ROOT<user>/``: the hrefs there, and
    the answers of the collections that hold nothing but collections (the user's home, whose
    members are ``COLLECTIONS`` in the order listed, and ``restore/``)."""

    ROOT: ClassVar[str]
    COLLECTIONS: ClassVar[tuple[str, ...]]
    COLLECTION_ALLPROP: ClassVar[list[str]] = [d("resourcetype")]

    def __init__(self, server: NextcloudServer, request: Request) -> None:
        self.server = server
        self.request = request
        self.user = request.user

    @classmethod
    def of_own_view(cls, server: NextcloudServer, request: Request, rest: str) -> tuple[Self, list[str]]:
        """The request to ``ROOT`` + ``rest`` (``<owner>/<path>``), and the path's names.

        :raises HttpError: 404 when the view is another user's.
        """
        owner, _, inner = unquote(rest).partition("/")
        parts = split_path(inner)
        if owner != request.user:
            raise not_found("")
        return cls(server, request), parts

    def href(self, *names: str, is_dir: bool = True) -> str:
        path = "/".join(encode_path(name) for name in names)
        return f"{self.ROOT}{encode_path(self.user)}/" + (path + "/" if path and is_dir else path)

    def home(self) -> Response:
        wanted = requested_props(self.request.body()) or self.COLLECTION_ALLPROP
        values: dict[str, PropValue] = {d("resourcetype"): collection()}
        answers = [response(self.href(), values, wanted)]
        if lists_members(self.request):
            answers += [response(self.href(name), values, wanted) for name in self.COLLECTIONS]
        return multistatus_answer(answers)

    def plain_collection(self, names: list[str]) -> Response:
        """A collection answered as one, without its members (``restore/``, say)."""
        wanted = requested_props(self.request.body()) or self.COLLECTION_ALLPROP
        return multistatus_answer([response(self.href(*names), {d("resourcetype"): collection()}, wanted)])
