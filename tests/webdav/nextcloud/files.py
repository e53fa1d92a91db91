"""``/remote.php/dav/files/<user>/`` (and the legacy ``/remote.php/webdav/``): the user's tree."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import checksums
from .dav import (
    ALLOW_COLLECTION,
    ALLOW_FILE,
    DAV_HEADER,
    LEGACY_DAV_HEADER,
    LEGACY_PREFIX,
    check_conditions,
    content_disposition,
    content_type_header,
    mimetype,
    multistatus_answer,
    parse_destination,
    parse_unix_time,
)
from .errors import (
    BAD_REQUEST,
    CONFLICT,
    FORBIDDEN,
    INSUFFICIENT_STORAGE,
    LOCKED_EXCEPTION,
    METHOD_NOT_ALLOWED,
    NOT_IMPLEMENTED,
    RANGE_NOT_SATISFIABLE,
    XML_CONTENT_TYPE,
    HttpError,
    file_locked,
    not_found,
    precondition_failed,
)
from .names import copy_error, is_part_file, name_error, nfc, part_file_too_long
from .props import (
    PropValue,
    collection,
    d,
    encode_path,
    http_date,
    multistatus,
    nc,
    oc,
    parse_xml,
    requested_props,
    response,
    status_response,
)
from .store import FileWrite
from .transport import HTML_CONTENT_TYPE, Request, Response, empty_answer
from .tree import Node, oc_id

if TYPE_CHECKING:
    from .server import NextcloudServer

WEBDAV_PAGE = (
    b"This is the WebDAV interface. It can only be accessed by WebDAV clients such as the Nextcloud desktop sync "
    b"client."
)
FOLDER_ALLPROP = [
    d("getlastmodified"),
    d("resourcetype"),
    d("quota-used-bytes"),
    d("quota-available-bytes"),
    d("getetag"),
]
FILE_ALLPROP = [d("getlastmodified"), d("getcontentlength"), d("resourcetype"), d("getetag"), d("getcontenttype")]
PROTECTED_PROPS = frozenset(
    {
        d("getlastmodified"),
        d("getetag"),
        d("getcontentlength"),
        d("getcontenttype"),
        d("resourcetype"),
        d("quota-used-bytes"),
        d("quota-available-bytes"),
        oc("checksums"),
        oc("fileid"),
        oc("id"),
        oc("size"),
        oc("permissions"),
    }
)
EXISTS = "The resource you tried to create already exists"


def handle(server: NextcloudServer, request: Request, owner: str, rest: str, *, href_root: str) -> Response:
    # Decoded first, then split: an encoded %2F separates path segments, as on the real server.
    parts = [part for part in unquote(rest).split("/") if part]
    tree = FilesRequest(server, request, owner, parts, href_root)
    method = tree.methods().get(request.method)
    if method is None:
        raise no_plugin(request.method)
    return method()


def no_plugin(method: str) -> HttpError:
    """Sabre's answer to a method no plugin handled."""
    return HttpError(
        501, f"There was no plugin in the system that was willing to handle this {method} method.", NOT_IMPLEMENTED
    )


