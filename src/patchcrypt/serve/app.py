"""The classification server: a FastAPI app around one checkpoint; it holds no key and never decrypts.

Routes:
    GET  /v1/health     liveness
    GET  /v1/model      model name, classes, scheme, block size, expected image size, key fingerprint
    POST /v1/classify   encrypted images (PNG/JPEG; multipart fields, or one image as the raw body)
                        → top-k labels and probabilities per image

Concurrent requests are batched: one worker runs the model; while it runs a batch, new requests queue,
and the next batch takes everything queued (up to ``max_batch`` images, optionally waiting
``batch_window_ms`` for more). That adds no latency for a lone client and fills batches under load.

Every error a client can cause is a 4xx JSON body ``{"error": "..."}``; the server keeps serving.

Slow or idle clients cannot lock others out: a request's head must arrive within ``header_timeout_s`` of the
connection opening (or of the previous response; trickling bytes does not extend it) and its body within
``body_timeout_s``, else 408 and the connection is closed; one remote address holds at most
``max_connections_per_client`` open connections and the server at most ``max_connections``, beyond which a
new connection gets 503 and is closed at once. Connections still waiting for a complete request head
(half-open, from any number of addresses) are capped at ``max_half_open``: a new connection over the cap
closes the oldest half-open one (503), so slow clients spread over many addresses cannot fill the server,
and the slots above the cap stay free for connections that sent a complete request (see :func:`make_server`).

``/v1/health`` answers ``{"status": "ok"}``; its counters (batches, images, connections) only with
``health_counters`` (``serve --health-counters``), since they tell anyone how busy the server is.
"""


import asyncio
import errno
import socket
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import PatchcryptError
from ..record import EncryptionRecord

API = "/v1"


@dataclass
class ServeConfig:
    max_batch: int = 64            # images per model call
    batch_window_ms: float = 0.0   # extra wait for more requests before a batch runs
    max_images: int = 64           # images per request
    max_body_bytes: int = 8 << 20  # request body size limit
    top_k: int = 5
    device: Optional[str] = None
    header_timeout_s: float = 10.0      # request line + headers, from connect (or the previous response)
    body_timeout_s: float = 30.0        # the whole body, from the end of the head
    keep_alive_s: float = 5.0           # idle time allowed between requests on one connection
    max_connections_per_client: int = 32   # open connections per remote address
    max_connections: int = 1024         # open connections in all
    max_half_open: int = 256            # connections without a complete request head, all addresses together
    health_counters: bool = False       # /v1/health also reports batches, images and connections


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def model_info(ckpt: Dict[str, Any], model) -> Dict[str, Any]:
    """What a client needs to encrypt for this model (nothing secret); read back by
    :meth:`EncryptionRecord.from_server`."""
    from ..record import EncryptionRecord

    rec = EncryptionRecord.from_checkpoint(ckpt)
    return {"model": ckpt["model"], "classes": list(ckpt["classes"]), **rec.to_announcement(),
            "image_size": [int(model.img_size), int(model.img_size), int(model.in_chans)],
            "keyed": ckpt.get("keyed") is not None}


def load_served_model(run) -> Tuple[Dict[str, Any], Any]:
    """Load a checkpoint for serving; refuses checkpoints that do not say which images they expect."""
    from ..models import build_model, load_checkpoint

    from ..record import EncryptionRecord

    ckpt = load_checkpoint(run)
    rec = EncryptionRecord.from_checkpoint(ckpt)
    if not rec.scheme:
        raise PatchcryptError(f"{ckpt['path']}: the checkpoint records no scheme, so clients cannot know how to "
                              "encrypt for it; serve a run from 'patchcrypt train' or 'patchcrypt keyed-model'")
    if rec.scheme != "plain" and not rec.block_size:
        raise PatchcryptError(f"{ckpt['path']}: the checkpoint records scheme {rec.scheme!r} but no block size")
    model = build_model(ckpt)
    if not hasattr(model, "img_size") or not hasattr(model, "in_chans"):
        raise PatchcryptError(f"{ckpt['path']}: model {ckpt['model']} does not state its input size")
    return ckpt, model


