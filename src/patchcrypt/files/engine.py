"""The encrypt loop and the decrypt loop of every data-set run (DESIGN §5), whatever the source and the layout.

:class:`Encryptor` reads a plan's units (one image file each, or one output shard each), encrypts them in
batches (one compiled gather per image shape), writes PNG or EtC JPEG files or shards, and collects what the
manifest records: every file's nonce (per-image keys), original size (``--pad``) and the SHA-256 of the
encrypted file. :func:`run_manifest` builds the manifest from the results of every process or part.
:func:`decrypt_into` decrypts batches of checked files (a tree's or a shard set's) into PNG files, refusing a
file whose header declares another size than its manifest before decoding it.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..ciphers.base import NONCE_BYTES
from ..codec import check_pixels, decode_image, image_bytes, image_size, max_pixels
from ..data.manifest import MANIFEST_NAME, build_manifest, find_manifest
from ..data.resize import resize_fields
from ..data.shards import sample_key, write_shard
from ..errors import PatchcryptError
from ..record import EncryptionRecord, subsampling_for
from .sources import Encrypted, Plan
from .staging import WORKERS

CHUNK = 1024  # images decoded, encrypted and written per step
# Per-image keys: each image has its own compiled program (index tables as large as the image), so they are
# compiled and applied this many images at a time rather than a chunk's worth at once (memory, not speed)
PER_IMAGE_BATCH = 16
# Test hook, inert unless set: after its first written chunk, encrypt creates the file this variable names
# and waits (up to 5 minutes) for a signal, so a test can interrupt it mid-run without racing the clock.
PAUSE_ENV = "PATCHCRYPT_TEST_PAUSE_AFTER_WRITE"


@dataclass(frozen=True)
class EncryptOptions:
    """Everything ``encrypt`` is asked for besides the source, the destination and the key."""

    scheme: str
    block_size: int
    file_format: str = "png"  # png or jpeg (jpg accepted)
    quality: int = 90
    subsampling: Optional[str] = None  # None: 420 when the block size is a multiple of 16, else 444
    resize: Optional[Tuple[int, int]] = None
    pad: bool = False
    per_image: bool = False
    force: bool = False
    shard_size: Optional[int] = None
    part: Optional[Tuple[int, int]] = None  # (I, N): part I of N
    salt: Optional[bytes] = None  # per-image keys: the run's nonce salt
    skip_bad: bool = False

    def checked(self) -> "EncryptOptions":
        """The options with the format's name and the subsampling settled; refuses an unknown format."""
        fmt = self.file_format.lower()
        if fmt not in ("png", "jpeg", "jpg"):
            raise PatchcryptError(f"--format must be png or jpeg, got {fmt!r}")
        return replace(self, file_format="jpeg" if fmt == "jpg" else fmt,
                       subsampling=self.subsampling or subsampling_for(self.block_size))

    @property
    def suffix(self) -> str:
        return ".jpg" if self.file_format == "jpeg" else ".png"

    def facts(self) -> str:
        """The options every process of one run must share, as text (never the salt: it is compared apart)."""
        return repr(sorted({"fmt": self.file_format, "quality": self.quality, "block_size": self.block_size,
                            "resize": self.resize, "subsampling": self.subsampling, "pad": self.pad,
                            "per_image": self.per_image}.items()))


def salted_nonce(salt: bytes, index: int) -> bytes:
    """The per-image nonce of file ``index`` in a run with ``salt``."""
    return hashlib.sha256(b"patchcrypt/v1/nonce" + salt + int(index).to_bytes(8, "big")).digest()[:NONCE_BYTES]


def sub_batches(idx: List[int], per_image: bool) -> List[List[int]]:
    if not per_image:
        return [idx]
    return [idx[i:i + PER_IMAGE_BATCH] for i in range(0, len(idx), PER_IMAGE_BATCH)]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _check_padded(cipher, shape: tuple, name: Path) -> None:
    """Refuse an image that ``--pad`` would grow past the pixel limit (1×40,000,000 pads to 16×40,000,000)."""
    h, w = cipher.padded_size(shape[0], shape[1])
    if (h, w) != tuple(shape[:2]) and h * w > max_pixels():
        raise PatchcryptError(f"{name}: --pad would make it {w}x{h} = {h * w:,} pixels, over the limit of "
                              f"{max_pixels():,}; resize it first (--resize) or raise --max-pixels if trusted")


