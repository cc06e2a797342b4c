"""Encrypting and decrypting image files and trees, with a manifest (DESIGN §5): the data owner's tool.

``encrypt_tree`` reads an image file or a tree of images, encrypts them in batches (one compiled gather per
image shape), writes PNG or EtC JPEG files mirroring the source, and a manifest ``patchcrypt.json`` (scheme,
block size, options, image shape, key fingerprint, nonces if per image, the SHA-256 of every encrypted file;
never the key). Everything is written into a temporary sibling folder ``.DST.PID.XXXX.partial`` that replaces
the destination only when complete, so a failed or interrupted run leaves the destination as it was; a
``.partial`` folder left by a killed run is removed by the next run into the same destination.

``--force`` replaces only a previous patchcrypt output: a folder whose ``patchcrypt.json`` (or the marker
``decrypt`` writes) parses, which holds no file it does not list, and whose every listed file has the
SHA-256 recorded when patchcrypt wrote it (a name alone never is enough: a crafted manifest could list a
user's files); never the source or a folder containing it, the current folder, the home folder or a folder
above them. ``decrypt`` checks every file
against the manifest's digests and refuses, naming them, files that do not belong to the tree, and reads
every file's size from its header against the manifest before decoding it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .ciphers import create_cipher
from .bounded import SHARD_MAX, open_bounded, read_bounded
from .codec import (IMAGE_SUFFIXES, check_pixels, decode_image, image_bytes, image_size, max_pixels,  # noqa: F401
                    read_image_file, resize_image)  # resize_image is re-exported
from .data.manifest import (MANIFEST_FORMAT, MANIFEST_MAX_BYTES, MANIFEST_NAME, build_manifest, find_manifest,
                            validate_manifest, write_manifest)
from .data.readers import EVAL_FOLDERS, has_splits
from .data.resize import fit_image, resize_fields
from .errors import PatchcryptError
from .keys import Key
from .record import EncryptionRecord, subsampling_for

CHUNK = 1024  # images decoded, encrypted and written per step
# Per-image keys: each image has its own compiled program (index tables as large as the image), so they are
# compiled and applied this many images at a time rather than a chunk's worth at once (memory, not speed)
PER_IMAGE_BATCH = 16
DECRYPTED_MARKER = ".patchcrypt-decrypted.json"  # lets --force recognise a previous decrypt output
_WORKERS = max(1, min(4, os.cpu_count() or 1))
# Test hook, inert unless set: after its first written chunk, encrypt creates the file this variable names
# and waits (up to 5 minutes) for a signal, so a test can interrupt it mid-run without racing the clock.
PAUSE_ENV = "PATCHCRYPT_TEST_PAUSE_AFTER_WRITE"


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


def _list_sources(src: Path, warn_other: bool = False) -> Tuple[Path, List[str]]:
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


def _class_names(src: Path, rels: List[str]) -> Optional[List[str]]:
    """The class names a reader of the tree sees (None without class folders): the first-level folders, or,
    in a tree split into ``train/`` and ``test/`` (or ``val/``, ``validation/``), the folders inside those."""
    parts = [r.split("/") for r in rels]
    if has_splits(src):
        names = {p[1] for p in parts if len(p) > 2 and p[0] in ("train",) + EVAL_FOLDERS}
    else:
        names = {p[0] for p in parts if len(p) > 1}
    return sorted(names) or None


def _output_names(rels: List[str], suffix: str, root: Path) -> List[str]:
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


def _check_destination(src: Path, dst: Path, force: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    src_dir = s if src.is_dir() else s.parent
    if src.is_dir() and (d == s or s in d.parents):
        raise PatchcryptError(f"destination {dst} is inside the source {src}; choose a folder outside it")
    if d == src_dir and src.is_file():
        raise PatchcryptError(f"destination {dst} is the source's own folder; choose another folder")
    if d in s.parents:
        raise PatchcryptError(f"destination {dst} contains the source {src}; choose a folder outside it")
    if dst.exists() and not dst.is_dir():
        raise PatchcryptError(f"destination {dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()):
        if not force:
            raise PatchcryptError(f"destination {dst} is not empty (use --force to replace it)")
        _check_replaceable(dst, d)


def _check_replaceable(dst: Path, d: Path) -> None:
    """--force replaces only a previous patchcrypt output, and never a folder a user works in."""
    guarded = {Path.cwd().resolve(), Path.home().resolve()}
    if any(d == g or d in g.parents for g in guarded):
        raise PatchcryptError(f"--force never replaces {dst}: it is the current folder, the home folder or a "
                              "folder above them")
    problem = _not_our_output(d)
    if problem:
        raise PatchcryptError(f"--force only replaces a previous patchcrypt output; {dst} {problem} (remove it "
                              "yourself if it should go)")


def _tree_entries(d: Path) -> List[str]:
    """Every file (and every symlink, also to a folder) under ``d``, as relative POSIX paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(d):
        base = Path(dirpath).relative_to(d)
        found += [(base / f).as_posix() for f in filenames]
        found += [(base / x).as_posix() for x in dirnames if (Path(dirpath) / x).is_symlink()]
    return found


