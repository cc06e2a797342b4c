"""What a data-set run reads (DESIGN §5): one :class:`Plan` over the source, whatever its form.

A source is an image file, a tree of image files, or a user's plain WebDataset shards (read through their
:class:`~patchcrypt.data.shards.FileSet`); the plan lists every source file, its output name and label, and the
units that processes share out (one file each, or one output shard each). For ``decrypt``, the readers here
yield an encrypted tree's files (or a shard set's samples) in batches, each checked against the manifest's
digest before the engine decodes it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..bounded import SHARD_MAX, open_bounded
from ..codec import IMAGE_SUFFIXES, decode_image, read_image_file
from ..data.manifest import MANIFEST_NAME
from ..data.readers import EVAL_FOLDERS, has_splits
from ..data.resize import fit_image
from ..data.shards import SHARD_PATTERN
from ..errors import PatchcryptError

# One encrypted file (or shard sample) for the decrypt loop: (its name in the manifest, its output name, its
# bytes, its manifest entry, the name errors give it)
Encrypted = Tuple[str, str, bytes, Dict[str, Any], str]

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


@dataclass
class Plan:
    """What one run writes: every source file, its output name and label, and the units ranks share out."""

    root: Path
    rels: List[str]
    out_rels: List[str]
    labels: List[Optional[int]]
    classes: Optional[List[str]]
    units: List[Tuple[Optional[str], List[int]]]  # (shard path or None for one file, file indices)
    source: Any = None  # the source's FileSet when it is a user's plain WebDataset shards, else None

    def identity(self) -> str:
        """A digest of the source's file names and sizes: the same for every part of one source, another for
        other data (a file added, removed, renamed or of another size). Stats every file, reads none."""
        if self.source is None:
            try:
                sizes = [os.stat(self.root / r).st_size for r in self.rels]
            except OSError as exc:
                raise PatchcryptError(f"{exc.filename}: cannot read ({exc.strerror or exc})") from None
        else:
            sizes = [int(s) for s in self.source.spans[:, 2]]
        lines = sorted(f"{r}\t{n}" for r, n in zip(self.rels, sizes))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]

    def read(self, i: int, resize) -> np.ndarray:
        """Source image ``i`` decoded (and resized), uint8 (H, W, C)."""
        if self.source is None:
            return decode_file(self.root / self.rels[i], resize)
        img = self.source.decode(i)
        return img if resize is None else fit_image(img, resize)  # the one rule (data.resize), as decode_file


def is_plain_shards(src: Path) -> bool:
    """Whether ``src`` is a user's plain WebDataset shards (a shard folder without a patchcrypt manifest)."""
    from ..data.shards import is_shard_folder

    return src.is_dir() and not (src / MANIFEST_NAME).exists() and is_shard_folder(src, "train")


def _plain_shards(src: Path):
    """A user's plain WebDataset shards as (one FileSet of every split's samples, their tree paths): each
    sample becomes ``[<split>/]<class>/<key>.<ext>``, so outputs form an ImageFolder tree."""
    from ..data.shards import open_shards

    splits = [s for s in ("train",) + EVAL_FOLDERS if (src / s).is_dir()] or [None]
    sets = [(s, open_shards(src, s)) for s in splits]
    classes = sorted({c for _, fs in sets for c in fs.classes}, key=lambda c: (len(c), c))
    rels = [f"{s + '/' if s else ''}{fs.classes[int(y)]}/{Path(f).name}" for s, fs in sets
            for f, y in zip(fs.files, fs.labels)]
    first = sets[0][1]
    spans = np.concatenate([fs.spans + np.array([k_off, 0, 0]) for (_, fs), k_off in
                            zip(sets, np.cumsum([0] + [len(fs.shards) for _, fs in sets[:-1]]))])
    merged = first.take(np.arange(len(first)))
    merged.files, merged.spans = rels, spans
    merged.labels = np.concatenate([fs.labels for _, fs in sets])
    merged.shards = [n for _, fs in sets for n in fs.shards]
    return merged, rels, classes