def _pause_for_test() -> None:
    """The :data:`PAUSE_ENV` handshake (tests only): signal "files are written", then wait for Ctrl-C."""
    marker = os.environ.pop(PAUSE_ENV, None)  # once per process
    if marker:
        Path(marker).touch()
        for _ in range(3000):
            time.sleep(0.1)


def report_bad(bad: List[str], skip_bad: bool, total: int) -> None:
    """All the files that could not be read, in one line: an error, or with ``--skip-bad`` a warning."""
    if not bad:
        return
    listed = "; ".join(bad)
    if not skip_bad or len(bad) == total:
        hint = "none could be read" if len(bad) == total else "fix or remove them, or pass --skip-bad to go on"
        raise PatchcryptError(f"{len(bad)} of {total} file(s) cannot be read ({hint}): {listed}")
    warnings.warn(f"--skip-bad: left out {len(bad)} of {total} file(s) that cannot be read: {listed}")


class Encryptor:
    """Encrypts a plan's units into a folder; collects file records, shard records and image shapes.

    ``salt``: per-image nonces derived from the file's index (:func:`salted_nonce`), the same in every process;
    None draws a fresh nonce per image. ``bad``: a list that collects the files that cannot be read (each
    left out, and named later by :func:`report_bad`); None stops at the first.
    """

    def __init__(self, plan: Plan, cipher, opts: EncryptOptions, salt: Optional[bytes],
                 bad: Optional[List[str]] = None):
        self.plan, self.cipher, self.opts, self.salt, self.bad = plan, cipher, opts, salt, bad
        self.files: Dict[int, Dict] = {}
        self.shards: List[Dict] = []
        self.shapes: Dict[int, tuple] = {}

    def _read(self, i: int) -> Optional[np.ndarray]:
        if self.bad is None:
            return self.plan.read(i, self.opts.resize)
        try:
            return self.plan.read(i, self.opts.resize)
        except PatchcryptError as exc:
            self.bad.append(str(exc))
            return None

    def encrypt(self, idx: List[int], pool) -> Tuple[List[int], List[bytes]]:
        """(the files of ``idx`` that could be read, their encrypted files' bytes)."""
        images = list(pool.map(self._read, idx))
        keep = [j for j, img in enumerate(images) if img is not None]
        idx, images = [idx[j] for j in keep], [images[j] for j in keep]
        groups: Dict[tuple, List[int]] = {}
        for j, img in enumerate(images):
            groups.setdefault(img.shape, []).append(j)
        outputs: List[Any] = [None] * len(idx)
        for shape, group in groups.items():
            _check_padded(self.cipher, shape, self.plan.root / self.plan.rels[idx[group[0]]])
            for sub in sub_batches(group, self.opts.per_image):
                self._encrypt_batch([idx[j] for j in sub], sub, images, outputs, shape)
        del images
        o = self.opts
        encoded = list(pool.map(lambda im: image_bytes(im, o.file_format, o.quality, o.subsampling), outputs))
        for i, data in zip(idx, encoded):
            # digest of the ciphertext file: lets decrypt name files that do not belong to this data set
            self.files[i]["sha256"] = hashlib.sha256(data).hexdigest()
        return idx, encoded

    def _encrypt_batch(self, files: List[int], at: List[int], images: List[Any], outputs: List[Any],
                       shape: tuple) -> None:
        """Encrypt ``images[at]`` (source files ``files``) into ``outputs[at]``, freeing each plain image."""
        nonces = None
        if self.opts.per_image:
            nonces = ([salted_nonce(self.salt, i) for i in files] if self.salt is not None
                      else self.cipher.new_nonces(len(files)))
        # one image: a view, not a copy (a 40 MP image is 120 MB)
        batch = images[at[0]][None] if len(at) == 1 else np.stack([images[j] for j in at])
        try:
            enc = self.cipher.encrypt(batch, nonces)
        except PatchcryptError as exc:
            raise PatchcryptError(f"{self.plan.root / self.plan.rels[files[0]]}: {exc}") from None
        del batch
        for k, (i, j) in enumerate(zip(files, at)):
            outputs[j], images[j] = enc[k], None  # the plain image is no longer needed
            meta = self.files.setdefault(i, {})
            if self.opts.per_image:
                meta["nonce"] = nonces[k].hex()
            if self.opts.pad:
                meta["orig_shape"] = list(shape[:2])
            self.shapes[i] = shape

    def run(self, units: range, out: Path, progress: Optional[Callable[[int], None]]) -> None:
        """Encrypt ``units`` of the plan into ``out``: the files CHUNK at a time, then the shards one by one."""
        plan, ext = self.plan, self.opts.suffix[1:]
        with ThreadPoolExecutor(WORKERS) as pool:
            tree = [u for u in units if plan.units[u][0] is None]
            for start in range(0, len(tree), CHUNK):  # one file per unit: CHUNK files a step
                idx = [plan.units[u][1][0] for u in tree[start:start + CHUNK]]
                done, encoded = self.encrypt(idx, pool)
                list(pool.map(lambda p: _write(out / plan.out_rels[p[0]], p[1]), zip(done, encoded)))
                _pause_for_test()
                if progress:
                    progress(len(idx))
            for u in units:
                name, idx = plan.units[u]
                if name is None:
                    continue
                idx, encoded = self.encrypt(idx, pool)
                cls = plan.classes or []
                rec = write_shard(out / name, [(sample_key(i), ext, d, plan.labels[i],
                                                cls[plan.labels[i]] if plan.labels[i] is not None else None,
                                                plan.out_rels[i]) for i, d in zip(idx, encoded)])
                self.shards.append({"path": name, **rec})
                if progress:
                    progress(len(idx))

    def result(self) -> Dict[str, Any]:
        return {"files": self.files, "shards": self.shards, "shapes": self.shapes,
                "skipped": len(self.bad or [])}


