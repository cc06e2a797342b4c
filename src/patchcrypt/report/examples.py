"""A run's example images, chosen so that no plain image on a page has its ciphertext under a real key on it.

The rule holds for any combination of inputs because it is decided by each image's *content*, not by its
position in a list: :func:`content_side` splits images by a fixed pattern of their coarse luminance.
Plain pixels (a plain run's examples, the plain column of a throwaway-key trio) are drawn only from the
plain side; ciphertexts under a real key (a run's key passed with ``--key``, or an encrypted tree the key
decrypts) only of images whose plain content is on the cipher side. A margin between the sides keeps a
re-encoded (JPEG) or resized copy of an image on its side, and images inside it are shown in neither.
Ciphertexts whose plain content the report cannot know (an encrypted tree without its key, or with
per-image keys) are never shown: another page (a plain run's, on the same photos) may show them in plain,
and the rule must hold across every page a user makes, not only within one.

Example images come only from data folders the user names (``data_roots``, ``report --data``): a run's
``config.yaml`` is not trusted to name a folder the report may read.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..errors import PatchcryptError
from ..record import EncryptionRecord
from .markup import img_tag, scrub_paths

PLAIN_SIDE, CIPHER_SIDE, NEITHER = -1, 1, 0
MARGIN = 3.0  # grey levels (of 255) between the sides: far above what JPEG or a resize moves a cell mean
# a fixed, balanced +-1 pattern over an 8x8 grid (not key material: anyone may compute a side)
_PATTERN = (np.random.default_rng(19).permutation(64) < 32).reshape(8, 8)


def content_side(image: np.ndarray) -> int:
    """Which examples an image may appear in, from its content alone.

    Args:
        image: uint8 (H, W, C), C = 1 or 3; plain pixels.

    Returns:
        ``PLAIN_SIDE`` (-1: may be shown in plain), ``CIPHER_SIDE`` (+1: its ciphertext under a real key may
        be shown) or ``NEITHER`` (0: within ``MARGIN`` of the split; shown in no example).

    The score is the mean luminance of 32 fixed cells of an 8x8 grid minus that of the other 32. Cell means
    average many pixels, so a JPEG round trip or a resize moves the score by far less than ``MARGIN``.
    """
    grey = np.asarray(image, dtype=np.float64).mean(axis=2)
    h, w = grey.shape
    gh, gw = min(8, h), min(8, w)
    rows = np.add.reduceat(grey, np.linspace(0, h, gh + 1).astype(int)[:-1], axis=0)
    cells = np.add.reduceat(rows, np.linspace(0, w, gw + 1).astype(int)[:-1], axis=1)
    counts = np.outer(np.diff(np.linspace(0, h, gh + 1).astype(int)), np.diff(np.linspace(0, w, gw + 1).astype(int)))
    means, pattern = cells / counts, _PATTERN[:gh, :gw]
    if pattern.all() or not pattern.any():
        return NEITHER
    score = means[pattern].mean() - means[~pattern].mean()
    return CIPHER_SIDE if score > MARGIN else PLAIN_SIDE if score < -MARGIN else NEITHER


@dataclass
class ExamplePlan:
    """What a run's section will show. ``kind``: ``none`` (a note only), ``plain`` (a plain run's images),
    ``throwaway`` (plain | encrypted | decrypted under a throwaway key) or ``real`` (ciphertext under the
    run's key of cipher-side images; ``extra["server"]`` when they come from an encrypted tree)."""

    kind: str
    note: str = ""
    images: Optional[np.ndarray] = None          # plain content (plain, throwaway, real; None for a tree's)
    shown: Optional[np.ndarray] = None           # what a ``real`` plan displays: the ciphertexts
    record: Optional[EncryptionRecord] = None
    key_fingerprint: str = ""
    extra: Dict = field(default_factory=dict)

    @property
    def shows_plain(self) -> bool:
        return self.kind in ("plain", "throwaway") and self.images is not None and len(self.images) > 0


def _order(n_images: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n_images)  # not key material: only which examples


def _pick(plain_of, n_images: int, n: int, side: int, chunk: int = 64) -> List[int]:
    """Up to ``n`` indices, in a fixed shuffled order, whose plain content (``plain_of(indices)`` -> uint8
    (k, H, W, C)) is on ``side``."""
    order, picked = _order(n_images), []
    for start in range(0, n_images, chunk):
        idx = order[start:start + chunk]
        for i, x in zip(idx, plain_of(idx)):
            if content_side(x) == side:
                picked.append(int(i))
                if len(picked) == n:
                    return sorted(picked)
    return sorted(picked)


def _allowed(data, data_roots: Sequence[Path]) -> Optional[Path]:
    """The run's data folder when the user passed exactly that folder, else None."""
    try:
        root = Path(str(data)).resolve()
        return root if any(root == Path(r).resolve() for r in data_roots) else None
    except (OSError, RuntimeError, ValueError):
        return None


def plan_examples(config: Dict, record: EncryptionRecord, key, data_roots: Sequence[Path], n: int) -> ExamplePlan:
    """Decide a run's examples (see the module doc). ``key``: the loaded ``--key`` or None."""
    from ..data import load_dataset
    from ..data.readers import eval_folder

    data = config.get("data")
    if not data or not isinstance(data, (str, Path)):
        return ExamplePlan("none", "examples: the run names no data folder")
    root = _allowed(data, data_roots)
    if root is None:
        return ExamplePlan("none", "examples: not shown; the report reads a run's data folder only when you name "
                                   "that folder (report --data FOLDER)")
    if not root.exists():
        return ExamplePlan("none", "examples: the run's data folder is not available here")
    try:
        ds = load_dataset(root, "test" if eval_folder(root) else None)  # test/, else val/ or validation/
    except PatchcryptError as exc:
        return ExamplePlan("none", f"examples: {scrub_paths(str(exc), root)}")
    if ds.manifest is not None:
        return _plan_encrypted_tree(ds, key, n)
    if record.is_plain:
        return ExamplePlan("plain", images=ds.images[_pick(lambda i: ds.images[i], len(ds), n, PLAIN_SIDE)])
    if key is not None and key.fingerprint == record.key_fingerprint and not record.per_image:
        images = ds.images[_pick(lambda i: ds.images[i], len(ds), n, CIPHER_SIDE)]
        shown = record.cipher(key).encrypt(images) if len(images) else images
        return ExamplePlan("real", images=images, shown=shown, record=record, key_fingerprint=key.fingerprint)
    note = ""
    if key is not None:
        note = (f" (the key passed, {key.fingerprint}, is not the run's {record.key_fingerprint or 'unknown'} key"
                + (", or the run used per-image keys" if record.per_image else "") + ")")
    images = ds.images[_pick(lambda i: ds.images[i], len(ds), n, PLAIN_SIDE)]
    return ExamplePlan("throwaway", note=note, images=images, record=record)


def _plan_encrypted_tree(ds, key, n: int) -> ExamplePlan:
    """The server's view: with the key that decrypts it, ciphertexts of cipher-side images only.

    Without that key (or for per-image or padded trees) no example at all: the report cannot tell which
    side these images' plain content is on, so it cannot keep them apart from the plain images another page
    (another ``report`` of a plain run on the same photos) shows; one such pair across two pages gives the
    key away as surely as one on a page.
    """
    rec = EncryptionRecord.from_manifest(ds.manifest)
    if key is not None and key.fingerprint == rec.key_fingerprint and not rec.per_image and not rec.pad:
        try:
            cipher = rec.cipher(key)
            idx = _pick(lambda i: cipher.decrypt(ds.images[i]), len(ds), n, CIPHER_SIDE)
            return ExamplePlan("real", images=None, shown=ds.images[idx], record=rec, key_fingerprint=key.fingerprint,
                               extra={"server": True})
        except PatchcryptError:
            pass
    why = ("per-image keys or padding hide which" if key is not None and key.fingerprint == rec.key_fingerprint
           else "without the tree's key (--key) the report cannot tell which")
    return ExamplePlan("none", f"examples: not shown. This is an encrypted data set; {why} of its images may be "
                               "shown encrypted without pairing one with a plain copy on this or another report "
                               "page, and one such pair gives the key away. Pass --key to show ciphertexts of "
                               "images that no report shows in plain.")


def render_examples(plan: ExamplePlan, page_shows_plain: bool) -> str:
    """The HTML of a plan. ``page_shows_plain`` (whether any part of the page shows plain images) no longer
    changes what is shown: the rule holds across pages, so it cannot depend on one page's contents."""
    from ..codec import as_display, encode_png

    if plan.kind == "none":
        return f'<p class="note">{html.escape(plan.note)}</p>'
    if plan.kind == "plain":
        return ("<h3>Examples (plain run: no encryption)</h3>"
                + "".join(img_tag(encode_png(_big(x)), "plain example") for x in plan.images))
    if plan.kind == "throwaway":
        return _render_throwaway(plan)
    if not len(plan.shown):
        return '<p class="note">examples: no image of this data set may be shown (see the report\'s rule)</p>'
    if plan.extra.get("server"):
        return ("<h3>Examples as the server sees them: ciphertext only</h3><p class=note>the run's data, encrypted "
                f"under its key ({html.escape(plan.key_fingerprint)}); only images whose plain content no report "
                "shows in plain</p>"
                + "".join(img_tag(encode_png(_big(as_display(x))), "encrypted example (ciphertext only)")
                          for x in plan.shown))
    shown = [_big(_pad(as_display(e, x.shape))) for x, e in zip(plan.images, plan.shown)]
    return (f"<h3>Examples under the run's key: ciphertext only</h3><p class=note>encrypted under the run's "
            f"key ({html.escape(plan.key_fingerprint)}); no plain image of these appears in this report, since "
            "one plain image beside its ciphertext under a real key gives the key away</p>"
            + img_tag(encode_png(np.concatenate(shown, 1)), "encrypted examples (ciphertext only)"))


def _render_throwaway(plan: ExamplePlan) -> str:
    from ..codec import as_display, encode_png, jpeg_roundtrip
    from ..keys import Key

    if not len(plan.images):
        return '<p class="note">examples: no image of this data set may be shown (see the report\'s rule)</p>'
    record = plan.record
    key = Key.generate()  # throwaway: made for this page, never saved, so its pairs give nothing away
    cipher = record.cipher(key, verify=False)
    nonces = cipher.new_nonces(len(plan.images)) if record.per_image else None
    enc = cipher.encrypt(plan.images, nonces)
    if record.jpeg_quality:
        enc = jpeg_roundtrip(enc, record.jpeg_quality, record.subsampling, upsampling=record.jpeg_upsampling)
    dec = cipher.decrypt(enc, nonces)
    rows = [_big(np.concatenate([_pad(x), _pad(as_display(e, x.shape)), _pad(d)], 1))
            for x, e, d in zip(plan.images, enc, dec)]
    return ("<h3>Examples: plain | encrypted | decrypted, under a throwaway key</h3><p class=note>encrypted with "
            "a throwaway key generated for this page, not the run's key" + html.escape(plan.note) + ": a plain "
            "image beside its ciphertext under a real key would give that key away</p>"
            + img_tag(encode_png(np.concatenate(rows, 0)), "plain, encrypted and decrypted examples "
                       "(throwaway key)"))


def page_shows_plain(plans: Iterable[ExamplePlan], figure_kinds: Iterable[str]) -> bool:
    """Whether a page with these example plans and results figures (by results kind) shows plain images.
    Figures of kinds not known to be charts only are counted as possibly showing photos."""
    return any(p.shows_plain for p in plans) or any(k not in CHART_KINDS for k in figure_kinds)


# results kinds whose figures are charts (curves, bars), never photos
CHART_KINDS = frozenset({"accuracy_table", "compression", "encrypt_speed", "files_speed", "serve_load",
                         "keyed_model", "demo_keyed"})


def _pad(x: np.ndarray) -> np.ndarray:
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.pad(x, ((2, 2), (2, 2), (0, 0)), constant_values=255)


def _big(x: np.ndarray, target: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of small images so blocks stay visible."""
    f = max(1, target // x.shape[0])
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.repeat(np.repeat(x, f, 0), f, 1)