def _read_json(path: Path) -> Optional[object]:
    """The JSON of a previous output's manifest or marker; None when it is not a readable one of ours (also a
    FIFO, a device or an oversized file: checked before reading, so none of them hangs or fills memory)."""
    try:
        return json.loads(read_bounded(path, MANIFEST_MAX_BYTES, "manifest"))
    except (PatchcryptError, ValueError, RecursionError):
        return None


def _listed_files(d: Path, present: List[str]) -> Tuple[Optional[Dict[str, Optional[str]]], str]:
    """What a previous output in ``d`` says it wrote: {file: the SHA-256 recorded when it was written, or None
    when none was}, its manifest or marker included (as None); or (None, why it is not one of ours)."""
    if MANIFEST_NAME in present:
        data = _read_json(d / MANIFEST_NAME)
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return None, f"has a {MANIFEST_NAME} that is not a patchcrypt manifest"
        try:
            validate_manifest(data, MANIFEST_NAME)
        except PatchcryptError as exc:
            return None, f"has a {MANIFEST_NAME} that does not parse ({exc})"
        return {MANIFEST_NAME: None, **_manifest_digests(data, present)}, ""
    if DECRYPTED_MARKER in present:
        data = _read_json(d / DECRYPTED_MARKER)
        if not isinstance(data, dict) or data.get("format") != "patchcrypt-decrypted":
            return None, f"has a {DECRYPTED_MARKER} that is not one patchcrypt wrote"
        listed = _marker_digests(data, present)
        if listed is None:
            return None, f"has a {DECRYPTED_MARKER} that does not list the files beside it"
        return {DECRYPTED_MARKER: None, **listed}, ""
    return None, f"has no {MANIFEST_NAME}"


def _digest_or_none(v: object) -> Optional[str]:
    return v if isinstance(v, str) and len(v) == 64 and re.fullmatch(r"[0-9a-f]+", v) else None


def _manifest_digests(data: Dict, present: List[str]) -> Dict[str, Optional[str]]:
    """{file: recorded SHA-256} of an encrypted tree (its files) or shard set (its shards); version 1 listed no
    files, so its images are listed without digests."""
    if data.get("version", 1) < 2:
        suffix = ".jpg" if data.get("file_format") == "jpeg" else ".png"
        return {r: None for r in present if r.endswith(suffix)}
    out = {rel: _digest_or_none(meta.get("sha256")) for rel, meta in (data.get("files") or {}).items()}
    for rec in data.get("shards") or []:
        if isinstance(rec, dict) and isinstance(rec.get("path"), str):
            out[rec["path"]] = _digest_or_none(rec.get("sha256"))
    return out


def _marker_digests(data: Dict, present: List[str]) -> Optional[Dict[str, Optional[str]]]:
    """{file: recorded SHA-256} of a decrypt marker; markers before digests list names (or only a count of PNG
    files) and give None for each. None when the marker lists nothing usable."""
    files = data.get("files")
    if isinstance(files, dict) and all(isinstance(f, str) and isinstance(m, dict) for f, m in files.items()):
        return {f: _digest_or_none(m.get("sha256")) for f, m in files.items()}
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        return {f: None for f in files}
    count = data.get("file_count")
    pngs = [r for r in present if r.endswith(".png")]
    if isinstance(count, int) and not isinstance(count, bool) and count == len(pngs):
        return {r: None for r in pngs}
    return None


