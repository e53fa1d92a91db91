"""Nextcloud's bulk upload: many small new files in one ``POST /remote.php/dav/bulk``.

The request (capability ``dav.bulkupload`` "1.0", as the Nextcloud 31 corpus shows it) is one
``multipart/related`` body; each part carries ``X-File-Path`` (from the user's root, with a
leading slash), ``X-File-MD5`` (hex, checked by the server), ``X-File-Mtime`` (whole seconds)
and ``Content-Length``, then the bytes. The answer is JSON (served as ``text/html``) keyed by
``X-File-Path`` exactly as sent: ``{"error": false, "etag": <no quotes>, "fileid": <OC-FileId
form>, ...}`` or ``{"error": true, "message": ...}`` per file. An MD5 mismatch aborts the
request with 400 and a JSON object of the parts written before it.

The endpoint cannot be told "create only" (it overwrites), and it does not create folders:
the remote offers it only for files in folders it created itself during this run, where no
other client can have put a file since the listing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from syncd.errors import ItemError, TransientError
from syncd.models import Entry
from syncd.remotes._webdav_presets import parent_of
from syncd.remotes._webdav_session import DavSession
from syncd.remotes._webdav_xml import sabre_message
from syncd.remotes.base import BatchLimits, NewFile

MiB = 1 << 20
# The desktop client's own order of size: a few MiB per request keeps one failed request
# cheap to redo file by file, and 100 files already make the per-request cost small.
BULK_LIMITS = BatchLimits(max_files=100, max_file_bytes=1 * MiB, max_batch_bytes=10 * MiB)
CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class Written:
    """What the server says it wrote for one part."""

    etag: str  # quoted, as a PROPFIND lists it
    fileid: str | None  # as the answer gave it (OC-FileId form)


# -- what the remote offers -------------------------------------------------------------


def batch_limits(session: DavSession) -> BatchLimits | None:
    """The bulk limits on a Nextcloud server that announces ``dav.bulkupload``, else None."""
    if session.preset.name != "nextcloud" or session.user_root is None or not session.server.bulk_upload:
        return None
    return BULK_LIMITS


def accepts_in_batch(session: DavSession, path: str, size: int) -> bool:
    """Whether ``path`` may go in a bulk upload: a small file with a name the server takes,
    in a folder this remote created in this run (so no other client's file can be there)."""
    if size > BULK_LIMITS.max_file_bytes or not session.created_this_run(parent_of(path)):
        return False
    # A name the server refuses goes alone: the single path reports it with its reason.
    return _fits_a_header(path) and session.name_problem(path) is None


def create_batch(session: DavSession, files: Sequence[NewFile]) -> list[Entry | ItemError]:
    """Create ``files`` (distinct paths) in one bulk request (see ``SupportsBatchCreate``).

    Every file gets its own answer: its entry as a later listing shows it, or an item error
    (refused by the server, missing from its answer, not reached when the server stopped
    early, or a name that cannot be sent as a header).

    :raises FatalError: credentials refused, or what the session maps a refusal to.
    :raises TransientError: the request failed as a whole (no answer, 429, 5xx): nothing in
        it can be trusted.
    """
    results: list[Entry | ItemError | None] = [
        None if _fits_a_header(f.path) else ItemError(f.path, "a control character in its name") for f in files
    ]
    sendable = [f for f, result in zip(files, results, strict=True) if result is None]
    answers = iter(_send(session, sendable) if sendable else [])
    return [result if result is not None else next(answers) for result in results]


def _send(session: DavSession, files: Sequence[NewFile]) -> list[Entry | ItemError]:
    """One POST of ``files``; their answers, in order. :raises: as :func:`create_batch`."""
    sent = [x_file_path(session, f.path) for f in files]
    body = MultipartBody(files, sent)
    response = session.transport.request(
        "POST",
        session.transport.absolute(bulk_path(session)),
        headers={"Content-Type": f"multipart/related; boundary={body.boundary}"},
        body=lambda: body,
        # Once only: a resent request would overwrite what the first one may have written,
        # where the caller retries each file alone, create-only.
        replayable=False,
    )
    status = response.status_code
    if status not in (200, 400):
        try:
            session.raise_for(response, f"{len(files)} files of one bulk upload", "bulk upload")
        except ItemError as exc:  # e.g. 404 or 423 for the request: each file is retried alone
            return [ItemError(f.path, f"its bulk upload failed ({exc.message})") for f in files]
    try:
        payload = response.content
    finally:
        response.close()
    stopped = f"not written: the server stopped the bulk upload before it (HTTP {status})"
    answers = read_answer(payload, sent, missing=stopped if status == 400 else None)
    if answers is None and status == 400:  # Sabre's XML, not the endpoint's JSON: all refused
        why = sabre_message(payload)[1] or _brief(payload)
        return [ItemError(f.path, f"its bulk upload was refused (HTTP 400: {why})") for f in files]
    if answers is None:
        raise TransientError(f"{session.label}: bulk upload of {len(files)} files: unreadable answer")
    return [_result(session, f, answer) for f, answer in zip(files, answers, strict=True)]


def _result(session: DavSession, new_file: NewFile, answer: Written | str) -> Entry | ItemError:
    if isinstance(answer, str):
        return ItemError(new_file.path, answer)
    return session.entry_from_write(
        new_file.path,
        size=len(new_file.data),
        mtime_ns=new_file.mtime_ns,
        etag=answer.etag,
        fileid=answer.fileid,
        sha256=None,  # the bulk endpoint stores no checksum: a listing shows none
    )


# -- the request ------------------------------------------------------------------------


def x_file_path(session: DavSession, key: str) -> str:
    """``X-File-Path`` of ``key``: from the user's root (the remote's root may lie below it),
    with a leading slash."""
    assert session.user_root is not None
    user_root = session.user_root.dav_path(f"files/{session.user_root.user}/")
    below = session.transport.base_path[len(user_root) :]
    return f"/{below}{key}"


def bulk_path(session: DavSession) -> str:
    """The decoded server path of the bulk endpoint (below Nextcloud's own prefix, if any)."""
    assert session.user_root is not None
    return session.user_root.dav_path("bulk")


class MultipartBody:
    """The ``multipart/related`` body of a bulk upload, sent piece by piece without joining
    the files into one copy. ``__len__`` makes requests send a Content-Length."""

    def __init__(self, files: Sequence[NewFile], paths: Sequence[str]) -> None:
        self.boundary = _boundary(files, paths)
        delimiter = b"--" + self.boundary.encode()
        self._pieces: list[bytes] = []
        for new_file, path in zip(files, paths, strict=True):
            self._pieces += [delimiter + CRLF, part_headers(new_file, path) + CRLF, new_file.data, CRLF]
        self._pieces.append(delimiter + b"--" + CRLF)
        self._length = sum(len(piece) for piece in self._pieces)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._pieces)


