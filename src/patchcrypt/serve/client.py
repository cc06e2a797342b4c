"""The client side: encrypt locally with the owner's key, send only ciphertext images, read labels back.

The server is not trusted to say how images are encrypted: a hostile one could announce ``plain`` and
receive the images as they are. The owner states the scheme and block size; the client compares them with
the server's ``/v1/model`` and refuses, before any image leaves, when they differ, when the key's
fingerprint differs, or when the scheme is ``plain`` or a single step (``step-*``) unless the owner passed
``allow_weak_scheme=True``. The image size is the owner's too: ``image_size`` pins it (``resize`` needs it),
and a server announcing another size is refused; without it every image is sent at its own size, which the
server's announcement must match.

What leaves this machine is ciphertext and nothing else: each image is sent under an opaque index (``0``,
``1``, ...), never its file name, path or label; answers are mapped back here. Every answer is read up to
1 MB, checked field by field, and its strings stripped of control characters before printing
(:mod:`patchcrypt.serve.answers`).

>>> client = Client("http://127.0.0.1:8000", key=Key.load("owner.key"), scheme="block-pixel",
...                 block_size=16, image_size=224)                      # doctest: +SKIP
>>> client.classify_files(["cat.png"], jpeg_quality=90)[0]["label"]    # doctest: +SKIP
'cat'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import KeyMismatchError, PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from .answers import MAX_ANSWER_BYTES, MAX_ERROR_TEXT, clean_text, model_info_from_server, predictions_from_server


def parse_image_size(value: Union[None, int, str, Sequence[int]], block_size: Optional[int] = None,
                     scheme: Optional[str] = None) -> Optional[Tuple[int, int]]:
    """The owner's image size: ``224``, ``"224"``, ``"224x160"`` (H x W) or ``[224, 160]`` → (H, W), or None.

    Both sides must be positive, multiples of the block size (except for ``plain``) and within the pixel
    limit (:func:`patchcrypt.codec.max_pixels`); else a one-line PatchcryptError.
    """
    from ..codec import max_pixels

    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            h = w = value
        elif isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
            if len(parts) > 2:
                raise ValueError
        else:
            h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise PatchcryptError(f"image size must be N or HxW in pixels, got {clean_text(value, 40)!r}") from None
    if h < 1 or w < 1 or h * w > max_pixels():
        raise PatchcryptError(f"image size {h}x{w} is not a usable size (1 to {max_pixels():,} pixels)")
    m = block_size or 1
    if scheme != "plain" and (h % m or w % m):
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    return h, w


def wait_until_healthy(url: str, timeout: float = 60.0, process=None) -> None:
    """Poll ``GET /v1/health`` until the server answers; a server ``process`` that exits is an error."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process is not None and process.poll() is not None:
            err = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise PatchcryptError(f"the server exited: {err.splitlines()[-1] if err else 'no message'}")
        if time.monotonic() > deadline:
            raise PatchcryptError(f"{url}: no answer within {timeout:.0f} s")
        time.sleep(0.2)