def _file_sha256(path: Path) -> Optional[str]:
    """The SHA-256 of a regular file (not a link, a FIFO or a device: None, never read)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        h = hashlib.sha256()
        with open_bounded(path, SHARD_MAX, "file") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except (OSError, PatchcryptError):
        return None


def _unverified(d: Path, listed: Dict[str, Optional[str]], present: List[str]) -> List[str]:
    """The listed files in ``d`` whose content is not what patchcrypt recorded writing (no digest recorded, or
    another one): a crafted manifest or marker may list a user's files by name; a name alone is not enough."""
    todo = [r for r in present if r not in (MANIFEST_NAME, DECRYPTED_MARKER)]
    with ThreadPoolExecutor(_WORKERS) as pool:
        found = list(pool.map(lambda r: _file_sha256(d / r) if listed.get(r) else None, todo))
    return sorted(r for r, got in zip(todo, found) if got is None or got != listed.get(r))


def _shown(names: List[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _not_our_output(d: Path) -> Optional[str]:
    """None when ``d`` is a previous encrypt or decrypt output holding only the files it lists (plus its
    manifest), each with the content digest recorded when it was written; else why not, naming files."""
    present = _tree_entries(d)
    listed, why = _listed_files(d, present)
    if listed is None:
        return why
    extra = sorted(set(present) - set(listed))
    if extra:
        return f"holds {len(extra)} file(s) its manifest does not list: {_shown(extra)}"
    bad = _unverified(d, listed, present)
    if bad:
        return (f"lists {len(bad)} file(s) patchcrypt cannot show it wrote (no digest recorded when written, or "
                f"the content differs): {_shown(bad)}; nothing was deleted")
    return None


class _Staging:
    """A temporary folder beside ``dst`` that replaces it on ``commit``; removed on failure or Ctrl-C.

    Its name ``.DST.PID.XXXX.partial`` carries the writing process's id, so the next run into ``dst`` can
    tell a folder left by a killed run (process gone: removed, with a warning) from one still being written.
    """

    def __init__(self, dst: Path):
        self.dst = dst
        parent = dst.resolve().parent
        if not parent.is_dir():
            raise PatchcryptError(f"{parent}: no such folder")
        _clean_stale(parent, dst.name)
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".partial", dir=parent))
        except OSError as exc:
            raise PatchcryptError(f"cannot write into {parent} ({exc.strerror or exc})") from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise PatchcryptError(f"cannot write the output ({exc.strerror or exc}); "
                                      f"{self.dst} was left as it was") from None
            return False
        try:
            old = None
            if self.dst.exists():
                old = self.dst.with_name(f".{self.dst.name}.old-{os.getpid()}")
                os.replace(self.dst, old)
            os.replace(self.tmp, self.dst)
            if old is not None:
                if old.is_symlink():  # --force onto a symlink replaced the link; its target stays as it was
                    old.unlink()
                else:
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise PatchcryptError(f"cannot move the output into place ({exc.strerror or exc})") from None
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, under another user
        return True
    return True


def _clean_stale(parent: Path, name: str) -> None:
    """Remove ``.NAME.PID.*.partial`` folders whose process is gone; report ``.NAME.old-PID`` leftovers."""
    prefix = f".{name}."
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix) or not entry.is_dir() or entry.is_symlink():
            continue
        rest = entry.name[len(prefix):]
        ours = re.fullmatch(r"(\d+)\.[a-z0-9_]+\.partial", rest)  # the random part of mkdtemp has no dots
        if ours:
            pid = int(ours.group(1))
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                warnings.warn(f"removed {entry}: incomplete output of an interrupted run")
        elif re.fullmatch(r"[a-z0-9_]+\.partial", rest):  # an earlier version's name, without a process id
            warnings.warn(f"{entry}: incomplete output of an earlier run; remove it")
        elif re.fullmatch(r"old-\d+", rest):
            warnings.warn(f"{entry}: the previous {name} of a run interrupted while replacing it; "
                          "remove it or move it back")


def _decode_file(path: Path, resize: Optional[Tuple[int, int]]) -> np.ndarray:
    """The image at ``path``; with ``--resize``, brought to that size by the one rule train and evaluate use
    (:func:`~patchcrypt.data.resize.fit_image`: aspect kept, centre crop), never squashed."""
    img = decode_image(read_image_file(path), name=str(path))
    return img if resize is None else fit_image(img, resize)


def _decode_or_bad(path: Path, resize: Optional[Tuple[int, int]], bad: List[str]) -> Optional[np.ndarray]:
    """:func:`_decode_file`, or None with the file's one-line reason added to ``bad`` (a file that is not an
    image, truncated, or over the pixel limit): every bad file is named, not only the first."""
    try:
        return _decode_file(path, resize)
    except PatchcryptError as exc:
        bad.append(str(exc))
        return None


