"""The in-memory data set every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np

from ..errors import PatchcryptError
from .split import subset_positions


@dataclass
class ImageSet:
    """Images with labels.

    Attributes:
        images: uint8 (N, H, W, C), C = 3 or 1.
        labels: int64 (N,); -1 where unknown (a single image file).
        classes: class names; ``labels`` index into it.
        source: where the images came from (a path or a description).
        manifest: the ``patchcrypt.json`` of a tree written by ``patchcrypt encrypt``, else None.
        files: relative file paths in the same order as ``images`` (None for non-file sources).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: List[str]
    source: str = ""
    manifest: Optional[Dict] = None
    files: Optional[List[str]] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise PatchcryptError(f"{self.source}: images must be uint8 (N, H, W, C), got "
                                  f"{self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise PatchcryptError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self):
        """(H, W, C) of every image."""
        return tuple(self.images.shape[1:])

    def take(self, index: np.ndarray) -> "ImageSet":
        """The images at ``index`` (an int array), keeping classes, source and manifest."""
        index = np.asarray(index, dtype=np.int64)
        files = None if self.files is None else [self.files[i] for i in index]
        return replace(self, images=self.images[index], labels=self.labels[index], files=files)

    def subset(self, n: Optional[int], seed: int = 0) -> "ImageSet":
        """A class-balanced deterministic subset of ``n`` images (all when ``n`` is None or ≥ len):
        :func:`patchcrypt.data.split.subset_positions`."""
        if n is None or n >= len(self):
            return self
        return self.take(subset_positions(self.labels, n, seed))
