"""``patchcrypt bench``: one design through the attack suite and a small training run -> a card.

Per data domain: the images-to-break ladder of the ciphertext-only attacks (stopped once broken),
queries-to-break (chosen plaintext, once) and pairs-to-break (known plaintext, a ladder of pairs), each
attack's readable share and SSIM up to the global state per rung, and the recognisability figure of a
plain model of the domain. Once: the accuracy (plain, scheme, cost) on the first domain that has a
training split. The attacker's own images come from ``public`` (another domain), else from the next
``--data`` domain; never from the victims' own. Every finished piece is saved to ``OUT/partial.json`` at
once, so a cut-off run resumes where it stopped (each run draws a fresh throwaway key; no key is saved).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_write
from ..errors import PatchcryptError, SizeMismatchError
from .card import card_of, write_card
from .ladder import LADDER, PAIRS_LADDER, climb, rungs
from .presets import Preset

KEEP = ("readable", "ssim_global", "exact_images_global", "recognisability", "n_images", "queries", "pairs",
        "pairs_needed")


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def record_of(row: Dict[str, Any]) -> Dict[str, Any]:
    """One attack's row of ``run_all`` as a card keeps it (headline figures, or n/a with the reason)."""
    out = {"attack": row["attack"], "threat": row["threat"], "applies": bool(row.get("applies"))}
    if not out["applies"]:
        out.update(reason=row.get("reason", ""), readable=None)
        return out
    m = row["metrics"]
    out.update({k: (round(m[k], 4) if isinstance(m.get(k), float) else m.get(k)) for k in KEEP if k in m})
    out["seconds"] = row.get("seconds")
    if row.get("sampled"):
        out["sampled"] = row["sampled"]
    return out


class Partial:
    """``OUT/partial.json``: the pieces of a card finished so far (written after each)."""

    def __init__(self, path: Path, design: Dict[str, Any]):
        self.path = path
        design = json.loads(json.dumps(design))   # as it reads back (tuples are lists)
        self.data: Dict[str, Any] = {"design": design, "pieces": {}}
        if path.is_file():
            from ..bounded import METADATA_MAX, read_text_bounded

            try:
                saved = json.loads(read_text_bounded(path, METADATA_MAX, "saved pieces"))
            except (ValueError, RecursionError):
                raise PatchcryptError(f"{path}: not a card's saved pieces; remove it to start over") from None
            if isinstance(saved, dict) and saved.get("design") == design and isinstance(saved.get("pieces"), dict):
                self.data = saved

    def get(self, key: str) -> Any:
        return self.data["pieces"].get(key)

    def put(self, key: str, value: Any) -> Any:
        self.data["pieces"][key] = value
        atomic_write(self.path, json.dumps(self.data, indent=1).encode())
        return value

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        hit = self.get(key)
        return hit if hit is not None else self.put(key, make())


def domain_images(path: Path, n: int, preset: Preset, split: Optional[str] = None, seed: int = 0) -> np.ndarray:
    """Up to ``n`` images of ``path``'s evaluation split (or ``split``); 32-px sets as stored, photos at
    ``preset.img_size``."""
    from ..attacks.images import attack_split, load_folder

    split = split or (attack_split(path) if path.is_dir() else None)
    try:
        return load_folder(path, n, None, split, seed)
    except PatchcryptError as exc:
        if "several sizes" not in str(exc):
            raise
    if not preset.img_size:
        raise PatchcryptError(f"{path}: photos of several sizes; the {preset.name} preset has no --img-size")
    return load_folder(path, n, preset.img_size, split, seed)


def public_for(k: int, data: Sequence[Path], public: Optional[Path]) -> Path:
    """The attacker's own images for domain ``k``: ``public``, else the next domain; never the victims'."""
    own = public if public is not None else (data[(k + 1) % len(data)] if len(data) > 1 else None)
    if own is None:
        raise PatchcryptError("give the attacker's own images with --public DIR (another domain than the "
                              "victims), or a second --data domain")
    if Path(own).resolve() == Path(data[k]).resolve():
        raise PatchcryptError(f"--public {own}: the attacker's images must come from another domain than the "
                              "victims")
    return Path(own)


