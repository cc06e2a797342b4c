"""Checkpoint I/O: the model, how to rebuild it, and what it expects (scheme, block size, key fingerprint).

``save_checkpoint`` / ``load_checkpoint`` / ``build_model``; models are built from the name registry
(:mod:`patchcrypt.models.registry`), never from the factory, so checkpoint I/O sits below the weights loader.

A checkpoint is a ``torch.save`` dict with ``"format": "patchcrypt-checkpoint"``; it never holds a key, only
the key's fingerprint, so it can be handed to a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn as nn

from ..atomic import atomic_write
from ..bounded import open_bounded
from ..errors import PatchcryptError
from .registry import model_entrypoint

if TYPE_CHECKING:
    from ..record import EncryptionRecord

FORMAT = "patchcrypt-checkpoint"
VERSION = 1
CHECKPOINT_MAX = 16 << 30  # 2**31 weights of float32 (the weights bound below) and some room; checked before reading


def save_checkpoint(path, model: nn.Module, *, model_name: str, model_kwargs: Dict[str, Any],
                    classes: List[str], record: Optional["EncryptionRecord"] = None, keyed: Optional[Dict] = None,
                    config: Optional[Dict] = None, epoch: Optional[int] = None,
                    metrics: Optional[Dict] = None, extra: Optional[Dict] = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename). ``extra`` holds e.g. optimizer state.

    ``record`` (an :class:`~patchcrypt.record.EncryptionRecord`) states which images the model expects; the
    checkpoint stores its :meth:`~patchcrypt.record.EncryptionRecord.checkpoint_fields` (none: nothing is
    recorded, and a server refuses to serve it).
    """
    path = Path(path)
    facts = record.checkpoint_fields() if record is not None else {
        "scheme": None, "block_size": None, "key_fingerprint": None, "per_image": False, "jpeg_quality": None,
        "subsampling": None}
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": model_name, "model_kwargs": dict(model_kwargs),
               "state_dict": state, "classes": list(classes), **facts, "keyed": keyed, "config": config, "epoch": epoch, "metrics": metrics, "extra": extra or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(payload, f))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


# model options a checkpoint may ask for, bounded before anything is built (a hostile file could ask for a
# 32768-pixel model: 17 GB of position embedding before its weights are even compared)
KWARG_BOUNDS = {"img_size": (1, 8192), "patch_size": (1, 1024), "in_chans": (1, 4), "num_classes": (1, 100_000),
                "embed_dim": (1, 8192), "dim": (1, 8192), "depth": (1, 256), "num_heads": (1, 256),
                "kernel_size": (1, 255), "mlp_ratio": (0, 64), "hidden": (1, 8192), "width": (1, 8192)}
MAX_TENSOR_ELEMENTS = 1 << 31   # all of a checkpoint's tensors together (8 GB as float32)


def _not_readable(path: Path, exc: BaseException) -> PatchcryptError:
    first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Weights only load failed" in first:  # torch's long notice; say what it means instead
        first = "it holds objects other than tensors and plain values, which are never unpickled"
    elif isinstance(exc, RecursionError):
        first = "nested too deeply"
    elif isinstance(exc, MemoryError):
        first = "too large to read into memory"
    return PatchcryptError(f"{path}: not a readable checkpoint ({first[:120]})")


def load_checkpoint(path) -> Dict[str, Any]:
    """Read and validate a checkpoint (a ``.pt`` file, or a run folder holding ``best.pt`` / ``last.pt``).

    Every field is checked for its type before use, so a damaged or hostile file is one line
    (PatchcryptError), never a raw ValueError, KeyError, RecursionError or MemoryError.
    """
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
        with open_bounded(path, CHECKPOINT_MAX, "checkpoint") as f:  # never a FIFO or a device
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except PatchcryptError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - torch raises many types
        raise _not_readable(path, exc) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PatchcryptError(f"{path}: not a patchcrypt checkpoint")
    if ckpt.get("version") != VERSION:
        raise PatchcryptError(f"{path}: checkpoint version {str(ckpt.get('version'))[:20]} is not supported")
    for field in ("model", "model_kwargs", "state_dict", "classes"):
        if field not in ckpt:
            raise PatchcryptError(f"{path}: checkpoint has no {field!r}")
    _check_fields(path, ckpt)
    # checkpoints written before the embedding was stored once carry a duplicate under "_embed_parent."
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("_embed_parent.")}
    ckpt["path"] = str(path)
    return ckpt