def part_headers(new_file: NewFile, path: str) -> bytes:
    """The headers of one part, each line ended by CRLF (the blank line is the caller's).

    :raises ValueError: a path that cannot be a header value (a control character).
    """
    if not _fits_a_header(path):
        raise ValueError(f"{path!r} cannot be sent as X-File-Path")
    lines = [
        f"X-File-Path: {path}",
        f"X-File-MD5: {hashlib.md5(new_file.data).hexdigest()}",
        f"X-File-Mtime: {new_file.mtime_ns // 1_000_000_000}",
        f"Content-Length: {len(new_file.data)}",
    ]
    return "".join(f"{line}\r\n" for line in lines).encode()


def _boundary(files: Sequence[NewFile], paths: Sequence[str]) -> str:
    """A boundary found in no file and no path (a random one, checked: a file may hold any bytes)."""
    while True:  # a 128-bit random value repeats with negligible chance: one round in practice
        boundary = f"syncd-{uuid.uuid4().hex}"
        token = boundary.encode()
        if not any(token in f.data for f in files) and not any(boundary in p for p in paths):
            return boundary


def _fits_a_header(path: str) -> bool:
    """No control character (CR or LF would end the header and let the name inject others)."""
    return not any(ord(char) < 0x20 or ord(char) == 0x7F for char in path)


# -- the answer -------------------------------------------------------------------------


def read_answer(payload: bytes, sent: Sequence[str], *, missing: str | None) -> list[Written | str] | None:
    """Per sent path, what the server wrote, or why not (a message).

    ``missing`` is the message of a path the answer does not list (after a 400, the server
    stopped before it); None: a path not listed is an error of its own.

    :returns: None when ``payload`` is not the endpoint's JSON object.
    """
    try:
        parsed = json.loads(payload)
    except ValueError:
        return None
    if parsed == []:
        parsed = {}  # PHP's empty array: an empty answer
    if not isinstance(parsed, dict):
        return None
    return [_one_answer(parsed.get(path), missing) for path in sent]


def _one_answer(item: object, missing: str | None) -> Written | str:
    if item is None:
        return missing or "not written: the bulk upload's answer does not list it"
    if not isinstance(item, Mapping):
        return f"unreadable bulk upload answer for it: {_brief(item)}"
    if item.get("error") is not False:
        return f"refused in a bulk upload: {item.get('message') or 'no reason given'}"
    etag, fileid = item.get("etag"), item.get("fileid")
    if not isinstance(etag, str) or not etag.strip('"'):
        return "the bulk upload's answer gives it no etag"
    # The answer gives the etag bare; PROPFIND's getetag (and PUT's ETag) quote it.
    return Written(etag=f'"{etag.strip(chr(34))}"', fileid=str(fileid) if isinstance(fileid, str | int) else None)


def _brief(value: object) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())
    return text[:200] + "..." if len(text) > 200 else text