def _ladder_step(target, victims, own, preset: Preset, classify, store: Partial, key: str, progress: bool):
    from ..attacks import run_all

    def step(n: int) -> List[Dict[str, Any]]:
        def make():
            _say(progress, f"bench: {key}: N = {n}")
            rep = run_all(target, target.block_size, victims[:n], own, per_image=target.per_image,
                          names=list(preset.attacks), max_single=preset.max_single, classify=classify,
                          epochs=int(preset.extra.get("attack_epochs", 3)), seed=preset.seed)
            return [record_of(r) for r in rep["attacks"]]

        return store.cached(f"{key}/N={n}", make)

    return step


def _kpa_step(target, victims, own, preset: Preset, store: Partial, key: str, progress: bool):
    from ..attacks import run_all

    def step(p: int) -> List[Dict[str, Any]]:
        def make():
            _say(progress, f"bench: {key}: {p} known pairs")
            rep = run_all(target, target.block_size, victims, own, per_image=target.per_image, names=["kpa"],
                          pairs=p, seed=preset.seed)
            return [record_of(r) for r in rep["attacks"]]

        return store.cached(f"{key}/pairs={p}", make)

    return step


def _cpa(target, victims, store: Partial, key: str, progress: bool, seed: int) -> List[Dict[str, Any]]:
    from ..attacks import run_all

    def make():
        _say(progress, f"bench: {key}: chosen plaintext")
        rep = run_all(target, target.block_size, victims, None, per_image=target.per_image, names=["cpa"],
                      seed=seed)
        return [record_of(r) for r in rep["attacks"]]

    return store.cached(f"{key}/cpa", make)


def rate_domain(scheme, block_size, per_image: bool, path: Path, own_path: Path, preset: Preset, store: Partial,
                classify=None, classify_size: Optional[int] = None, progress: bool = False) -> Dict[str, Any]:
    """One domain's part of the card: the three ladders and what each attack read at each rung."""
    from ..attacks import make_target

    pool = domain_images(path, preset.ladder_max, preset, seed=preset.seed)
    size = pool.shape[1]
    own = domain_images(own_path, preset.public, preset, split="train" if (own_path / "train").is_dir() else None,
                        seed=preset.seed)
    if own.shape[1:3] != pool.shape[1:3]:
        from ..data.resize import centre_crop_resize

        own = np.stack([centre_crop_resize(im, size) for im in own])
    target = make_target(scheme, block_size, pool[:8], per_image=per_image)
    key = f"{path.name}@{size}"
    cls = classify if size == classify_size else None
    images = climb(_ladder_step(target, pool, own, preset, cls, store, key, progress),
                   rungs(LADDER, min(preset.ladder_max, len(pool))))
    cpa = _cpa(target, pool[:preset.cpa_images], store, key, progress, preset.seed)
    pairs = climb(_kpa_step(target, pool[:preset.kpa_images], own, preset, store, key, progress),
                  rungs(PAIRS_LADDER, preset.pairs_max))
    return {"domain": path.name, "path": str(path), "img_size": int(size), "victims_available": int(len(pool)),
            "public": {"domain": own_path.name, "images": int(len(own))}, "images": images, "cpa": cpa,
            "pairs": pairs, "target": target}