class FilesRequest:
    """One request on a user's tree; ``parts`` is the decoded path from the owner's root."""

    def __init__(self, server: NextcloudServer, request: Request, owner: str, parts: list[str], href_root: str):
        self.server = server
        self.request = request
        self.user = request.user
        self.owner = owner
        self.parts = parts
        self.href_root = href_root
        self.path = "/".join(nfc(part) for part in parts)

    def methods(self) -> dict[str, Callable[[], Response]]:
        return {
            "PROPFIND": self.propfind,
            "GET": self.get,
            "HEAD": self.get,
            "PUT": self.put,
            "MKCOL": self.mkcol,
            "DELETE": self.delete,
            "MOVE": self.move,
            "COPY": self.copy,
            "OPTIONS": self.options,
            "PROPPATCH": self.proppatch,
            "LOCK": self.lock,
            "UNLOCK": self.unlock,
            "PATCH": self.patch,
        }

    # -- locating nodes ------------------------------------------------------------------

    @property
    def foreign(self) -> bool:
        return self.owner != self.user

    def locate(self, parts: list[str] | None = None) -> Node:
        """The node at ``parts``. :raises HttpError: 404 worded as Nextcloud words it."""
        parts = self.parts if parts is None else parts
        if self.foreign:
            raise not_found(f"File with name /{'/'.join(parts)} could not be located")
        node = self.server.roots[self.owner]
        for index, part in enumerate(parts):
            if not node.is_dir:
                raise not_found(f"Could not find node at path: files/{self.owner}/{'/'.join(parts)}")
            child = node.children.get(nfc(part))
            if child is None:
                raise not_found(f"File with name /{'/'.join(parts[: index + 1])} could not be located")
            node = child
        return node

    def locate_parent_for_write(self) -> Node:
        """The folder a PUT writes into. :raises HttpError: 404 as Nextcloud answers a PUT."""
        if self.foreign:
            raise HttpError(403, f"Permission denied to create file (filename {self.parts[-1]})", FORBIDDEN)
        node = self.server.roots[self.owner]
        for index, part in enumerate(self.parts[:-1]):
            child = node.children.get(nfc(part))
            if child is None:
                raise not_found(f"File with name /{'/'.join(self.parts[: index + 1])} could not be located")
            if not child.is_dir:
                raise not_found(f"Node with name '{part}' could not be found")
            node = child
        return node

    def href(self, names: list[str], is_dir: bool) -> str:
        path = encode_path("/".join(names))
        if not names:
            return self.href_root
        return self.href_root + path + ("/" if is_dir else "")

    def check_unlocked(self, path: str, *, moving: bool = False) -> None:
        if self.server.file_locks.is_locked(self.owner, path):
            if moving:
                raise HttpError(500, f'"/{path}" is locked', LOCKED_EXCEPTION)
            raise file_locked(path)

    # -- PROPFIND, PROPPATCH, OPTIONS ------------------------------------------------------

    def propfind(self) -> Response:
        wanted = requested_props(self.request.body())
        dav = LEGACY_DAV_HEADER if self.href_root.startswith(LEGACY_PREFIX) else DAV_HEADER
        with self.server.lock:
            if self.foreign and not self.parts:
                values: dict[str, PropValue] = {d("resourcetype"): collection()}
                return multistatus_answer([response(self.href_root, values, wanted or [d("resourcetype")])], dav=dav)
            phantom = self.phantom_part_file()
            if phantom is not None:
                return multistatus_answer([phantom], dav=dav)
            node = self.locate()
            answers: list[ET.Element] = []
            self.walk(node, [nfc(p) for p in self.parts], self.depth(), wanted, answers)
        answer = multistatus_answer(answers, dav=dav)
        answer.gzip = dav == DAV_HEADER
        return answer

    def phantom_part_file(self) -> ET.Element | None:
        """A missing ``*.part`` path answers as an empty file without fileid (Nextcloud's View)."""
        if not self.parts or not is_part_file(self.parts[-1]) or self.foreign:
            return None
        parent = self.server.find(self.owner, self.parts[:-1])
        if parent is None or not parent.is_dir or nfc(self.parts[-1]) in parent.children:
            return None
        values: dict[str, PropValue] = {
            d("getetag"): '""',
            oc("size"): "0",
            d("getcontentlength"): "0",
            d("resourcetype"): None,
        }
        wanted = requested_props(self.request.body()) or [d("getcontentlength"), d("resourcetype"), d("getetag")]
        return response(self.href([nfc(p) for p in self.parts], False), values, wanted)

    def depth(self) -> int:
        header = (self.request.header("Depth") or "1").strip().lower()
        if header == "0":
            return 0
        if header == "infinity" and self.server.allow_depth_infinity:
            return -1
        return 1  # Sabre answers infinity as 1 when it is not enabled

    def walk(self, node: Node, names: list[str], depth: int, wanted: list[str] | None, out: list[ET.Element]) -> None:
        values = self.node_values(node, names[-1] if names else "")
        default = FOLDER_ALLPROP if node.is_dir else FILE_ALLPROP
        out.append(response(self.href(names, node.is_dir), values, wanted or default))
        if depth == 0 or not node.is_dir:
            return
        for name in sorted(node.children):
            self.walk(node.children[name], [*names, name], depth - 1, wanted, out)

    def node_values(self, node: Node, name: str) -> dict[str, PropValue]:
        """Every property Nextcloud answers for ``node``; the ones not listed answer 404."""
        values: dict[str, PropValue] = {
            d("getetag"): f'"{node.etag}"',
            d("getlastmodified"): http_date(node.mtime),
            d("resourcetype"): collection() if node.is_dir else None,
            d("creationdate"): datetime.fromtimestamp(node.ctime, UTC).isoformat(),
            oc("fileid"): str(node.fileid),
            oc("id"): oc_id(node.fileid),
            oc("size"): str(node.total_size()),
            oc("permissions"): "RGDNVCK" if node.is_dir else "RGDNVW",
            oc("owner-id"): self.owner,
            oc("owner-display-name"): self.owner,
            oc("share-types"): None,
            oc("data-fingerprint"): "",
            nc("mount-type"): "",
            nc("creation_time"): str(node.ctime),
            nc("hidden"): "false",
        }
        if node.is_dir:
            values[d("quota-used-bytes")] = values[oc("size")]
            values[d("quota-available-bytes")] = str(-3 if self.free_bytes is None else self.free_bytes)
            values[nc("has-preview")] = "false"
        else:
            self.file_values(node, name, values)
        return values

    @functools.cached_property
    def free_bytes(self) -> int | None:
        """The owner's free space, once per request (it walks the whole tree when a quota is set)."""
        return self.server.free_bytes(self.owner)

    def file_values(self, node: Node, name: str, values: dict[str, PropValue]) -> None:
        mime = mimetype(name)
        values[d("getcontentlength")] = str(len(node.data))
        values[d("getcontenttype")] = mime
        values[nc("upload_time")] = str(node.upload_time)
        values[nc("has-preview")] = "true" if mime.startswith(("text/", "image/")) else "false"
        if node.checksum:
            values[oc("checksums")] = [_checksum_element(part) for part in node.checksum.split()]

    def proppatch(self) -> Response:
        root = parse_xml(self.request.body())
        statuses: dict[str, int] = {}
        new_mtime: int | None = None
        for prop in root.iter(d("prop")):
            for element in prop:
                if element.tag == d("lastmodified"):
                    statuses[element.tag] = 200
                    new_mtime = int(float((element.text or "0").strip()))
                else:
                    statuses[element.tag] = 403 if element.tag in PROTECTED_PROPS else 200
        failed = any(status != 200 for status in statuses.values())
        if failed:
            statuses = {name: (status if status != 200 else 424) for name, status in statuses.items()}
        with self.server.lock:
            node = self.locate()
            if not failed and new_mtime is not None:
                self.server.touch(self.owner, self.parts, node, new_mtime)
        body = multistatus([status_response(self.request.raw_path, statuses)])
        return Response(207, body, [("Content-Type", XML_CONTENT_TYPE)])

    def options(self) -> Response:
        with self.server.lock:
            node = self.server.find(self.owner, self.parts) if not self.foreign else None
        allow = ALLOW_FILE if node is not None and not node.is_dir else ALLOW_COLLECTION
        headers = [("Allow", allow), ("DAV", DAV_HEADER), ("MS-Author-Via", "DAV"), ("Accept-Ranges", "bytes")]
        return empty_answer(200, headers)

    # -- GET, HEAD ---------------------------------------------------------------------------

    def get(self) -> Response:
        with self.server.lock:
            node = self.locate()
            if node.is_dir:
                return self.get_folder(node)
            self.check_unlocked(self.path)
            current = check_conditions(self.request, node.etag, reading=True, mtime=node.mtime)
            if current is not None:
                return current
            name = nfc(self.parts[-1])
            headers = [
                content_type_header(mimetype(name)),
                ("Last-Modified", http_date(node.mtime)),
                ("ETag", f'"{node.etag}"'),
                ("OC-ETag", f'"{node.etag}"'),
                ("Content-Disposition", content_disposition(name)),
            ]
            if node.checksum:
                headers.append(("OC-Checksum", node.checksum.split()[0]))
            headers.append(("X-Accel-Buffering", "no"))
            return ranged_answer(self.request, node.data, node.etag, headers)

    def get_folder(self, node: Node) -> Response:
        accept = self.request.header("Accept") or ""
        name = nfc(self.parts[-1]) if self.parts else self.owner
        for kind, builder in (("application/zip", _zip), ("application/x-tar", _tar)):
            if kind in accept:
                headers = [
                    ("X-Accel-Buffering", "no"),
                    ("Last-Modified", http_date(node.mtime)),
                    ("Accept-Ranges", "bytes"),
                    ("Content-Type", kind),
                    (
                        "Content-Disposition",
                        content_disposition(f"{name}.{kind.rsplit('-', 1)[-1].rsplit('/', 1)[-1]}"),
                    ),
                    ("Content-Transfer-Encoding", "binary"),
                ]
                return Response(200, builder(node, name), headers)
        return Response(200, WEBDAV_PAGE, [("Content-type", HTML_CONTENT_TYPE)])

    # -- PUT ---------------------------------------------------------------------------------

    def put(self) -> Response:
        if not self.parts:
            raise HttpError(409, "PUT is not allowed on non-files.", CONFLICT)
        name = nfc(self.parts[-1])
        with self.server.lock:
            parent = self.locate_parent_for_write()
            existing = parent.children.get(name)
            if existing is not None and existing.is_dir:
                raise HttpError(409, "PUT is not allowed on non-files.", CONFLICT)
            check_conditions(self.request, None if existing is None else existing.etag)
            if existing is None:
                self.refuse_bad_name(name)
            self.check_quota(self.path, self.declared_size())
            if part_file_too_long(name):
                raise copy_error(self.declared_size() or 0)
            if not self.server.file_locks.try_acquire(self.owner, self.path):
                raise file_locked(self.path)
        try:
            data = self.request.body()  # outside the server lock: other requests go on meanwhile
            return self.store_put(data)
        finally:
            self.server.file_locks.release(self.owner, self.path)

    def declared_size(self) -> int | None:
        for header in ("OC-Total-Length", "Content-Length"):
            value = self.request.header(header)
            if value is not None and value.strip().isdigit():
                return int(value)
        return None

    def check_quota(self, path: str, size: int | None) -> None:
        free = self.server.free_bytes(self.owner)
        if free is not None and size is not None and size > free:
            raise HttpError(
                507, f"Insufficient space in /{path}, {size} required, {free} available", INSUFFICIENT_STORAGE
            )

    def refuse_bad_name(self, name: str) -> None:
        error = name_error(name, self.server.capabilities)
        if error is not None:
            raise error

    def store_put(self, data: bytes) -> Response:
        mtime, mtime_error = parse_unix_time(self.request.header("X-OC-MTime"), "X-OC-MTime")
        ctime, ctime_error = parse_unix_time(self.request.header("X-OC-CTime"), "X-OC-CTime")
        checksum = (self.request.header("OC-Checksum") or "").strip() or None
        write = FileWrite(data, mtime, checksum, ctime, upload_time=mtime_error is None)
        with self.server.lock:
            node, created = self.server.write_file(self.owner, self.parts, write)
        if mtime_error is not None:  # Nextcloud has written the file when it checks the header
            raise mtime_error
        if ctime_error is not None:
            raise ctime_error
        headers = self.accepted_headers()
        headers += [("OC-FileId", oc_id(node.fileid)), ("ETag", f'"{node.etag}"'), ("OC-ETag", f'"{node.etag}"')]
        return empty_answer(201 if created else 204, headers)

    def accepted_headers(self) -> list[tuple[str, str]]:
        return [(name, "accepted") for name in ("X-OC-MTime", "X-OC-CTime") if self.request.header(name) is not None]

    # -- MKCOL -------------------------------------------------------------------------------

    def mkcol(self) -> Response:
        self.check_mkcol_body(self.request.body())
        with self.server.lock:
            parent = self.mkcol_parent()
            name = nfc(self.parts[-1])
            if name in parent.children or is_part_file(name):
                existing = parent.children.get(name)
                allow = ALLOW_FILE if existing is not None and not existing.is_dir else ALLOW_COLLECTION
                raise HttpError(405, EXISTS, METHOD_NOT_ALLOWED, headers={"Allow": allow})
            self.refuse_bad_name(name)
        if self.server.on_mkcol_checked is not None:
            self.server.on_mkcol_checked(self.owner, self.path)
        if not self.server.file_locks.try_acquire(self.owner, self.path):
            raise file_locked(self.path)
        try:
            self.server.hold_mkcol()
            with self.server.lock:
                parent = self.mkcol_parent()
                if name in parent.children:  # another MKCOL won the race after our check
                    raise HttpError(403, f"Could not create directory /{self.path}", FORBIDDEN)
                folder = self.server.new_folder()
                self.server.attach(self.owner, self.parts, folder)
        finally:
            self.server.file_locks.release(self.owner, self.path)
        return empty_answer(201, [("OC-FileId", oc_id(folder.fileid))])

    def check_mkcol_body(self, body: bytes) -> None:
        if not body.strip():
            return
        root = parse_xml(body)
        if root.tag != d("mkcol"):
            received = root.tag if root.tag.startswith("{") else "{}" + root.tag
            raise HttpError(400, f"Expected {{DAV:}}mkcol but received {received} as the root element", BAD_REQUEST)

    def mkcol_parent(self) -> Node:
        if not self.parts:
            raise HttpError(405, EXISTS, METHOD_NOT_ALLOWED, headers={"Allow": ALLOW_COLLECTION})
        if self.foreign:
            raise HttpError(403, f"Permission denied to create file (filename {self.parts[-1]})", FORBIDDEN)
        parent = self.server.find(self.owner, self.parts[:-1])
        if parent is None:
            raise HttpError(409, "Parent node does not exist", CONFLICT)
        if not parent.is_dir:
            raise HttpError(409, "Parent node is not a collection", CONFLICT)
        return parent

    # -- DELETE, MOVE, COPY --------------------------------------------------------------------

    def delete(self) -> Response:
        with self.server.lock:
            node = self.locate()
            if not self.parts:
                raise HttpError(403, "Permission denied to delete the user's root", FORBIDDEN)
            check_conditions(self.request, node.etag)
            self.check_unlocked(self.path)
            self.server.detach(self.owner, self.parts)
            self.server.to_trash(self.owner, self.parts, node)
        return empty_answer(204)

    def move(self) -> Response:
        return self.relocate(copy=False)

    def copy(self) -> Response:
        return self.relocate(copy=True)

    def relocate(self, *, copy: bool) -> Response:
        with self.server.lock:
            node = self.locate()
            check_conditions(self.request, node.etag)
            self.check_unlocked(self.path, moving=not copy)
            dest = self.destination(node)
            dest_path = "/".join(nfc(part) for part in dest)
            parent = self.server.find(self.owner, dest[:-1])
            assert parent is not None
            existing = parent.children.get(nfc(dest[-1]))
            if existing is not None and (self.request.header("Overwrite") or "T").strip().upper() == "F":
                raise precondition_failed(
                    "The destination node already exists, and the overwrite header is set to false", "Overwrite"
                )
            if existing is None:
                self.refuse_bad_name(nfc(dest[-1]))
            self.check_unlocked(dest_path)
            if existing is not None:
                self.server.to_trash(self.owner, dest, self.server.detach(self.owner, dest))
            moved = self.server.clone(node) if copy else self.server.detach(self.owner, self.parts)
            self.server.attach(self.owner, dest, moved)
        headers = [("OC-FileId", oc_id(moved.fileid))]
        if not copy and not moved.is_dir:
            headers = [("OC-ETag", f'"{moved.etag}"'), ("ETag", f'"{moved.etag}"'), *headers]
        return empty_answer(204 if existing is not None else 201, headers)

    def destination(self, node: Node) -> list[str]:
        """The checked destination of a MOVE or COPY (its parent folder exists)."""
        owner, dest = parse_destination(self.request)
        if owner is None:
            raise HttpError(502, "The destination header references a different server", BAD_REQUEST)
        if owner != self.owner or not dest:
            name = dest[-1] if dest else owner
            raise HttpError(403, f"Permission denied to create file (filename {name})", FORBIDDEN)
        parent = self.server.find(self.owner, dest[:-1])
        if parent is None or not parent.is_dir:
            raise HttpError(409, "The destination node is not found", CONFLICT)
        source = [nfc(part) for part in self.parts]
        target = [nfc(part) for part in dest]
        if target == source:
            raise HttpError(403, "Source and destination uri are identical.", FORBIDDEN)
        if node.is_dir and target[: len(source)] == source:
            raise HttpError(409, "The destination may not be part of the same subtree as the source path.", CONFLICT)
        return dest

    # -- what Nextcloud does not implement ------------------------------------------------------

    def lock(self) -> Response:
        if "Microsoft-WebDAV-MiniRedir" in (self.request.header("User-Agent") or ""):
            return Response(200, _fake_lock(self.owner, self.path), [("Content-type", HTML_CONTENT_TYPE)])
        raise no_plugin("LOCK")

    def unlock(self) -> Response:
        raise no_plugin("UNLOCK")

    def patch(self) -> Response:
        """``X-Recalculate-Hash``: store and answer the file's real checksum (see :mod:`.checksums`).

        A folder is not a File to Nextcloud's plugin, and Sabre has no other PATCH: 501.
        """
        with self.server.lock:
            node = self.locate()
            if node.is_dir:
                raise no_plugin("PATCH")
            node.checksum = checksums.recalculated(node.data, self.request.header("X-Recalculate-Hash"))
            return empty_answer(204, [("OC-Checksum", node.checksum)])


