"""Model registry (names only): ``@register_model``, ``list_models(pattern)``, ``model_entrypoint(name)``.

A registered function takes keyword overrides and returns an ``nn.Module``; its name is the model name
(sizes in the name, timm style: ``vit_tiny_patch4_32`` = ViT-Tiny, 4×4 patches, 32×32 images). Building a
model by name is :func:`patchcrypt.models.factory.create_model`; this module imports nothing else of
``patchcrypt.models`` (each model family imports it to register itself).
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable, Dict, List

import torch.nn as nn

from ..errors import PatchcryptError

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under ``fn.__name__``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> List[str]:
    """Sorted names of the registered models matching the fnmatch ``pattern`` (e.g. ``"vit_*_32"``)."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The function registered as ``name`` (timm's name for it). Facts a caller needs before building the
    model are attributes on it, e.g. ``block_size_from_data`` (the model takes the cipher's block size)."""
    if name not in _MODELS:
        raise PatchcryptError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name]


def build(cls: type, defaults: Dict[str, Any], overrides: Dict[str, Any]) -> nn.Module:
    """``cls(**{**defaults, **overrides})``, with a clear error naming unknown keyword arguments."""
    params = inspect.signature(cls.__init__).parameters
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    valid = [p for p, v in params.items() if p != "self" and v.kind in kinds]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise PatchcryptError(f"{cls.__name__} got unknown option(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(valid)}")
    return cls(**{**defaults, **overrides})
