"""The client side: encrypt locally with the owner's key, send only ciphertext images, read labels back.

The server is not trusted to say how images are encrypted: a hostile one could announce ``plain`` and
receive the images as they are. The owner states the scheme and block size; the client compares them with
the server's ``/v1/model`` and refuses, before any image leaves, when they differ, when the key's
fingerprint differs, or when the scheme is ``plain`` or a single step (``step-*``) unless the owner passed
``allow_weak_scheme=True``.

>>> client = Client("http://127.0.0.1:8000", key=Key.load("owner.key"), scheme="block-pixel",
...                 block_size=16)                                      # doctest: +SKIP
>>> client.classify_files(["cat.png"], jpeg_quality=90)[0]["label"]    # doctest: +SKIP
'cat'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..ciphers.policy import check_owner_choice, is_weak_scheme  # noqa: F401 - scheme policy, re-exported
from ..errors import PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord


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
    """

    def __init__(self, url: str, key: Optional[Key] = None, timeout: float = 60.0, *,
                 scheme: Optional[str] = None, block_size: Optional[int] = None,
                 allow_weak_scheme: bool = False):
        import httpx

        # the owner's choice is checked before the server is even asked
        self.owner = EncryptionRecord.from_owner(scheme, block_size, key.fingerprint if key is not None else None,
                                                 allow_weak_scheme)
        self.scheme, self.block_size = self.owner.scheme, self.owner.block_size
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
    def _request(self, method: str, path: str, **kw) -> Dict[str, Any]:
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.TimeoutException:
            raise PatchcryptError(f"{self.url}: no answer within the timeout") from None
        except httpx.HTTPError as exc:
            raise PatchcryptError(f"cannot reach the server at {self.url} ({type(exc).__name__})") from None
        try:
            body = r.json()
        except ValueError:
            raise PatchcryptError(f"{self.url}{path}: not a patchcrypt server (HTTP {r.status_code}, "
                                  "no JSON)") from None
        if r.status_code >= 400:
            msg = body.get("error") if isinstance(body, dict) else None
            raise PatchcryptError(f"server refused the request (HTTP {r.status_code}): {msg or body}")
        return body

    def info(self) -> Dict[str, Any]:
        """The served model's description (``GET /v1/model``), cached."""
        if self._info is None:
            info = self._request("GET", "/v1/model")
            if not isinstance(info, dict) or "scheme" not in info or "image_size" not in info:
                raise PatchcryptError(f"{self.url}: not a patchcrypt server (unexpected /v1/model answer)")
            self._info = info
        return self._info

    def health(self) -> Dict[str, Any]:
        return self._request("GET", "/v1/health")

    # -- encryption ---------------------------------------------------------------------------------------
    def cipher(self):
        """The owner's cipher, after checking that the served model expects exactly it (scheme, block size,
        key fingerprint). Every refusal happens here, before any image is encrypted or sent."""
        if self._cipher is None:
            owner, server = self.owner, EncryptionRecord.from_server(self.info())
            if server.scheme != owner.scheme:
                raise PatchcryptError(f"the server announces scheme {server.scheme!r}, you chose {owner.scheme!r}; "
                                      "refusing to send (check --server and --scheme)")
            if owner.scheme != "plain" and server.block_size != owner.block_size:
                raise PatchcryptError(f"the server announces block size {server.block_size}, you chose "
                                      f"{owner.block_size}; refusing to send")
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
        model expects, each resized to the model's size first if ``resize``."""
        h, w, c = self.info()["image_size"]
        images = [np.asarray(im) for im in (images[None] if getattr(images, "ndim", 0) == 3 else images)]
        for im in images:
            if im.dtype != np.uint8 or im.ndim != 3:
                raise PatchcryptError(f"expected uint8 (H, W, C) images, got {im.dtype} {im.shape}")
            if im.shape[2] != c:
                raise PatchcryptError(f"the model expects {c}-channel images, got {im.shape[2]}")
        if resize:
            from ..codec import resize_image

            images = [resize_image(im, (h, w)) for im in images]
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
        """Post already-encrypted image files; returns one prediction dict per image."""
        self.cipher()  # the checks, even for bytes encrypted elsewhere
        names = list(names or [f"image{i}" for i in range(len(blobs))])
        files = [("image", (n, b, "image/jpeg" if b[:2] == b"\xff\xd8" else "image/png"))
                 for n, b in zip(names, blobs)]
        k = min(top_k, len(self.info()["classes"]))
        return self._request("POST", "/v1/classify", params={"top_k": k}, files=files)["predictions"]

    def classify(self, images, jpeg_quality: Optional[int] = None, resize: bool = False,
                 top_k: int = 5, names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """Encrypt plain uint8 images (array or list, see :meth:`prepare`) here, send them, return predictions."""
        limit = int(self.info().get("max_images") or 64)
        enc = self.prepare(images, resize)
        blobs = self.encode(enc, jpeg_quality)
        names = list(names or [f"image{i}" for i in range(len(blobs))])
        out: List[Dict[str, Any]] = []
        for i in range(0, len(blobs), limit):
            out += self.classify_bytes(blobs[i:i + limit], names[i:i + limit], top_k)
        return out

    def classify_files(self, paths: Sequence, jpeg_quality: Optional[int] = None, resize: bool = False,
                       top_k: int = 5) -> List[Dict[str, Any]]:
        """Read image files, encrypt, classify; each prediction's ``name`` is the file's path."""
        from ..codec import read_image

        c = self.info()["image_size"][2]
        images = [read_image(p, "L" if c == 1 else "RGB") for p in paths]
        return self.classify(images, jpeg_quality, resize, top_k, [str(Path(p)) for p in paths])