def _check_fields(path: Path, ckpt: Dict[str, Any]) -> None:
    """Types of every field a reader uses; bounds of the model options (one line on the first wrong one)."""
    def bad(what: str) -> PatchcryptError:
        return PatchcryptError(f"{path}: damaged checkpoint ({what})")

    if not isinstance(ckpt["model"], str) or not ckpt["model"] or len(ckpt["model"]) > 200:
        raise bad("the model name is not a name")
    sd = ckpt["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise bad("its weights are not a mapping of names to tensors")
    if sum(v.numel() for v in sd.values()) > MAX_TENSOR_ELEMENTS:
        raise bad(f"over {MAX_TENSOR_ELEMENTS:,} weights")
    classes = ckpt["classes"]
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("its classes are not a list of names")
    for name, kinds in (("scheme", str), ("key_fingerprint", str), ("block_size", int), ("jpeg_quality", int),
                        ("subsampling", str), ("keyed", dict), ("config", dict), ("metrics", dict),
                        ("extra", dict), ("epoch", int)):
        v = ckpt.get(name)
        if v is not None and (not isinstance(v, kinds) or isinstance(v, bool) and kinds is int):
            raise bad(f"{name} is not a {kinds.__name__}")
    check_model_kwargs(ckpt["model_kwargs"], str(path))


def check_model_kwargs(kwargs: Any, source: str = "checkpoint") -> Dict[str, Any]:
    """``kwargs`` when it is a mapping of option names to plain values (numbers, text, booleans, None, short
    lists of those) and every size option is within :data:`KWARG_BOUNDS`; else one-line PatchcryptError."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise PatchcryptError(f"{source}: damaged checkpoint (model options are not a mapping of names)")
    plain = (int, float, str, bool, type(None))
    for k, v in kwargs.items():
        ok = isinstance(v, plain) or (isinstance(v, (list, tuple)) and len(v) <= 16
                                      and all(isinstance(x, plain) for x in v))
        if not ok or isinstance(v, str) and len(v) > 200:
            raise PatchcryptError(f"{source}: model option {k[:40]!r} is not a plain value")
        if k in KWARG_BOUNDS:
            lo, hi = KWARG_BOUNDS[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):  # "32" is a damaged file, not a size
                raise PatchcryptError(f"{source}: model option {k} is not a number (a {type(v).__name__}: "
                                      f"{str(v)[:40]!r})")
            if not lo <= v <= hi:
                raise PatchcryptError(f"{source}: model option {k}={str(v)[:40]} is out of bounds ({lo} to {hi})")
    return dict(kwargs)


def build_model(ckpt: Dict[str, Any]) -> nn.Module:
    """The checkpoint's model with its weights, in eval mode (blockwise embeddings restored as saved).

    The model is first built on torch's ``meta`` device (shapes, no memory) and its tensors compared with
    the checkpoint's, so a model the weights do not fit (e.g. options asking for a far larger model) is
    refused before any memory is allocated for it.
    """
    source = ckpt.get("path", "checkpoint")
    kwargs = check_model_kwargs(ckpt["model_kwargs"], source)
    name = ckpt["model"]
    try:
        with torch.device("meta"):
            probe = model_entrypoint(name)(**kwargs)
    except PatchcryptError as exc:
        raise PatchcryptError(f"{source}: {exc}") from None
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - a model's constructor, any error
        probe = None
        if not isinstance(exc, NotImplementedError):  # a plug-in that cannot be built on meta: skip the probe
            raise PatchcryptError(f"{source}: model options do not build {name} "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    if probe is not None:
        _same_shapes(probe, ckpt["state_dict"], name)
        n_out = getattr(probe, "num_classes", None)
        if isinstance(n_out, int) and n_out != len(ckpt["classes"]):
            raise PatchcryptError(f"{source}: damaged checkpoint (its model has {n_out} outputs, it names "
                                  f"{len(ckpt['classes'])} classes)")
    try:
        model = model_entrypoint(name)(**kwargs)
        model.load_state_dict(ckpt["state_dict"])
    except PatchcryptError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise PatchcryptError(f"checkpoint weights do not fit model {name}: {first}") from None
    return model.eval()


def _same_shapes(probe: nn.Module, sd: Dict[str, torch.Tensor], name: str) -> None:
    own = probe.state_dict()
    for k, v in own.items():
        if k not in sd:
            raise PatchcryptError(f"checkpoint weights do not fit model {name}: no tensor {k!r}")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise PatchcryptError(f"checkpoint weights do not fit model {name}: tensor {k!r} has shape "
                                  f"{tuple(sd[k].shape)}, the model options ask for {tuple(v.shape)}")
    extra = [k for k in sd if k not in own]
    if extra:
        raise PatchcryptError(f"checkpoint weights do not fit model {name}: unexpected tensor {extra[0]!r}")
