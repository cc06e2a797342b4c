"""Checkpoints: the model, how to rebuild it, and what it expects (scheme, block size, key fingerprint).

A checkpoint is a ``torch.save`` dict with ``"format": "patchcrypt-checkpoint"``; it never holds a key, only
the key's fingerprint, so it can be handed to a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn as nn

from ..atomic import atomic_write
from ..errors import PatchcryptError
from .registry import create_model

if TYPE_CHECKING:
    from ..record import EncryptionRecord

FORMAT = "patchcrypt-checkpoint"
VERSION = 1


def save_checkpoint(path, model: nn.Module, *, model_name: str, model_kwargs: Dict[str, Any],
                    classes: List[str], scheme: Optional[str] = None, block_size: Optional[int] = None,
                    key_fingerprint: Optional[str] = None, per_image: bool = False,
                    jpeg_quality: Optional[int] = None, keyed: Optional[Dict] = None,
                    config: Optional[Dict] = None, epoch: Optional[int] = None,
                    metrics: Optional[Dict] = None, extra: Optional[Dict] = None,
                    record: Optional["EncryptionRecord"] = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename). ``extra`` holds e.g. optimizer state.

    ``record`` (an :class:`~patchcrypt.record.EncryptionRecord`) gives the encryption facts in one argument,
    in place of ``scheme``, ``block_size``, ``key_fingerprint``, ``per_image`` and ``jpeg_quality``.
    """
    path = Path(path)
    subsampling = None
    if record is not None:
        scheme, block_size, key_fingerprint = record.scheme, record.block_size, record.key_fingerprint
        per_image, jpeg_quality, subsampling = record.per_image, record.jpeg_quality, record.recorded_subsampling
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": model_name, "model_kwargs": dict(model_kwargs),
               "state_dict": state, "classes": list(classes), "scheme": scheme, "block_size": block_size,
               "key_fingerprint": key_fingerprint, "per_image": bool(per_image), "jpeg_quality": jpeg_quality,
               "subsampling": subsampling, "keyed": keyed, "config": config, "epoch": epoch, "metrics": metrics, "extra": extra or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(payload, f))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def load_checkpoint(path) -> Dict[str, Any]:
    """Read and validate a checkpoint (a ``.pt`` file, or a run folder holding ``best.pt`` / ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise PatchcryptError(f"{path}: no best.pt or last.pt in this run folder")
    if not path.is_file():
        raise PatchcryptError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise PatchcryptError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PatchcryptError(f"{path}: not a patchcrypt checkpoint")
    if ckpt.get("version") != VERSION:
        raise PatchcryptError(f"{path}: checkpoint version {ckpt.get('version')} is not supported")
    for field in ("model", "model_kwargs", "state_dict", "classes"):
        if field not in ckpt:
            raise PatchcryptError(f"{path}: checkpoint has no {field!r}")
    # checkpoints written before the embedding was stored once carry a duplicate under "_embed_parent."
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("_embed_parent.")}
    ckpt["path"] = str(path)
    return ckpt


def build_model(ckpt: Dict[str, Any]) -> nn.Module:
    """The checkpoint's model with its weights, in eval mode (blockwise embeddings restored as saved)."""
    kwargs = dict(ckpt["model_kwargs"])
    model = create_model(ckpt["model"], **kwargs)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise PatchcryptError(f"checkpoint weights do not fit model {ckpt['model']}: "
                              f"{str(exc).splitlines()[0][:160]}") from None
    return model.eval()
