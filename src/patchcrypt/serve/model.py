"""The served model and its announcement: load a checkpoint fit to serve, and say what a client must send.

``GET /v1/model`` answers :func:`model_info` (nothing secret; the client compares it with its own settings,
never trusts it).
"""

from typing import Any, Dict, Tuple

from ..errors import PatchcryptError
from ..record import EncryptionRecord

__all__ = ["model_info", "load_served_model"]


def model_info(ckpt: Dict[str, Any], model) -> Dict[str, Any]:
    """What a client needs to encrypt for this model (nothing secret); read back by
    :meth:`EncryptionRecord.from_server`."""
    rec = EncryptionRecord.from_checkpoint(ckpt)
    return {"model": ckpt["model"], "classes": list(ckpt["classes"]), **rec.to_announcement(),
            "image_size": [int(model.img_size), int(model.img_size), int(model.in_chans)],
            "keyed": ckpt.get("keyed") is not None}


def load_served_model(run) -> Tuple[Dict[str, Any], Any]:
    """Load a checkpoint for serving; refuses checkpoints that do not say which images they expect."""
    from ..models import build_model, load_checkpoint

    ckpt = load_checkpoint(run)
    rec = EncryptionRecord.from_checkpoint(ckpt)
    if not rec.scheme:
        raise PatchcryptError(f"{ckpt['path']}: the checkpoint records no scheme, so clients cannot know how to "
                              "encrypt for it; serve a run from 'patchcrypt train' or 'patchcrypt keyed-model'")
    if rec.scheme != "plain" and not rec.block_size:
        raise PatchcryptError(f"{ckpt['path']}: the checkpoint records scheme {rec.scheme!r} but no block size")
    model = build_model(ckpt)
    if not hasattr(model, "img_size") or not hasattr(model, "in_chans"):
        raise PatchcryptError(f"{ckpt['path']}: model {ckpt['model']} does not state its input size")
    return ckpt, model
