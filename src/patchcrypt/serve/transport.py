"""The transport: a listening socket, uvicorn's h11 protocol with connection guards, and running the server.

Slow or idle clients cannot lock others out: a request's head must arrive within ``header_timeout_s`` of the
connection opening (or of the previous response; trickling bytes does not extend it) and its body within
``body_timeout_s`` (enforced where the body is read, in the routes), else 408 and the connection is closed;
one remote address holds at most ``max_connections_per_client`` open connections and the server at most
``max_connections``, beyond which a new connection gets 503 and is closed at once. Connections still waiting
for a complete request head (half-open, from any number of addresses) are capped at ``max_half_open``: a new
connection over the cap closes the oldest half-open one (503), so slow clients spread over many addresses
cannot fill the server, and the slots above the cap stay free for connections that sent a complete request
(see :func:`make_server`).
"""

import errno
import socket
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Optional

from ..errors import PatchcryptError
from .config import ServeConfig

__all__ = ["ConnectionBook", "bind_socket", "guarded_protocol", "make_server", "running_server"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; a port in use or a bad host is a clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PatchcryptError(f"cannot resolve host {host!r} ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit this: a response written in two parts is not held back ~40 ms (Nagle
    # against the client's delayed ACK)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PatchcryptError(f"port {port} on {host} is already in use") from None
        raise PatchcryptError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def _raw_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 JSON error response that closes the connection, for use outside h11's state."""
    import json

    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class ConnectionBook:
    """The server's open connections: how many in all, per remote address, and which are half-open (no
    complete request head yet), oldest first. Shared by every connection of one server (one event loop)."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0                                   # connections seen (admitted or refused), ever
        self.evicted = 0                                    # half-open connections closed to make room
        self.per_address: Dict[str, int] = {}
        self.half_open: "OrderedDict[Any, None]" = OrderedDict()


class _ConnectionGuard:
    """The guards of :func:`guarded_protocol`, mixed in before uvicorn's ``H11Protocol`` (whose hooks each
    method extends). ``_cfg``, ``_book`` and ``_idle`` (h11's IDLE state) are set on the class it makes."""

    _cfg: ServeConfig
    _book: ConnectionBook
    _idle: Any
    _host: Optional[str] = None
    _head_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        cfg, book = self._cfg, self._book
        book.accepted += 1
        host = self.client[0] if self.client else ""
        if book.per_address.get(host, 0) >= cfg.max_connections_per_client:
            return self._refuse(f"too many connections from {host} (limit {cfg.max_connections_per_client})")
        if len(self.connections) > cfg.max_connections:
            return self._refuse(f"too many connections (limit {cfg.max_connections})")
        self._host = host
        book.per_address[host] = book.per_address.get(host, 0) + 1
        book.open += 1
        self._wait_for_head()

    def _wait_for_head(self) -> None:
        """Start the head deadline and join the half-open connections; evict the oldest over the cap."""
        book, cap = self._book, self._cfg.max_half_open
        self._arm_head_timer()
        book.half_open[self] = None
        while len(book.half_open) > cap:
            oldest = next(iter(book.half_open))
            book.half_open.pop(oldest)
            if oldest is not self:
                book.evicted += 1
                oldest._cancel_head_timer()
                oldest._refuse("server busy: too many connections waiting to send a request "
                               f"(limit {cap}); try again")

    def _head_done(self) -> None:
        self._cancel_head_timer()
        self._book.half_open.pop(self, None)

    def _refuse(self, message: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_raw_response(503, "Service Unavailable", message))
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._cfg.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        self._book.half_open.pop(self, None)
        if self.conn.their_state is self._idle and not self.transport.is_closing():
            self.transport.write(_raw_response(408, "Request Timeout", "request header not received within "
                                               f"{self._cfg.header_timeout_s:g} s"))
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not self._idle:  # the head is in: its deadline is met
            self._head_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is self._idle:
            self._wait_for_head()  # the next request's head gets the same budget, not a reset per byte

    def connection_lost(self, exc) -> None:
        self._head_done()
        if self._host is not None:
            book = self._book
            book.open -= 1
            left = book.per_address.get(self._host, 1) - 1
            if left > 0:
                book.per_address[self._host] = left
            else:
                book.per_address.pop(self._host, None)
            self._host = None
        super().connection_lost(exc)


def guarded_protocol(config: Optional[ServeConfig] = None, book: Optional[ConnectionBook] = None):
    """uvicorn's h11 protocol with a request-head deadline, per-address and total connection limits, and a
    cap on half-open connections.

    uvicorn alone has none of these: its keep-alive timer is reset by every byte received, so a client that
    trickles a header holds its connection forever, and its ``limit_concurrency`` counts idle connections,
    so a few hundred of them make every other client's request a 503. Here every connection must deliver a
    complete request head within ``header_timeout_s`` of opening or of its previous response (408 and
    closed otherwise); a new connection over ``max_connections_per_client`` (per remote address) or
    ``max_connections`` is answered 503 and closed before it holds anything; and when more than
    ``max_half_open`` connections are waiting for a head, the oldest of them is answered 503 and closed, so
    a new client always gets its chance however many addresses the slow ones come from. (The body deadline
    is enforced where the body is read, :func:`patchcrypt.serve.routes._read_body`.)
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    cfg = config or ServeConfig()
    shared = book if book is not None else ConnectionBook()

    class GuardedH11Protocol(_ConnectionGuard, H11Protocol):
        _cfg, _book, _idle = cfg, shared, h11.IDLE

    return GuardedH11Protocol


def make_server(app, sock: socket.socket, access_log: bool = False):
    """A uvicorn server for ``app`` with the limits of ``app.state.serve_config`` (defaults when absent)."""
    import uvicorn

    state = getattr(app, "state", None)
    cfg = getattr(state, "serve_config", None) or ServeConfig()
    book = getattr(state, "connections", None)
    # h11 enforces a limit on the request head (huge headers get 400, not memory growth); the connection
    # limits live in the protocol, which counts per address (uvicorn's limit_concurrency counts idle sockets)
    config = uvicorn.Config(app, http=guarded_protocol(cfg, book), log_level="warning", access_log=access_log,
                            limit_concurrency=None, timeout_keep_alive=cfg.keep_alive_s,
                            h11_max_incomplete_event_size=16 * 1024)
    return uvicorn.Server(config)


@contextmanager
def running_server(app, host: str = "127.0.0.1", port: int = 0):
    """Run ``app`` under uvicorn on a background thread; yields the base URL. For tests and benchmarks."""
    import time

    sock = bind_socket(host, port)
    server = make_server(app, sock)
    server.install_signal_handlers = lambda: None  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise PatchcryptError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