def _report_bad(bad: List[str], skip_bad: bool, total: int) -> None:
    """All the files that could not be read, in one line: an error, or with ``--skip-bad`` a warning."""
    if not bad:
        return
    listed = "; ".join(bad)
    if not skip_bad or len(bad) == total:
        hint = "none could be read" if len(bad) == total else "fix or remove them, or pass --skip-bad to go on"
        raise PatchcryptError(f"{len(bad)} of {total} file(s) cannot be read ({hint}): {listed}")
    warnings.warn(f"--skip-bad: left out {len(bad)} of {total} file(s) that cannot be read: {listed}")


def _readable(chunk: List[str], out_chunk: List[str], images: List[Optional[np.ndarray]]):
    """The chunk without the files that could not be read (None images)."""
    keep = [i for i, img in enumerate(images) if img is not None]
    return [chunk[i] for i in keep], [out_chunk[i] for i in keep], [images[i] for i in keep]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _check_padded(cipher, shape: tuple, name: Path) -> None:
    """Refuse an image that ``--pad`` would grow past the pixel limit (1×40,000,000 pads to 16×40,000,000)."""
    h, w = cipher.padded_size(shape[0], shape[1])
    if (h, w) != tuple(shape[:2]) and h * w > max_pixels():
        raise PatchcryptError(f"{name}: --pad would make it {w}x{h} = {h * w:,} pixels, over the limit of "
                              f"{max_pixels():,}; resize it first (--resize) or raise --max-pixels if trusted")


def _pause_for_test() -> None:
    """The :data:`PAUSE_ENV` handshake (tests only): signal "files are written", then wait for Ctrl-C."""
    marker = os.environ.pop(PAUSE_ENV, None)  # once per process
    if marker:
        Path(marker).touch()
        for _ in range(3000):
            time.sleep(0.1)


def _sub_batches(idx: List[int], per_image: bool) -> List[List[int]]:
    if not per_image:
        return [idx]
    return [idx[i:i + PER_IMAGE_BATCH] for i in range(0, len(idx), PER_IMAGE_BATCH)]


def encrypt_tree(src: Path, dst: Path, key: Key, scheme: str, block_size: int, file_format: str = "png",
                 quality: int = 90, subsampling: Optional[str] = None, resize: Optional[Tuple[int, int]] = None,
                 pad: bool = False, per_image: bool = False, force: bool = False,
                 progress: Optional[Callable[[int], None]] = None, skip_bad: bool = False) -> Dict:
    """Encrypt an image file or tree ``src`` into the folder ``dst``; returns the manifest. Files that cannot
    be read are all named in one error (nothing is written), or left out with ``skip_bad``."""
    src, dst = Path(src), Path(dst)
    file_format = file_format.lower()
    if file_format not in ("png", "jpeg", "jpg"):
        raise PatchcryptError(f"--format must be png or jpeg, got {file_format!r}")
    file_format = "jpeg" if file_format == "jpg" else file_format
    cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image, pad=pad)
    if subsampling is None:
        subsampling = subsampling_for(block_size)
    root, rels = _list_sources(src, warn_other=True)
    suffix = ".jpg" if file_format == "jpeg" else ".png"
    out_rels = _output_names(rels, suffix, root)
    _check_destination(src, dst, force)
    files_meta: Dict[str, Dict] = {}
    shapes = set()
    classes = _class_names(src, rels)
    with _Staging(dst) as tmp, ThreadPoolExecutor(_WORKERS) as pool:
        bad: List[str] = []
        for start in range(0, len(rels), CHUNK):
            chunk, out_chunk = rels[start:start + CHUNK], out_rels[start:start + CHUNK]
            images = list(pool.map(lambda r: _decode_or_bad(root / r, resize, bad), chunk))
            n_read = len(chunk)
            chunk, out_chunk, images = _readable(chunk, out_chunk, images)
            groups: Dict[tuple, List[int]] = {}
            for i, img in enumerate(images):
                groups.setdefault(img.shape, []).append(i)
            outputs: List[Optional[np.ndarray]] = [None] * len(chunk)
            for shape, group in groups.items():
                _check_padded(cipher, shape, root / chunk[group[0]])
                for idx in _sub_batches(group, per_image):
                    # one image: a view, not a copy (a 40 MP image is 120 MB)
                    batch = images[idx[0]][None] if len(idx) == 1 else np.stack([images[i] for i in idx])
                    nonces = cipher.new_nonces(len(idx)) if per_image else None
                    try:
                        enc = cipher.encrypt(batch, nonces)
                    except PatchcryptError as exc:
                        raise PatchcryptError(f"{root / chunk[idx[0]]}: {exc}") from None
                    for j, i in enumerate(idx):
                        outputs[i] = enc[j]
                        images[i] = None  # type: ignore[call-overload]  # the plain image is no longer needed
                        meta = files_meta.setdefault(out_chunk[i], {})
                        if per_image:
                            meta["nonce"] = nonces[j].hex()
                        if pad:
                            meta["orig_shape"] = list(shape[:2])
                    del batch, enc
                shapes.add(shape)
            del images
            encoded = list(pool.map(lambda o: image_bytes(o, file_format, quality, subsampling), outputs))
            del outputs
            for out_rel, data in zip(out_chunk, encoded):
                # digest of the ciphertext file: lets decrypt name files that do not belong to this tree
                files_meta[out_rel]["sha256"] = hashlib.sha256(data).hexdigest()
            list(pool.map(lambda pair: _write(tmp / pair[0], pair[1]), zip(out_chunk, encoded)))
            _pause_for_test()
            if progress:
                progress(n_read)
        _report_bad(bad, skip_bad, len(rels))
        is_jpeg = file_format == "jpeg"
        record = EncryptionRecord.from_cipher(cipher, jpeg_quality=quality if is_jpeg else None,
                                              subsampling=subsampling if is_jpeg else None,
                                              image_shape=next(iter(shapes)) if len(shapes) == 1 else None)
        manifest = build_manifest(record, steps=cipher.describe()["steps"], file_format=file_format,
                                  file_count=len(files_meta), classes=classes, files=files_meta,
                                  **resize_fields(resize))
        write_manifest(tmp, manifest)
    return manifest


