"""Run-time helpers shared by training, evaluation, attacks and benchmarks: device choice, progress bars."""

from __future__ import annotations

import sys
from typing import Iterable, Optional, TypeVar

import torch
from tqdm import tqdm

from .errors import PatchcryptError

T = TypeVar("T")


def resolve_device(name: Optional[str] = None) -> torch.device:
    """``None``/"auto" → CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise PatchcryptError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PatchcryptError("device cuda requested but CUDA is not available on this machine")
    return dev


def progress(iterable: Optional[Iterable[T]] = None, total: Optional[int] = None, desc: str = "",
             unit: str = "img", disable: Optional[bool] = None, leave: bool = False) -> "tqdm[T]":
    """A tqdm progress bar on stderr (shows items/s). ``disable=None`` hides it when stderr is not a tty."""
    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                disable=disable, leave=leave, file=sys.stderr)