def make_plan(src: Path, suffix: str, shard_size: Optional[int], warn_other: bool = False) -> Plan:
    """The plan of a run over ``src`` writing ``suffix`` files (in shards of ``shard_size`` when given);
    ``warn_other``: say which files without an image suffix are left out."""
    source = None
    if is_plain_shards(src):
        source, rels, _ = _plain_shards(src)
        root = src
    else:
        root, rels = list_sources(src, warn_other)
    out_rels = output_names(rels, suffix, root)
    classes = class_names(src, rels) if source is None else sorted({r.split("/")[-2] for r in rels})
    split_tree = has_splits(src) if src.is_dir() else False
    depth = 1 if split_tree else 0
    labels: List[Optional[int]] = []
    for r in rels:
        parts = r.split("/")
        labels.append(classes.index(parts[depth]) if classes and len(parts) > depth + 1
                      and parts[depth] in classes else None)
    if not shard_size:
        return Plan(root, rels, out_rels, labels, classes, [(None, [i]) for i in range(len(rels))], source)
    if shard_size < 1:
        raise PatchcryptError(f"--shard-size must be positive, got {shard_size}")
    groups: Dict[str, List[int]] = {}
    for i, r in enumerate(rels):
        top = r.split("/")[0]
        groups.setdefault(top + "/" if split_tree and top in ("train",) + EVAL_FOLDERS else "", []).append(i)
    units = []
    for prefix, idx in groups.items():
        for k, start in enumerate(range(0, len(idx), shard_size)):
            units.append((prefix + SHARD_PATTERN.format(k), idx[start:start + shard_size]))
    return Plan(root, rels, out_rels, labels, classes, units, source)


# -- decrypt: what an encrypted tree or shard set holds ---------------------------------------------------------
def foreign_files(root: Path, manifest: Dict, rels: List[str]) -> List[str]:
    """Files in the tree the manifest does not list (version 2 lists every file it wrote)."""
    if manifest.get("version", 1) < 2:
        warnings.warn(f"{root}: the manifest predates file digests; files cannot be checked")
        return []
    files_meta = manifest.get("files") or {}
    return [r for r in rels if "sha256" not in files_meta.get(r, {})]


def refuse_foreign(root: Path, bad: List[str], why: str) -> None:
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise PatchcryptError(f"{root}: {len(bad)} file(s) do not belong to this encrypted tree ({why}): {shown}; "
                          "nothing was decrypted")


def tree_batches(root: Path, manifest: Dict, rels: List[str], out_rels: List[str],
                 chunk: int) -> Iterator[List[Encrypted]]:
    """An encrypted tree's files, ``chunk`` at a time, each checked against the manifest's SHA-256. Once one
    differs, nothing more is yielded, but every file is still read so that the error names every one."""
    files_meta = manifest.get("files") or {}
    verify = manifest.get("version", 1) >= 2
    changed: List[str] = []
    for start in range(0, len(rels), chunk):
        names, outs = rels[start:start + chunk], out_rels[start:start + chunk]
        datas = [read_image_file(root / r) for r in names]
        if verify:
            changed += [r for r, d in zip(names, datas) if files_meta[r]["sha256"] != hashlib.sha256(d).hexdigest()]
            if changed:
                continue
        yield [(r, o, d, files_meta.get(r, {}), str(root / r)) for r, o, d in zip(names, outs, datas)]
    if changed:
        refuse_foreign(root, changed, "changed since encryption: digest differs")


def index_shards(root: Path, manifest: Dict, records: Dict[str, Dict]) -> List[Tuple[str, List[Dict]]]:
    """(shard path, its samples) of every shard the manifest lists, each checked against its sample count and
    every sample against the manifest's files, before anything is decoded or written."""
    from ..data.shards import index_shard

    files_meta = manifest.get("files") or {}
    plan = []
    for name in records:
        samples = index_shard(root / name)
        if len(samples) != records[name]["samples"]:
            raise PatchcryptError(f"{root / name}: holds {len(samples)} samples, the manifest says "
                                  f"{records[name]['samples']}")
        for smp in samples:
            rel = (smp["meta"] or {}).get("path")
            if rel not in files_meta:
                raise PatchcryptError(f"{root / name}: sample {smp['key']!r} is not in the manifest")
        plan.append((name, samples))
    return plan


def shard_batches(root: Path, manifest: Dict, shards: List[Tuple[str, List[Dict]]]) -> Iterator[List[Encrypted]]:
    """A shard set's samples, one shard at a time, each checked against the manifest's SHA-256."""
    files_meta = manifest.get("files") or {}
    for name, samples in shards:
        batch = []
        with open_bounded(root / name, SHARD_MAX, "shard") as f:
            for smp in samples:
                rel = smp["meta"]["path"]
                f.seek(smp["image"][0])
                data = f.read(smp["image"][1])
                if hashlib.sha256(data).hexdigest() != files_meta[rel].get("sha256"):
                    raise PatchcryptError(f"{root / name}: sample {rel} differs from the manifest's digest")
                batch.append((rel, Path(rel).with_suffix(".png").as_posix(), data, files_meta[rel],
                              f"{root / name}:{rel}"))
        yield batch