def load_manifest_for(src: Path) -> Tuple[Path, Dict]:
    """(the encrypted tree's root, its manifest) for a tree or a file in one; a one-line error when none."""
    found = find_manifest(src if src.is_dir() else src.parent)
    if found is None:
        raise PatchcryptError(f"{src}: no {MANIFEST_NAME} found; was it written by 'patchcrypt encrypt'?")
    return found


def _foreign_files(root: Path, manifest: Dict, rels: List[str]) -> List[str]:
    """Files in the tree the manifest does not list (version 2 lists every file it wrote)."""
    if manifest.get("version", 1) < 2:
        warnings.warn(f"{root}: the manifest predates file digests; files cannot be checked")
        return []
    files_meta = manifest.get("files") or {}
    return [r for r in rels if "sha256" not in files_meta.get(r, {})]


def _refuse_foreign(root: Path, bad: List[str], why: str) -> None:
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise PatchcryptError(f"{root}: {len(bad)} file(s) do not belong to this encrypted tree ({why}): {shown}; "
                          "nothing was decrypted")


def decrypt_tree(src: Path, dst: Path, key: Key, scheme: Optional[str] = None, force: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> int:
    """Decrypt a tree written by :func:`encrypt_tree` into ``dst`` (PNG files); returns the file count.

    Every file is checked against the manifest's SHA-256 first; files it does not list or whose bytes differ
    are named in the error and nothing is written (a foreign file would otherwise decrypt to noise).
    """
    src, dst = Path(src), Path(dst)
    root, manifest = load_manifest_for(src)
    record = EncryptionRecord.from_manifest(manifest)
    if scheme is not None and scheme != record.scheme:
        raise PatchcryptError(f"wrong scheme: the data was encrypted with {record.scheme!r}, not {scheme!r}")
    cipher = record.cipher(key)  # refuses a key whose fingerprint is not the manifest's
    per_image = record.per_image
    _, rels = _list_sources(root)
    foreign = _foreign_files(root, manifest, rels)
    if foreign:
        _refuse_foreign(root, foreign, "not in its manifest")
    out_rels = _output_names(rels, ".png", root)
    _check_destination(root, dst, force)
    files_meta = manifest.get("files") or {}
    verify = manifest.get("version", 1) >= 2
    upsampling = record.jpeg_upsampling
    changed: List[str] = []
    written: Dict[str, str] = {}  # output file -> SHA-256 of its bytes, for the marker
    n = 0
    with _Staging(dst) as tmp, ThreadPoolExecutor(_WORKERS) as pool:
        for start in range(0, len(rels), CHUNK):
            chunk, out_chunk = rels[start:start + CHUNK], out_rels[start:start + CHUNK]
            datas = [read_image_file(root / r) for r in chunk]
            if verify:
                digests = list(pool.map(lambda d: hashlib.sha256(d).hexdigest(), datas))
                changed += [r for r, dg in zip(chunk, digests) if files_meta[r]["sha256"] != dg]
                if changed:  # keep checking the rest so the error names every one; decode nothing more
                    continue
            # header only: a file of another size than the manifest says is refused, never decoded
            limits = [_check_file_shape(cipher, manifest, files_meta.get(r, {}), d, root / r)
                      for r, d in zip(chunk, datas)]
            images = list(pool.map(lambda p: decode_image(p[1], "L" if cipher.spec.composite else None,
                                                          str(root / p[0]), upsampling, limit=p[2]),
                                   zip(chunk, datas, limits)))
            del datas
            outputs = []
            for r, img in zip(chunk, images):
                meta = files_meta.get(r, {})
                nonces = [bytes.fromhex(meta["nonce"])] if "nonce" in meta else None
                if per_image and nonces is None:
                    raise PatchcryptError(f"{root / r}: the manifest has no nonce for this file")
                crop = tuple(meta["orig_shape"]) if "orig_shape" in meta else None
                outputs.append((r, img, nonces, crop))
            del images
            decoded = _decrypt_batch(cipher, outputs, per_image)
            del outputs
            encoded = list(pool.map(lambda o: image_bytes(o, "png"), decoded))
            written.update(zip(out_chunk, pool.map(lambda e: hashlib.sha256(e).hexdigest(), encoded)))
            list(pool.map(lambda pair: _write(tmp / pair[0], pair[1]), zip(out_chunk, encoded)))
            n += len(chunk)
            if progress:
                progress(len(chunk))
        if changed:
            _refuse_foreign(root, changed, "changed since encryption: digest differs")
        write_decrypt_marker(tmp, key.fingerprint, written)
    return n


def write_decrypt_marker(folder: Path, key_fingerprint: str, written: Dict[str, str]) -> None:
    """The marker of a decrypt output: every file written, with the SHA-256 of its bytes, so that ``--force``
    later replaces these files and nothing else (a file of the same name with other content stays)."""
    files = {rel: {"sha256": digest} for rel, digest in written.items()}
    (folder / DECRYPTED_MARKER).write_text(json.dumps({"format": "patchcrypt-decrypted", "version": 2,
                                                       "file_count": len(files), "key_fingerprint": key_fingerprint,
                                                       "files": files}))


def _check_file_shape(cipher, manifest: Dict, meta: Dict, data: bytes, name: Path) -> Optional[int]:
    """Refuse a file whose header declares another size than the manifest's ``image_shape`` (or its own
    ``orig_shape`` under ``--pad``) gives for an encrypted image, before any pixel is decoded.

    Returns the pixel count to allow when decoding it (an etc-gray composite has more pixels than its plain
    image, which is what the pixel limit applies to), or None when the manifest records no size.
    """
    plain = meta.get("orig_shape") or manifest.get("image_shape")
    if not plain:
        return None  # images of several sizes and no padding: only the pixel limit applies
    h0, w0 = int(plain[0]), int(plain[1])
    check_pixels(h0, w0, f"{name} (size in its manifest)")
    ph, pw = cipher.padded_size(h0, w0)
    want = cipher.encrypted_shape(ph, pw, int(manifest["image_shape"][2]) if manifest.get("image_shape") else 3)
    h, w = image_size(data, str(name))
    if (h, w) != tuple(want[:2]):
        raise PatchcryptError(f"{name}: the file is {w}x{h} pixels, its manifest says {want[1]}x{want[0]}; "
                              "nothing was decrypted")
    return h * w


def _decrypt_batch(cipher, items, per_image: bool) -> List[np.ndarray]:
    out: List[Optional[np.ndarray]] = [None] * len(items)
    groups: Dict[tuple, List[int]] = {}
    for i, (_, img, nonces, crop) in enumerate(items):
        groups.setdefault((img.shape, crop), []).append(i)
    for (shape, crop), group in groups.items():
        for idx in _sub_batches(group, per_image):
            batch = items[idx[0]][1][None] if len(idx) == 1 else np.stack([items[i][1] for i in idx])
            nonces = [items[i][2][0] for i in idx] if per_image else None
            try:
                dec = cipher.decrypt(batch, nonces, crop=crop)
            except PatchcryptError as exc:
                raise PatchcryptError(f"{items[idx[0]][0]}: {exc}") from None
            for j, i in enumerate(idx):
                out[i] = dec[j]
    return out
