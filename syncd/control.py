"""The control protocol: JSON lines over the daemon's Unix socket.

Version 1. One request per connection; the client writes one line, the daemon answers with
zero or more *event* lines and exactly one *result* line, then closes the connection::

    request   {"v": 1, "op": "now" | "status" | "pause" | "resume" | "reload",
               "target": "user" | "user/pair" | null, "dry_run": false, "force": false}
    event     {"event": "listing" | "listed" | "hashing" | "applying" | "start" | "done"
                        | "error" | "finished" | "queued" | "joined", "pair": "user/pair", ...}
    result    {"ok": true, "op": "now", ...op-specific keys...}
    error     {"ok": false, "error": "what is wrong, in words a person can act on",
               "exit": 2 | 4 | 5}

A line is UTF-8 JSON with no newline inside, at most ``MAX_LINE`` bytes. A line holding an
``"ok"`` key is the result and ends the response; every other line is an event. ``target``
null means every pair; ``dry_run``/``force`` matter to ``now`` only and default to false.
``exit`` in an error is the exit code the CLI should use (2 usage, 4 fatal, 5 busy/paused).

Who may talk: the socket is created with mode 0660, and every peer is checked with
``SO_PEERCRED``: root, the daemon's own uid, or a process whose groups include the socket's
group are served; anyone else gets an error line saying so and is disconnected.

Results by op: ``now`` -> ``{"results": [run result], "exit": code}``;
``status`` -> ``{"daemon": {...}, "pairs": [...]}`` (each pair's ``"last"`` is a run result
with ``finished_at`` and ``reason``; ``paused_since`` is when ``pause`` marked it, see
:func:`paused_since`); ``pause``/``resume`` -> ``{"pairs": [keys]}`` (a pause is kept in the
pair's state folder and outlives a restart of the daemon);
``reload`` -> ``{"pairs": [keys], "message": ...}``. A *run result* (:func:`result_to_json`)::

    {"pair": "user/pair", "outcome": "ok" | "item-errors" | "aborted" | "fatal" | "retry"
                                     | "locked" | "paused" | "interrupted",
     "message": str, "seconds": float, "reported": bool, "done": {"copy": 2, ...},
     "bytes": int, "errors": [[path, error]] (first 50), "error_count": int,
     "skipped": int, "skipped_new": [[path, reason]] (first 50),
     "skipped_names": [[path, reason]] (first 1000), "plan": [str] (dry runs only, first 1000)}

``reported`` false: the run was refused or stopped before the engine could report it.
Exit codes are :class:`syncd.outcomes.ExitCode`'s.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import queue
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.errors import DaemonUnavailable, FatalError, ProtocolError
from syncd.models import Outcome
from syncd.outcomes import ExitCode, RunResult

if TYPE_CHECKING:
    from syncd.config import Config

PROTOCOL_VERSION = 1
OPS = frozenset({"now", "status", "pause", "resume", "reload"})
MAX_LINE = 64 * 1024
REQUEST_TIMEOUT_S = 10.0  # a peer that does not send its request line in time is dropped
CONNECT_TIMEOUT_S = 5.0
SOCKET_MODE = 0o660
# A result line must stay well under what a client reads comfortably: long lists are cut
# (their totals are sent whole); the index keeps every item for `syncd status -v`.
MAX_ITEMS_IN_RESULT = 50
MAX_NAMES_IN_RESULT = 1000

log = logging.getLogger("syncd.control")

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    target: str | None = None
    dry_run: bool = False
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "op": self.op,
            "target": self.target,
            "dry_run": self.dry_run,
            "force": self.force,
        }


def parse_request(line: bytes) -> Request:
    """Validate one request line. :raises ProtocolError: naming what is wrong."""
    try:
        raw = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed request: not a JSON line ({exc})") from None
    if not isinstance(raw, dict):
        raise ProtocolError("malformed request: expected a JSON object")
    version = raw.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (this daemon speaks {PROTOCOL_VERSION})")
    unknown = set(raw) - {"v", "op", "target", "dry_run", "force"}
    if unknown:
        raise ProtocolError(f"malformed request: unknown key(s) {', '.join(sorted(unknown))}")
    op = raw.get("op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r} (one of: {', '.join(sorted(OPS))})")
    target = raw.get("target")
    if target is not None and (not isinstance(target, str) or not target or len(target) > 200):
        raise ProtocolError("malformed request: 'target' must be null or 'user[/pair]'")
    flags = {name: raw.get(name, False) for name in ("dry_run", "force")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ProtocolError(f"malformed request: {name!r} must be true or false")
    return Request(op=op, target=target, dry_run=flags["dry_run"], force=flags["force"])


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def error_reply(message: str, exit_code: int = ExitCode.USAGE) -> dict[str, Any]:
    return {"ok": False, "error": message, "exit": int(exit_code)}


def result_to_json(result: RunResult) -> dict[str, Any]:
    """``result`` as the protocol sends it (see the module docstring), long lists cut."""
    line: dict[str, Any] = {
        "pair": result.pair,
        "outcome": result.outcome.value,
        "message": result.message,
        "seconds": result.seconds,
        "reported": result.reported,
        "done": dict(result.done),
        "bytes": result.bytes_moved,
        "errors": list(result.errors[:MAX_ITEMS_IN_RESULT]),
        "error_count": result.error_count,
        "skipped": result.skipped_count,
        "skipped_new": list(result.skipped_new[:MAX_ITEMS_IN_RESULT]),
        "skipped_names": list(result.skipped[:MAX_NAMES_IN_RESULT]),
    }
    if result.plan is not None:
        line["plan"] = list(result.plan[:MAX_NAMES_IN_RESULT])
    return line


def result_from_json(raw: dict[str, Any]) -> RunResult:
    """A run result read from the daemon. A key an older daemon did not send takes its
    default. :raises ValueError: an outcome this syncd does not know, or a malformed value."""
    plan = raw.get("plan")
    errors = _pairs(raw.get("errors"))
    skipped = _pairs(raw.get("skipped_names"))
    count = raw.get("skipped")
    return RunResult(
        pair=str(raw.get("pair", "?")),
        outcome=Outcome(raw.get("outcome")),
        message=str(raw.get("message") or ""),
        seconds=float(raw.get("seconds") or 0),
        reported=bool(raw.get("reported", True)),
        done={str(kind): int(n) for kind, n in dict(raw.get("done") or {}).items()},
        bytes_moved=int(raw.get("bytes") or 0),
        errors=errors,
        error_count=int(raw.get("error_count", len(errors))),
        skipped=skipped,
        skipped_count=int(count) if isinstance(count, int) else len(skipped),
        skipped_new=_pairs(raw.get("skipped_new")),
        plan=tuple(str(a) for a in plan) if isinstance(plan, list) else None,
    )


def _pairs(raw: object) -> tuple[tuple[str, str], ...]:
    """``[[path, reason], ...]`` from JSON as a tuple of pairs; anything else as none."""
    if not isinstance(raw, list):
        return ()
    return tuple((str(item[0]), str(item[1])) for item in raw if isinstance(item, list | tuple) and len(item) == 2)


# -- client ----------------------------------------------------------------------------------


def send(
    socket_path: Path | str, request: Request | dict[str, Any], *, timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    """Send one request and yield every reply line as a dict, the result line last.

    ``timeout`` bounds each wait for a line (None: wait as long as the run takes).
    :raises DaemonUnavailable: nothing listens on ``socket_path``.
    :raises ProtocolError: the daemon closed the connection without a result line.
    """
    payload = request.to_json() if isinstance(request, Request) else request
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            raise DaemonUnavailable(f"no daemon answers on {socket_path}") from exc
        sock.settimeout(timeout)
        sock.sendall(encode(payload))
        reader = sock.makefile("rb")
        with reader:
            for line in reader:
                message = json.loads(line)
                yield message
                if "ok" in message:
                    return
        raise ProtocolError(f"the daemon closed {socket_path} without a result", ExitCode.FATAL)
    finally:
        sock.close()


def request_result(socket_path: Path | str, request: Request, *, timeout: float | None = 30.0) -> dict[str, Any]:
    """Send ``request`` and return only its result line (events are dropped)."""
    result: dict[str, Any] = {}
    for message in send(socket_path, request, timeout=timeout):
        result = message
    return result


# -- peers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(conn: socket.socket) -> Peer:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid, uid, gid)


def peer_groups(peer: Peer) -> set[int]:
    """The peer process's groups (primary and supplementary), read from /proc; falls back to
    the group database when the process is gone or /proc is hidden."""
    groups = {peer.gid}
    try:
        with open(f"/proc/{peer.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return groups | {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    with contextlib.suppress(KeyError):
        import pwd

        name = pwd.getpwuid(peer.uid).pw_name
        groups |= {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return groups


def check_peer(peer: Peer, socket_gid: int) -> str | None:
    """None when ``peer`` may use the daemon, else why not (sent to the peer)."""
    if peer.uid in (0, os.geteuid()) or socket_gid in peer_groups(peer):
        return None
    try:
        group = grp.getgrgid(socket_gid).gr_name
    except KeyError:
        group = str(socket_gid)
    return (
        f"permission denied: uid {peer.uid} is not root, not the daemon's user and not in group {group!r} "
        f"(add the user to that group, or run as root)"
    )


# -- server ----------------------------------------------------------------------------------

Handler = Callable[[Request, Emit], dict[str, Any]]


class ControlServer:
    """Serves the socket on a background thread; each connection gets its own thread, so a
    long ``now`` never blocks a ``status``. ``handler(request, emit)`` returns the result."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._gid = os.getegid()
        self._active = 0
        self._active_lock = threading.Lock()

    def start(self) -> None:
        """Bind and listen. :raises FatalError: another daemon answers, or the path is unusable
        (its folder's parent is missing, or it exists and is not a socket)."""
        _make_socket_folder(self.path)
        _remove_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # never world-accessible, not even between bind and chmod
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise FatalError(f"cannot listen on {self.path}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        self._gid = os.stat(self.path).st_gid
        sock.listen(64)
        sock.settimeout(0.5)  # lets the accept loop notice close()
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting; connections already served finish on their own threads."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)

    def wait_connections(self, timeout: float) -> bool:
        """Wait until every connection got its result line (at stop), at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._active_lock:
                if self._active == 0:
                    return True
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing.is_set():
                    return
                log.exception("control socket accept failed")
                continue
            threading.Thread(target=self._serve_one, args=(conn,), name="control-conn", daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with self._active_lock:
            self._active += 1
        try:
            with conn:
                conn.settimeout(_Replier.SEND_TIMEOUT_S)  # a peer that stops reading is dropped
                reply = _Replier(conn)
                try:
                    reply.result(self._answer(conn, reply))
                except Exception as exc:  # a bug must cost one reply, never the daemon
                    log.exception("control request failed")
                    reply.result(error_reply(f"internal error: {exc}", ExitCode.FATAL))
        finally:
            with self._active_lock:
                self._active -= 1

    def _answer(self, conn: socket.socket, reply: _Replier) -> dict[str, Any]:
        peer = peer_of(conn)
        problem: ProtocolError | None = None
        try:
            # read the line even from a peer about to be refused: closing with unread data
            # would reset the connection before the peer could read why
            line = _read_line(conn)
        except ProtocolError as exc:
            line, problem = b"", exc
        refused = check_peer(peer, self._gid)
        if refused is not None:
            log.warning("control: refused pid %d uid %d: not allowed", peer.pid, peer.uid)
            return error_reply(refused, ExitCode.FATAL)
        try:
            if problem is not None:
                raise problem
            request = parse_request(line)
        except ProtocolError as exc:
            log.warning("control: bad request from pid %d: %s", peer.pid, exc)
            return error_reply(str(exc), exc.exit_code)
        level = logging.DEBUG if request.op == "status" else logging.INFO  # status is polled: keep the journal quiet
        log.log(level, "control: %s %s from pid %d uid %d", request.op, request.target or "*", peer.pid, peer.uid)
        try:
            return self.handler(request, reply.event)
        except ProtocolError as exc:
            return error_reply(str(exc), exc.exit_code)
        except FatalError as exc:
            return error_reply(str(exc), ExitCode.FATAL)


class _Replier:
    """Writes reply lines from its own thread, so a run that reports progress never waits for
    a slow or stuck client: events queue up (at most ``MAX_QUEUED`` waiting, further progress
    is dropped and counted), the result line is always sent. A peer that went away stops
    getting lines but the work goes on (a `now` whose client pressed Ctrl-C still finishes)."""

    MAX_QUEUED = 10_000
    SEND_TIMEOUT_S = 30.0

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.gone = False
        self.dropped = 0
        self.queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write_all, name="control-write", daemon=True)
        self.writer.start()

    def event(self, message: dict[str, Any]) -> None:
        if self.gone or self.queue.qsize() >= self.MAX_QUEUED:
            self.dropped += 1
            return
        self.queue.put(message)

    def result(self, message: dict[str, Any]) -> None:
        """Send the result line after the events, then return (bounded by the send timeout)."""
        if self.dropped:
            message = {**message, "events_dropped": self.dropped}
        self.queue.put(message)
        self.queue.put(None)
        self.writer.join(self.SEND_TIMEOUT_S + 5)

    def _write_all(self) -> None:
        while (message := self.queue.get()) is not None:
            if self.gone:
                continue
            try:
                self.conn.sendall(encode(message))
            except OSError:
                self.gone = True


def _read_line(conn: socket.socket) -> bytes:
    conn.settimeout(REQUEST_TIMEOUT_S)
    data = b""
    try:
        while b"\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_LINE:
                raise ProtocolError(f"malformed request: longer than {MAX_LINE} bytes")
    except TimeoutError:
        raise ProtocolError(f"malformed request: no complete line within {REQUEST_TIMEOUT_S:.0f}s") from None
    finally:
        conn.settimeout(_Replier.SEND_TIMEOUT_S)
    line = data.split(b"\n", 1)[0].strip()
    if not line:
        raise ProtocolError("malformed request: empty")
    return line


def _make_socket_folder(path: Path) -> None:
    """Create the socket's own folder if missing, and nothing above it: the daemon often runs
    as root, and a mistyped path must not make folders anywhere. Under systemd,
    ``RuntimeDirectory=syncd`` makes /run/syncd before the daemon starts.

    :raises FatalError: the folder cannot be made (its parent is missing, or is not a folder).
    """
    folder = path.parent
    try:
        folder.mkdir(mode=0o755, exist_ok=True)
    except FileNotFoundError:
        raise FatalError(
            f"cannot listen on {path}: {folder.parent} does not exist (syncd creates only the socket's own "
            "folder; fix [daemon] socket or --socket, or create it, e.g. systemd's RuntimeDirectory=)"
        ) from None
    except OSError as exc:
        raise FatalError(f"cannot listen on {path}: cannot create {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise FatalError(f"cannot listen on {path}: {folder} is not a folder")


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a daemon that died; refuse if a daemon still answers."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FatalError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(str(path))
    except OSError:
        os.unlink(path)  # nobody listens: a leftover
        return
    finally:
        probe.close()
    raise FatalError(f"another syncd daemon already answers on {path}")


# -- pauses that outlive the daemon -------------------------------------------------------------

PAUSED_FILE = "paused.json"  # in the pair's own state folder: {"paused_at": epoch seconds}


def paused_since(state_dir: Path) -> float | None:
    """When the pair whose state folder is ``state_dir`` was paused (``syncd pause``), None
    when it is not. The mark is a file, so a pause outlives a restart of the daemon and
    ``syncd status`` reads it with no daemon running. A mark that cannot be read counts as
    paused (now): a pause is never lost to a damaged file."""
    path = state_dir / PAUSED_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return time.time()
    when = raw.get("paused_at") if isinstance(raw, dict) else None
    return float(when) if isinstance(when, int | float) else time.time()


def mark_paused(state_dir: Path, paused: bool, *, now: float | None = None) -> None:
    """Write (atomically: a temp file renamed) or remove the pause mark of the pair whose
    state folder is ``state_dir``. :raises OSError: the state folder cannot be written."""
    path = state_dir / PAUSED_FILE
    if not paused:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{PAUSED_FILE}.{os.getpid()}.tmp")
    temp.write_text(json.dumps({"paused_at": time.time() if now is None else now}) + "\n", encoding="utf-8")
    os.replace(temp, path)


# -- where clients find the daemon ---------------------------------------------------------------


def main_socket(config: Config) -> Path:
    """``[daemon] socket``; a relative path is relative to the config file, like every path."""
    path = config.daemon.socket
    return path if path.is_absolute() else config.path.parent.resolve() / path


def instance_socket(config: Config, user: str) -> Path:
    """Where the instance serving only ``user`` listens: next to the main socket."""
    return main_socket(config).parent / f"{user}.sock"


def client_sockets(config: Config, target: str | None) -> list[Path]:
    """Sockets a client tries, in order: the user's own instance, then the main daemon."""
    candidates = [instance_socket(config, target.partition("/")[0])] if target else []
    return [*candidates, main_socket(config)]
