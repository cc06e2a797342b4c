"""What an attack is pointed at on disk: a folder of plain photos of any size, or an encrypted tree as a server
holds it.

* A plain folder (``train/`` + ``test/`` or ``val/``, or one tree; CIFAR-10 batches; one image): the victims
  are the evaluation split, the attacker's own images the training split (or ``--public``, a folder of another
  domain). With ``img_size`` every photo is brought to ``img_size`` × ``img_size`` by the rule ``train`` and
  ``evaluate`` use (shorter side resized, centre crop: :func:`patchcrypt.data.resize.centre_crop_resize`), so a
  folder of mixed sizes is attacked at one geometry, never upsampled by more than that rule does.
* An encrypted tree (a ``patchcrypt.json`` beside it): its ciphertexts are attacked as stored, never
  re-encrypted. Scoring needs the plain images, so the owner's key is required; the plain images are the
  key holder's decryptions of the stored files (:func:`held_target`).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import PatchcryptError, SizeMismatchError
from ..keys import Key
from .target import Target, registered_target

EVAL_SPLITS = ("test", "val", "validation")


def attack_split(path: Path) -> Optional[str]:
    """The folder to attack: the evaluation split, else ``train/`` when it is all there is, else None (one tree)."""
    return next((s for s in EVAL_SPLITS + ("train",) if (path / s).is_dir()), None)


def _files(path: Path, split: Optional[str]):
    from ..data.stream import open_files

    if split is not None:
        return open_files(path / split)
    return open_files(path)


def _is_batches(path: Path) -> bool:
    """CIFAR-10 python batches or idx files: train and test read whole, no split folders."""
    from ..data.readers import has_splits

    return has_splits(path) and not any((path / s).is_dir() for s in ("train",) + EVAL_SPLITS)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_folder(path: Path, n: Optional[int], img_size: Optional[int], split: Optional[str] = None,
                seed: int = 0) -> np.ndarray:
    """Up to ``n`` images (a class-balanced, seeded choice) of ``path`` (its ``split`` folder when given), uint8
    (N, H, W, C); at ``img_size`` when given, else at their own (common) size."""
    from ..data import load_dataset

    path = Path(path)
    files = _files(path, split) if path.is_dir() else None
    if files is None:   # CIFAR-10 batches, idx files, one image: read whole
        from ..data.readers import has_splits

        ds = load_dataset(path, "test" if split in EVAL_SPLITS or (split is None and has_splits(path)) else split)
        images = ds.subset(n, seed).images
        if img_size and images.shape[1:3] != (img_size, img_size):
            from ..data.resize import centre_crop_resize

            images = np.stack([centre_crop_resize(im, img_size) for im in images])
        return images
    if img_size:
        files = files.subset(n, seed)
        return replace(files, shape=(int(img_size), int(img_size), files.probe()[2])).materialize(2).images
    try:
        return load_dataset(path / split if split else path).subset(n, seed).images
    except SizeMismatchError:   # mixed sizes (each image held to the first's)
        raise PatchcryptError(f"{path}: images of several sizes; pass --img-size S to attack them at S×S "
                              "(shorter side resized, centre crop, as train and evaluate do)") from None


def _all_splits(data: Path, n: int, img_size: Optional[int], seed: int) -> np.ndarray:
    """Up to ``n`` images drawn (seeded) from every split folder of ``data`` together."""
    parts = [load_folder(data, None, img_size, s, seed) for s in ("train",) + EVAL_SPLITS if (data / s).is_dir()]
    if len({p.shape[1:] for p in parts}) > 1:
        raise PatchcryptError(f"{data}: its splits hold images of several sizes; pass --img-size S")
    pool = np.concatenate(parts)
    if n >= len(pool):
        return pool
    return pool[np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False))]


def load_victims(data: Path, n_images: int, img_size: Optional[int], need_train: bool, subset: int,
                 public: Optional[Path] = None, seed: int = 0,
                 split: Optional[str] = None) -> Tuple[np.ndarray, Optional[np.ndarray], str]:
    """(victims, the attacker's own images or None, a note on where they came from).

    Victims: ``split`` of ``data`` (a folder name, or ``"all"``: every split together), by default its
    evaluation split (``test/``, ``val/`` or ``validation/``), or all of a tree without splits. The
    attacker's own: ``public`` when given (another domain), else the training split of ``data``, else the
    images of ``data`` that are not attacked. ``n_images`` more than there are: all of them, and it says so.
    """
    data = Path(data)
    if split == "all":
        if need_train and public is None:
            raise PatchcryptError("--split all attacks every image of --data: give the attacker's own images "
                                  "with --public DIR (another domain)")
        victims = _all_splits(data, n_images, img_size, seed)
    else:
        if split is not None and not (data / split).is_dir():
            raise PatchcryptError(f"--split {split}: {data} has no {split}/ folder")
        split = split or (attack_split(data) if data.is_dir() else None)
        victims = load_folder(data, n_images, img_size, split, seed)
    note = f"{len(victims)} victims from {data.name}/{split or ''}".rstrip("/")
    if len(victims) < n_images:
        _say(f"note: --n-images {n_images}: {data} has {len(victims)} images to attack; attacking them all")
    if not need_train:
        return victims, None, note
    size = victims.shape[1] if img_size or victims.shape[1] == victims.shape[2] else None
    if public is not None:
        own = load_folder(Path(public), subset, size, "train" if (Path(public) / "train").is_dir() else None, seed)
        return victims, own, note + f"; the attacker's own images: {len(own)} from {Path(public).name}"
    if data.is_dir() and split != "train" and ((data / "train").is_dir() or _is_batches(data)):
        own = load_folder(data, subset, size, "train", seed)
        return victims, own, note + f"; the attacker's own images: {len(own)} from {data.name}/train (same domain)"
    pool = load_folder(data, n_images + subset, img_size, split, seed)
    digests = {hashlib.sha256(v.tobytes()).digest() for v in victims}
    own = np.array([p for p in pool if hashlib.sha256(p.tobytes()).digest() not in digests], dtype=np.uint8)
    if len(own) == 0:
        own = victims
    return victims, own, note + f"; the attacker's own images: {len(own)} others of {data.name}"


# -- an encrypted tree, as the server holds it ------------------------------------------------------------
def is_encrypted_tree(data: Path) -> bool:
    from ..data.manifest import find_manifest

    data = Path(data)
    return data.is_dir() and find_manifest(data) is not None


def load_held(data: Path, n_images: int, key: Optional[Key], seed: int = 0):
    """(record, plain (N, H, W, C), ciphertexts as stored, nonces or None) of up to ``n_images`` files of an
    encrypted tree; the plain images are the key holder's decryptions (the owner's key is required)."""
    from ..codec import decode_image
    from ..data.stream import open_files
    from ..record import EncryptionRecord

    data = Path(data)
    if key is None:
        raise PatchcryptError(f"{data} is an encrypted tree (it has a patchcrypt.json): its ciphertexts are attacked "
                              "as stored and scored against their plain images, so pass the owner's --key")
    split = attack_split(data)
    files = open_files(data / split if split else data)
    record = EncryptionRecord.from_manifest(files.manifest)
    cipher = record.cipher(key)   # a key of another fingerprint is refused here, in one line
    files = files.subset(n_images, seed)
    mode = "L" if cipher.spec.composite else None
    enc = [decode_image(files.read_bytes(i), mode, files.name(i), record.jpeg_upsampling) for i in range(len(files))]
    if len({e.shape for e in enc}) != 1:
        raise PatchcryptError(f"{data}: the ciphertexts have several sizes; attack one size at a time")
    enc_arr = np.stack(enc)
    meta: Dict = files.manifest.get("files") or {}
    rels = [str(Path(files.root, f).relative_to(_tree_root(files))) for f in files.files]
    nonces: Optional[List[bytes]] = None
    if record.per_image:
        nonces = [bytes.fromhex(meta.get(r, {}).get("nonce", "")) for r in rels]
        if not all(nonces):
            raise PatchcryptError(f"{data}: the manifest has no nonce for some files")
    plain = cipher.decrypt(enc_arr, nonces)
    return record, plain, enc_arr, nonces


def _tree_root(files) -> Path:
    from ..data.manifest import find_manifest

    return find_manifest(files.root)[0]


def held_target(record, key: Key, plain: np.ndarray, enc: np.ndarray) -> Target:
    """The recorded scheme under ``key``, whose ``encrypt`` hands back the stored ciphertext for each image of
    ``plain`` (never a re-encryption: JPEG and per-image nonces stay as stored); any other image (a chosen
    query) goes through the owner's cipher, as an encryption service would."""
    base = registered_target(record.scheme, record.block_size, key=key, per_image=record.per_image)
    stored = {hashlib.sha256(p.tobytes()).digest(): e for p, e in zip(plain, enc)}

    def encrypt(images: np.ndarray) -> np.ndarray:
        hits = [stored.get(hashlib.sha256(np.ascontiguousarray(im).tobytes()).digest()) for im in images]
        if all(h is not None for h in hits):
            return np.stack(hits)
        fresh = base.encrypt(images)
        return np.stack([h if h is not None else f for h, f in zip(hits, fresh)])

    return Target(base.name, base.spec, base.block_size, base.per_image, encrypt, base.encrypt_fresh_keys,
                  base.cipher, True, key=key, decrypt=base.decrypt, keyed_model=base.keyed_model,
                  facts={"ciphertexts": "as stored in the encrypted tree", "jpeg_quality": record.jpeg_quality})


