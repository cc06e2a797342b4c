"""What a data-set run reads (DESIGN §5): the image files under a source, their output names and classes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..codec import IMAGE_SUFFIXES, decode_image, read_image_file
from ..data.manifest import MANIFEST_NAME
from ..data.readers import EVAL_FOLDERS, has_splits
from ..data.resize import fit_image
from ..errors import PatchcryptError

def parse_size(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """"HxW" (or "N" for square) → (H, W)."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise PatchcryptError(f"--resize must look like HxW (e.g. 224x224), got {text!r}")
    return parts[0], parts[1]


def list_sources(src: Path, warn_other: bool = False) -> Tuple[Path, List[str]]:
    """(root, the image files under ``src`` relative to it); ``warn_other``: say which other files are left out."""
    if src.is_file():
        return src.parent, [src.name]
    if not src.is_dir():
        raise PatchcryptError(f"{src}: no such file or folder")
    rels, other = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath).relative_to(src)
        visible = [f for f in sorted(filenames) if not f.startswith(".") and f != MANIFEST_NAME]
        rels += [(base / f).as_posix() for f in visible if f.lower().endswith(IMAGE_SUFFIXES)]
        other += [(base / f).as_posix() for f in visible if not f.lower().endswith(IMAGE_SUFFIXES)]
    if not rels:
        raise PatchcryptError(f"{src}: no image files found")
    if other and warn_other:  # never a silent skip: a .gif among the photos is left out, and said
        shown = ", ".join(other[:10]) + (f" and {len(other) - 10} more" if len(other) > 10 else "")
        warnings.warn(f"{src}: {len(other)} file(s) without an image suffix ({', '.join(IMAGE_SUFFIXES)}) "
                      f"left out: {shown}")
    return src, rels


def class_names(src: Path, rels: List[str]) -> Optional[List[str]]:
    """The class names a reader of the tree sees (None without class folders): the first-level folders, or,
    in a tree split into ``train/`` and ``test/`` (or ``val/``, ``validation/``), the folders inside those."""
    parts = [r.split("/") for r in rels]
    if has_splits(src):
        names = {p[1] for p in parts if len(p) > 2 and p[0] in ("train",) + EVAL_FOLDERS}
    else:
        names = {p[0] for p in parts if len(p) > 1}
    return sorted(names) or None


def output_names(rels: List[str], suffix: str, root: Path) -> List[str]:
    """Output path of every source file (its suffix replaced by ``suffix``); refuses two sources that would
    land on one output (``x.jpg`` and ``x.png`` → ``x.png``), also when they differ only in letter case,
    which is one file on case-insensitive file systems. Refusing keeps output names predictable (same stem,
    one format) and loses nothing silently; the user renames one of the two."""
    outs = [Path(r).with_suffix(suffix).as_posix() for r in rels]
    seen: Dict[str, str] = {}
    for rel, out in zip(rels, outs):
        other = seen.setdefault(out.casefold(), rel)
        if other != rel:
            raise PatchcryptError(f"{root / other} and {root / rel} would both be written as {out}; "
                                  "rename one of them")
    return outs


def decode_file(path: Path, resize: Optional[Tuple[int, int]]) -> np.ndarray:
    """The image at ``path``; with ``--resize``, brought to that size by the one rule train and evaluate use
    (:func:`~patchcrypt.data.resize.fit_image`: aspect kept, centre crop), never squashed."""
    img = decode_image(read_image_file(path), name=str(path))
    return img if resize is None else fit_image(img, resize)
