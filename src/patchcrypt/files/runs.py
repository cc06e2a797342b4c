"""How a data-set run is spread (DESIGN §5): one process, torchrun ranks, or ``encrypt --part I/N``.

:func:`encrypt` is the one call behind ``patchcrypt encrypt`` and :func:`decrypt` the one behind ``patchcrypt
decrypt``; each builds the plan (:mod:`.sources`), checks and stages the destination (:mod:`.staging`) and runs
the one loop of :mod:`.engine`.

- One process writing a folder (no ``--shard-size``, ``--part`` or ``--salt``, not under torchrun): files that
  cannot be read are all named in one error, or left out with ``--skip-bad``; per-image nonces are drawn fresh.
- ``torchrun --nproc-per-node P [--nnodes N] -m patchcrypt encrypt SRC DST ...``: the files (or shards) are
  split into contiguous ranges by ``RANK``/``WORLD_SIZE``; every rank writes its range into one staging folder
  (named by rank 0 and broadcast), rank 0 writes the manifest after all ranks report and moves the folder into
  place. The output is byte-identical to one process (shared keys; per-image keys given the same ``--salt``).
- ``encrypt --part I/N`` (Slurm arrays, Kubernetes jobs, anything without torchrun): part I of N writes its
  range into DST and ``patchcrypt.part-I-of-N.json`` (with an identity of the source: its file names and
  sizes); :func:`patchcrypt.parts.merge_manifests` joins the parts into ``patchcrypt.json``.

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
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..bounded import METADATA_MAX, read_text_bounded
from ..ciphers import create_cipher
from ..data.manifest import MANIFEST_NAME, write_manifest
from ..data.shards import shard_records
from ..errors import PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from . import engine
from .engine import EncryptOptions, Encryptor, decrypt_into, load_manifest_for, report_bad, run_manifest
from .sources import (Plan, foreign_files, index_shards, is_plain_shards, list_sources, make_plan, output_names,
                      refuse_foreign, shard_batches, tree_batches)
from .staging import WORKERS, Staging, check_destination, write_decrypt_marker

Progress = Optional[Callable[[int], None]]



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


def my_units(n_units: int, rank: int, world: int) -> range:
    """The contiguous range of units that process ``rank`` of ``world`` writes."""
    bounds = np.linspace(0, n_units, world + 1).round().astype(int)
    return range(int(bounds[rank]), int(bounds[rank + 1]))


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


def _encrypt_ranks(dist, plan: Plan, src: Path, dst: Path, cipher, key: Key, opts: EncryptOptions,
                   progress: Progress) -> Dict[str, Any]:
    """This rank's share of the run (all of it in one process); rank 0 writes the manifest and moves the staged
    output into place once every rank has finished. Returns the manifest (``{}`` on other ranks)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    box: List[Any] = [None]
    staging = None
    if rank == 0:  # one destination check and one staging folder for all ranks; the salt drawn once
        try:
            check_destination(src, dst, opts.force)
            staging = Staging(dst)
            box = [{"tmp": str(staging.tmp), "salt": (opts.salt or secrets.token_bytes(SALT_BYTES)).hex()}]
        except PatchcryptError as exc:
            box = [{"error": str(exc)}]
    if dist:
        dist.broadcast_object_list(box, src=0)
    if "error" in box[0]:
        raise PatchcryptError(box[0]["error"])
    tmp, run_salt = Path(box[0]["tmp"]), bytes.fromhex(box[0]["salt"])
    enc = Encryptor(plan, cipher, opts, run_salt)
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
                                      run_salt if opts.per_image else None)
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


