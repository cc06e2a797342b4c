"""WebDataset tar shards, written and read with the standard library's ``tarfile``.

The format (https://github.com/webdataset/webdataset, "The WebDataset Format"): a shard is a POSIX tar file
whose members are grouped into samples by key — everything before the first dot of a member's base name — and
a sample's members are consecutive. Each sample here holds

    <key>.png | <key>.jpg   the image (encrypted or plain) as written to a file
    <key>.cls               its class index, decimal ASCII
    <key>.json              {"path": the image's path in the tree, "class": the class name}

so ``webdataset.WebDataset(url).decode()`` yields dicts with those keys. Members are written with fixed
metadata (mtime 0, uid/gid 0, mode 0644, ustar format), so equal inputs give byte-identical shards, whichever
process writes them.

:func:`index_shard` reads a shard's headers (not its pixels) into (name, offset, size) spans; a member's
bytes are then one seek and one read (:class:`~patchcrypt.data.stream.FileSet`). :func:`open_shards` lists
the shards of a folder as a :class:`FileSet` — checked against the manifest's digests and sample counts when
one is present, plain WebDataset shards (``.cls`` labels) when not.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..bounded import MANIFEST_MAX, SHARD_MAX, open_bounded, read_text_bounded
from ..codec import IMAGE_SUFFIXES
from ..errors import PatchcryptError
from .stream import FileSet

SHARD_PATTERN = "shard-{:06d}.tar"
_SHARD_RE = re.compile(r"shard-\d{6}\.tar|.+\.tar")
_IMAGE_EXTS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)
MAX_MEMBER_BYTES = 256 << 20  # one image in a shard; larger members are refused before reading


def _member(name: str, data: bytes) -> Tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    return info, io.BytesIO(data)


def sample_key(index: int) -> str:
    """The key of the file with global index ``index`` (no dots, sorts in file order)."""
    return f"{index:09d}"


def write_shard(path: Path, samples: Sequence[Tuple[str, str, bytes, Optional[int], Optional[str], str]]) -> Dict:
    """Write one shard; ``samples`` = (key, image extension, image bytes, class index or None, class name or
    None, path in the tree). Returns ``{"samples": n, "bytes": size, "sha256": digest}``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, ext, data, label, cls, rel in samples:
            tar.addfile(*_member(f"{key}.{ext}", data))
            if label is not None:
                tar.addfile(*_member(f"{key}.cls", str(int(label)).encode()))
            tar.addfile(*_member(f"{key}.json", json.dumps({"path": rel, "class": cls}).encode()))
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"samples": len(samples), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def index_shard(path: Path) -> List[Dict]:
    """The samples of one shard, in order: ``{"key", "image": (offset, size), "ext", "cls": int|None,
    "meta": {"path": str}|{}|None}``. A truncated or non-tar file, members that are not files, or hostile
    ``.cls``/``.json`` members are one clear error."""
    samples: List[Dict] = []
    try:
        with open_bounded(path, SHARD_MAX, "shard") as f:  # a FIFO or a device is refused, never waited on
            _index_members(f, os.fstat(f.fileno()).st_size, samples)
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError, EOFError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PatchcryptError(f"{path}: not a readable WebDataset shard ({reason})") from None
    if not samples:
        raise PatchcryptError(f"{path}: not a readable WebDataset shard (no samples)")
    missing = [s["key"] for s in samples if s["image"] is None]
    if missing:
        raise PatchcryptError(f"{path}: sample {missing[0]!r} has no image member")
    return samples


def _index_members(f, size: int, samples: List[Dict]) -> None:
    """Append the samples of the tar stream ``f`` (``size`` bytes) to ``samples`` (see :func:`index_shard`)."""
    with tarfile.open(fileobj=f, mode="r:") as tar:
        for m in tar:
            if not m.isfile():
                raise ValueError(f"member {m.name!r} is not a file")
            if m.offset_data + m.size > size:
                raise ValueError("truncated")
            if len(m.name) > MAX_NAME:  # a pax header may carry a name of any length; every key is kept
                raise ValueError(f"member name of {len(m.name):,} characters")
            base = m.name.rsplit("/", 1)[-1]
            if "." not in base:
                continue
            key = m.name[:len(m.name) - len(base)] + base.split(".", 1)[0]
            ext = base.split(".", 1)[1].lower()
            if not samples or samples[-1]["key"] != key:
                samples.append({"key": key, "image": None, "ext": None, "cls": None, "meta": None})
            s = samples[-1]
            if ext in _IMAGE_EXTS and s["image"] is None:
                if m.size > MAX_MEMBER_BYTES:
                    raise ValueError(f"member {m.name!r} is {m.size:,} bytes")
                s["image"], s["ext"] = (m.offset_data, m.size), ext
            elif ext in ("cls", "json") and m.size <= 1 << 16:
                text = tar.extractfile(m).read().decode("utf-8")
                s["cls" if ext == "cls" else "meta"] = _member_value(m.name, ext, text)


MAX_CLASS = 100_000  # the same bound as a checkpoint's num_classes
MAX_NAME = 4096  # characters in a member name or a sample's path (PATH_MAX)


