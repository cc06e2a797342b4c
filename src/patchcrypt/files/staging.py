"""The output folder of a data-set run (DESIGN §5): destination checks, the staging folder, the decrypt marker.

Everything is written into a temporary sibling folder ``.DST.PID.XXXX.partial`` that replaces the destination
only when complete, so a failed or interrupted run leaves the destination as it was; a ``.partial`` folder left
by a killed run is removed by the next run into the same destination.

``--force`` replaces only a previous patchcrypt output: a folder whose ``patchcrypt.json`` (or the marker
``decrypt`` writes) parses, which holds no file it does not list, and whose every listed file has the
SHA-256 recorded when patchcrypt wrote it (a name alone never is enough: a crafted manifest could list a
user's files); never the source or a folder containing it, the current folder, the home folder or a folder
above them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..bounded import SHARD_MAX, open_bounded, read_bounded
from ..data.manifest import MANIFEST_FORMAT, MANIFEST_MAX_BYTES, MANIFEST_NAME, validate_manifest
from ..errors import PatchcryptError

DECRYPTED_MARKER = ".patchcrypt-decrypted.json"  # lets --force recognise a previous decrypt output


WORKERS = max(1, min(4, os.cpu_count() or 1))


def check_destination(src: Path, dst: Path, force: bool) -> None:
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
    with ThreadPoolExecutor(WORKERS) as pool:
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


class Staging:
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


def write_decrypt_marker(folder: Path, key_fingerprint: str, written: Dict[str, str]) -> None:
    """The marker of a decrypt output: every file written, with the SHA-256 of its bytes, so that ``--force``
    later replaces these files and nothing else (a file of the same name with other content stays)."""
    files = {rel: {"sha256": digest} for rel, digest in written.items()}
    (folder / DECRYPTED_MARKER).write_text(json.dumps({"format": "patchcrypt-decrypted", "version": 2,
                                                       "file_count": len(files), "key_fingerprint": key_fingerprint,
                                                       "files": files}))
