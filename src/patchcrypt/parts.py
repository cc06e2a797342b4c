"""Joining the parts of ``encrypt --part I/N`` (DESIGN §5): ``patchcrypt merge-manifests``.

Part I of N writes its range into DST and ``patchcrypt.part-I-of-N.json`` (with an identity of the source: its
file names and sizes; :mod:`patchcrypt.files.runs`); :func:`merge_manifests` joins the parts into
``patchcrypt.json`` and refuses missing, overlapping or mismatched parts, parts of different sources, and any
name the manifest reader refuses, before writing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .bounded import MANIFEST_MAX, read_text_bounded
from .data.manifest import MANIFEST_FORMAT, MANIFEST_NAME, find_manifest, validate_manifest
from .data.shards import shard_records
from .errors import PatchcryptError
from .files.runs import PART_RE, SALT_NAME
from .record import EncryptionRecord


def merge_manifests(dst: Path) -> Dict[str, Any]:
    """Join ``dst/patchcrypt.part-I-of-N.json`` into ``dst/patchcrypt.json``; refuses a missing part, parts of
    different runs or sources (any record field other than the files differs, or the source's identity),
    overlaps, gaps and any name the manifest reader refuses, before writing anything. The parts are removed
    only once the merged manifest is written and reads back. Returns the manifest."""
    dst = Path(dst)
    if not dst.is_dir():
        raise PatchcryptError(f"{dst}: no such folder")
    if (dst / MANIFEST_NAME).exists():
        raise PatchcryptError(f"{dst} already holds {MANIFEST_NAME}: nothing to merge")
    found = {}
    for p in dst.iterdir():
        m = PART_RE.fullmatch(p.name)
        if m:
            found[(int(m.group(1)), int(m.group(2)))] = p
    if not found:
        raise PatchcryptError(f"{dst}: no part manifests (patchcrypt.part-I-of-N.json) to merge")
    counts = sorted({n for _, n in found})
    if len(counts) > 1:
        raise PatchcryptError(f"{dst}: parts of different splits ({', '.join(f'of {c}' for c in counts)}); "
                              "remove the stale ones")
    n = counts[0]
    docs = []
    for i in range(1, n + 1):
        if (i, n) not in found:
            raise PatchcryptError(f"{dst}: part {i}/{n} missing (no patchcrypt.part-{i}-of-{n}.json); run "
                                  f"'encrypt --part {i}/{n}' first")
        docs.append(_read_part(found[(i, n)], i, n))
    merged = _merge(dst, docs, n)
    _write_merged(dst, merged, n)
    return merged


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _read_part(path: Path, i: int, n: int) -> Dict[str, Any]:
    """A part manifest, every field checked, its record by the rules the data set manifest's reader applies
    (a name with ``..`` or an absolute path is refused here, before anything is written)."""
    try:
        doc = json.loads(read_text_bounded(path, MANIFEST_MAX, "part manifest"))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested past the parser's depth
        raise PatchcryptError(f"{path}: unreadable part manifest ({exc})") from None
    units = doc.get("units") if isinstance(doc, dict) else None
    ok = (isinstance(doc, dict) and doc.get("format", "patchcrypt-part") == "patchcrypt-part"
          and doc.get("part", i) == i and doc.get("parts", n) == n and _is_count(doc.get("unit_count"))
          and isinstance(units, list) and len(units) == 2 and all(_is_count(u) for u in units)
          and units[0] <= units[1] and isinstance(doc.get("source", ""), str)
          and isinstance(doc.get("record"), dict) and doc["record"].get("format") == MANIFEST_FORMAT)
    if not ok:
        raise PatchcryptError(f"{path}: malformed part manifest (format, part, units, unit_count, source or "
                              "record); nothing was merged")
    validate_manifest(doc["record"], str(path))
    shard_records(doc["record"], str(path))
    return doc


def _check_same_run(dst: Path, docs: List[Dict], n: int) -> None:
    """Every part was written by one run over one source: same record fields (scheme, block size, options, key
    fingerprint, salt, ...), same unit count and the same source identity."""
    first = docs[0]
    for i, doc in enumerate(docs[1:], 2):
        if doc.get("source") != first.get("source"):
            raise PatchcryptError(f"{dst}: part {i}/{n} was encrypted from other source files than part 1/{n} "
                                  "(names or sizes differ); parts of different data are never merged. Nothing "
                                  "was written")
        rec = doc["record"]
        keys = [k for k in {**first["record"], **rec} if k not in ("files", "shards", "image_shape")]
        diff = [k for k in keys if rec.get(k) != first["record"].get(k)]
        diff += ["unit_count"] if doc["unit_count"] != first["unit_count"] else []
        if diff:
            raise PatchcryptError(f"{dst}: part {i}/{n} does not match part 1/{n} ({', '.join(diff)} differ): "
                                  "parts of different runs")


def _merge(dst: Path, docs: List[Dict], n: int) -> Dict[str, Any]:
    """The merged manifest of checked parts (nothing written)."""
    _check_same_run(dst, docs, n)
    at, files, shards, shapes = 0, {}, [], set()
    for i, doc in enumerate(docs, 1):
        rec = doc["record"]
        start, stop = doc["units"]
        if start < at:
            raise PatchcryptError(f"{dst}: part {i}/{n} overlaps the part before it (units {start}..{at - 1})")
        if start > at:
            raise PatchcryptError(f"{dst}: gap before part {i}/{n} (units {at}..{start - 1} written by no part)")
        at = stop
        dup = set(files) & set(rec["files"])
        if dup:
            raise PatchcryptError(f"{dst}: part {i}/{n} overlaps another part ({sorted(dup)[0]})")
        files.update(rec["files"])
        shards += rec.get("shards") or []
        shapes.add(json.dumps(rec.get("image_shape")))
    if at != docs[0]["unit_count"]:
        raise PatchcryptError(f"{dst}: gap after part {n}/{n} (units {at}..{docs[0]['unit_count'] - 1})")
    missing = [r for r in (shards and [s["path"] for s in shards] or list(files)) if not (dst / r).is_file()]
    if missing:
        raise PatchcryptError(f"{dst}: {missing[0]} listed by a part is missing")
    merged = dict(docs[0]["record"])
    merged["image_shape"] = json.loads(shapes.pop()) if len(shapes) == 1 else None
    merged["files"] = files
    if shards:
        merged["shards"] = shards
    return merged


def _readable(dst: Path, expected: Dict[str, Any]) -> Optional[str]:
    """None when ``dst``'s manifest reads back (by the readers ``decrypt``, training and the server use) as
    ``expected``; else why not."""
    try:
        found = find_manifest(dst)
        if found is None or found[0] != dst or found[1] != expected:
            return "it does not read back as written"
        EncryptionRecord.from_manifest(found[1])
        shard_records(found[1], str(dst / MANIFEST_NAME))
    except PatchcryptError as exc:
        return str(exc)
    return None


def _write_merged(dst: Path, merged: Dict[str, Any], n: int) -> None:
    """Write the merged manifest; remove the parts (and the salt file) only once it reads back. A manifest
    that does not is removed again, the parts kept."""
    from .atomic import atomic_write

    text = json.dumps(merged, indent=1)
    why = _readable_text(text, dst)
    if why:
        raise PatchcryptError(f"{dst}: the merged manifest would not read back ({why}); nothing was written")
    try:
        atomic_write(dst / MANIFEST_NAME, text)
        os.chmod(dst / MANIFEST_NAME, 0o644)
    except OSError as exc:
        raise PatchcryptError(f"cannot write {dst / MANIFEST_NAME} ({exc.strerror or exc}); the parts were "
                              "kept") from None
    why = _readable(dst, json.loads(text))
    if why:
        (dst / MANIFEST_NAME).unlink(missing_ok=True)
        raise PatchcryptError(f"{dst}: the merged manifest does not read back ({why}); removed it, the parts "
                              "were kept")
    for i in range(1, n + 1):
        (dst / f"patchcrypt.part-{i}-of-{n}.json").unlink()
    (dst / SALT_NAME).unlink(missing_ok=True)


def _readable_text(text: str, dst: Path) -> Optional[str]:
    """Why the manifest ``text`` would be refused by the reader, before it is written (None when it is not)."""
    m = json.loads(text)
    try:
        if m.get("format") != MANIFEST_FORMAT:
            return "not a patchcrypt manifest"
        validate_manifest(m, str(dst / MANIFEST_NAME))
        EncryptionRecord.from_manifest(m)
        shard_records(m, str(dst / MANIFEST_NAME))
    except PatchcryptError as exc:
        return str(exc)
    return None


__all__ = ["merge_manifests"]
