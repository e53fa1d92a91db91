"""A small server that speaks Nextcloud 31's WebDAV dialect, for tests.

It follows /work/shared/NEXTCLOUD.md and Nextcloud's documentation, not syncd's client:
``/status.php``, ``/remote.php/dav/files/<user>/`` (PROPFIND with ``oc:`` properties, GET with
Range, PUT with ``X-OC-MTime``/``OC-Checksum``, If-Match / If-None-Match, MKCOL, MOVE, COPY,
DELETE into a trash bin), chunked upload v2 under ``/remote.php/dav/uploads/<user>/``, the
trash bin under ``/remote.php/dav/trashbin/<user>/trash/``, basic auth, and Nextcloud's
forbidden names. Like Sabre with ``enablePropfindDepthInfinity`` off, ``Depth: infinity`` is
silently answered as ``Depth: 1`` unless ``allow_depth_infinity`` is set.

The tree lives in memory behind one lock. Tests read ``server.counts`` / ``server.log`` and
inject faults with :meth:`NextcloudServer.inject`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    import requests

DAV = "DAV:"
OC = "http://owncloud.org/ns"
NC = "http://nextcloud.org/ns"
INSTANCE_ID = "ocsyncdtest"
FILES = "/remote.php/dav/files/"
UPLOADS = "/remote.php/dav/uploads/"
TRASHBIN = "/remote.php/dav/trashbin/"
MAX_NAME = 250  # Nextcloud refuses longer file names
SABRE = "Sabre\\DAV\\Exception\\"
NC_EXC = "OCA\\DAV\\Connector\\Sabre\\Exception\\"

ET.register_namespace("d", DAV)
ET.register_namespace("oc", OC)
ET.register_namespace("nc", NC)
ET.register_namespace("s", "http://sabredav.org/ns")


@dataclass
class Node:
    """A file or folder. Folders' etags change when anything below them changes."""

    fileid: int
    is_dir: bool
    etag: str
    mtime: int
    data: bytes = b""
    checksum: str | None = None
    children: dict[str, Node] = field(default_factory=dict)

    def total_size(self) -> int:
        if not self.is_dir:
            return len(self.data)
        return sum(child.total_size() for child in self.children.values())


@dataclass
class TrashItem:
    name: str  # "<name>.d<deletion time>" as Nextcloud names trash bin items
    original_location: str  # from the user's root, e.g. "dir/a.txt"
    deletion_time: int
    node: Node


@dataclass
class Fault:
    method: str | None
    path_contains: str | None
    remaining: int
    status: int = 500
    retry_after: str | None = None
    drop: bool = False  # send the headers and half the body, then close the connection


@dataclass
class Upload:
    destination: str
    chunks: dict[str, bytes] = field(default_factory=dict)


class HttpError(Exception):
    def __init__(self, status: int, message: str, exception: str = "Sabre\\DAV\\Exception") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.exception = exception


