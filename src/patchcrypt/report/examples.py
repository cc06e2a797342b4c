"""A run's example images, shown so that no plain image stands beside its ciphertext under a real key."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import PatchcryptError
from ..record import EncryptionRecord
from .markup import _img_tag


def _example_indices(n_images: int, n: int, plain: bool) -> np.ndarray:
    """Which images a section shows. Plain examples take the head of one fixed shuffle and real-key
    ciphertexts its tail, so the two never show the same image; an encrypted tree written by
    'patchcrypt encrypt' lists its files in its source's order, so this holds across sections too."""
    order = np.random.default_rng(0).permutation(n_images)  # not key material: only which examples
    if plain:
        return np.sort(order[:n])
    tail = order[max(n, n_images - n):] if n_images > n else order[:0]
    return np.sort(tail)


def _examples(config: Dict, record: EncryptionRecord, key_path: Optional[Path], n: int) -> str:
    """Example images; never a plain image beside its ciphertext under a real key (see the module doc).

    Without ``key_path``: plain | encrypted | decrypted under a throwaway key made for this page. With the
    run's key: ciphertext only, of images no section shows in plain. Already encrypted data: ciphertext only.
    """
    from ..codec import as_display, encode_png, jpeg_roundtrip
    from ..data import load_dataset
    from ..keys import Key

    data = config.get("data")
    if not data or not Path(data).exists():
        return '<p class="note">examples: the run\'s data folder is not available here</p>'
    try:
        root = Path(data)
        ds = load_dataset(root, "test" if (root / "test").is_dir() else None)
    except PatchcryptError as exc:
        return f'<p class="note">examples: {html.escape(str(exc))}</p>'
    if ds.manifest is not None:  # the server's view: already encrypted under the run's key
        images = ds.images[_example_indices(len(ds), n, plain=False)]
        if not len(images):
            return '<p class="note">examples: too few images to show any that are not shown in plain</p>'
        return ("<h3>Examples as the server sees them: ciphertext only</h3><p class=note>the run's data, encrypted "
                "under its key; no plain image of these appears in this report</p>"
                + "".join(_img_tag(encode_png(_big(x)), "encrypted example (ciphertext only)") for x in images))
    if record.is_plain:
        images = ds.images[_example_indices(len(ds), n, plain=True)]
        return ("<h3>Examples (plain run: no encryption)</h3>"
                + "".join(_img_tag(encode_png(_big(x)), "plain example") for x in images))
    want, per_image = record.key_fingerprint, record.per_image
    note = ""
    if key_path is not None:
        key = Key.load(key_path)
        if key.fingerprint == want and not per_image:
            images = ds.images[_example_indices(len(ds), n, plain=False)]
            if not len(images):
                return '<p class="note">examples: too few images to show any that are not shown in plain</p>'
            enc = record.cipher(key).encrypt(images)
            shown = [_big(_pad(as_display(e, x.shape))) for x, e in zip(images, enc)]
            return (f"<h3>Examples under the run's key: ciphertext only</h3><p class=note>encrypted under the run's "
                    f"key ({html.escape(key.fingerprint)}); no plain image of these appears in this report, since "
                    "one plain image beside its ciphertext under a real key gives the key away</p>"
                    + _img_tag(encode_png(np.concatenate(shown, 1)), "encrypted examples (ciphertext only)"))
        note = (f" (the key passed, {key.fingerprint}, is not the run's {want or 'unknown'} key"
                + (", or the run used per-image keys" if per_image else "") + ")")
    images = ds.images[_example_indices(len(ds), n, plain=True)]
    key = Key.generate()  # throwaway: made for this page, never saved, so its pairs give nothing away
    cipher = record.cipher(key, verify=False)
    nonces = cipher.new_nonces(len(images)) if per_image else None
    enc = cipher.encrypt(images, nonces)
    if record.jpeg_quality:
        enc = jpeg_roundtrip(enc, record.jpeg_quality, record.subsampling, upsampling=record.jpeg_upsampling)
    dec = cipher.decrypt(enc, nonces)
    rows = []
    for x, e, d in zip(images, enc, dec):
        trio = np.concatenate([_pad(x), _pad(as_display(e, x.shape)), _pad(d)], 1)
        rows.append(_big(trio))
    return ("<h3>Examples: plain | encrypted | decrypted, under a throwaway key</h3><p class=note>encrypted with "
            "a throwaway key generated for this page, not the run's key" + html.escape(note) + ": a plain image "
            "beside its ciphertext under a real key would give that key away</p>"
            + _img_tag(encode_png(np.concatenate(rows, 0)), "plain, encrypted and decrypted examples "
                       "(throwaway key)"))


def _pad(x: np.ndarray) -> np.ndarray:
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.pad(x, ((2, 2), (2, 2), (0, 0)), constant_values=255)


def _big(x: np.ndarray, target: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of small images so blocks stay visible."""
    f = max(1, target // x.shape[0])
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.repeat(np.repeat(x, f, 0), f, 1)