def run_manifest(plan: Plan, cipher, key_fp: str, opts: EncryptOptions, results: List[Dict[str, Any]],
                 salt: Optional[bytes], source_order: bool = True) -> Dict[str, Any]:
    """The manifest of the whole run from every rank's or part's results; plus ``layout``/``shards`` for
    shards and ``nonce_salt`` for salted per-image nonces. ``source_order``: files listed in the source's
    order (every split of a run gives the same manifest); else in the order they were encrypted."""
    files: Dict[int, Dict] = {}
    shapes: Dict[int, tuple] = {}
    shards: List[Dict] = []
    for r in results:
        files.update({int(k): v for k, v in r["files"].items()})
        shapes.update({int(k): tuple(v) for k, v in r["shapes"].items()})
        shards += r["shards"]
    distinct = sorted(set(shapes.values()))
    is_jpeg = opts.file_format == "jpeg"
    record = EncryptionRecord.from_cipher(cipher, jpeg_quality=opts.quality if is_jpeg else None,
                                          subsampling=opts.subsampling if is_jpeg else None,
                                          image_shape=distinct[0] if len(distinct) == 1 else None)
    extra: Dict[str, Any] = {}
    if shards:
        extra["layout"] = "webdataset"
        extra["shards"] = sorted(shards, key=lambda s: [u[0] for u in plan.units].index(s["path"]))
    if opts.per_image and salt is not None:
        extra["nonce_salt"] = salt.hex()
    extra.update(resize_fields(opts.resize))
    skipped = sum(int(r.get("skipped", 0)) for r in results)
    return build_manifest(record.replace(key_fingerprint=key_fp), steps=cipher.describe()["steps"],
                          file_format=opts.file_format, file_count=len(plan.rels) - skipped, classes=plan.classes,
                          files={plan.out_rels[i]: files[i] for i in (sorted(files) if source_order else files)},
                          **extra)


# -- decrypt ----------------------------------------------------------------------------------------------------
def load_manifest_for(src: Path) -> Tuple[Path, Dict]:
    """(the encrypted tree's root, its manifest) for a tree or a file in one; a one-line error when none."""
    found = find_manifest(src if src.is_dir() else src.parent)
    if found is None:
        raise PatchcryptError(f"{src}: no {MANIFEST_NAME} found; was it written by 'patchcrypt encrypt'?")
    return found


