"""``/remote.php/dav/uploads/<user>/<id>/``: chunked upload v2 as Nextcloud 31's ChunkingPlugin does it.

An upload folder lists a virtual ``.file`` (the chunks joined in name order) whose ETag is the
folder's. The final ``MOVE .file`` is checked like any Sabre MOVE: conditional headers apply to
the ``.file`` (``If-None-Match: *`` always fails, it exists), an ``If:`` header to the destination
it names; the upload folder survives a failed MOVE and is gone after a successful one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .dav import (
    ALLOW_COLLECTION,
    DAV_HEADER,
    FILES_PREFIX,
    check_conditions,
    content_disposition,
    lists_members,
    multistatus_answer,
    parse_destination,
    parse_unix_time,
)
from .errors import (
    BAD_REQUEST,
    CONFLICT,
    FORBIDDEN,
    INSUFFICIENT_STORAGE,
    METHOD_NOT_ALLOWED,
    HttpError,
    file_locked,
    not_found,
    precondition_failed,
)
from .names import copy_error, name_error, nfc, part_file_too_long
from .props import PropValue, collection, d, encode_path, http_date, requested_props, response
from .store import FileWrite
from .transport import Request, Response, empty_answer
from .tree import Chunk, Upload, oc_id, split_path

if TYPE_CHECKING:
    from .server import NextcloudServer

UPLOADS = "/remote.php/dav/uploads/"
FOLDER_ALLPROP = [d("getlastmodified"), d("resourcetype")]
FILE_ALLPROP = [d("getlastmodified"), d("getcontentlength"), d("resourcetype"), d("getetag"), d("getcontenttype")]
OCTET_STREAM = "application/octet-stream"
TAGGED_LIST = re.compile(r"<([^>]+)>\s*\(\s*\[\"?([^\"\]]*)\"?\]\s*\)")


def handle(server: NextcloudServer, request: Request, rest: str) -> Response:
    owner, _, inner = unquote(rest).partition("/")
    parts = split_path(inner)
    uploads = UploadsRequest(server, request, owner, parts)
    if not parts:
        return uploads.home()
    if len(parts) == 1:
        return uploads.folder(parts[0])
    return uploads.item(parts[0], "/".join(parts[1:]))


class UploadsRequest:
    def __init__(self, server: NextcloudServer, request: Request, owner: str, parts: list[str]) -> None:
        self.server = server
        self.request = request
        self.user = request.user
        self.owner = owner
        self.parts = parts

    def missing(self, upload_id: str) -> HttpError:
        # Nextcloud's own wording, with the double slash.
        return not_found(f"File with name //{upload_id} could not be located")

    def upload(self, upload_id: str) -> Upload:
        upload = self.server.uploads.get((self.user, upload_id)) if self.owner == self.user else None
        if upload is None:
            raise self.missing(upload_id)
        return upload

    def href(self, upload_id: str | None = None, name: str | None = None) -> str:
        href = f"{UPLOADS}{encode_path(self.owner)}/"
        if upload_id is not None:
            href += encode_path(upload_id) + "/"
        if name is not None:
            href += encode_path(name)
        return href

    # -- the uploads home and one upload folder -----------------------------------------------

    def home(self) -> Response:
        if self.request.method == "OPTIONS":
            return _options()
        if self.request.method != "PROPFIND":
            raise HttpError(405, f"{self.request.method} is not allowed here", METHOD_NOT_ALLOWED)
        wanted = requested_props(self.request.body())
        with self.server.lock:
            answers = [response(self.href(), self.folder_values(self.server.now()), wanted or FOLDER_ALLPROP)]
            if self.owner == self.user and self.depth() != 0:
                for (user, upload_id), upload in sorted(self.server.uploads.items()):
                    if user == self.user:
                        values = self.folder_values(upload.mtime)
                        answers.append(response(self.href(upload_id), values, wanted or FOLDER_ALLPROP))
        return multistatus_answer(answers)

    def folder(self, upload_id: str) -> Response:
        method = self.request.method
        if method == "MKCOL":
            return self.create(upload_id)
        with self.server.lock:
            upload = self.upload(upload_id)
            if method == "PROPFIND":
                return self.listing(upload_id, upload)
            if method == "DELETE":
                del self.server.uploads[(self.user, upload_id)]
                return empty_answer(204)
        raise HttpError(405, f"{method} is not allowed on an upload folder", METHOD_NOT_ALLOWED)

    def create(self, upload_id: str) -> Response:
        self.request.discard_body()
        with self.server.lock:
            if self.owner != self.user:
                raise HttpError(403, f"Permission denied to create file (filename {upload_id})", FORBIDDEN)
            if (self.user, upload_id) in self.server.uploads:
                raise HttpError(405, "The resource you tried to create already exists", METHOD_NOT_ALLOWED)
            now = self.server.now()
            destination = self.request.header("Destination") or ""
            self.server.uploads[(self.user, upload_id)] = Upload(destination, self.server.ids.folder_etag(), now)
        return empty_answer(201)

    def depth(self) -> int:
        return 1 if lists_members(self.request) else 0

    def listing(self, upload_id: str, upload: Upload) -> Response:
        wanted = requested_props(self.request.body())
        answers = [response(self.href(upload_id), self.folder_values(upload.mtime), wanted or FOLDER_ALLPROP)]
        if self.depth() != 0:
            answers.append(
                response(self.href(upload_id, ".file"), self.dot_file_values(upload), wanted or FILE_ALLPROP)
            )
            for name in sorted(upload.chunks):
                values = self.chunk_values(upload.chunks[name])
                answers.append(response(self.href(upload_id, name), values, wanted or FILE_ALLPROP))
        return multistatus_answer(answers)

    @staticmethod
    def folder_values(mtime: int) -> dict[str, PropValue]:
        return {d("getlastmodified"): http_date(mtime), d("resourcetype"): collection()}

    @staticmethod
    def dot_file_values(upload: Upload) -> dict[str, PropValue]:
        return {
            d("getetag"): f'"{upload.etag}"',
            d("getcontentlength"): str(upload.size()),
            d("resourcetype"): None,
            d("getlastmodified"): http_date(upload.mtime),
            d("getcontenttype"): OCTET_STREAM,
        }

    @staticmethod
    def chunk_values(chunk: Chunk) -> dict[str, PropValue]:
        return {
            d("getetag"): f'"{chunk.etag}"',
            d("getcontentlength"): str(len(chunk.data)),
            d("resourcetype"): None,
            d("getlastmodified"): http_date(chunk.mtime),
            d("getcontenttype"): OCTET_STREAM,
        }

    # -- chunks and .file ------------------------------------------------------------------

    def item(self, upload_id: str, name: str) -> Response:
        method = self.request.method
        if method == "PUT":
            return self.put_chunk(upload_id, name)
        if method == "MOVE" and name == ".file":
            return self.assemble(upload_id)
        with self.server.lock:
            upload = self.upload(upload_id)
            if method == "MKCOL":
                raise HttpError(403, f"Permission denied to create file (filename {name})", FORBIDDEN)
            if method in ("GET", "HEAD"):
                return self.download(upload, name)
            if method == "PROPFIND":
                values = (
                    self.dot_file_values(upload) if name == ".file" else self.chunk_values(self.chunk(upload, name))
                )
                wanted = requested_props(self.request.body()) or FILE_ALLPROP
                return multistatus_answer([response(self.href(upload_id, name), values, wanted)])
            if method == "DELETE":
                self.chunk(upload, name)
                del upload.chunks[name]
                return empty_answer(204)
        raise HttpError(405, f"{method} is not allowed on a chunk", METHOD_NOT_ALLOWED)

    def chunk(self, upload: Upload, name: str) -> Chunk:
        chunk = upload.chunks.get(name)
        if chunk is None:
            raise not_found(f"File with name {name} could not be located")
        return chunk

    def download(self, upload: Upload, name: str) -> Response:
        if name == ".file":
            data, etag, mtime = upload.assembled(), upload.etag, upload.mtime
        else:
            chunk = self.chunk(upload, name)
            data, etag, mtime = chunk.data, chunk.etag, chunk.mtime
        headers = [
            ("Content-Type", OCTET_STREAM),
            ("Last-Modified", http_date(mtime)),
            ("ETag", f'"{etag}"'),
            ("OC-ETag", f'"{etag}"'),
            ("Content-Disposition", content_disposition(name)),
            ("X-Accel-Buffering", "no"),
        ]
        return Response(200, data, headers)

    def put_chunk(self, upload_id: str, name: str) -> Response:
        with self.server.lock:
            self.upload(upload_id)
            self.check_quota()
        data = self.request.body()
        with self.server.lock:
            upload = self.upload(upload_id)  # it may have been aborted meanwhile
            now = self.server.now()
            existing = upload.chunks.get(name)
            chunk = Chunk(data, self.server.ids.file_etag(), now)
            upload.chunks[name] = chunk
            upload.etag = self.server.ids.folder_etag()
            upload.mtime = now
        if existing is None:
            return empty_answer(201)
        return empty_answer(204, [("ETag", f'"{chunk.etag}"'), ("OC-ETag", f'"{chunk.etag}"')])

    def check_quota(self) -> None:
        """Nextcloud refuses each chunk of an upload whose OC-Total-Length exceeds the free space."""
        total = (self.request.header("OC-Total-Length") or "").strip()
        free = self.server.free_bytes(self.user)
        if free is None or not total.isdigit() or int(total) <= free:
            return
        _, dest = parse_destination_or_none(self.request)
        folder = "/" + "/".join(dest[:-1])
        raise HttpError(
            507, f"Insufficient space in {folder}, {int(total)} required, {free} available", INSUFFICIENT_STORAGE
        )

    # -- the final MOVE ------------------------------------------------------------------------

    def assemble(self, upload_id: str) -> Response:
        with self.server.lock:
            upload = self.upload(upload_id)
            dest = self.checked_destination(upload)
            data = upload.assembled()
            self.check_total_length(len(data))
            if part_file_too_long(nfc(dest[-1])):
                raise copy_error(-1)
            mtime, mtime_error = parse_unix_time(self.request.header("X-OC-MTime"), "X-OC-MTime")
            if mtime_error is not None:
                raise mtime_error
            checksum = (self.request.header("OC-Checksum") or "").strip() or None
            node, created = self.server.write_file(self.user, dest, FileWrite(data, mtime, checksum))
            del self.server.uploads[(self.user, upload_id)]
        headers = [("X-OC-MTime", "accepted")] if self.request.header("X-OC-MTime") is not None else []
        headers += [("OC-ETag", f'"{node.etag}"'), ("ETag", f'"{node.etag}"'), ("OC-FileId", oc_id(node.fileid))]
        return empty_answer(201 if created else 204, headers)

    def checked_destination(self, upload: Upload) -> list[str]:
        """The destination of the final MOVE, after every check Sabre and the ChunkingPlugin make,
        in their order: the conditional headers (on ``.file``), the ``If:`` header, then the
        destination itself."""
        owner, dest = parse_destination(self.request)
        check_conditions(self.request, upload.etag)
        if owner != self.user or not dest:
            name = dest[-1] if dest else ""
            raise HttpError(403, f"Permission denied to create file (filename {name})", FORBIDDEN)
        self.check_if_header()
        self.check_destination(dest)
        dest_path = "/".join(nfc(part) for part in dest)
        if self.server.file_locks.is_locked(self.user, dest_path):
            raise file_locked(dest_path)
        return dest

    def check_if_header(self) -> None:
        """``If: <URL> (["etag"])`` (a full or path-only URL): the tagged file must exist and have that ETag."""
        header = self.request.header("If")
        if header is None:
            return
        for url, etag in TAGGED_LIST.findall(header):
            path = unquote(urlsplit(url).path)
            if not path.startswith(FILES_PREFIX):
                continue
            owner, _, rest = path[len(FILES_PREFIX) :].partition("/")
            parts = split_path(rest)
            node = self.server.find(owner, parts) if owner == self.user else None
            if node is None:
                raise not_found(f"File with name /{'/'.join(parts)} could not be located")
            if node.etag != etag:
                raise precondition_failed(
                    f"Failed to find a valid token/etag combination for files/{owner}/{'/'.join(parts)}", "If"
                )

    def check_destination(self, dest: list[str]) -> None:
        parent = self.server.find(self.user, dest[:-1])
        if parent is None or not parent.is_dir:
            raise HttpError(409, "The destination node is not found", CONFLICT)
        existing = parent.children.get(nfc(dest[-1]))
        if existing is not None and existing.is_dir:
            raise HttpError(
                400, f"The given destination files/{self.user}/{'/'.join(dest)} is a directory.", BAD_REQUEST
            )
        if existing is not None and (self.request.header("Overwrite") or "T").strip().upper() == "F":
            raise precondition_failed(
                "The destination node already exists, and the overwrite header is set to false", "Overwrite"
            )
        error = name_error(nfc(dest[-1]), self.server.capabilities)
        if error is not None:
            raise error

    def check_total_length(self, size: int) -> None:
        total = self.request.header("OC-Total-Length")
        if total is not None and total.strip().isdigit() and int(total) != size:
            raise HttpError(400, f"Chunks on server do not sum up to {int(total)} but to {size} bytes", BAD_REQUEST)


def parse_destination_or_none(request: Request) -> tuple[str | None, list[str]]:
    try:
        return parse_destination(request)
    except HttpError:
        return None, []


def _options() -> Response:
    headers = [("Allow", ALLOW_COLLECTION), ("DAV", DAV_HEADER), ("MS-Author-Via", "DAV"), ("Accept-Ranges", "bytes")]
    return empty_answer(200, headers)
