"""A TCP relay on 127.0.0.1 that a test can cut, stall and restore: "the satellite went away".

The Storj network is shared by the whole test session, so a test cannot stop its
satellite. It can instead reach the satellite through this relay (a satellite address
``<node id>@127.0.0.1:<relay port>``: the TLS handshake is end to end, so the node ID
still checks) and

* ``cut()`` it: every open connection is closed and new ones are refused, what a client
  sees when the satellite process dies (its kernel closes its connections);
* ``stall()`` it: connections stay open and new ones are accepted, but nothing is
  forwarded any more, what a client sees of a satellite that hangs (or of a middlebox
  that drops a connection's packets without a reset): only the client's own deadlines
  can end its calls;
* ``resume()`` it: a restarted satellite. The stalled connections are closed (their
  streams lost bytes), and the relay listens and forwards again on the same port.

Each method returns once the relay is in its new state: ``cut()`` and ``resume()`` wait
(boundedly) until the connections they close are closed, so a test that acts next never
races with the relay.

Who closes a socket: only the last of a connection's two pump threads, once both are
done. Everyone else (``cut``, a pump that fails) only shuts sockets down, which wakes a
pump blocked on them. A socket closed while another thread is blocked in ``recv()`` on it
stays open in the kernel (the blocked call holds it) and can no longer be shut down: the
client would keep a connection that nobody answers. That race, between a pump's
``close()`` and ``cut()``, hung a test run in CI.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

_BUFFER = 64 * 1024
# Upper bounds of waits that only fail the test: the relay's own threads end within
# milliseconds of a shutdown, so reaching one means a relay bug, not a slow machine.
_CLOSE_TIMEOUT = 30.0
_CONNECT_TIMEOUT = 5.0


class RelayError(AssertionError):
    """The relay could not reach the state a test asked for (a bug in the relay)."""


class _Connection:
    """A client socket and, unless accepted while stalled, its upstream socket."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None, *, forwarding: bool) -> None:
        self.client = client
        self.upstream = upstream
        # Read by the pumps for every chunk; once False it stays False.
        self.forwarding = forwarding
        self.pumps_left = 2 if upstream is not None else 1
        self.closed = False

    def sockets(self) -> tuple[socket.socket, ...]:
        return (self.client,) if self.upstream is None else (self.client, self.upstream)

    def shut_down(self) -> None:
        """Wake both pumps: their recv() returns b"" and their send() fails."""
        for sock in self.sockets():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class TcpRelay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.connections = 0  # accepted so far, for tests to check the relay was used
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a connection closed
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._open: set[_Connection] = set()
        self._stalled = False

    # -- control

    def start(self) -> None:
        """Listen (on the same port as before, if any) and forward."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        acceptor = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True, name="relay-accept")
        with self._lock:
            self._listener = listener
            self._acceptor = acceptor
            self._stalled = False
        acceptor.start()

    def cut(self) -> None:
        """Refuse new connections and close the open ones; returns once they are closed.

        :raises RelayError: a connection was not closed within a generous bound.
        """
        with self._lock:
            listener, self._listener = self._listener, None
            acceptor, self._acceptor = self._acceptor, None
            victims = list(self._open)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        if acceptor is not None:
            # It registers nothing once the listener is gone (checked under the lock).
            acceptor.join(timeout=_CONNECT_TIMEOUT + _CLOSE_TIMEOUT)
            if acceptor.is_alive():
                raise RelayError("relay: the accept thread did not end")
        self._close(victims)

    def stall(self) -> None:
        """Keep every connection open and accept new ones, but forward nothing from now on."""
        with self._lock:
            self._stalled = True
            for conn in self._open:
                conn.forwarding = False

    def resume(self) -> None:
        """A restarted satellite: close the stalled connections, then listen and forward.

        :raises RelayError: a stalled connection was not closed within a generous bound.
        """
        with self._lock:
            self._stalled = False
            stalled = [conn for conn in self._open if not conn.forwarding]
            listening = self._listener is not None
        self._close(stalled)
        if not listening:
            self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    # -- relaying

    def _close(self, victims: list[_Connection]) -> None:
        for conn in victims:
            conn.shut_down()
        with self._changed:
            if not self._changed.wait_for(lambda: all(conn.closed for conn in victims), timeout=_CLOSE_TIMEOUT):
                left = sum(not conn.closed for conn in victims)
                raise RelayError(f"relay: {left} connection(s) still open {_CLOSE_TIMEOUT:.0f} s after shutdown")

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut down by cut()
            with self._lock:
                stalled = self._stalled
            upstream = None
            if not stalled:  # a hung satellite accepts (its kernel does) and never answers
                try:
                    upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
            with self._lock:
                gone = self._listener is not listener  # cut meanwhile: nothing may outlive cut()
                if gone or (upstream is None and not self._stalled):  # held for a stall that is over
                    for sock in (client, upstream):
                        if sock is not None:
                            sock.close()
                    if gone:
                        return
                    continue
                conn = _Connection(client, upstream, forwarding=not self._stalled)
                self._open.add(conn)
                self.connections += 1
            for sock in conn.sockets():
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if upstream is None:
                self._spawn(conn, client, None)
            else:
                self._spawn(conn, client, upstream)
                self._spawn(conn, upstream, client)

    def _spawn(self, conn: _Connection, src: socket.socket, dst: socket.socket | None) -> None:
        threading.Thread(target=self._pump, args=(conn, src, dst), daemon=True, name="relay-pump").start()

    def _pump(self, conn: _Connection, src: socket.socket, dst: socket.socket | None) -> None:
        """Copy src to dst until src ends (then half-close dst) or either fails (then shut
        the whole connection down); bytes read while stalled are dropped."""
        try:
            while data := src.recv(_BUFFER):
                if dst is not None and conn.forwarding:
                    dst.sendall(data)
            if dst is not None:
                dst.shutdown(socket.SHUT_WR)  # pass the end of the stream on
        except OSError:
            conn.shut_down()
        finally:
            self._pump_done(conn)

    def _pump_done(self, conn: _Connection) -> None:
        with self._changed:
            conn.pumps_left -= 1
            if conn.pumps_left:
                return
            # The last pump out: nobody is blocked on these sockets any more.
            for sock in conn.sockets():
                sock.close()
            conn.closed = True
            self._open.discard(conn)
            self._changed.notify_all()