def accuracy_part(target_for, path: Path, per_image: bool, block_size: Optional[int], preset: Preset, model: str,
                  store: Partial, device: Optional[str], progress: bool, scheme: str = "") -> Dict[str, Any]:
    """The accuracy on ``path`` (its train and test splits), or ``{"skipped": why}``; ``reference`` (a
    classifier, the plain model) and ``reference_size`` ride along for the recognisability figure. The
    plain model is kept in ``OUT/reference.pt`` (plain weights, no key) so a resumed run reuses it."""
    import torch

    from ..data import load_dataset
    from ..models import create_model
    from .accuracy import classifier, measure_accuracy, recipe

    if not ((path / "train").is_dir() and any((path / s).is_dir() for s in ("test", "val"))):
        return {"skipped": f"{path.name} has no train/ and test/ (or val/) split"}
    try:
        tr = load_dataset(path, "train", subset=preset.train_images, seed=preset.seed)
    except SizeMismatchError:
        return {"skipped": f"{path.name}: photos of mixed sizes; the accuracy part runs on 32-px sets"}
    if tr.images.shape[1] != tr.images.shape[2] or tr.images.shape[1] > 64:
        return {"skipped": f"{path.name}: the accuracy part runs on 32-px sets (this one is {tr.images.shape[1]} px)"}
    te = load_dataset(path, "test" if (path / "test").is_dir() else "val", subset=preset.test_images,
                      seed=preset.seed)
    target = target_for(tr.images[:8])
    shape = target.encrypt(tr.images[:1]).shape
    if shape != tr.images[:1].shape:
        return {"skipped": f"the ciphertexts have another shape ({'x'.join(map(str, shape[1:]))}, a composite) than "
                           f"the images; the accuracy part trains square {tr.images.shape[3]}-channel models"}
    weights, acc = store.path.parent / "reference.pt", store.get("accuracy")
    if acc is None or not weights.is_file():
        _say(progress, "bench: accuracy (plain and encrypted training)")
        acc = measure_accuracy(target.encrypt, per_image, target.block_size, (tr.images, tr.labels),
                               (te.images, te.labels), preset, model=model, device=device, scheme=str(scheme))
        plain = acc.pop("reference")
        torch.save(plain.state_dict(), weights)
        acc["domain"] = path.name
        store.put("accuracy", acc)
    else:
        k = int(max(tr.labels.max(), te.labels.max()) + 1)
        patch = {"patch_size": target.block_size} if target.block_size > 1 else {}
        plain = create_model(recipe(model, per_image, target.block_size, str(scheme))["plain_model"], num_classes=k,
                             img_size=int(tr.images.shape[1]), **patch)
        plain.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return {**acc, "reference": classifier(plain, device), "reference_size": int(tr.images.shape[1])}


def bench(scheme, data: Sequence[Path], preset: Preset, out: Path, block_size: Optional[int] = None,
          per_image: bool = False, public: Optional[Path] = None, model: str = "vit_pico_patch4_32",
          device: Optional[str] = None, progress: bool = False, command: str = "") -> Dict[str, Any]:
    """Rate one design; write ``out/card.json``, ``out/card.md`` and the ladder plot; return the card."""
    from ..attacks import make_target

    if not data:
        raise PatchcryptError("give at least one --data domain")
    data = [Path(d) for d in data]
    for d in data:
        if not d.exists():
            raise PatchcryptError(f"--data {d}: no such folder")
    publics = [public_for(k, data, public) for k in range(len(data))]   # refused before any work
    t0 = time.perf_counter()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    design = {"scheme": str(scheme), "block_size": block_size, "per_image": per_image, "preset": preset.to_dict(),
              "model": model, "data": [str(d) for d in data], "public": str(public) if public else None}
    try:
        store = Partial(out / "partial.json", design)
        acc = accuracy_part(lambda probe: make_target(scheme, block_size, probe, per_image=per_image), data[0],
                            per_image, block_size, preset, model, store, device, progress, str(scheme))
        classify, classify_size = acc.pop("reference", None), acc.pop("reference_size", None)
        domains = [rate_domain(scheme, block_size, per_image, d, publics[k], preset, store, classify,
                               classify_size, progress) for k, d in enumerate(data)]
    except BaseException:
        if created and not any(out.iterdir()):   # refused before any piece was saved: leave no empty folder
            out.rmdir()
        raise
    card = card_of(domains, acc, preset, time.perf_counter() - t0, command)
    write_card(out, card)
    return card


__all__ = ["bench", "rate_domain", "record_of", "public_for", "domain_images", "Partial"]
