"""The manifest ``patchcrypt.json`` that ``patchcrypt encrypt`` writes beside an encrypted tree.

A manifest comes from disk and may have been edited or crafted, so every field is checked here on read
(:func:`validate_manifest`) and a bad one is a one-line :class:`PatchcryptError` naming the field, never a
``TypeError`` or a silently wrong crop later on.

Version 2 records, per output file, the SHA-256 of the encrypted file's bytes (``files[rel]["sha256"]``) so
that ``decrypt`` can name files that do not belong to the tree. A digest of ciphertext says nothing about the
plain image. Version 1 manifests (no digests) are still read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..bounded import MANIFEST_MAX, read_text_bounded
from ..errors import PatchcryptError

if TYPE_CHECKING:
    from ..record import EncryptionRecord

MANIFEST_NAME = "patchcrypt.json"
MANIFEST_FORMAT = "patchcrypt-dataset"
MANIFEST_VERSION = 2
MANIFEST_MAX_BYTES = MANIFEST_MAX  # ~2 million files' entries; a larger file is not ours
_HEX = re.compile(r"[0-9a-f]+")


def find_manifest(directory) -> Optional[Tuple[Path, Dict]]:
    """(the folder holding it, the validated manifest) of an encrypted tree, searching ``directory`` and its
    parent; None when neither holds one. A bad manifest, or one that is not a regular file, is a one-line
    :class:`PatchcryptError`."""
    directory = Path(directory)
    for d in (directory, directory.parent):
        path = d / MANIFEST_NAME
        if path.exists() or path.is_symlink():  # a folder, FIFO or dangling link is refused below, never plain data
            try:
                data = json.loads(read_text_bounded(path, MANIFEST_MAX_BYTES, "manifest"))
            except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested past the parser's depth
                raise PatchcryptError(f"{path}: unreadable manifest ({_first_line(exc)})") from None
            if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
                raise PatchcryptError(f"{path}: not a patchcrypt manifest")
            validate_manifest(data, str(path))
            return d, data
    return None


def read_manifest(directory) -> Optional[Dict]:
    """The validated manifest of an encrypted tree (searching ``directory`` and its parent), or None."""
    found = find_manifest(directory)
    return found[1] if found else None


def build_manifest(record: "EncryptionRecord", *, steps: List[str], file_format: str, file_count: int,
                   classes: Optional[List[str]], files: Dict[str, Dict], **extra: Any) -> Dict[str, Any]:
    """The manifest of a tree encrypted as ``record`` states (the reader is :func:`read_manifest` and
    :meth:`EncryptionRecord.from_manifest`); ``files`` maps each written file to its nonce/shape/digest,
    ``extra`` adds layout fields (shards, nonce salt). Checked by :func:`validate_manifest` before it is returned.
    """
    facts = record.to_manifest()
    m: Dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "scheme": facts.pop("scheme"),
                         "block_size": facts.pop("block_size"), "options": facts.pop("options"), "steps": list(steps)}
    m.update(facts)
    m.update(file_format=file_format, file_count=file_count, classes=classes, files=files)
    m.update(extra)
    validate_manifest(m)
    return m


def write_manifest(folder, manifest: Dict[str, Any]) -> Path:
    """Write ``manifest`` as ``folder/patchcrypt.json``; returns the path."""
    path = Path(folder) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=1))
    return path


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_manifest(m: Dict[str, Any], where: str = MANIFEST_NAME) -> None:
    """Check every field of a manifest dict; raise a one-line :class:`PatchcryptError` naming the bad one."""

    def bad(field: str, want: str) -> PatchcryptError:
        shown = json.dumps(m.get(field)) if field in m else "missing"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return PatchcryptError(f"{where}: malformed manifest: {field!r} must be {want} (got {shown})")

    def positive_ints(v: Any, n: int) -> bool:
        return isinstance(v, list) and len(v) == n and all(_is_int(x) and 1 <= x <= 1 << 20 for x in v)

    if m.get("version") not in (1, MANIFEST_VERSION):
        raise bad("version", f"1 or {MANIFEST_VERSION}")
    if not isinstance(m.get("scheme"), str) or not m["scheme"]:
        raise bad("scheme", "a scheme name")
    if not _is_int(m.get("block_size")) or not 1 <= m["block_size"] <= 4096:
        raise bad("block_size", "a whole number 1..4096")
    if not isinstance(m.get("options", {}), dict) or not all(isinstance(k, str) for k in m.get("options", {})):
        raise bad("options", "an object")
    if "steps" in m and not (isinstance(m["steps"], list) and all(isinstance(s, str) for s in m["steps"])):
        raise bad("steps", "a list of step names")
    if m.get("image_shape") is not None and not positive_ints(m["image_shape"], 3):
        raise bad("image_shape", "null or [H, W, C] of positive whole numbers")
    fp = m.get("key_fingerprint")
    if not isinstance(fp, str) or len(fp) != 16 or not _HEX.fullmatch(fp):
        raise bad("key_fingerprint", "16 hex digits")
    for flag in ("per_image", "pad"):
        if not isinstance(m.get(flag, False), bool):
            raise bad(flag, "true or false")
    if m.get("file_format", "png") not in ("png", "jpeg"):
        raise bad("file_format", '"png" or "jpeg"')
    q = m.get("jpeg_quality")
    if q is not None and not (_is_int(q) and 1 <= q <= 100):
        raise bad("jpeg_quality", "null or a whole number 1..100")
    if m.get("subsampling") not in (None, "444", "422", "420"):
        raise bad("subsampling", 'null, "444", "422" or "420"')
    if not _is_int(m.get("file_count", 0)) or m.get("file_count", 0) < 0:
        raise bad("file_count", "a whole number >= 0")
    classes = m.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise bad("classes", "null or a list of names")
    files = m.get("files", {})
    if not isinstance(files, dict):
        raise bad("files", "an object")
    for rel, meta in files.items():
        _check_file_entry(rel, meta, m, where)


def _check_file_entry(rel: str, meta: Any, m: Dict[str, Any], where: str) -> None:
    def bad(what: str) -> PatchcryptError:
        return PatchcryptError(f"{where}: malformed manifest: files[{rel!r}]: {what}")

    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
        raise bad("must be a relative path inside the tree")
    if not isinstance(meta, dict):
        raise bad("must be an object")
    unknown = set(meta) - {"nonce", "orig_shape", "sha256"}
    if unknown:
        raise bad(f"unknown field(s) {', '.join(sorted(unknown))}")
    nonce = meta.get("nonce")
    if nonce is not None and not (isinstance(nonce, str) and 16 <= len(nonce) <= 128 and len(nonce) % 2 == 0
                                  and _HEX.fullmatch(nonce)):
        raise bad("'nonce' must be 16..128 hex digits")
    if m.get("per_image") and nonce is None:
        raise bad("has no 'nonce' but the tree was encrypted with per-image keys")
    shape = meta.get("orig_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 2
                                  and all(_is_int(v) and 1 <= v <= 1 << 20 for v in shape)):
        raise bad("'orig_shape' must be [H, W] of positive whole numbers")
    digest = meta.get("sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and _HEX.fullmatch(digest)):
        raise bad("'sha256' must be 64 hex digits")
