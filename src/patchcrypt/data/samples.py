"""Small real images that ship with registry packages: scikit-image photos, scikit-learn digits."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import PatchcryptError
from .imageset import ImageSet

# scikit-image's bundled colour photos (no download needed)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def _photos(names):
    """scikit-image's bundled colour photos (any missing from this build are skipped)."""
    from skimage import data

    for name in names:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo missing from this scikit-image build is skipped
            continue
        if img.ndim == 3 and img.shape[2] == 3:
            yield img


def sample_photos(size: int = 224, names=PHOTOS) -> np.ndarray:
    """Real colour photos, centre-cropped square and resized to ``size``: uint8 (N, size, size, 3)."""
    out = []
    for img in _photos(names):
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS)))
    if not out:
        raise PatchcryptError("no scikit-image sample photos available")
    return np.stack(out)


def full_photos(multiple: int = 16, names=PHOTOS) -> list:
    """The same photos at their own size, cropped (not resized) to multiples of ``multiple``: list of (H, W, 3)."""
    out = [np.ascontiguousarray(img[:img.shape[0] // multiple * multiple, :img.shape[1] // multiple * multiple])
           for img in _photos(names)]
    if not out:
        raise PatchcryptError("no scikit-image sample photos available")
    return out


def digits_dataset(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 handwritten digits as 32×32 RGB images: (train, test) ImageSets.

    The 8×8 images (0..16) are scaled to 0..255, upsampled ×4 (bicubic, so a 4×4 patch holds a stroke's shape
    rather than one repeated value) and repeated to three channels, so every colour scheme applies. The split
    is stratified and deterministic in ``seed``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(img).resize((32, 32), Image.BICUBIC)) for img in x])
    x = np.repeat(x[:, :, :, None], 3, axis=3)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:int(round(len(idx) * test_fraction))]] = True
    classes = [str(i) for i in range(10)]
    return (ImageSet(x[~test], y[~test], classes, "sklearn digits (train)"),
            ImageSet(x[test], y[test], classes, "sklearn digits (test)"))
