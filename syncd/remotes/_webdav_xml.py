"""WebDAV XML for the webdav remote: PROPFIND bodies and a streaming multistatus parser.

The parser is fed the response body piece by piece and yields one :class:`DavResource` per
``d:response`` as soon as it is complete, so a listing of a huge folder (or a Depth infinity
listing of a whole tree) uses bounded memory. A body that ends before ``</d:multistatus>``
is an error (:class:`IncompleteMultistatus`), never a shorter listing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import cast
from urllib.parse import unquote, urlsplit

DAV = "DAV:"
OC = "http://owncloud.org/ns"
NC = "http://nextcloud.org/ns"
SYNCD = "urn:x-syncd:"  # our dead properties on generic servers

_D = f"{{{DAV}}}"
_OC = f"{{{OC}}}"
_NC = f"{{{NC}}}"
_S = f"{{{SYNCD}}}"

BASIC_PROPS = ("d:resourcetype", "d:getetag", "d:getlastmodified", "d:getcontentlength")
NEXTCLOUD_PROPS = (*BASIC_PROPS, "oc:fileid", "oc:checksums", "oc:size")
GENERIC_PROPS = (*BASIC_PROPS, "s:meta")
TRASHBIN_PROPS = ("d:resourcetype", "nc:trashbin-original-location", "nc:trashbin-deletion-time")


class IncompleteMultistatus(Exception):
    """The multistatus body was cut short or is not XML."""


@dataclass(frozen=True, slots=True)
class DavResource:
    """What one ``d:response`` says (only the properties that came back with 200)."""

    path: str  # the decoded URL path of the href
    is_dir: bool
    etag: str | None
    last_modified_ns: int | None
    size: int | None
    fileid: str | None = None
    checksums: tuple[str, ...] = ()
    meta: str | None = None  # syncd:meta dead property (generic servers)
    original_location: str | None = None  # trash bin items
    deletion_time: int | None = None
    tree_size: int | None = None  # oc:size: a folder's bytes below it, at any depth (Nextcloud)


def propfind_body(props: Iterable[str]) -> bytes:
    """A PROPFIND request body asking for ``props`` ("d:getetag", "oc:fileid", ...)."""
    inner = "".join(f"<{p}/>" for p in props)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<d:propfind xmlns:d="DAV:" xmlns:oc="{OC}" xmlns:nc="{NC}" xmlns:s="{SYNCD}">'
        f"<d:prop>{inner}</d:prop></d:propfind>"
    ).encode()


def proppatch_body(meta: str) -> bytes:
    """A PROPPATCH body that sets our ``s:meta`` dead property."""
    escaped = meta.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<d:propertyupdate xmlns:d="DAV:" xmlns:s="{SYNCD}">'
        f"<d:set><d:prop><s:meta>{escaped}</s:meta></d:prop></d:set></d:propertyupdate>"
    ).encode()


def parse_multistatus(pieces: Iterable[bytes]) -> Iterator[DavResource]:
    """Yield each ``d:response`` of a multistatus body as it completes.

    :raises IncompleteMultistatus: the body is not well-formed or ends early.
    """
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    saw_root = False
    try:
        for piece in pieces:
            parser.feed(piece)
            # Only start/end events were asked for: each is (event, element).
            for event, elem in cast("Iterator[tuple[str, ET.Element]]", parser.read_events()):
                if event == "start":
                    depth += 1
                    if depth == 1:
                        if elem.tag != f"{_D}multistatus":
                            raise IncompleteMultistatus(f"not a multistatus answer: {elem.tag}")
                        saw_root = True
                    continue
                depth -= 1
                if depth == 1 and elem.tag == f"{_D}response":
                    resource = _resource(elem)
                    elem.clear()  # bounded memory: forget what was already yielded
                    if resource is not None:
                        yield resource
        parser.close()
    except ET.ParseError as exc:
        raise IncompleteMultistatus(f"malformed or truncated multistatus: {exc}") from exc
    if not saw_root or depth != 0:
        raise IncompleteMultistatus("truncated multistatus")


def parse_multistatus_errors(body: bytes) -> list[str]:
    """The non-2xx statuses inside a (small) multistatus, e.g. a PROPPATCH answer."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ["unparsable answer"]
    bad = []
    for status in root.iter(f"{_D}status"):
        text = (status.text or "").strip()
        parts = text.split(" ")
        if len(parts) >= 2 and not parts[1].startswith("2"):
            bad.append(text)
    return bad


def sabre_message(body: bytes) -> tuple[str, str]:
    """(exception class, message) of a Sabre/Nextcloud XML error body, or empty strings."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    exc = root.findtext("{http://sabredav.org/ns}exception") or ""
    msg = root.findtext("{http://sabredav.org/ns}message") or ""
    return exc.strip(), msg.strip()


def _resource(elem: ET.Element) -> DavResource | None:
    href = elem.findtext(f"{_D}href")
    if not href:
        return None
    props: dict[str, ET.Element] = {}
    for propstat in elem.findall(f"{_D}propstat"):
        status = (propstat.findtext(f"{_D}status") or "").split(" ")
        if len(status) >= 2 and not status[1].startswith("2"):
            continue  # a 404 propstat lists properties the server does not have
        prop = propstat.find(f"{_D}prop")
        if prop is not None:
            for child in prop:
                props[child.tag] = child
    resourcetype = props.get(f"{_D}resourcetype")
    is_dir = resourcetype is not None and resourcetype.find(f"{_D}collection") is not None
    return DavResource(
        path=unquote(urlsplit(href.strip()).path),
        is_dir=is_dir,
        etag=_text(props, f"{_D}getetag"),
        last_modified_ns=_http_date_ns(_text(props, f"{_D}getlastmodified")),
        size=_int(_text(props, f"{_D}getcontentlength")),
        fileid=_text(props, f"{_OC}fileid"),
        checksums=_checksums(props.get(f"{_OC}checksums")),
        meta=_text(props, f"{_S}meta"),
        original_location=_text(props, f"{_NC}trashbin-original-location"),
        deletion_time=_int(_text(props, f"{_NC}trashbin-deletion-time")),
        tree_size=_int(_text(props, f"{_OC}size")),
    )


def _text(props: dict[str, ET.Element], tag: str) -> str | None:
    elem = props.get(tag)
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _http_date_ns(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(parsedate_to_datetime(text).timestamp()) * 1_000_000_000
    except (TypeError, ValueError):
        return None


def _checksums(elem: ET.Element | None) -> tuple[str, ...]:
    """``oc:checksums`` holds ``oc:checksum`` elements, each "SHA1:.. MD5:.. SHA256:.." (space separated)."""
    if elem is None:
        return ()
    texts = [c.text or "" for c in elem] or [elem.text or ""]
    return tuple(token for text in texts for token in text.split() if ":" in token)
