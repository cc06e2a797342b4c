"""Encrypting and decrypting image files and trees, with a manifest (DESIGN §5): the data owner's tool.

``encrypt_tree`` reads an image file or a tree of images, encrypts them in batches (one compiled gather per
image shape), writes PNG or EtC JPEG files mirroring the source, and a manifest ``patchcrypt.json`` (scheme,
block size, options, image shape, key fingerprint, nonces if per image, the SHA-256 of every encrypted file;
never the key). ``decrypt`` checks every file against the manifest's digests and refuses, naming them, files
that do not belong to the tree, and reads every file's size from its header against the manifest before
decoding it.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..ciphers import create_cipher
from ..codec import check_pixels, decode_image, image_bytes, image_size, max_pixels, read_image_file
from ..data.manifest import MANIFEST_NAME, build_manifest, find_manifest, write_manifest
from ..data.resize import resize_fields
from ..errors import PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord, subsampling_for
from .sources import class_names, decode_file, list_sources, output_names
from .staging import WORKERS, Staging, check_destination, write_decrypt_marker

CHUNK = 1024  # images decoded, encrypted and written per step
# Per-image keys: each image has its own compiled program (index tables as large as the image), so they are
# compiled and applied this many images at a time rather than a chunk's worth at once (memory, not speed)
PER_IMAGE_BATCH = 16
# Test hook, inert unless set: after its first written chunk, encrypt creates the file this variable names
# and waits (up to 5 minutes) for a signal, so a test can interrupt it mid-run without racing the clock.
PAUSE_ENV = "PATCHCRYPT_TEST_PAUSE_AFTER_WRITE"


def _decode_or_bad(path: Path, resize: Optional[Tuple[int, int]], bad: List[str]) -> Optional[np.ndarray]:
    """:func:`decode_file`, or None with the file's one-line reason added to ``bad`` (a file that is not an
    image, truncated, or over the pixel limit): every bad file is named, not only the first."""
    try:
        return decode_file(path, resize)
    except PatchcryptError as exc:
        bad.append(str(exc))
        return None

def _report_bad(bad: List[str], skip_bad: bool, total: int) -> None:
    """All the files that could not be read, in one line: an error, or with ``--skip-bad`` a warning."""
    if not bad:
        return
    listed = "; ".join(bad)
    if not skip_bad or len(bad) == total:
        hint = "none could be read" if len(bad) == total else "fix or remove them, or pass --skip-bad to go on"
        raise PatchcryptError(f"{len(bad)} of {total} file(s) cannot be read ({hint}): {listed}")
    warnings.warn(f"--skip-bad: left out {len(bad)} of {total} file(s) that cannot be read: {listed}")

def _readable(chunk: List[str], out_chunk: List[str], images: List[Optional[np.ndarray]]):
    """The chunk without the files that could not be read (None images)."""
    keep = [i for i, img in enumerate(images) if img is not None]
    return [chunk[i] for i in keep], [out_chunk[i] for i in keep], [images[i] for i in keep]

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

def sub_batches(idx: List[int], per_image: bool) -> List[List[int]]:
    if not per_image:
        return [idx]
    return [idx[i:i + PER_IMAGE_BATCH] for i in range(0, len(idx), PER_IMAGE_BATCH)]

def encrypt_tree(src: Path, dst: Path, key: Key, scheme: str, block_size: int, file_format: str = "png",
                 quality: int = 90, subsampling: Optional[str] = None, resize: Optional[Tuple[int, int]] = None,
                 pad: bool = False, per_image: bool = False, force: bool = False,
                 progress: Optional[Callable[[int], None]] = None, skip_bad: bool = False) -> Dict:
    """Encrypt an image file or tree ``src`` into the folder ``dst``; returns the manifest. Files that cannot
    be read are all named in one error (nothing is written), or left out with ``skip_bad``."""
    src, dst = Path(src), Path(dst)
    file_format = file_format.lower()
    if file_format not in ("png", "jpeg", "jpg"):
        raise PatchcryptError(f"--format must be png or jpeg, got {file_format!r}")
    file_format = "jpeg" if file_format == "jpg" else file_format
    cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image, pad=pad)
    if subsampling is None:
        subsampling = subsampling_for(block_size)
    root, rels = list_sources(src, warn_other=True)
    suffix = ".jpg" if file_format == "jpeg" else ".png"
    out_rels = output_names(rels, suffix, root)
    check_destination(src, dst, force)
    files_meta: Dict[str, Dict] = {}
    shapes = set()
    classes = class_names(src, rels)
    with Staging(dst) as tmp, ThreadPoolExecutor(WORKERS) as pool:
        bad: List[str] = []
        for start in range(0, len(rels), CHUNK):
            chunk, out_chunk = rels[start:start + CHUNK], out_rels[start:start + CHUNK]
            images = list(pool.map(lambda r: _decode_or_bad(root / r, resize, bad), chunk))
            n_read = len(chunk)
            chunk, out_chunk, images = _readable(chunk, out_chunk, images)
            groups: Dict[tuple, List[int]] = {}
            for i, img in enumerate(images):
                groups.setdefault(img.shape, []).append(i)
            outputs: List[Optional[np.ndarray]] = [None] * len(chunk)
            for shape, group in groups.items():
                _check_padded(cipher, shape, root / chunk[group[0]])
                for idx in sub_batches(group, per_image):
                    # one image: a view, not a copy (a 40 MP image is 120 MB)
                    batch = images[idx[0]][None] if len(idx) == 1 else np.stack([images[i] for i in idx])
                    nonces = cipher.new_nonces(len(idx)) if per_image else None
                    try:
                        enc = cipher.encrypt(batch, nonces)
                    except PatchcryptError as exc:
                        raise PatchcryptError(f"{root / chunk[idx[0]]}: {exc}") from None
                    for j, i in enumerate(idx):
                        outputs[i] = enc[j]
                        images[i] = None  # type: ignore[call-overload]  # the plain image is no longer needed
                        meta = files_meta.setdefault(out_chunk[i], {})
                        if per_image:
                            meta["nonce"] = nonces[j].hex()
                        if pad:
                            meta["orig_shape"] = list(shape[:2])
                    del batch, enc
                shapes.add(shape)
            del images
            encoded = list(pool.map(lambda o: image_bytes(o, file_format, quality, subsampling), outputs))
            del outputs
            for out_rel, data in zip(out_chunk, encoded):
                # digest of the ciphertext file: lets decrypt name files that do not belong to this tree
                files_meta[out_rel]["sha256"] = hashlib.sha256(data).hexdigest()
            list(pool.map(lambda pair: _write(tmp / pair[0], pair[1]), zip(out_chunk, encoded)))
            _pause_for_test()
            if progress:
                progress(n_read)
        _report_bad(bad, skip_bad, len(rels))
        is_jpeg = file_format == "jpeg"
        record = EncryptionRecord.from_cipher(cipher, jpeg_quality=quality if is_jpeg else None,
                                              subsampling=subsampling if is_jpeg else None,
                                              image_shape=next(iter(shapes)) if len(shapes) == 1 else None)
        manifest = build_manifest(record, steps=cipher.describe()["steps"], file_format=file_format,
                                  file_count=len(files_meta), classes=classes, files=files_meta,
                                  **resize_fields(resize))
        write_manifest(tmp, manifest)
    return manifest

def load_manifest_for(src: Path) -> Tuple[Path, Dict]:
    """(the encrypted tree's root, its manifest) for a tree or a file in one; a one-line error when none."""
    found = find_manifest(src if src.is_dir() else src.parent)
    if found is None:
        raise PatchcryptError(f"{src}: no {MANIFEST_NAME} found; was it written by 'patchcrypt encrypt'?")
    return found

def _foreign_files(root: Path, manifest: Dict, rels: List[str]) -> List[str]:
    """Files in the tree the manifest does not list (version 2 lists every file it wrote)."""
    if manifest.get("version", 1) < 2:
        warnings.warn(f"{root}: the manifest predates file digests; files cannot be checked")
        return []
    files_meta = manifest.get("files") or {}
    return [r for r in rels if "sha256" not in files_meta.get(r, {})]

def _refuse_foreign(root: Path, bad: List[str], why: str) -> None:
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise PatchcryptError(f"{root}: {len(bad)} file(s) do not belong to this encrypted tree ({why}): {shown}; "
                          "nothing was decrypted")

def decrypt_tree(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> int:
    """Decrypt a tree written by :func:`encrypt_tree` into ``dst`` (PNG files); returns the file count.

    Every file is checked against the manifest's SHA-256 first; files it does not list or whose bytes differ
    are named in the error and nothing is written (a foreign file would otherwise decrypt to noise).
    """
    src, dst = Path(src), Path(dst)
    root, manifest = load_manifest_for(src)
    record = EncryptionRecord.from_manifest(manifest)
    if scheme is not None and scheme != record.scheme:
        raise PatchcryptError(f"wrong scheme: the data was encrypted with {record.scheme!r}, not {scheme!r}")
    cipher = record.cipher(key)  # refuses a key whose fingerprint is not the manifest's
    per_image = record.per_image
    _, rels = list_sources(root)
    foreign = _foreign_files(root, manifest, rels)
    if foreign:
        _refuse_foreign(root, foreign, "not in its manifest")
    out_rels = output_names(rels, ".png", root)
    check_destination(root, dst, force)
    files_meta = manifest.get("files") or {}
    verify = manifest.get("version", 1) >= 2
    upsampling = record.jpeg_upsampling
    changed: List[str] = []
    written: Dict[str, str] = {}  # output file -> SHA-256 of its bytes, for the marker
    n = 0
    with Staging(dst) as tmp, ThreadPoolExecutor(WORKERS) as pool:
        for start in range(0, len(rels), CHUNK):
            chunk, out_chunk = rels[start:start + CHUNK], out_rels[start:start + CHUNK]
            datas = [read_image_file(root / r) for r in chunk]
            if verify:
                digests = list(pool.map(lambda d: hashlib.sha256(d).hexdigest(), datas))
                changed += [r for r, dg in zip(chunk, digests) if files_meta[r]["sha256"] != dg]
                if changed:  # keep checking the rest so the error names every one; decode nothing more
                    continue
            # header only: a file of another size than the manifest says is refused, never decoded
            limits = [check_file_shape(cipher, manifest, files_meta.get(r, {}), d, root / r)
                      for r, d in zip(chunk, datas)]
            images = list(pool.map(lambda p: decode_image(p[1], "L" if cipher.spec.composite else None,
                                                          str(root / p[0]), upsampling, limit=p[2]),
                                   zip(chunk, datas, limits)))
            del datas
            outputs = []
            for r, img in zip(chunk, images):
                meta = files_meta.get(r, {})
                nonces = [bytes.fromhex(meta["nonce"])] if "nonce" in meta else None
                if per_image and nonces is None:
                    raise PatchcryptError(f"{root / r}: the manifest has no nonce for this file")
                crop = tuple(meta["orig_shape"]) if "orig_shape" in meta else None
                outputs.append((r, img, nonces, crop))
            del images
            decoded = decrypt_batch(cipher, outputs, per_image)
            del outputs
            encoded = list(pool.map(lambda o: image_bytes(o, "png"), decoded))
            written.update(zip(out_chunk, pool.map(lambda e: hashlib.sha256(e).hexdigest(), encoded)))
            list(pool.map(lambda pair: _write(tmp / pair[0], pair[1]), zip(out_chunk, encoded)))
            n += len(chunk)
            if progress:
                progress(len(chunk))
        if changed:
            _refuse_foreign(root, changed, "changed since encryption: digest differs")
        write_decrypt_marker(tmp, key.fingerprint, written)
    return n

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