class Batcher:
    """Merges concurrent requests into model calls on one worker thread."""

    def __init__(self, model, device, max_batch: int, window_s: float):
        self.model, self.device = model.to(device).eval(), device
        self.max_batch, self.window_s = max(1, int(max_batch)), max(0.0, window_s)
        self.queue: "asyncio.Queue" = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="patchcrypt-model")
        self.batches = self.images = 0
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((images, fut))
        return await fut

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        from ..inference import predict_proba

        return predict_proba(self.model, batch, self.device)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.window_s
            while n < self.max_batch:
                try:
                    wait = deadline - loop.time()
                    item = self.queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self.queue.get(), wait)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                items.append(item)
                n += len(item[0])
            try:
                probs = await loop.run_in_executor(self.executor, self._forward,
                                                   np.concatenate([imgs for imgs, _ in items]))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.images += n
            start = 0
            for imgs, fut in items:
                if not fut.done():
                    fut.set_result(probs[start:start + len(imgs)])
                start += len(imgs)


def create_app(run, config: Optional[ServeConfig] = None):
    """The FastAPI application serving the checkpoint at ``run`` (a run folder or a ``.pt`` file)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..runtime import resolve_device

    cfg = config or ServeConfig()
    ckpt, model = load_served_model(run)
    info = model_info(ckpt, model)
    info.update(max_images=cfg.max_images, max_body_bytes=cfg.max_body_bytes)
    device = resolve_device(cfg.device)
    h, w, c = info["image_size"]
    classes = info["classes"]
    upsampling = EncryptionRecord.from_checkpoint(ckpt).jpeg_upsampling  # EtC JPEGs decode as decrypt does
    state: Dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = Batcher(model, device, cfg.max_batch, cfg.batch_window_ms / 1000.0)
        state["batcher"].start()
        yield
        await state["batcher"].stop()

    app = FastAPI(title="patchcrypt", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.info = info
    app.state.serve_config = cfg

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        response = error(exc.status, exc.message)
        if exc.status == 408:  # the rest of a slow body is not worth waiting for
            response.headers["connection"] = "close"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc):
        messages = {404: f"no such route: {request.method} {request.url.path}",
                    405: f"method {request.method} not allowed on {request.url.path}"}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"invalid {where}: {first.get('msg', 'bad value')}")

    app.state.connections = ConnectionBook()

    @app.get(f"{API}/health")
    async def health():
        if not cfg.health_counters:
            return {"status": "ok"}
        b, book = state.get("batcher"), app.state.connections
        return {"status": "ok", "batches": b.batches if b else 0, "images": b.images if b else 0,
                "connections": book.open, "half_open": len(book.half_open)}

    @app.get(f"{API}/model")
    async def model_route():
        return info

    @app.post(f"{API}/classify")
    async def classify(request: Request, top_k: int = cfg.top_k):
        if not 1 <= top_k <= len(classes):
            raise HTTPError(422, f"top_k must be between 1 and {len(classes)}")
        body = await _read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
        blobs = await _images_from_body(request, body, cfg.max_images)
        images = await run_in_threadpool(_decode_all, blobs, (h, w, c), upsampling)
        probs = await state["batcher"].submit(images)
        k = min(top_k, len(classes))
        order = np.argsort(-probs, axis=1)[:, :k]
        return {"model": info["model"], "scheme": info["scheme"], "n_images": len(images),
                "predictions": [{"name": name, "label": classes[int(o[0])],
                                 "top": [{"label": classes[int(j)], "index": int(j), "probability": float(p[j])}
                                         for j in o]}
                                for name, p, o in zip([b[0] for b in blobs], probs, order)]}

    return app


async def _read_body(request, limit: int, timeout: float = 30.0) -> bytes:
    """The request body, at most ``limit`` bytes, all of it within ``timeout`` seconds (else 408)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPError(400, "invalid Content-Length header")
        if int(length) > limit:
            raise HTTPError(413, f"request body of {int(length):,} bytes is over the limit of {limit:,} bytes")
    chunks, size = [], 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stream = request.stream().__aiter__()
    try:
        while True:
            try:
                # one deadline for the whole body: a client trickling bytes does not get more time
                chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except HTTPError:
        raise
    except asyncio.TimeoutError:
        raise HTTPError(408, f"request body not received within {timeout:g} s") from None
    except Exception:  # noqa: BLE001 - the client went away mid-body
        raise HTTPError(400, "incomplete request body") from None
    return b"".join(chunks)