def ranged_answer(request: Request, data: bytes, etag: str, headers: list[tuple[str, str]]) -> Response:
    """200 with the whole body, or 206 with one range (Sabre honours a single range only)."""
    spec = request.header("Range")
    if_range = request.header("If-Range")
    if spec is None or (if_range is not None and if_range.strip() != f'"{etag}"'):
        return Response(200, data, headers)
    window = _parse_range(spec, len(data))
    if window is None:
        return Response(200, data, headers)
    start, end = window
    if start >= len(data):
        raise HttpError(
            416,
            f"The start offset ({start}) exceeded the size of the entity ({len(data)})",
            RANGE_NOT_SATISFIABLE,
            headers={key: value for key, value in headers if key in ("Last-Modified", "ETag")},
        )
    end = min(end, len(data) - 1)
    ranged = [*headers[:4], ("Content-Range", f"bytes {start}-{end}/{len(data)}"), *headers[4:]]
    return Response(206, data[start : end + 1], ranged)


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """(start, end) of a single ``bytes=`` range; None for several ranges or a malformed one."""
    if not spec.startswith("bytes=") or "," in spec:
        return None
    first, sep, last = spec[len("bytes=") :].strip().partition("-")
    if not sep or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        return max(0, size - int(last)), size - 1
    return int(first), int(last) if last else size - 1


