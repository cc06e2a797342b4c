"""Encryption split across processes and into WebDataset shards: the data owner's tool past one machine.

- ``torchrun --nproc-per-node P [--nnodes N] -m patchcrypt encrypt SRC DST ...``: the files (or shards) are
  split into contiguous ranges by ``RANK``/``WORLD_SIZE``; every rank writes its range into one staging folder
  (named by rank 0 and broadcast), rank 0 writes the manifest after all ranks report and moves the folder into
  place. The output is byte-identical to one process (shared keys; per-image keys given the same ``--salt``).
- ``encrypt --part I/N`` (Slurm arrays, Kubernetes jobs, anything without torchrun): part I of N writes its
  range into DST and ``patchcrypt.part-I-of-N.json`` (with an identity of the source: its file names and
  sizes); :func:`merge_manifests` joins the parts into ``patchcrypt.json`` and refuses missing, overlapping or
  mismatched parts, parts of different sources, and any name the manifest reader refuses, before writing.
- ``encrypt --shard-size K``: DST/<split>/shard-NNNNNN.tar of K samples each (:mod:`patchcrypt.data.shards`);
  the manifest lists every shard with its digest and sample count, and every file's nonce and digest.

Per-image keys: the nonce of file i is SHA-256("patchcrypt/v1/nonce" ‖ salt ‖ i)[:16], with a 16-byte salt
drawn once per run (rank 0 draws it and broadcasts it; the first part writes ``.patchcrypt-salt`` and the
others read it; or ``--salt HEX``). Nonces are then unique across ranks (distinct i) and across runs and data
sets (distinct salts); the index alone would give image i of every data set under one key the same key.
The salt file also records the source it was drawn for; a part that finds it recorded for other data (a
file left behind, or ``--salt`` reused) warns that nonces repeat across the two data sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .bounded import MANIFEST_MAX, METADATA_MAX, SHARD_MAX, open_bounded, read_text_bounded
from .ciphers import create_cipher
from .ciphers.base import NONCE_BYTES
from .codec import image_bytes
from .data.manifest import MANIFEST_FORMAT, MANIFEST_NAME, find_manifest, validate_manifest, write_manifest
from .data.manifest import build_manifest
from .data.resize import fit_image, resize_fields
from .data.readers import EVAL_FOLDERS, has_splits
from .data.shards import SHARD_PATTERN, sample_key, shard_records, write_shard
from .errors import PatchcryptError
from .files.engine import CHUNK, sub_batches
from .files.sources import class_names, decode_file, list_sources, output_names
from .files.staging import WORKERS, Staging, check_destination
from .keys import Key
from .record import EncryptionRecord, subsampling_for

SALT_NAME = ".patchcrypt-salt"
SALT_BYTES = 16
PART_RE = re.compile(r"patchcrypt\.part-(\d+)-of-(\d+)\.json")


def parse_part(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """"I/N" (1 ≤ I ≤ N) → (I, N)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise PatchcryptError(f"--part must be I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def salted_nonce(salt: bytes, index: int) -> bytes:
    """The per-image nonce of file ``index`` in a run with ``salt``."""
    return hashlib.sha256(b"patchcrypt/v1/nonce" + salt + int(index).to_bytes(8, "big")).digest()[:NONCE_BYTES]


def parse_salt(text: Optional[str]) -> Optional[bytes]:
    if text is None:
        return None
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        salt = b""
    if len(salt) != SALT_BYTES:
        raise PatchcryptError(f"--salt must be {2 * SALT_BYTES} hex digits")
    return salt


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
        return img if resize is None else fit_image(img, resize)  # the one rule (data.resize), as files.py


def _plain_shards(src: Path):
    """A user's plain WebDataset shards as (one FileSet of every split's samples, their tree paths): each
    sample becomes ``[<split>/]<class>/<key>.<ext>``, so outputs form an ImageFolder tree."""
    from .data.shards import open_shards

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


def make_plan(src: Path, suffix: str, shard_size: Optional[int]) -> Plan:
    from .data.shards import is_shard_folder

    source = None
    if src.is_dir() and not (src / MANIFEST_NAME).exists() and is_shard_folder(src, "train"):
        source, rels, _ = _plain_shards(src)
        root = src
    else:
        root, rels = list_sources(src)
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


def my_units(n_units: int, rank: int, world: int) -> range:
    """The contiguous range of units that process ``rank`` of ``world`` writes."""
    bounds = np.linspace(0, n_units, world + 1).round().astype(int)
    return range(int(bounds[rank]), int(bounds[rank + 1]))


class _Encryptor:
    """Encrypts a plan's units into a folder; collects file records, shard records and image shapes."""

    def __init__(self, plan: Plan, cipher, opts: Dict[str, Any], salt: Optional[bytes]):
        self.plan, self.cipher, self.opts, self.salt = plan, cipher, opts, salt
        self.files: Dict[int, Dict] = {}
        self.shards: List[Dict] = []
        self.shapes: Dict[int, tuple] = {}

    def encrypt(self, idx: List[int], pool) -> List[bytes]:
        plan, o = self.plan, self.opts
        images = list(pool.map(lambda i: plan.read(i, o["resize"]), idx))
        groups: Dict[tuple, List[int]] = {}
        for j, img in enumerate(images):
            groups.setdefault(img.shape, []).append(j)
        outputs: List[Any] = [None] * len(idx)
        for shape, group in groups.items():
            for sub in sub_batches(group, o["per_image"]):
                nonces = [salted_nonce(self.salt, idx[j]) for j in sub] if o["per_image"] else None
                try:
                    enc = self.cipher.encrypt(np.stack([images[j] for j in sub]), nonces)
                except PatchcryptError as exc:
                    raise PatchcryptError(f"{plan.root / plan.rels[idx[sub[0]]]}: {exc}") from None
                for k, j in enumerate(sub):
                    outputs[j], images[j] = enc[k], None
                    meta = self.files.setdefault(idx[j], {})
                    if o["per_image"]:
                        meta["nonce"] = nonces[k].hex()
                    if o["pad"]:
                        meta["orig_shape"] = list(shape[:2])
                    self.shapes[idx[j]] = shape
        encoded = list(pool.map(lambda im: image_bytes(im, o["fmt"], o["quality"], o["subsampling"]), outputs))
        for i, data in zip(idx, encoded):
            self.files[i]["sha256"] = hashlib.sha256(data).hexdigest()
        return encoded

    def run(self, units: range, out: Path, progress: Optional[Callable[[int], None]]) -> None:
        plan, ext = self.plan, "jpg" if self.opts["fmt"] == "jpeg" else "png"
        with ThreadPoolExecutor(WORKERS) as pool:
            tree = [u for u in units if plan.units[u][0] is None]
            for start in range(0, len(tree), CHUNK):  # one file per unit: CHUNK files a step
                idx = [plan.units[u][1][0] for u in tree[start:start + CHUNK]]
                for i, data in zip(idx, self.encrypt(idx, pool)):
                    (out / plan.out_rels[i]).parent.mkdir(parents=True, exist_ok=True)
                    (out / plan.out_rels[i]).write_bytes(data)
                if progress:
                    progress(len(idx))
            for u in units:
                name, idx = plan.units[u]
                if name is None:
                    continue
                encoded = self.encrypt(idx, pool)
                cls = plan.classes or []
                rec = write_shard(out / name, [(sample_key(i), ext, d, plan.labels[i],
                                                cls[plan.labels[i]] if plan.labels[i] is not None else None,
                                                plan.out_rels[i]) for i, d in zip(idx, encoded)])
                self.shards.append({"path": name, **rec})
                if progress:
                    progress(len(idx))

    def result(self) -> Dict[str, Any]:
        return {"files": self.files, "shards": self.shards, "shapes": self.shapes}


def run_manifest(plan: Plan, cipher, key_fp: str, opts: Dict[str, Any], results: List[Dict[str, Any]],
                   salt: Optional[bytes]) -> Dict[str, Any]:
    """The manifest of the whole run from every rank's or part's results (the fields of ``encrypt_tree``'s,
    in its order; plus ``layout``/``shards`` for shards and ``nonce_salt`` for salted per-image nonces)."""
    files: Dict[int, Dict] = {}
    shapes: Dict[int, tuple] = {}
    shards: List[Dict] = []
    for r in results:
        files.update({int(k): v for k, v in r["files"].items()})
        shapes.update({int(k): tuple(v) for k, v in r["shapes"].items()})
        shards += r["shards"]
    distinct = sorted(set(shapes.values()))
    is_jpeg = opts["fmt"] == "jpeg"
    record = EncryptionRecord.from_cipher(cipher, jpeg_quality=opts["quality"] if is_jpeg else None,
                                          subsampling=opts["subsampling"] if is_jpeg else None,
                                          image_shape=distinct[0] if len(distinct) == 1 else None)
    extra: Dict[str, Any] = {}
    if shards:
        extra["layout"] = "webdataset"
        extra["shards"] = sorted(shards, key=lambda s: [u[0] for u in plan.units].index(s["path"]))
    if opts["per_image"]:
        extra["nonce_salt"] = salt.hex()
    extra.update(resize_fields(opts["resize"]))
    return build_manifest(record.replace(key_fingerprint=key_fp), steps=cipher.describe()["steps"],
                               file_format=opts["fmt"], file_count=len(plan.rels), classes=plan.classes,
                               files={plan.out_rels[i]: files[i] for i in sorted(files)}, **extra)




def _torch_dist():
    """(torch.distributed, whether this call initialised it) when torchrun started several processes, else
    (None, False). The group is gloo; one initialised here is destroyed by the caller when the run ends."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist, False
    dist.init_process_group("gloo")
    return dist, True


def _options(fmt: str, quality: int, subsampling: Optional[str], block_size: int, resize, pad: bool,
             per_image: bool) -> Dict[str, Any]:
    fmt = fmt.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise PatchcryptError(f"--format must be png or jpeg, got {fmt!r}")
    return {"fmt": "jpeg" if fmt == "jpg" else fmt, "quality": quality, "block_size": block_size, "resize": resize,
            "subsampling": subsampling or subsampling_for(block_size), "pad": pad, "per_image": per_image}


def encrypt_split(src: Path, dst: Path, key: Key, scheme: str, block_size: int, file_format: str = "png",
                  quality: int = 90, subsampling: Optional[str] = None, resize: Optional[Tuple[int, int]] = None,
                  pad: bool = False, per_image: bool = False, force: bool = False, shard_size: Optional[int] = None,
                  part: Optional[Tuple[int, int]] = None, salt: Optional[bytes] = None,
                  progress: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """Encrypt ``src`` into ``dst`` as files or shards, in this process alone, as one rank under torchrun, or
    as ``part`` (I, N). Returns the manifest (a part's record for a part; ``{}`` on ranks other than 0)."""
    src, dst = Path(src), Path(dst)
    opts = _options(file_format, quality, subsampling, block_size, resize, pad, per_image)
    cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image, pad=pad)
    plan = make_plan(src, ".jpg" if opts["fmt"] == "jpeg" else ".png", shard_size)
    if part is not None:
        return _encrypt_part(plan, src, dst, cipher, key, opts, part, salt, progress)
    dist, owned = _torch_dist()
    try:
        if dist:  # before rank 0 checks or stages anything: nothing is written unless every rank agrees
            _ranks_agree(dist, {"key fingerprint": key.fingerprint, "scheme": scheme, "block size": block_size,
                                "salt": salt.hex() if salt else None, "options": repr(sorted(opts.items())),
                                "source files": f"{len(plan.rels)} ({_names_digest(plan.rels)})"})
        return _encrypt_ranks(dist, plan, src, dst, cipher, key, opts, salt, force, progress)
    finally:
        if owned:  # gloo's threads end with the group, not at interpreter exit (an abort there, under load)
            dist.destroy_process_group()


def _names_digest(names: List[str]) -> str:
    """A short digest of a list of names, to compare what ranks see without sending every name."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def _ranks_agree(dist, facts: Dict[str, Any]) -> None:
    """Stop every rank with one line unless all ranks hold the same ``facts`` (key fingerprint, scheme, block
    size, salt, options, source). Ranks holding different keys used to write one tree of two keys, named in
    its manifest by rank 0's, whose other half decrypted to garbage."""
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, facts)
    for name, mine in gathered[0].items():
        for rank, other in enumerate(gathered[1:], 1):
            if other.get(name) != mine:
                raise PatchcryptError(f"torchrun ranks disagree on the {name} (rank 0: {mine}, rank {rank}: "
                                      f"{other.get(name)}); give every rank the same arguments. Nothing was written")