def _encrypt_part(plan: Plan, src: Path, dst: Path, cipher, key: Key, opts: EncryptOptions,
                  progress: Progress) -> Dict[str, Any]:
    i, n = opts.part
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
    run_salt = _shared_salt(dst, opts.salt, source) if opts.per_image else b""
    staging = dst / f".part-{i}-of-{n}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    units = my_units(len(plan.units), i - 1, n)
    enc = Encryptor(plan, cipher, opts, run_salt)
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
                            run_salt if opts.per_image else None)
    doc = {"format": "patchcrypt-part", "part": i, "parts": n, "units": [units.start, units.stop],
           "unit_count": len(plan.units), "source": source, "record": record}
    from ..atomic import atomic_write

    atomic_write(dst / f"patchcrypt.part-{i}-of-{n}.json", json.dumps(doc, indent=1))
    return record


def encrypt(src: Path, dst: Path, key: Key, options: EncryptOptions, progress: Progress = None) -> Dict[str, Any]:
    """Encrypt the image file, tree or plain shards ``src`` into ``dst`` as ``options`` say: in this process
    alone, as one rank under torchrun, or as part I of N. Returns the manifest (a part's record for a part;
    ``{}`` on ranks other than 0)."""
    src, dst = Path(src), Path(dst)
    alone = not (options.shard_size is not None or options.part is not None or options.salt is not None
                 or "RANK" in os.environ or is_plain_shards(src))
    if options.skip_bad and not alone:
        raise PatchcryptError("--skip-bad works on one process writing a folder; remove the bad files for "
                              "--shard-size, --part, --salt or torchrun")
    opts = options.checked()
    cipher = create_cipher(opts.scheme, key, block_size=opts.block_size, per_image=opts.per_image, pad=opts.pad)
    plan = make_plan(src, opts.suffix, opts.shard_size, warn_other=alone)
    if alone:
        return _encrypt_alone(plan, src, dst, cipher, key, opts, progress)
    if opts.part is not None:
        return _encrypt_part(plan, src, dst, cipher, key, opts, progress)
    dist, owned = _torch_dist()
    try:
        if dist:  # before rank 0 checks or stages anything: nothing is written unless every rank agrees
            salt = opts.salt.hex() if opts.salt else None
            _ranks_agree(dist, {"key fingerprint": key.fingerprint, "scheme": opts.scheme,
                                "block size": opts.block_size, "salt": salt, "options": opts.facts(),
                                "source files": f"{len(plan.rels)} ({_names_digest(plan.rels)})"})
        return _encrypt_ranks(dist, plan, src, dst, cipher, key, opts, progress)
    finally:
        if owned:  # gloo's threads end with the group, not at interpreter exit (an abort there, under load)
            dist.destroy_process_group()


def _encrypt_alone(plan: Plan, src: Path, dst: Path, cipher, key: Key, opts: EncryptOptions,
                   progress: Progress) -> Dict[str, Any]:
    """One process writing a folder: every unreadable file named in one error (or left out with
    ``--skip-bad``), fresh per-image nonces, the files listed in the order they were encrypted."""
    check_destination(src, dst, opts.force)
    bad: List[str] = []
    with Staging(dst) as tmp:
        enc = Encryptor(plan, cipher, opts, None, bad)
        enc.run(range(len(plan.units)), tmp, progress)
        report_bad(bad, opts.skip_bad, len(plan.rels))
        manifest = run_manifest(plan, cipher, key.fingerprint, opts, [enc.result()], None, source_order=False)
        write_manifest(tmp, manifest)
    return manifest


def encrypt_tree(src: Path, dst: Path, key: Key, scheme: str, block_size: int, file_format: str = "png",
                 quality: int = 90, subsampling: Optional[str] = None, resize: Optional[Tuple[int, int]] = None,
                 pad: bool = False, per_image: bool = False, force: bool = False, progress: Progress = None,
                 skip_bad: bool = False) -> Dict:
    """Encrypt an image file or tree ``src`` into the folder ``dst`` in this process; returns the manifest.
    Files that cannot be read are all named in one error (nothing is written), or left out with ``skip_bad``."""
    return encrypt(src, dst, key, EncryptOptions(scheme, block_size, file_format, quality, subsampling, resize, pad,
                                                 per_image, force, skip_bad=skip_bad), progress)