def _checksum_element(value: str) -> ET.Element:
    element = ET.Element(oc("checksum"))
    element.text = value
    return element


def _zip(node: Node, name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/", b"")
        for path, child in node.walk(f"{name}/"):
            archive.writestr(path + ("/" if child.is_dir else ""), b"" if child.is_dir else child.data)
    return buffer.getvalue()


def _tar(node: Node, name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, child in [(name, node), *node.walk(f"{name}/")]:
            info = tarfile.TarInfo(path)
            info.mtime = child.mtime
            if child.is_dir:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(child.data)
                archive.addfile(info, io.BytesIO(child.data))
    return buffer.getvalue()


def _fake_lock(owner: str, path: str) -> bytes:
    """Nextcloud's fake lock for Windows' WebDAV redirector: an exclusive write lock that means nothing."""
    prop = ET.Element(d("prop"))
    lock = ET.SubElement(ET.SubElement(prop, d("lockdiscovery")), d("activelock"))
    ET.SubElement(ET.SubElement(lock, d("lockscope")), d("exclusive"))
    ET.SubElement(ET.SubElement(lock, d("locktype")), d("write"))
    ET.SubElement(ET.SubElement(lock, d("lockroot")), d("href")).text = f"files/{owner}/{path}"
    ET.SubElement(lock, d("depth")).text = "infinity"
    ET.SubElement(lock, d("timeout")).text = "Second-1800"
    token = hashlib.md5(f"{owner}/{path}".encode()).hexdigest()
    ET.SubElement(ET.SubElement(lock, d("locktoken")), d("href")).text = f"opaquelocktoken:{token}"
    return b'<?xml version="1.0"?>\n' + ET.tostring(prop) + b"\n"