def _encrypt_ranks(dist, plan: Plan, src: Path, dst: Path, cipher, key: Key, opts: Dict[str, Any],
                   salt: Optional[bytes], force: bool, progress: Optional[Callable[[int], None]]) -> Dict[str, Any]:
    """This rank's share of the run (all of it in one process); rank 0 writes the manifest and moves the staged
    output into place once every rank has finished. Returns the manifest (``{}`` on other ranks)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    box: List[Any] = [None]
    staging = None
    if rank == 0:  # one destination check and one staging folder for all ranks; the salt drawn once
        try:
            check_destination(src, dst, force)
            staging = Staging(dst)
            box = [{"tmp": str(staging.tmp), "salt": (salt or secrets.token_bytes(SALT_BYTES)).hex()}]
        except PatchcryptError as exc:
            box = [{"error": str(exc)}]
    if dist:
        dist.broadcast_object_list(box, src=0)
    if "error" in box[0]:
        raise PatchcryptError(box[0]["error"])
    tmp, run_salt = Path(box[0]["tmp"]), bytes.fromhex(box[0]["salt"])
    enc = _Encryptor(plan, cipher, opts, run_salt)
    try:
        enc.run(my_units(len(plan.units), rank, world), tmp, progress)
        mine: Dict[str, Any] = {"ok": enc.result()}
    except PatchcryptError as exc:
        mine = {"error": str(exc)}
    except OSError as exc:
        mine = {"error": f"cannot write the output ({exc.strerror or exc}); {dst} was left as it was"}
    gathered: List[Any] = [None] * world
    if dist:
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    errors = [g["error"] for g in gathered if "error" in g]
    manifest: Dict[str, Any] = {}
    if rank == 0:
        if errors:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            manifest = run_manifest(plan, cipher, key.fingerprint, opts, [g["ok"] for g in gathered],
                                      run_salt if opts["per_image"] else None)
            write_manifest(tmp, manifest)
            staging.__exit__(None, None, None)  # move into place
    if dist:
        dist.barrier()
    if errors:
        raise PatchcryptError(errors[0])
    return manifest


def _shared_salt(dst: Path, salt: Optional[bytes], source: str) -> bytes:
    """The parts' common salt: ``dst/.patchcrypt-salt`` if a part wrote it, else ``salt`` or a fresh one,
    written there atomically (a hard link fails if another part got there first; then that one is read).

    The file records, beside the salt, the identity of the source it was drawn for: a salt file left behind
    by another data set's parts, or a ``--salt`` used there, would give image i of both the same nonce (the
    same key), which is worth a warning."""
    path = dst / SALT_NAME
    if not path.exists():
        tmp = dst / f".{SALT_NAME}.{os.getpid()}.tmp"
        tmp.write_text(f"{(salt or secrets.token_bytes(SALT_BYTES)).hex()}\nsource {source}\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    have, used_for = _read_salt_file(path)
    if salt is not None and have != salt:
        raise PatchcryptError(f"{path}: the other parts used another salt than --salt")
    if used_for is not None and used_for != source:
        warnings.warn(f"{path}: this salt was used on other source files (names or sizes differ); per-image "
                      "nonces repeat across the two data sets (remove the salt file or give a fresh --salt)")
    return have


def _read_salt_file(path: Path) -> Tuple[bytes, Optional[str]]:
    """(the salt, the source identity it was recorded for, or None in a file written before sources were)."""
    lines = read_text_bounded(path, METADATA_MAX, "salt file").split("\n")
    try:
        salt = parse_salt(lines[0].strip())
    except PatchcryptError:
        raise PatchcryptError(f"{path}: not a salt file (want {2 * SALT_BYTES} hex digits)") from None
    found = [ln.split()[1] for ln in lines[1:] if len(ln.split()) == 2 and ln.split()[0] == "source"]
    return salt, (found[0] if found else None)


def _encrypt_part(plan: Plan, src: Path, dst: Path, cipher, key: Key, opts: Dict[str, Any], part: Tuple[int, int],
                  salt: Optional[bytes], progress) -> Dict[str, Any]:
    i, n = part
    if (dst / MANIFEST_NAME).exists():
        raise PatchcryptError(f"{dst} already holds a merged data set ({MANIFEST_NAME}); choose another folder")
    if dst.is_dir() and any(dst.iterdir()) and not (dst / SALT_NAME).exists() \
            and not any(PART_RE.fullmatch(p.name) or p.name.startswith(".part-") for p in dst.iterdir()):
        raise PatchcryptError(f"destination {dst} is not empty and holds no other parts")
    if dst.is_dir() and any(dst.iterdir()):  # other parts were here: the same checks, bar emptiness
        s, d = src.resolve(), dst.resolve()
        if d == s or s in d.parents or d in s.parents:
            raise PatchcryptError(f"destination {dst} and the source {src} overlap; choose a folder outside it")
    else:
        check_destination(src, dst, False)
    dst.mkdir(parents=True, exist_ok=True)
    source = plan.identity()
    run_salt = _shared_salt(dst, salt, source) if opts["per_image"] else b""
    staging = dst / f".part-{i}-of-{n}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    units = my_units(len(plan.units), i - 1, n)
    enc = _Encryptor(plan, cipher, opts, run_salt)
    try:
        enc.run(units, staging, progress)
        for dirpath, _, filenames in os.walk(staging):
            for f in filenames:
                rel = (Path(dirpath) / f).relative_to(staging)
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(dirpath) / f, dst / rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = run_manifest(plan, cipher, key.fingerprint, opts, [enc.result()],
                            run_salt if opts["per_image"] else None)
    doc = {"format": "patchcrypt-part", "part": i, "parts": n, "units": [units.start, units.stop],
           "unit_count": len(plan.units), "source": source, "record": record}
    from .atomic import atomic_write

    atomic_write(dst / f"patchcrypt.part-{i}-of-{n}.json", json.dumps(doc, indent=1))
    return record


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


def decrypt_shards(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
                   progress: Optional[Callable[[int], None]] = None) -> int:
    """Decrypt a shard set written by ``encrypt --shard-size`` into a tree of PNG files (the source's layout).

    Every shard is checked against the manifest (digest, sample count) and every image against its file
    digest before anything is written; a truncated, foreign or changed shard is named and nothing is written.
    """
    from .data.shards import check_shards, index_shard
    from .codec import decode_image
    from .files.engine import check_file_shape, decrypt_batch, load_manifest_for, write_decrypt_marker

    src, dst = Path(src), Path(dst)
    root, manifest = load_manifest_for(src)
    record = EncryptionRecord.from_manifest(manifest)
    if scheme is not None and scheme != record.scheme:
        raise PatchcryptError(f"wrong scheme: the data was encrypted with {record.scheme!r}, not {scheme!r}")
    cipher = record.cipher(key)
    records = shard_records(manifest, str(root / MANIFEST_NAME))
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar"))
    check_shards(root, manifest, "", found)
    files_meta = manifest.get("files") or {}
    plan = []  # (shard path, sample spans), all indexed (and checked) before anything is written
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
    check_destination(root, dst, force)
    upsampling = record.jpeg_upsampling  # the one rule for EtC JPEGs (decrypt, server, training)
    n, written = 0, {}
    with Staging(dst) as tmp:
        for name, samples in plan:
            with open_bounded(root / name, SHARD_MAX, "shard") as f:
                items = []
                for smp in samples:
                    rel = smp["meta"]["path"]
                    f.seek(smp["image"][0])
                    data = f.read(smp["image"][1])
                    meta = files_meta[rel]
                    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                        raise PatchcryptError(f"{root / name}: sample {rel} differs from the manifest's digest")
                    # header only: a sample of another size than the manifest says is refused, never decoded
                    limit = check_file_shape(cipher, manifest, meta, data, Path(f"{root / name}:{rel}"))
                    img = decode_image(data, "L" if cipher.spec.composite else None, f"{root / name}:{rel}", upsampling,
                                       limit=limit)
                    nonces = [bytes.fromhex(meta["nonce"])] if "nonce" in meta else None
                    crop = tuple(meta["orig_shape"]) if "orig_shape" in meta else None
                    items.append((rel, img, nonces, crop))
            for (rel, *_), out in zip(items, decrypt_batch(cipher, items, record.per_image)):
                path = tmp / Path(rel).with_suffix(".png")
                path.parent.mkdir(parents=True, exist_ok=True)
                data = image_bytes(out, "png")
                path.write_bytes(data)
                written[Path(rel).with_suffix(".png").as_posix()] = hashlib.sha256(data).hexdigest()
            n += len(items)
            if progress:
                progress(len(items))
        write_decrypt_marker(tmp, key.fingerprint, written)
    return n


__all__ = ["parse_part", "parse_salt", "salted_nonce", "make_plan", "my_units", "run_manifest", "encrypt_split",
           "merge_manifests", "decrypt_shards", "SALT_NAME"]
