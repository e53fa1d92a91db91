"""``POST /remote.php/dav/bulk``: Nextcloud's bulk upload (capability ``dav.bulkupload`` 1.0).

The body is ``multipart/related``; each part carries ``X-File-Path`` (from the user's root),
``X-File-MD5`` and ``Content-Length`` (both required), and optionally ``X-File-Mtime`` or
``X-OC-Mtime``. The answer is a JSON object keyed by each path as sent: etag (no quotes), fileid
(``oc:id`` form) and permissions, or ``error`` + ``message``. A missing required header or a wrong
MD5 stops the request with 400 and lists only the parts written before it. Parent folders are not
created. Nextcloud answers with ``Content-type: text/html`` although the body is JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any

from .dav import parse_unix_time
from .errors import BAD_REQUEST, HttpError
from .names import name_error, nfc
from .store import FileWrite
from .transport import HTML_CONTENT_TYPE, Request, Response
from .tree import oc_id, split_path

if TYPE_CHECKING:
    from .server import NextcloudServer

CRLF = b"\r\n"
MAX_PARTS = 100_000


@dataclass
class Part:
    headers: dict[str, str]  # lower-case names
    data: bytes


class Aborted(Exception):
    """A part Nextcloud refuses outright: the request ends with 400 and the results so far."""


def handle(server: NextcloudServer, request: Request) -> Response:
    boundary = _boundary(request.header("Content-Type") or "")
    body = request.body()
    results: dict[str, dict[str, Any]] = {}
    try:
        for part in _parts(body, boundary):
            path = part.headers.get("x-file-path", "")
            results[path] = _store(server, request.user, path, part)
    except Aborted:
        return _answer(400, results)
    return _answer(200, results)


def _answer(status: int, results: dict[str, dict[str, Any]]) -> Response:
    # PHP's json_encode: "[]" for an empty answer, slashes escaped.
    text = json.dumps(results, separators=(",", ":")) if results else "[]"
    return Response(status, text.replace("/", "\\/").encode(), [("Content-type", HTML_CONTENT_TYPE)])


def _boundary(content_type: str) -> bytes:
    message = Message()
    message["Content-Type"] = content_type
    if message.get_content_type() != "multipart/related":
        raise HttpError(400, "Content-Type must be multipart/related", BAD_REQUEST)
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise HttpError(400, "Boundary is invalid", BAD_REQUEST)
    return boundary.encode()


def _parts(body: bytes, boundary: bytes) -> Iterator[Part]:
    """The parts in order, one at a time (the caller writes each before the next is checked).

    :raises Aborted: a part lacks X-File-MD5 or Content-Length, or its MD5 does not match.
    """
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        raise HttpError(500, "Unknown error while seeking content")
    position = len(delimiter)
    for _ in range(MAX_PARTS):
        if body.startswith(b"--", position):
            return
        position = _skip_crlf(body, position)
        headers, position = _headers(body, position)
        if "x-file-md5" not in headers or not headers.get("content-length", "").strip().isdigit():
            raise Aborted
        length = int(headers["content-length"])
        data = body[position : position + length]
        position = _skip_crlf(body, position + length)
        if not body.startswith(delimiter, position):
            raise HttpError(500, "Unknown error while seeking content")
        position += len(delimiter)
        if hashlib.md5(data).hexdigest() != headers["x-file-md5"].strip().lower():
            raise Aborted
        yield Part(headers, data)


def _skip_crlf(body: bytes, position: int) -> int:
    return position + 2 if body.startswith(CRLF, position) else position


def _headers(body: bytes, position: int) -> tuple[dict[str, str], int]:
    end = body.find(CRLF + CRLF, position)
    if end < 0:
        raise HttpError(500, "Unknown error while seeking content")
    headers: dict[str, str] = {}
    for line in body[position:end].decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, end + 4


def _store(server: NextcloudServer, user: str, path: str, part: Part) -> dict[str, Any]:
    relative = path.lstrip("/")
    parts = split_path(relative)
    error = name_error(nfc(parts[-1]), server.capabilities) if parts else None
    if error is not None or not parts:
        return {"error": True, "message": f"Invalid path: files/{relative}"}
    mtime_header = part.headers.get("x-file-mtime", part.headers.get("x-oc-mtime"))
    mtime, mtime_error = parse_unix_time(mtime_header, "X-OC-MTime")
    if mtime_error is not None:
        return {"error": True, "message": mtime_error.message}
    with server.lock:
        parent = server.find(user, parts[:-1])
        existing = parent.children.get(nfc(parts[-1])) if parent is not None and parent.is_dir else None
        if parent is None or not parent.is_dir or (existing is not None and existing.is_dir):
            return {"error": True, "message": f'Could not create path "/{user}/files/{relative}"'}
        path = "/".join(nfc(part) for part in parts)
        if server.file_locks.is_locked(user, path):
            return {"error": True, "message": f'"/{path}" is locked'}
        node, _ = server.write_file(user, parts, FileWrite(part.data, mtime))
    return {"error": False, "etag": node.etag, "fileid": oc_id(node.fileid), "permissions": "RGDNVW"}
