"""PROPFIND answers: hrefs encoded as Sabre encodes them, and ``d:response`` elements with the
found properties in a 200 propstat and the unknown ones in a 404 propstat."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from email.utils import formatdate

from .errors import BAD_REQUEST, OC_ERROR_NS, SABRE_NS, HttpError

DAV = "DAV:"
OC = "http://owncloud.org/ns"
NC = "http://nextcloud.org/ns"

ET.register_namespace("d", DAV)
ET.register_namespace("s", SABRE_NS)
ET.register_namespace("oc", OC)
ET.register_namespace("nc", NC)
ET.register_namespace("o", OC_ERROR_NS)

# A property's value: text, child elements, or None for an empty element.
PropValue = str | list[ET.Element] | None

# Sabre\HTTP\encodePath keeps these; everything else is %-escaped with lower-case hex digits.
_UNESCAPED = re.compile(rb"[A-Za-z0-9_\-.~()/:@]")


def d(name: str) -> str:
    return f"{{{DAV}}}{name}"


def oc(name: str) -> str:
    return f"{{{OC}}}{name}"


def nc(name: str) -> str:
    return f"{{{NC}}}{name}"


def encode_path(path: str) -> str:
    """Percent-encode a path as Sabre does (``a b&c`` -> ``a%20b%26c``, lower-case escapes)."""
    out: list[str] = []
    for byte in path.encode():
        char = bytes([byte])
        out.append(char.decode() if _UNESCAPED.fullmatch(char) else f"%{byte:02x}")
    return "".join(out)


def http_date(timestamp: int) -> str:
    return formatdate(timestamp, usegmt=True)


def collection() -> list[ET.Element]:
    return [ET.Element(d("collection"))]


def href_value(href: str) -> list[ET.Element]:
    """A property whose value is a ``d:href`` (``d:current-user-principal``)."""
    element = ET.Element(d("href"))
    element.text = href
    return [element]


def response(href: str, values: Mapping[str, PropValue], wanted: Sequence[str]) -> ET.Element:
    """One ``d:response``: wanted properties found in ``values`` under 200, the others under 404."""
    element = ET.Element(d("response"))
    ET.SubElement(element, d("href")).text = href
    found = [name for name in wanted if name in values]
    missing = [name for name in wanted if name not in values]
    if found or not missing:
        prop = _propstat(element, "HTTP/1.1 200 OK")
        for name in found:
            _set_value(ET.SubElement(prop, name), values[name])
    if missing:
        prop = _propstat(element, "HTTP/1.1 404 Not Found")
        for name in missing:
            ET.SubElement(prop, name)
    return element


def status_response(href: str, statuses: dict[str, int]) -> ET.Element:
    """A PROPPATCH ``d:response``: one propstat per status, with the properties it applies to."""
    element = ET.Element(d("response"))
    ET.SubElement(element, d("href")).text = href
    reasons = {200: "OK", 403: "Forbidden", 404: "Not Found", 424: "Failed Dependency"}
    for status in sorted(set(statuses.values())):
        prop = _propstat(element, f"HTTP/1.1 {status} {reasons.get(status, '')}".rstrip())
        for name, value in statuses.items():
            if value == status:
                ET.SubElement(prop, name)
    return element


def multistatus(responses: Sequence[ET.Element]) -> bytes:
    root = ET.Element(d("multistatus"))
    root.extend(responses)
    return b'<?xml version="1.0"?>\n' + ET.tostring(root) + b"\n"


def requested_props(body: bytes) -> list[str] | None:
    """The property names a PROPFIND asks for; None for allprop, propname or an empty body."""
    if not body.strip():
        return None
    root = parse_xml(body)
    prop = root.find(d("prop"))
    if prop is None:
        return None
    return [child.tag for child in prop]


def parse_xml(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise HttpError(400, f"The request body had an invalid XML body: {exc}", BAD_REQUEST) from exc


def _propstat(element: ET.Element, status: str) -> ET.Element:
    propstat = ET.SubElement(element, d("propstat"))
    prop = ET.SubElement(propstat, d("prop"))
    ET.SubElement(propstat, d("status")).text = status
    return prop


def _set_value(element: ET.Element, value: PropValue) -> None:
    if isinstance(value, list):
        element.extend(value)
    elif value is not None:
        element.text = value
