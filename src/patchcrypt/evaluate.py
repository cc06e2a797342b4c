"""Evaluation of a checkpoint on a data set: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .atomic import atomic_write
from .data import load_dataset
from .data.readers import has_splits, split_root
from .data.resize import RESIZE_RULE
from .errors import PatchcryptError
from .inference import predict
from .models import build_model, load_checkpoint
from .record import EncryptionRecord


def prepare_images(ckpt: Dict[str, Any], data, key_path: Optional[str] = None) -> np.ndarray:
    """The images as the checkpoint's model expects them: check or apply the encryption the model was made for."""
    from .codec import jpeg_roundtrip
    from .keys import Key

    want = EncryptionRecord.from_checkpoint(ckpt)
    if data.manifest is not None:
        want.require_same(EncryptionRecord.from_manifest(data.manifest))
        return data.images
    if want.is_plain:
        images = data.images
    else:
        if key_path is None:
            raise PatchcryptError(f"the model expects {want.scheme} images; give --key to encrypt this plain data, "
                                  "or evaluate on a tree written by 'patchcrypt encrypt'")
        key = Key.load(key_path)
        want.check_key(key)
        if want.per_image:
            raise PatchcryptError("the model was trained with per-image keys; evaluate on an encrypted tree")
        images = want.cipher(key).encrypt(data.images)
    if want.jpeg_quality:
        images = jpeg_roundtrip(images, want.jpeg_quality, want.subsampling, want.jpeg_upsampling)
    return images


def evaluate_checkpoint(run, data_path, key: Optional[str] = None, split: Optional[str] = "test",
                        device: Optional[str] = None, out_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Evaluate a run (or checkpoint) on ``data_path``; writes evaluation.json and confusion.png to ``out_dir``."""
    from .data.loading import open_eval_stream, stream_logits

    ckpt = load_checkpoint(run)
    path = Path(data_path)
    has_split = has_splits(path)
    classes = ckpt["classes"]
    model = build_model(ckpt)
    files = open_eval_stream(path, split if has_split else None, (ckpt.get("model_kwargs") or {}).get("img_size"))
    resized = files is not None and files.manifest is None and files.probe()[:2] != files.shape[:2]
    if files is not None:  # shards, a tree past the memory budget, or photos to resize: decoded batch by batch
        if files.classes and files.classes != classes:
            raise PatchcryptError(f"the data's classes {files.classes} differ from the model's {classes}")
        logits, labels = stream_logits(files, lambda b: predict(model, prepare_images(ckpt, b, key), device=device))
    else:
        data = load_dataset(path, split if has_split else None)
        if data.classes and data.classes != classes:
            raise PatchcryptError(f"the data's classes {data.classes} differ from the model's {classes}")
        logits, labels = predict(model, prepare_images(ckpt, data, key), device=device, desc="evaluate"), data.labels
    pred = logits.argmax(1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, c in enumerate(classes)}
    result = {"accuracy": float((pred == labels).mean()), "per_class": per_class, "n_images": int(len(labels)),
              "confusion": confusion.tolist(), "classes": classes, "checkpoint": ckpt["path"],
              "data": str(path), "split": _split_name(path, split if has_split else None),
              "preprocessing": f"to {files.shape[0]}: {RESIZE_RULE}" if resized else "none",
              "scheme": ckpt.get("scheme"), "block_size": ckpt.get("block_size")}
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write(out_dir / "evaluation.json", json.dumps(result, indent=1).encode())
        _confusion_png(confusion, classes, out_dir / "confusion.png", result["accuracy"])
    return result


def _split_name(path: Path, split: Optional[str]) -> Optional[str]:
    """The folder evaluated, in words: ``val/`` where ``--split test`` falls back to it (train/ + val/ trees)."""
    if split is None or not path.is_dir():
        return None
    try:
        root = split_root(path, split)
    except PatchcryptError:
        return split
    return f"{root.name}/" if root != path else split


def _confusion_png(confusion: np.ndarray, classes, path: Path, accuracy: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {accuracy:.3f}")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