def reference_classifier(path: Path, shape: Tuple[int, int, int]):
    """``classify(images) -> labels`` of a model trained on plain images of the victims' domain (a checkpoint
    or run folder of ``patchcrypt train``), for the recognisability figure; refused in one line when it was
    trained on encrypted images or expects another image size."""
    from ..inference import predict
    from ..models.checkpoint import build_model, load_checkpoint
    from ..record import EncryptionRecord

    ckpt = load_checkpoint(path)
    record = EncryptionRecord.from_checkpoint(ckpt)
    if not record.is_plain:
        raise PatchcryptError(f"--reference {path}: trained on {record.scheme} images; the reference classifier "
                              "must be trained on plain images of the domain")
    size = (ckpt.get("model_kwargs") or {}).get("img_size")
    if size and int(size) != shape[0]:
        raise PatchcryptError(f"--reference {path}: the model takes {size}x{size} images, the victims are "
                              f"{shape[1]}x{shape[0]} (pass --img-size {size})")
    model = build_model(ckpt)

    def classify(images: np.ndarray) -> np.ndarray:
        return predict(model, np.ascontiguousarray(images), device="cpu").argmax(1)

    return classify


__all__ = ["reference_classifier", "load_victims", "load_folder", "is_encrypted_tree", "load_held", "held_target", "EVAL_SPLITS"]