class Client:
    """Talks to ``patchcrypt serve``. The key never leaves this object; the server gets encrypted images only.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        key: the data owner's key (None only with ``scheme="plain"``).
        timeout: seconds per HTTP request.
        scheme: how the owner encrypts (a registry name); the server's ``/v1/model`` must announce the same.
        block_size: the owner's block size M; must equal the announced one.
        allow_weak_scheme: let ``plain`` and single-step (``step-*``) schemes through.
        image_size: the owner's image size (N, ``"HxW"`` or (H, W)); the announced one must equal it, and
            ``resize`` resizes to it. None: each image is sent at its own size (no resizing).
    """

    def __init__(self, url: str, key: Optional[Key] = None, timeout: float = 60.0, *,
                 scheme: Optional[str] = None, block_size: Optional[int] = None,
                 allow_weak_scheme: bool = False, image_size=None):
        import httpx

        # the owner's choice is checked before the server is even asked
        self.owner = EncryptionRecord.from_owner(scheme, block_size, key.fingerprint if key is not None else None,
                                                 allow_weak_scheme)
        self.scheme, self.block_size = self.owner.scheme, self.owner.block_size
        self.image_size = parse_image_size(image_size, self.block_size, self.scheme)
        self.timeout = float(timeout)
        self.url = url.rstrip("/")
        self.key = key
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._info: Optional[Dict[str, Any]] = None
        self._cipher = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw) -> Any:
        """One request; its answer read up to MAX_ANSWER_BYTES within the timeout, parsed as JSON."""
        import json
        import time

        import httpx

        deadline = time.monotonic() + self.timeout
        try:
            with self._http.stream(method, path, **kw) as r:
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                    raise PatchcryptError(f"{self.url}{path}: the server's answer is over {MAX_ANSWER_BYTES:,} bytes; "
                                          "ignoring it")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        raise PatchcryptError(f"{self.url}{path}: the server's answer is over "
                                              f"{MAX_ANSWER_BYTES:,} bytes; ignoring it")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("answer too slow")
                status = r.status_code
        except httpx.TimeoutException:
            raise PatchcryptError(f"{self.url}: no answer within the timeout") from None
        except httpx.HTTPError as exc:
            raise PatchcryptError(f"cannot reach the server at {self.url} ({type(exc).__name__})") from None
        try:
            body = json.loads(bytes(data))
        except (ValueError, RecursionError):
            raise PatchcryptError(f"{self.url}{path}: not a patchcrypt server (HTTP {status}, no JSON)") from None
        if status >= 400:
            msg = body.get("error") if isinstance(body, dict) else None
            raise PatchcryptError(f"server refused the request (HTTP {status}): "
                                  f"{clean_text(msg or body, MAX_ERROR_TEXT)}")
        return body

    def info(self) -> Dict[str, Any]:
        """The served model's description (``GET /v1/model``), checked field by field and cached."""
        from ..codec import max_pixels

        if self._info is None:
            try:
                self._info = model_info_from_server(self._request("GET", "/v1/model"), max_pixels())
            except PatchcryptError as exc:
                raise PatchcryptError(f"{self.url}: {exc}") from None
        return self._info

    def health(self) -> Dict[str, Any]:
        return self._request("GET", "/v1/health")

    # -- encryption ---------------------------------------------------------------------------------------
    def cipher(self):
        """The owner's cipher, after checking that the served model expects exactly it (scheme, block size,
        key fingerprint). Every refusal happens here, before any image is encrypted or sent."""
        if self._cipher is None:
            owner, server = self.owner, EncryptionRecord.from_server(self.info())
            try:
                owner.require_same(server, ("scheme",) if owner.is_plain else ("scheme", "block_size"))
            except KeyMismatchError as exc:
                raise PatchcryptError(f"{exc}; refusing to send (check --server, --scheme and --block-size)") from None
            h, w = server.image_shape[:2]
            if self.image_size is not None and (h, w) != self.image_size:
                raise PatchcryptError(f"the server announces {h}x{w} images, you chose {self.image_size[0]}x"
                                      f"{self.image_size[1]}; refusing to send (check --server and --image-size)")
            if owner.scheme == "plain":
                self._cipher = owner.cipher(None)
                return self._cipher
            if self.key is None:
                raise PatchcryptError(f"the server's model expects {owner.scheme} images; give the key (--key)")
            server.check_key(self.key)
            if server.per_image:
                raise PatchcryptError("the server's model was trained with per-image keys; the client cannot "
                                      "produce matching nonces")
            self._cipher = owner.cipher(self.key)  # the owner's settings, never the server's announcement
        return self._cipher

    def prepare(self, images, resize: bool = False) -> np.ndarray:
        """Plain uint8 images — an (N, H, W, C) array or a list of (H, W, C) — → the encrypted batch the
        model expects, each resized first to the owner's ``image_size`` if ``resize`` (never to a size only
        the server announced)."""
        self.cipher()  # the checks: scheme, block size, key, and the announced size against the owner's
        h, w, c = self.info()["image_size"]
        if resize and self.image_size is None:
            raise PatchcryptError("--resize needs the size you chose (--image-size, or image_size: in --config); "
                                  "the server's announcement is not trusted")
        images = [np.asarray(im) for im in (images[None] if getattr(images, "ndim", 0) == 3 else images)]
        for im in images:
            if im.dtype != np.uint8 or im.ndim != 3:
                raise PatchcryptError(f"expected uint8 (H, W, C) images, got {im.dtype} {im.shape}")
            if im.shape[2] != c:
                raise PatchcryptError(f"the model expects {c}-channel images, got {im.shape[2]}")
        if resize:  # the one rule train and evaluate use: aspect kept, centre crop (never squashed)
            from ..data.resize import fit_image

            images = [fit_image(im, (h, w)) for im in images]
        wrong = [im.shape for im in images if im.shape[:2] != (h, w)]
        if wrong:
            raise PatchcryptError(f"an image is {wrong[0][0]}x{wrong[0][1]}; the model expects {h}x{w} (resize it, "
                                  "or pass --resize)")
        return self.cipher().encrypt(np.stack(images))

    def encode(self, encrypted: np.ndarray, jpeg_quality: Optional[int] = None) -> List[bytes]:
        """Encrypted images as upload bytes: PNG (lossless), or EtC JPEG at ``jpeg_quality``."""
        from ..codec import encode_jpeg, encode_png

        if jpeg_quality is None:
            return [encode_png(img) for img in encrypted]
        return [encode_jpeg(img, jpeg_quality, self.owner.subsampling) for img in encrypted]

    # -- classification -----------------------------------------------------------------------------------
    def classify_bytes(self, blobs: Sequence[bytes], names: Optional[Sequence[str]] = None,
                       top_k: int = 5) -> List[Dict[str, Any]]:
        """Post already-encrypted image files; returns one prediction dict per image, in order, each with the
        caller's ``name`` (default ``image0``, ...). The server sees only the indices ``0``, ``1``, ..."""
        self.cipher()  # the checks, even for bytes encrypted elsewhere
        names = list(names or [f"image{i}" for i in range(len(blobs))])
        if len(names) != len(blobs):
            raise PatchcryptError(f"{len(names)} names for {len(blobs)} images")
        info = self.info()
        k = min(int(top_k), len(info["classes"]))
        out: List[Dict[str, Any]] = []
        limit = info["max_images"]
        for start in range(0, len(blobs), limit):
            part = blobs[start:start + limit]
            files = [("image", (str(i), b, "image/jpeg" if b[:2] == b"\xff\xd8" else "image/png"))
                     for i, b in enumerate(part)]
            body = self._request("POST", "/v1/classify", params={"top_k": k}, files=files)
            out += predictions_from_server(body, names[start:start + limit], info["classes"], k)
        return out

    def classify(self, images, jpeg_quality: Optional[int] = None, resize: bool = False,
                 top_k: int = 5, names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """Encrypt plain uint8 images (array or list, see :meth:`prepare`) here, send them, return predictions."""
        enc = self.prepare(images, resize)
        return self.classify_bytes(self.encode(enc, jpeg_quality), names, top_k)

    def classify_files(self, paths: Sequence, jpeg_quality: Optional[int] = None, resize: bool = False,
                       top_k: int = 5) -> List[Dict[str, Any]]:
        """Read image files, encrypt, classify; each prediction's ``name`` is the file's path (kept here: the
        server sees an index)."""
        from ..codec import read_image

        c = self.info()["image_size"][2]
        images = [read_image(p, "L" if c == 1 else "RGB") for p in paths]
        return self.classify(images, jpeg_quality, resize, top_k, [str(Path(p)) for p in paths])
