"""The HTTP routes: a FastAPI app around one checkpoint; it holds no key and never decrypts.

Routes:
    GET  /v1/health     liveness
    GET  /v1/model      model name, classes, scheme, block size, expected image size, key fingerprint
    POST /v1/classify   encrypted images (PNG/JPEG; multipart fields, or one image as the raw body)
                        → top-k labels and probabilities per image

Every error a client can cause is a 4xx JSON body ``{"error": "..."}``; the server keeps serving. A body must
arrive whole within ``body_timeout_s`` (:func:`_read_body`); the deadlines and limits on connections and
request heads live in the transport (:mod:`patchcrypt.serve.transport`).

``/v1/health`` answers ``{"status": "ok"}``; its counters (batches, images, connections) only with
``health_counters`` (``serve --health-counters``), since they tell anyone how busy the server is.
"""

import asyncio
from contextlib import asynccontextmanager
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import PatchcryptError
from ..record import EncryptionRecord
from .batcher import Batcher
from .config import API, ServeConfig
from .model import load_served_model, model_info
from .transport import ConnectionBook

__all__ = ["HTTPError", "create_app", "decode_images"]


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(run, config: Optional[ServeConfig] = None):
    """The FastAPI application serving the checkpoint at ``run`` (a run folder or a ``.pt`` file)."""
    from fastapi import FastAPI

    from ..runtime import resolve_device

    cfg = config or ServeConfig()
    ckpt, model = load_served_model(run)
    info = model_info(ckpt, model)
    info.update(max_images=cfg.max_images, max_body_bytes=cfg.max_body_bytes)
    device = resolve_device(cfg.device)
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
    _add_error_handlers(app)
    app.state.connections = ConnectionBook()
    _add_routes(app, cfg, info, state, upsampling)
    return app


def _error(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def _add_error_handlers(app) -> None:
    """Every error a client causes, and every route or validation error, as ``{"error": "..."}``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        response = _error(exc.status, exc.message)
        if exc.status == 408:  # the rest of a slow body is not worth waiting for
            response.headers["connection"] = "close"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc):
        messages = {404: f"no such route: {request.method} {request.url.path}",
                    405: f"method {request.method} not allowed on {request.url.path}"}
        return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid {where}: {first.get('msg', 'bad value')}")


def _add_routes(app, cfg: ServeConfig, info: Dict[str, Any], state: Dict[str, Any], upsampling: str) -> None:
    """``/v1/health``, ``/v1/model`` and ``/v1/classify``; ``state["batcher"]`` runs the model."""
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    h, w, c = info["image_size"]
    classes = info["classes"]

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
        images = await run_in_threadpool(decode_images, blobs, (h, w, c), upsampling)
        probs = await state["batcher"].submit(images)
        k = min(top_k, len(classes))
        order = np.argsort(-probs, axis=1)[:, :k]
        return {"model": info["model"], "scheme": info["scheme"], "n_images": len(images),
                "predictions": [{"name": name, "label": classes[int(o[0])],
                                 "top": [{"label": classes[int(j)], "index": int(j), "probability": float(p[j])}
                                         for j in o]}
                                for name, p, o in zip([b[0] for b in blobs], probs, order)]}


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


def decode_images(blobs: List[Tuple[str, bytes]], shape: Tuple[int, int, int], upsampling: str = "fancy") -> np.ndarray:
    """The uploaded files ``(name, bytes)`` of one request as (N, H, W, C) uint8, each exactly the model's
    ``shape`` (H, W, C); an empty, unreadable, oversized or wrong-sized file is an :class:`HTTPError` (400 or
    422) naming it, never a decoder's traceback."""
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
