"""HTTP plumbing: the request and answer objects the endpoints use, and the http.server handler."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .errors import XML_CONTENT_TYPE, HttpError

if TYPE_CHECKING:
    from .server import NextcloudServer

HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
MAX_LINE = 65536


@dataclass
class Response:
    """An answer. ``gzip``: compress the body when the client accepts it (PROPFIND, OCS).
    ``head``: send the headers of this body without it. ``drop``: send half the body, then cut the
    connection (fault injection)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    gzip: bool = False
    head: bool = False
    drop: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def empty_answer(status: int, headers: list[tuple[str, str]] | None = None) -> Response:
    """The body-less answer of a successful write: ``Content-type: text/html`` as Nextcloud spells it."""
    return Response(status, b"", [*(headers or []), ("Content-type", HTML_CONTENT_TYPE)])


def error_answer(err: HttpError) -> Response:
    headers = [*err.headers.items(), ("Content-Type", XML_CONTENT_TYPE)]
    return Response(err.status, err.body(), headers)


@dataclass
class Request:
    method: str
    raw_path: str  # still %-encoded, without the query string
    query: dict[str, str]
    headers: Message
    client_ip: str
    read_body: Callable[[], bytes]
    user: str = ""  # the authenticated user

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def body(self) -> bytes:
        return self.read_body()

    def discard_body(self) -> None:
        with contextlib.suppress(ConnectionError, ValueError):
            self.read_body()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut on purpose (fault injection, clients aborting uploads) are normal here."""


class Handler(BaseHTTPRequestHandler):
    """One connection; ``state`` is set on a subclass per server."""

    state: NextcloudServer
    protocol_version = "HTTP/1.1"  # keep-alive, like Apache + PHP-FPM in front of Nextcloud
    server_version = "Apache"
    disable_nagle_algorithm = True  # headers and body go out at once: no delayed-ACK stall per response
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def dispatch(self) -> None:
        split = urlsplit(self.path)
        body = _BodyReader(self)
        request = Request(
            method=self.command,
            raw_path=split.path,
            query=dict(parse_qsl(split.query)),
            headers=self.headers,
            client_ip=self.client_address[0],
            read_body=body.read,
        )
        try:
            answer = self.state.handle(request)
        except ConnectionError:
            self.close_connection = True
            return
        if answer is None:  # a fault that swallows the answer
            self.close_connection = True
            return
        if not body.done:
            request.discard_body()
        if body.broken:
            self.close_connection = True
        self.send(answer)

    do_GET = do_HEAD = do_PUT = do_POST = do_PROPFIND = do_PROPPATCH = dispatch  # noqa: N815
    do_MKCOL = do_MOVE = do_COPY = do_DELETE = do_OPTIONS = dispatch  # noqa: N815
    do_LOCK = do_UNLOCK = do_PATCH = dispatch  # noqa: N815

    def send(self, answer: Response) -> None:
        body = answer.body
        headers = list(answer.headers)
        if answer.gzip and body and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(answer.status)
        for key, value in headers:
            if key.lower() != "content-length":
                self.send_header(key, value)
        if answer.status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if answer.head or answer.status == 304:
            return
        if answer.drop:
            # Half the body, then a hard close: the client must see an error, not a short answer.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _BodyReader:
    """Reads a request body once (Content-Length or chunked); ConnectionError when it is cut short."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.done = False
        self.broken = False
        self._data = b""

    def read(self) -> bytes:
        if self.done:
            return self._data
        self.done = True
        try:
            headers = self._handler.headers
            if (headers.get("Transfer-Encoding") or "").lower() == "chunked":
                self._data = self._read_chunked()
            else:
                self._data = self._read_exactly(int(headers.get("Content-Length") or 0))
        except (ConnectionError, ValueError):
            self.broken = True
            raise ConnectionError("client closed the connection mid-body") from None
        return self._data

    def _read_exactly(self, length: int) -> bytes:
        data = bytearray()
        rfile = self._handler.rfile
        while len(data) < length:
            piece = rfile.read(min(1 << 20, length - len(data)))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            data.extend(piece)
        return bytes(data)

    def _read_chunked(self) -> bytes:
        data = bytearray()
        rfile = self._handler.rfile
        while True:
            line = rfile.readline(MAX_LINE)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                for _ in range(100):  # trailers end with an empty line
                    if rfile.readline(MAX_LINE) in (b"\r\n", b"\n", b""):
                        break
                return bytes(data)
            data.extend(self._read_exactly(size + 2)[:size])