def decrypt_into(out: Path, cipher, manifest: Dict, record: EncryptionRecord, batches: Iterable[List[Encrypted]],
                 pool, progress: Optional[Callable[[int], None]]) -> Tuple[int, Dict[str, str]]:
    """Decrypt every batch of checked files into PNG files under ``out``; returns (the file count, {output
    file: SHA-256 of its bytes}) for the marker."""
    upsampling = record.jpeg_upsampling  # the one rule for EtC JPEGs (decrypt, server, training)
    mode = "L" if cipher.spec.composite else None
    n, written = 0, {}
    for batch in batches:
        # header only: a file of another size than the manifest says is refused, never decoded
        limits = [check_file_shape(cipher, manifest, meta, data, Path(name)) for _, _, data, meta, name in batch]
        images = list(pool.map(lambda p: decode_image(p[0][2], mode, p[0][4], upsampling, limit=p[1]),
                               zip(batch, limits)))
        items = []
        for (rel, _, _, meta, name), img in zip(batch, images):
            nonces = [bytes.fromhex(meta["nonce"])] if "nonce" in meta else None
            if record.per_image and nonces is None:
                raise PatchcryptError(f"{name}: the manifest has no nonce for this file")
            crop = tuple(meta["orig_shape"]) if "orig_shape" in meta else None
            items.append((rel, img, nonces, crop))
        del images
        decoded = decrypt_batch(cipher, items, record.per_image)
        del items
        encoded = list(pool.map(lambda o: image_bytes(o, "png"), decoded))
        outs = [b[1] for b in batch]
        written.update(zip(outs, pool.map(lambda e: hashlib.sha256(e).hexdigest(), encoded)))
        list(pool.map(lambda pair: _write(out / pair[0], pair[1]), zip(outs, encoded)))
        n += len(batch)
        if progress:
            progress(len(batch))
    return n, written


def check_file_shape(cipher, manifest: Dict, meta: Dict, data: bytes, name: Path) -> Optional[int]:
    """Refuse a file whose header declares another size than the manifest's ``image_shape`` (or its own
    ``orig_shape`` under ``--pad``) gives for an encrypted image, before any pixel is decoded.

    Returns the pixel count to allow when decoding it (an etc-gray composite has more pixels than its plain
    image, which is what the pixel limit applies to), or None when the manifest records no size.
    """
    plain = meta.get("orig_shape") or manifest.get("image_shape")
    if not plain:
        return None  # images of several sizes and no padding: only the pixel limit applies
    h0, w0 = int(plain[0]), int(plain[1])
    check_pixels(h0, w0, f"{name} (size in its manifest)")
    ph, pw = cipher.padded_size(h0, w0)
    want = cipher.encrypted_shape(ph, pw, int(manifest["image_shape"][2]) if manifest.get("image_shape") else 3)
    h, w = image_size(data, str(name))
    if (h, w) != tuple(want[:2]):
        raise PatchcryptError(f"{name}: the file is {w}x{h} pixels, its manifest says {want[1]}x{want[0]}; "
                              "nothing was decrypted")
    return h * w

def decrypt_batch(cipher, items, per_image: bool) -> List[np.ndarray]:
    out: List[Optional[np.ndarray]] = [None] * len(items)
    groups: Dict[tuple, List[int]] = {}
    for i, (_, img, nonces, crop) in enumerate(items):
        groups.setdefault((img.shape, crop), []).append(i)
    for (shape, crop), group in groups.items():
        for idx in sub_batches(group, per_image):
            batch = items[idx[0]][1][None] if len(idx) == 1 else np.stack([items[i][1] for i in idx])
            nonces = [items[i][2][0] for i in idx] if per_image else None
            try:
                dec = cipher.decrypt(batch, nonces, crop=crop)
            except PatchcryptError as exc:
                raise PatchcryptError(f"{items[idx[0]][0]}: {exc}") from None
            for j, i in enumerate(idx):
                out[i] = dec[j]
    return out