def _member_value(name: str, ext: str, text: str):
    """A sample's ``.cls`` (an int in [0, MAX_CLASS)) or ``.json`` (an object; only its ``path`` is kept, so
    a shard of many 64 kB members holds no more in memory than one of small ones); anything else a
    ValueError, so hostile metadata is one line, not an AttributeError or an OverflowError far from the shard."""
    if ext == "json":
        meta = json.loads(text)
        if not isinstance(meta, dict) or not isinstance(meta.get("path", ""), str):
            raise ValueError(f"member {name!r} is not a JSON object with a text path")
        path = meta.get("path")
        if path is not None and len(path) > MAX_NAME:
            raise ValueError(f"member {name!r}: a path of {len(path):,} characters")
        return {} if path is None else {"path": path}
    cls = int(text.strip())
    if not 0 <= cls < MAX_CLASS:
        raise ValueError(f"member {name!r}: class {text.strip()[:20]} is outside 0..{MAX_CLASS - 1}")
    return cls


def shard_files(folder: Path) -> List[Path]:
    """The ``*.tar`` files of ``folder`` (sorted)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and _SHARD_RE.fullmatch(p.name)) if folder.is_dir() else []


def is_shard_folder(path: Union[str, Path], split: Optional[str] = None) -> bool:
    """Whether ``path`` (or its ``split`` folder) holds tar shards rather than image files."""
    path = Path(path)
    manifest = path / "patchcrypt.json"
    if manifest.is_file():
        try:
            return json.loads(read_text_bounded(manifest, MANIFEST_MAX, "manifest")).get("layout") == "webdataset"
        except (PatchcryptError, ValueError, AttributeError, RecursionError):
            return False
    return bool(shard_files(path / split if split and (path / split).is_dir() else path))


def shard_records(manifest: Dict, where: str = "patchcrypt.json") -> Dict[str, Dict]:
    """The manifest's ``shards`` list as {path: record}, each field checked (one line naming a bad one)."""
    out: Dict[str, Dict] = {}
    for rec in manifest.get("shards") or []:
        ok = (isinstance(rec, dict) and isinstance(rec.get("path"), str) and rec["path"].endswith(".tar")
              and not rec["path"].startswith("/") and ".." not in rec["path"].split("/")
              and isinstance(rec.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", rec["sha256"])
              and all(isinstance(rec.get(k), int) and rec[k] >= 0 for k in ("samples", "bytes")))
        if not ok or rec["path"] in out:
            raise PatchcryptError(f"{where}: malformed manifest: shards entry {json.dumps(rec)[:80]}")
        out[rec["path"]] = rec
    return out


def check_shards(root: Path, manifest: Dict, prefix: str, names: Sequence[str]) -> None:
    """The shards under ``prefix`` ("" or "train/") are exactly those the manifest lists there, each with its
    size and digest; raises naming the first shard that is foreign, missing or changed."""
    records = {p: r for p, r in shard_records(manifest).items() if p.startswith(prefix)}
    for name in names:
        if name not in records:
            raise PatchcryptError(f"{root / name}: not listed in the manifest; it does not belong to this data set")
    for name, rec in records.items():
        p = root / name
        if not p.is_file():
            raise PatchcryptError(f"{p}: shard missing (the manifest lists it)")
        if p.stat().st_size != rec["bytes"] or file_digest(p) != rec["sha256"]:
            raise PatchcryptError(f"{p}: shard digest differs from the manifest (changed or damaged)")


def open_shards(path: Union[str, Path], split: Optional[str] = None, verify: bool = True) -> FileSet:
    """The samples of the shards under ``path`` (``path/split/*.tar`` when that exists) as a FileSet."""
    from .manifest import find_manifest
    from .readers import expected_digests

    path = Path(path)
    found = find_manifest(path)
    root, manifest = found if found else (path, None)
    folder = path / split if split and (path / split).is_dir() else path
    shards = shard_files(folder)
    if not shards:
        raise PatchcryptError(f"{folder}: no .tar shards")
    names = [p.relative_to(root).as_posix() for p in shards]
    if manifest is not None and verify:
        rel = folder.resolve().relative_to(root.resolve()).as_posix()
        check_shards(root, manifest, "" if rel == "." else rel + "/", names)
    files, labels, spans = [], [], []
    for si, (p, name) in enumerate(zip(shards, names)):
        for s in index_shard(p):
            files.append((s["meta"] or {}).get("path") or f"{s['key']}.{s['ext']}")
            labels.append(-1 if s["cls"] is None else s["cls"])
            spans.append((si, *s["image"]))
    labels_arr = np.asarray(labels, dtype=np.int64)
    classes = list((manifest or {}).get("classes") or [])
    if len(classes) > MAX_CLASS:  # a model gets one output per class: bounded before anything is built
        raise PatchcryptError(f"{root / 'patchcrypt.json'}: names {len(classes):,} classes, more than the "
                              f"{MAX_CLASS:,} allowed")
    if not classes and len(labels_arr) and labels_arr.max() >= 0:
        classes = [str(i) for i in range(int(labels_arr.max()) + 1)]
    if len(labels_arr) and (labels_arr.min() < 0 or labels_arr.max() >= max(1, len(classes))):
        raise PatchcryptError(f"{folder}: shard samples need a .cls label within the {len(classes)} classes")
    return FileSet(str(root), files, labels_arr, classes, manifest=manifest, source=str(folder),
                   spans=np.asarray(spans, dtype=np.int64).reshape(-1, 3), shards=names,
                   digests=expected_digests(manifest, "", files, folder) if verify else None)


__all__ = ["write_shard", "index_shard", "open_shards", "is_shard_folder", "check_shards", "shard_files",
           "sample_key", "file_digest", "shard_records", "SHARD_PATTERN"]
