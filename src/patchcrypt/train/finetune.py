"""Fine-tuning (``--pretrained PATH``): load the weights, centre the input, key them for ``--init keyed``;
``--freeze backbone`` trains the head alone. See the package docstring and :mod:`patchcrypt.models.keyed`."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch.nn as nn

from ..errors import PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from .config import TrainConfig
from .hub import resolve_pretrained


def _keyed_refusal(reason: str) -> PatchcryptError:
    return PatchcryptError(f"--init keyed cannot be exact here: {reason.rstrip('.')}; use --init plain to "
                           "fine-tune the plain weights directly on the encrypted images")


def prepare_finetune(model: nn.Module, cfg: TrainConfig, record: EncryptionRecord, pre_encrypted: bool = False,
                     classes: Optional[List[str]] = None) -> Tuple[List[str], Optional[Dict]]:
    """Load ``cfg.pretrained`` into ``model``, centre its input, key it for ``--init keyed`` (all in place).
    ``record`` states the images it will train on; ``pre_encrypted``: they came encrypted (no key here).

    Returns (one-line notes for the log, the ``keyed`` record for the checkpoint or None).
    """
    from ..models.keyed import block_maps, centre_input, apply_key
    from ..models.pretrained import load_weights

    if cfg.init == "keyed":  # refusals that need no weights first: clear before any loading
        if record.per_image:
            raise _keyed_refusal("per-image keys give every image its own transformation, which no single set "
                                 "of weights can absorb")
        if pre_encrypted and not record.is_plain and not cfg.key:
            raise _keyed_refusal("the data is already encrypted and the weights can only be transformed with the "
                                 "owner's key (pass --key, the key the tree was encrypted with)")
        if not getattr(model, "is_isotropic", False):
            raise _keyed_refusal(f"{cfg.model} has no single linear patch embedding (only ViT and ConvMixer)")
    info = load_weights(model, resolve_pretrained(cfg.pretrained), classes)
    src = info.checkpoint or {}
    if cfg.init == "keyed" and (src.get("keyed") or src.get("scheme") not in (None, "plain")):
        raise _keyed_refusal(f"{cfg.pretrained} was trained on {src.get('scheme')} images or is keyed; keyed "
                             "init transforms weights trained on plain images")
    notes = list(info.notes)
    keyed = None
    if not getattr(model, "is_isotropic", False):
        return notes, None
    centre_input(model)  # same function; centred inputs make flips exact sign changes (both inits, like for like)
    if cfg.init == "keyed" and not record.is_plain:
        key = Key.load(cfg.key)
        if record.key_fingerprint:
            record.check_key(key)
        try:
            maps = block_maps(record.scheme, key, record.block_size, model.img_size, model.in_chans)
            mode = apply_key(model, maps, "auto", centred=True)
        except PatchcryptError as exc:
            raise _keyed_refusal(str(exc)) from None
        keyed = {"mode": mode, "scheme": record.scheme, "block_size": record.block_size,
                 "key_fingerprint": key.fingerprint, "centred": True, "init": "keyed"}
        notes.append(f"weights keyed for {record.scheme} ({mode} embedding)"
                     + (" — JPEG after encryption makes it a starting point, not exact" if record.jpeg_quality
                        else ""))
    return notes, keyed


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Linear probe: every parameter but the head's stops training. Returns the head."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None  # every model of the zoo has it
    if head is None:
        raise PatchcryptError(f"{type(model).__name__} has no head to train alone; --freeze backbone needs one")
    keep = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return head