async def _images_from_body(request, body: bytes, max_images: int) -> List[Tuple[str, bytes]]:
    """(name, bytes) of every image in the request: multipart file fields, or the whole body as one image."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        from starlette.requests import Request as StarletteRequest

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        replayed = StarletteRequest(request.scope, replay)
        try:
            form = await replayed.form(max_files=max_images + 1, max_fields=max_images + 1)
        except Exception as exc:  # noqa: BLE001 - malformed multipart in many ways
            if "Too many files" in str(exc):
                raise HTTPError(413, f"too many images in one request (limit {max_images})") from None
            raise HTTPError(400, f"malformed multipart body ({str(exc).splitlines()[0][:120] or 'unreadable'})") \
                from None
        files = [(k, v) for k, v in form.multi_items() if hasattr(v, "read")]
        blobs = []
        for field, f in files[:max_images + 1]:
            blobs.append((f.filename or field, await f.read()))
        await form.close()
    elif ctype.split(";")[0].strip() in ("", "image/png", "image/jpeg", "application/octet-stream"):
        blobs = [("image", body)] if body else []
    else:
        raise HTTPError(415, f"unsupported content type {ctype.split(';')[0]!r}: send image/png, image/jpeg, "
                             "application/octet-stream or multipart/form-data")
    if not blobs:
        raise HTTPError(400, "no image in the request")
    if len(blobs) > max_images:
        raise HTTPError(413, f"too many images in one request (limit {max_images})")
    return blobs


def _decode_all(blobs: List[Tuple[str, bytes]], shape: Tuple[int, int, int], upsampling: str = "fancy") -> np.ndarray:
    from ..codec import decode_image

    h, w, c = shape
    out = np.empty((len(blobs), h, w, c), dtype=np.uint8)
    for i, (name, data) in enumerate(blobs):
        if not data:
            raise HTTPError(400, f"{name}: empty file")
        try:
            # refused from the header, before decoding, when larger than the model's input (decompression bombs)
            img = decode_image(data, name=name, upsampling=upsampling, limit=h * w)
        except PatchcryptError as exc:
            raise HTTPError(400, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - decoders fail in many ways on hostile input
            raise HTTPError(400, f"{name}: not a readable image ({type(exc).__name__})") from None
        if img.shape != (h, w, c):
            raise HTTPError(422, f"{name}: image is {img.shape[0]}x{img.shape[1]} with {img.shape[2]} channel(s); "
                                 f"the model expects {h}x{w} with {c}")
        out[i] = img
    return out


# -- running it ------------------------------------------------------------------------------------------
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
    is enforced where the body is read, :func:`_read_body`.)
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    cfg = config or ServeConfig()
    book = book if book is not None else ConnectionBook()
    per_address = book.per_address

    class GuardedH11Protocol(H11Protocol):
        _host: Optional[str] = None
        _head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            book.accepted += 1
            host = self.client[0] if self.client else ""
            if per_address.get(host, 0) >= cfg.max_connections_per_client:
                return self._refuse(f"too many connections from {host} (limit {cfg.max_connections_per_client})")
            if len(self.connections) > cfg.max_connections:
                return self._refuse(f"too many connections (limit {cfg.max_connections})")
            self._host = host
            per_address[host] = per_address.get(host, 0) + 1
            book.open += 1
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            """Start the head deadline and join the half-open connections; evict the oldest over the cap."""
            self._arm_head_timer()
            book.half_open[self] = None
            while len(book.half_open) > cfg.max_half_open:
                oldest = next(iter(book.half_open))
                book.half_open.pop(oldest)
                if oldest is not self:
                    book.evicted += 1
                    oldest._cancel_head_timer()
                    oldest._refuse("server busy: too many connections waiting to send a request "
                                   f"(limit {cfg.max_half_open}); try again")

        def _head_done(self) -> None:
            self._cancel_head_timer()
            book.half_open.pop(self, None)

        def _refuse(self, message: str) -> None:
            if not self.transport.is_closing():
                self.transport.write(_raw_response(503, "Service Unavailable", message))
                self.transport.close()

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(cfg.header_timeout_s, self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            book.half_open.pop(self, None)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(_raw_response(408, "Request Timeout", "request header not received within "
                                                   f"{cfg.header_timeout_s:g} s"))
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the head is in: its deadline is met
                self._head_done()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._wait_for_head()  # the next request's head gets the same budget, not a reset per byte

        def connection_lost(self, exc) -> None:
            self._head_done()
            if self._host is not None:
                book.open -= 1
                left = per_address.get(self._host, 1) - 1
                if left > 0:
                    per_address[self._host] = left
                else:
                    per_address.pop(self._host, None)
                self._host = None
            super().connection_lost(exc)

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