class NextcloudServer:
    """The state of one fake Nextcloud: users, trees, trash bins, uploads, counters, faults."""

    def __init__(self, users: dict[str, str], *, allow_depth_infinity: bool = False) -> None:
        self.users = dict(users)
        self.allow_depth_infinity = allow_depth_infinity
        self.lock = threading.RLock()
        self._ids = itertools.count(100)
        self._etags = itertools.count(1)
        self.roots: dict[str, Node] = {user: self._new_node(is_dir=True) for user in users}
        self.trash: dict[str, list[TrashItem]] = {user: [] for user in users}
        self.uploads: dict[tuple[str, str], Upload] = {}
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 at a free port. :returns: the base URL."""
        handler = type("Handler", (_Handler,), {"state": self})
        httpd = _QuietServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # idle keep-alive connections must not hold up stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def files_url(self, user: str) -> str:
        return f"{self.base_url}{FILES}{user}/"

    def move_as_client(self, http: requests.Session, user: str, src: str, dst: str) -> None:
        """A rename made by another client (the web UI, the desktop app): a WebDAV MOVE."""
        http.request(
            "MOVE", self.files_url(user) + src, headers={"Destination": self.files_url(user) + dst}, timeout=10
        ).raise_for_status()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- test hooks ----------------------------------------------------------------------

    def inject(
        self,
        method: str | None = None,
        *,
        path_contains: str | None = None,
        status: int = 500,
        count: int = 1,
        retry_after: str | None = None,
        drop: bool = False,
    ) -> None:
        """Make the next ``count`` matching requests fail with ``status`` (or a dropped
        connection mid-body with ``drop=True``)."""
        with self.lock:
            self.faults.append(Fault(method, path_contains, count, status, retry_after, drop))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining <= 0:
                    continue
                if fault.method not in (None, method):
                    continue
                if fault.path_contains is not None and fault.path_contains not in path:
                    continue
                fault.remaining -= 1
                return fault
        return None

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    def node(self, user: str, path: str) -> Node | None:
        """The node at ``path`` (from the user's root), for tests to inspect."""
        with self.lock:
            return self._find(user, _split(path))

    # -- the tree ------------------------------------------------------------------------

    def _new_node(self, *, is_dir: bool, data: bytes = b"", mtime: int | None = None) -> Node:
        return Node(
            fileid=next(self._ids),
            is_dir=is_dir,
            etag=self._new_etag(),
            mtime=int(time.time()) if mtime is None else mtime,
            data=data,
        )

    def _new_etag(self) -> str:
        return hashlib.md5(f"etag-{next(self._etags)}-{time.time_ns()}".encode()).hexdigest()

    def _find(self, user: str, parts: list[str]) -> Node | None:
        node: Node | None = self.roots[user]
        for part in parts:
            if node is None or not node.is_dir:
                return None
            node = node.children.get(part)
        return node

    def _touch_ancestors(self, user: str, parts: list[str]) -> None:
        """A change at ``parts`` changes the etag (and mtime) of every folder above it."""
        node = self.roots[user]
        chain = [node]
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                break
            node = child
            chain.append(node)
        now = int(time.time())
        for folder in chain:
            folder.etag = self._new_etag()
            folder.mtime = now


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def forbidden_name_error(name: str) -> HttpError | None:
    """What Nextcloud answers for a name it refuses (NC 31 FilenameValidator)."""
    if name.lower() == ".htaccess":
        return HttpError(403, f'"{name}" is a forbidden file or folder name.', NC_EXC + "Forbidden")
    if "\\" in name or "/" in name:
        return HttpError(400, '"\\" is not allowed inside a file or folder name.', NC_EXC + "InvalidPath")
    if name.lower().endswith(".part") or name.lower().endswith(".filepart"):
        return HttpError(400, f'"{name}" is a forbidden file type.', NC_EXC + "InvalidPath")
    if len(name.encode()) > MAX_NAME:
        return HttpError(400, "Filename is too long", NC_EXC + "InvalidPath")
    if name != name.strip():
        return HttpError(400, f'"{name}" has leading or trailing spaces.', NC_EXC + "InvalidPath")
    return None


def sabre_error(status: int, message: str, exception: str) -> bytes:
    root = ET.Element(f"{{{DAV}}}error")
    ET.SubElement(root, "{http://sabredav.org/ns}exception").text = exception
    ET.SubElement(root, "{http://sabredav.org/ns}message").text = message
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut on purpose (fault injection, clients aborting uploads) are normal here."""


class _Handler(BaseHTTPRequestHandler):
    state: NextcloudServer
    protocol_version = "HTTP/1.1"  # keep-alive, like Apache + PHP-FPM in front of Nextcloud
    server_version = "Apache"
    disable_nagle_algorithm = True  # headers and body go out at once: no delayed-ACK stall per response
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._body_read = False  # one handler serves every request of a keep-alive connection
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.counts[self.command] += 1
            self.state.log.append((self.command, unquote(path)))
        fault = self.state.take_fault(self.command, unquote(path))
        if fault is not None and fault.drop and self.command not in ("PROPFIND", "GET"):
            self._discard_body()  # the request arrives, the answer never does
            self.close_connection = True
            return
        if fault is not None and not fault.drop:
            self._discard_body()
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send_error(HttpError(fault.status, f"injected {fault.status}"), headers)
            return
        try:
            if path == "/status.php" and self.command == "GET":
                self._status()
                return
            user = self._authenticate()
            if user is None:
                return
            if path.startswith(FILES):
                self._files(user, path[len(FILES) :], fault)
            elif path.startswith(UPLOADS):
                self._uploads(user, path[len(UPLOADS) :])
            elif path.startswith(TRASHBIN):
                self._trashbin(user, path[len(TRASHBIN) :])
            else:
                raise HttpError(404, "not found")
        except HttpError as err:
            self._discard_body()
            self._send_error(err)
        except ConnectionError:
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_PROPFIND = do_MKCOL = do_MOVE = do_COPY = _dispatch  # noqa: N815
    do_DELETE = do_OPTIONS = do_PROPPATCH = _dispatch  # noqa: N815

    def _authenticate(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if self.state.users.get(user) == password and user:
                return user
        self._discard_body()
        body = sabre_error(
            401, "No public access to this resource., Username or password was incorrect", SABRE + "NotAuthenticated"
        )
        self._send(
            401,
            body,
            {
                "WWW-Authenticate": 'Basic realm="Nextcloud", charset="UTF-8"',
                "Content-Type": "application/xml; charset=utf-8",
            },
        )
        return None

    def _status(self) -> None:
        body = json.dumps(
            {
                "installed": True,
                "maintenance": False,
                "needsDbUpgrade": False,
                "version": "31.0.2.1",
                "versionstring": "31.0.2",
                "edition": "",
                "productname": "Nextcloud",
                "extendedSupport": False,
            }
        ).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    # -- /remote.php/dav/files/<user>/ ---------------------------------------------------

    def _files(self, user: str, rest: str, fault: Fault | None) -> None:
        owner, _, sub = unquote(rest).partition("/")
        if owner != user:
            raise HttpError(404, "File not found")
        parts = _split(sub)
        method = self.command
        with self.state.lock:
            if method == "PROPFIND":
                self._propfind(user, parts, fault)
            elif method in ("GET", "HEAD"):
                self._get(user, parts, fault)
            elif method == "PUT":
                self._put(user, parts)
            elif method == "MKCOL":
                self._mkcol(user, parts)
            elif method == "DELETE":
                self._delete(user, parts)
            elif method in ("MOVE", "COPY"):
                self._move_or_copy(user, parts, copy=method == "COPY")
            elif method == "OPTIONS":
                self._send(
                    200,
                    b"",
                    {
                        "DAV": "1, 3, extended-mkcol, nextcloud-checksum-update, nc-paginate",
                        "Allow": "OPTIONS, GET, HEAD, DELETE, PROPFIND, PUT, PROPPATCH, COPY, MOVE, REPORT",
                    },
                )
            elif method == "PROPPATCH":
                self._discard_body()
                self._send(207, self._multistatus([]), {"Content-Type": "application/xml; charset=utf-8"})
            else:
                raise HttpError(405, "method not allowed")

    def _check_preconditions(self, node: Node | None) -> None:
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip() != "*":
            if node is None:
                raise HttpError(
                    412,
                    "An If-Match header was specified, but none of the specified ETags matched.",
                    SABRE + "PreconditionFailed",
                )
            tags = [t.strip() for t in if_match.split(",")]
            if f'"{node.etag}"' not in tags:
                raise HttpError(
                    412,
                    "An If-Match header was specified, but none of the specified ETags matched.",
                    SABRE + "PreconditionFailed",
                )
        elif if_match is not None and node is None:
            raise HttpError(
                412, "An If-Match header was specified and the resource did not exist", SABRE + "PreconditionFailed"
            )
        if_none = self.headers.get("If-None-Match")
        if if_none is not None and node is not None:
            tags = [t.strip() for t in if_none.split(",")]
            if "*" in tags or f'"{node.etag}"' in tags:
                raise HttpError(
                    412,
                    "An If-None-Match header was specified, but the ETag matched (or * was specified).",
                    SABRE + "PreconditionFailed",
                )

    def _propfind(self, user: str, parts: list[str], fault: Fault | None) -> None:
        body = self._read_body()
        node = self.state._find(user, parts)
        if node is None:
            raise HttpError(404, "File with name " + "/".join(parts) + " could not be located", SABRE + "NotFound")
        wanted = _requested_props(body)
        depth_header = self.headers.get("Depth", "infinity").strip().lower()
        if depth_header == "0":
            depth = 0
        elif depth_header == "infinity" and self.state.allow_depth_infinity:
            depth = -1
        else:
            depth = 1  # Sabre answers infinity as 1 when it is not enabled
        href_base = FILES + quote(user) + "/" + "".join(quote(p) + "/" for p in parts)
        if not node.is_dir:
            href_base = href_base.rstrip("/")
        responses: list[ET.Element] = []
        self._walk(node, href_base, depth, wanted, responses)
        payload = self._multistatus(responses)
        self._send(
            207, payload, {"Content-Type": "application/xml; charset=utf-8"}, drop=fault is not None and fault.drop
        )

    def _walk(self, node: Node, href: str, depth: int, wanted: list[str] | None, out: list[ET.Element]) -> None:
        out.append(_prop_response(node, href, wanted))
        if depth == 0 or not node.is_dir:
            return
        for name, child in sorted(node.children.items()):
            child_href = href + quote(name) + ("/" if child.is_dir else "")
            self._walk(child, child_href, depth - 1 if depth > 0 else -1, wanted, out)

    def _multistatus(self, responses: list[ET.Element]) -> bytes:
        root = ET.Element(f"{{{DAV}}}multistatus")
        root.extend(responses)
        return b'<?xml version="1.0"?>\n' + ET.tostring(root)

    def _get(self, user: str, parts: list[str], fault: Fault | None) -> None:
        node = self.state._find(user, parts)
        if node is None:
            raise HttpError(404, "File not found", SABRE + "NotFound")
        if node.is_dir:
            self._send(200, b"", {"Content-Type": "text/html"})
            return
        data = node.data
        headers = {
            "ETag": f'"{node.etag}"',
            "OC-ETag": f'"{node.etag}"',
            "Last-Modified": formatdate(node.mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start, end = _parse_range(rng[6:], len(data))
            if start is None:
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
            status = 206
        self._send(status, data, headers, drop=fault is not None and fault.drop, head=self.command == "HEAD")

    def _put(self, user: str, parts: list[str]) -> None:
        if not parts:
            raise HttpError(405, "cannot PUT the root")
        self._check_name(parts[-1])
        parent = self.state._find(user, parts[:-1])
        if parent is None or not parent.is_dir:
            self._discard_body()
            raise HttpError(409, "Files cannot be created in non-existent collections", SABRE + "Conflict")
        existing = parent.children.get(parts[-1])
        if existing is not None and existing.is_dir:
            raise HttpError(405, "a folder exists there")
        self._check_preconditions(existing)
        data = self._read_body()  # raises ConnectionError on a short body: nothing is stored
        length = self.headers.get("Content-Length")
        if length is not None and int(length) != len(data):
            raise HttpError(
                400,
                f"Expected filesize of {length} bytes but read (from Nextcloud client) and wrote "
                f"(to Nextcloud storage) {len(data)} bytes",
                SABRE + "BadRequest",
            )
        node = self._store(user, parts, data, existing)
        self._send(201 if existing is None else 204, b"", self._write_headers(node))

    def _store(self, user: str, parts: list[str], data: bytes, existing: Node | None) -> Node:
        """Commit a file: the new content replaces the old at once (Nextcloud writes a .part first)."""
        parent = self.state._find(user, parts[:-1])
        assert parent is not None
        mtime = _oc_mtime(self.headers.get("X-OC-MTime"))
        node = existing if existing is not None else self.state._new_node(is_dir=False)
        node.data = data
        node.mtime = mtime if mtime is not None else int(time.time())
        node.etag = self.state._new_etag()
        checksum = self.headers.get("OC-Checksum")
        node.checksum = checksum.strip() if checksum else None  # stored as given, never verified
        parent.children[parts[-1]] = node
        self.state._touch_ancestors(user, parts)
        return node

    def _write_headers(self, node: Node) -> dict[str, str]:
        headers = {
            "ETag": f'"{node.etag}"',
            "OC-ETag": f'"{node.etag}"',
            "OC-FileId": f"{node.fileid:08d}{INSTANCE_ID}",
        }
        if self.headers.get("X-OC-MTime") is not None:
            headers["X-OC-MTime"] = "accepted"
        return headers

    def _mkcol(self, user: str, parts: list[str]) -> None:
        self._discard_body()
        if not parts:
            raise HttpError(405, "The resource you tried to create already exists", SABRE + "MethodNotAllowed")
        self._check_name(parts[-1])
        parent = self.state._find(user, parts[:-1])
        if parent is None or not parent.is_dir:
            raise HttpError(409, "Parent node does not exist", SABRE + "Conflict")
        if parts[-1] in parent.children:
            raise HttpError(405, "The resource you tried to create already exists", SABRE + "MethodNotAllowed")
        parent.children[parts[-1]] = self.state._new_node(is_dir=True)
        self.state._touch_ancestors(user, parts)
        self._send(201, b"", {})

    def _delete(self, user: str, parts: list[str]) -> None:
        self._discard_body()
        if not parts:
            raise HttpError(403, "cannot delete the root", SABRE + "Forbidden")
        parent = self.state._find(user, parts[:-1])
        node = parent.children.get(parts[-1]) if parent is not None and parent.is_dir else None
        if node is None:
            raise HttpError(404, "File not found", SABRE + "NotFound")
        self._check_preconditions(node)
        assert parent is not None
        del parent.children[parts[-1]]
        now = int(time.time())
        self.state.trash[user].append(TrashItem(f"{parts[-1]}.d{now}", "/".join(parts), now, node))
        self.state._touch_ancestors(user, parts)
        self._send(204, b"", {})

    def _destination(self, user: str) -> list[str]:
        dest = self.headers.get("Destination")
        if not dest:
            raise HttpError(400, "The destination header was not supplied", SABRE + "BadRequest")
        dest_path = unquote(urlsplit(dest).path)
        prefix = f"{FILES}{user}/"
        if not dest_path.startswith(prefix) and dest_path != prefix.rstrip("/"):
            raise HttpError(502, "The destination is not on this server", SABRE + "PermissionDenied")
        return _split(dest_path[len(prefix) :])

    def _move_or_copy(self, user: str, parts: list[str], *, copy: bool) -> None:
        self._discard_body()
        dest = self._destination(user)
        if not parts or not dest:
            raise HttpError(403, "cannot move the root", SABRE + "Forbidden")
        self._check_name(dest[-1])
        src_parent = self.state._find(user, parts[:-1])
        node = src_parent.children.get(parts[-1]) if src_parent is not None and src_parent.is_dir else None
        if node is None:
            raise HttpError(404, "File not found", SABRE + "NotFound")
        self._check_preconditions(node)
        dest_parent = self.state._find(user, dest[:-1])
        if dest_parent is None or not dest_parent.is_dir:
            raise HttpError(409, "The destination node is not found", SABRE + "Conflict")
        if dest[: len(parts)] == parts:
            raise HttpError(403, "cannot move a folder into itself", SABRE + "Forbidden")
        existing = dest_parent.children.get(dest[-1])
        overwrite = self.headers.get("Overwrite", "T").strip().upper() != "F"
        if existing is not None and not overwrite:
            raise HttpError(
                412,
                "The destination node already exists, and the overwrite header is set to false",
                SABRE + "PreconditionFailed",
            )
        assert src_parent is not None
        if copy:
            moved = _clone(node, self.state)
        else:
            del src_parent.children[parts[-1]]
            self.state._touch_ancestors(user, parts)
            moved = node
            moved.etag = self.state._new_etag()  # Nextcloud gives a moved item a new etag
        if existing is not None:
            now = int(time.time())
            self.state.trash[user].append(TrashItem(f"{dest[-1]}.d{now}", "/".join(dest), now, existing))
        dest_parent.children[dest[-1]] = moved
        self.state._touch_ancestors(user, dest)
        self._send(
            204 if existing is not None else 201,
            b"",
            {"ETag": f'"{moved.etag}"', "OC-ETag": f'"{moved.etag}"', "OC-FileId": f"{moved.fileid:08d}{INSTANCE_ID}"},
        )

    def _check_name(self, name: str) -> None:
        err = forbidden_name_error(name)
        if err is not None:
            raise err

    # -- /remote.php/dav/uploads/<user>/<id>/ --------------------------------------------

    def _uploads(self, user: str, rest: str) -> None:
        owner, _, sub = unquote(rest).partition("/")
        if owner != user:
            raise HttpError(404, "not found")
        parts = _split(sub)
        method = self.command
        with self.state.lock:
            if method == "MKCOL" and len(parts) == 1:
                self._discard_body()
                if (user, parts[0]) in self.state.uploads:
                    raise HttpError(405, "The resource you tried to create already exists", SABRE + "MethodNotAllowed")
                self.state.uploads[(user, parts[0])] = Upload(self.headers.get("Destination", ""))
                self._send(201, b"", {})
                return
            upload = self.state.uploads.get((user, parts[0])) if parts else None
            if upload is None:
                self._discard_body()
                raise HttpError(404, "upload not found", SABRE + "NotFound")
            if method == "PUT" and len(parts) == 2:
                data = self._read_body()
                length = self.headers.get("Content-Length")
                if length is not None and int(length) != len(data):
                    raise HttpError(400, "chunk is short", SABRE + "BadRequest")
                upload.chunks[parts[1]] = data
                self._send(201, b"", {"ETag": f'"{self.state._new_etag()}"'})
            elif method == "PROPFIND" and len(parts) == 1:
                self._discard_body()
                self._send(
                    207,
                    self._upload_listing(user, parts[0], upload),
                    {"Content-Type": "application/xml; charset=utf-8"},
                )
            elif method == "MOVE" and len(parts) == 2 and parts[1] == ".file":
                self._assemble(user, parts[0], upload)
            elif method == "DELETE" and len(parts) == 1:
                self._discard_body()
                del self.state.uploads[(user, parts[0])]
                self._send(204, b"", {})
            else:
                self._discard_body()
                raise HttpError(405, "method not allowed", SABRE + "MethodNotAllowed")

    def _upload_listing(self, user: str, upload_id: str, upload: Upload) -> bytes:
        href = f"{UPLOADS}{quote(user)}/{quote(upload_id)}/"
        responses = [_prop_response(Node(0, True, "upload", int(time.time())), href, None)]
        for name, data in sorted(upload.chunks.items()):
            responses.append(
                _prop_response(
                    Node(0, False, hashlib.md5(data).hexdigest(), int(time.time()), data), href + quote(name), None
                )
            )
        return self._multistatus(responses)

    def _assemble(self, user: str, upload_id: str, upload: Upload) -> None:
        self._discard_body()
        dest = self._destination(user)
        if not dest:
            raise HttpError(403, "bad destination", SABRE + "Forbidden")
        self._check_name(dest[-1])
        data = b"".join(upload.chunks[k] for k in sorted(upload.chunks, key=_chunk_order))
        total = self.headers.get("OC-Total-Length")
        if total is not None and int(total) != len(data):
            raise HttpError(
                400, f"Chunks on server do not sum up to {total} but to {len(data)} bytes", SABRE + "BadRequest"
            )
        parent = self.state._find(user, dest[:-1])
        if parent is None or not parent.is_dir:
            raise HttpError(409, "parent does not exist", SABRE + "Conflict")
        existing = parent.children.get(dest[-1])
        self._check_preconditions(existing)
        node = self._store(user, dest, data, existing)
        del self.state.uploads[(user, upload_id)]
        self._send(201 if existing is None else 204, b"", self._write_headers(node))

    # -- /remote.php/dav/trashbin/<user>/trash/ ------------------------------------------

    def _trashbin(self, user: str, rest: str) -> None:
        wanted = _requested_props(self._read_body())
        owner, _, sub = unquote(rest).partition("/")
        parts = _split(sub)
        if owner != user or not parts or parts[0] != "trash":
            raise HttpError(404, "not found", SABRE + "NotFound")
        with self.state.lock:
            items = self.state.trash[user]
            if self.command == "PROPFIND" and len(parts) == 1:
                href = f"{TRASHBIN}{quote(user)}/trash/"
                responses = [_prop_response(Node(0, True, "trash", int(time.time())), href, None)]
                for item in items:
                    resp = _prop_response(
                        item.node, href + quote(item.name) + ("/" if item.node.is_dir else ""), wanted
                    )
                    prop = resp.find(f"{{{DAV}}}propstat/{{{DAV}}}prop")
                    assert prop is not None
                    ET.SubElement(prop, f"{{{NC}}}trashbin-filename").text = item.name.rsplit(".d", 1)[0]
                    ET.SubElement(prop, f"{{{NC}}}trashbin-original-location").text = item.original_location
                    ET.SubElement(prop, f"{{{NC}}}trashbin-deletion-time").text = str(item.deletion_time)
                    responses.append(resp)
                self._send(207, self._multistatus(responses), {"Content-Type": "application/xml; charset=utf-8"})
            elif self.command == "DELETE" and len(parts) == 2:
                for item in items:
                    if item.name == parts[1]:
                        items.remove(item)
                        self._send(204, b"", {})
                        return
                raise HttpError(404, "not found", SABRE + "NotFound")
            else:
                raise HttpError(405, "method not allowed", SABRE + "MethodNotAllowed")

    # -- I/O helpers ---------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self._body_read:
            return b""
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        data = bytearray()
        while len(data) < length:
            piece = self.rfile.read(min(1 << 20, length - len(data)))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            data.extend(piece)
        return bytes(data)

    def _read_chunked(self) -> bytes:
        data = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(data)
            chunk = self.rfile.read(size + 2)
            if len(chunk) < size + 2:
                raise ConnectionError("client closed the connection mid-body")
            data.extend(chunk[:size])

    def _discard_body(self) -> None:
        try:
            self._read_body()
        except (ConnectionError, ValueError):
            self.close_connection = True

    def _send_error(self, err: HttpError, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/xml; charset=utf-8", **(extra or {})}
        self._send(err.status, sabre_error(err.status, err.message, err.exception), headers)

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], *, drop: bool = False, head: bool = False
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("DAV", "1, 3, extended-mkcol, nextcloud-checksum-update, nc-paginate")
        self.end_headers()
        if head:
            return
        if drop:
            # Half the body, then a hard close: the client must see an error, not a short answer.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def _prop_response(node: Node, href: str, wanted: list[str] | None) -> ET.Element:
    """One ``d:response``: the requested properties in a 200 propstat, unknown ones in a 404."""
    values: dict[str, str | None] = {
        f"{{{DAV}}}getetag": f'"{node.etag}"',
        f"{{{DAV}}}getlastmodified": formatdate(node.mtime, usegmt=True),
        f"{{{DAV}}}resourcetype": None,
        f"{{{OC}}}fileid": str(node.fileid),
        f"{{{OC}}}id": f"{node.fileid:08d}{INSTANCE_ID}",
        f"{{{OC}}}size": str(node.total_size()),
        f"{{{OC}}}permissions": "RGDNVCK" if node.is_dir else "RGDNVW",
    }
    if not node.is_dir:
        values[f"{{{DAV}}}getcontentlength"] = str(len(node.data))
        values[f"{{{DAV}}}getcontenttype"] = "application/octet-stream"
        values[f"{{{OC}}}checksums"] = None
    if wanted is None:  # allprop: the DAV: properties only
        wanted = [k for k in values if k.startswith(f"{{{DAV}}}")]
    response = ET.Element(f"{{{DAV}}}response")
    ET.SubElement(response, f"{{{DAV}}}href").text = href
    found = ET.SubElement(ET.SubElement(response, f"{{{DAV}}}propstat"), f"{{{DAV}}}prop")
    missing: list[str] = []
    for name in wanted:
        if name not in values:
            missing.append(name)
            continue
        el = ET.SubElement(found, name)
        if name == f"{{{DAV}}}resourcetype":
            if node.is_dir:
                ET.SubElement(el, f"{{{DAV}}}collection")
        elif name == f"{{{OC}}}checksums":
            if node.checksum:
                ET.SubElement(el, f"{{{OC}}}checksum").text = node.checksum
        else:
            el.text = values[name]
    propstat_ok = response.find(f"{{{DAV}}}propstat")
    assert propstat_ok is not None
    ET.SubElement(propstat_ok, f"{{{DAV}}}status").text = "HTTP/1.1 200 OK"
    if missing:
        stat = ET.SubElement(response, f"{{{DAV}}}propstat")
        prop = ET.SubElement(stat, f"{{{DAV}}}prop")
        for name in missing:
            ET.SubElement(prop, name)
        ET.SubElement(stat, f"{{{DAV}}}status").text = "HTTP/1.1 404 Not Found"
    return response


def _requested_props(body: bytes) -> list[str] | None:
    """The property names a PROPFIND asks for; None for allprop (or an empty body)."""
    if not body.strip():
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise HttpError(400, "The request body had an invalid XML body", SABRE + "BadRequest") from exc
    prop = root.find(f"{{{DAV}}}prop")
    if prop is None:
        return None
    return [child.tag for child in prop]


def _parse_range(spec: str, length: int) -> tuple[int | None, int]:
    first, _, last = spec.split(",", maxsplit=1)[0].strip().partition("-")
    try:
        if first == "":
            count = int(last)
            start, end = max(0, length - count), length - 1
        else:
            start = int(first)
            end = int(last) if last else length - 1
    except ValueError:
        return None, 0
    end = min(end, length - 1)
    if start >= length or start > end:
        return None, 0
    return start, end


def _oc_mtime(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _chunk_order(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 62, name)


def _clone(node: Node, state: NextcloudServer) -> Node:
    copy = state._new_node(is_dir=node.is_dir, data=node.data, mtime=node.mtime)
    copy.checksum = node.checksum
    copy.children = {name: _clone(child, state) for name, child in node.children.items()}
    return copy