def encrypt_split(src: Path, dst: Path, key: Key, scheme: str, block_size: int, file_format: str = "png",
                  quality: int = 90, subsampling: Optional[str] = None, resize: Optional[Tuple[int, int]] = None,
                  pad: bool = False, per_image: bool = False, force: bool = False, shard_size: Optional[int] = None,
                  part: Optional[Tuple[int, int]] = None, salt: Optional[bytes] = None,
                  progress: Progress = None) -> Dict[str, Any]:
    """:func:`encrypt` with its options given one by one."""
    return encrypt(src, dst, key, EncryptOptions(scheme, block_size, file_format, quality, subsampling, resize, pad,
                                                 per_image, force, shard_size, part, salt), progress)


def _open_encrypted(src: Path, key: Key, scheme: Optional[str]):
    """(root, manifest, record, cipher) of the encrypted data set at ``src``; refuses another scheme than
    ``scheme`` and a key whose fingerprint is not the manifest's."""
    root, manifest = load_manifest_for(Path(src))
    record = EncryptionRecord.from_manifest(manifest)
    if scheme is not None and scheme != record.scheme:
        raise PatchcryptError(f"wrong scheme: the data was encrypted with {record.scheme!r}, not {scheme!r}")
    return root, manifest, record, record.cipher(key)


def _decrypt_batches(root: Path, dst: Path, key: Key, manifest: Dict, record: EncryptionRecord, cipher,
                     batches, progress: Progress) -> int:
    with Staging(dst) as tmp, ThreadPoolExecutor(WORKERS) as pool:
        n, written = decrypt_into(tmp, cipher, manifest, record, batches, pool, progress)
        write_decrypt_marker(tmp, key.fingerprint, written)
    return n


def decrypt_tree(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
                 progress: Progress = None) -> int:
    """Decrypt a tree written by ``encrypt`` into ``dst`` (PNG files); returns the file count.

    Every file is checked against the manifest's SHA-256 first; files it does not list or whose bytes differ
    are named in the error and nothing is written (a foreign file would otherwise decrypt to noise).
    """
    root, manifest, record, cipher = _open_encrypted(src, key, scheme)
    _, rels = list_sources(root)
    foreign = foreign_files(root, manifest, rels)
    if foreign:
        refuse_foreign(root, foreign, "not in its manifest")
    out_rels = output_names(rels, ".png", root)
    check_destination(root, Path(dst), force)
    batches = tree_batches(root, manifest, rels, out_rels, engine.CHUNK)
    return _decrypt_batches(root, Path(dst), key, manifest, record, cipher, batches, progress)


def decrypt_shards(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
                   progress: Progress = None) -> int:
    """Decrypt a shard set written by ``encrypt --shard-size`` into a tree of PNG files (the source's layout).

    Every shard is checked against the manifest (digest, sample count) and every image against its file
    digest before anything is written; a truncated, foreign or changed shard is named and nothing is written.
    """
    from ..data.shards import check_shards

    root, manifest, record, cipher = _open_encrypted(src, key, scheme)
    records = shard_records(manifest, str(root / MANIFEST_NAME))
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar"))
    check_shards(root, manifest, "", found)
    shards = index_shards(root, manifest, records)
    check_destination(root, Path(dst), force)
    return _decrypt_batches(root, Path(dst), key, manifest, record, cipher, shard_batches(root, manifest, shards),
                            progress)


def decrypt(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
            progress: Progress = None) -> int:
    """Decrypt the encrypted tree or shard set ``src`` into PNG files under ``dst``; returns the file count."""
    from ..data.shards import is_shard_folder

    run = decrypt_shards if is_shard_folder(Path(src)) else decrypt_tree
    return run(src, dst, key, scheme, force, progress)
