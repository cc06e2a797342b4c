"""Run-time helpers shared by training, evaluation, attacks and benchmarks: device choice, progress bars, the
learned attacks' optimisation loop, the check that a loss is finite."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Iterable, Optional, TypeVar

from .errors import PatchcryptError

if TYPE_CHECKING:  # torch and tqdm are imported on use: the file tools must start fast, and the GPU
    import torch     # benchmark imports this module where only torch, numpy and Pillow are installed
    from tqdm import tqdm

T = TypeVar("T")


def to_nchw(images) -> "torch.Tensor":
    """Images (N, H, W, C) — a numpy array or a torch tensor — → a contiguous torch tensor (N, C, H, W) of the
    same dtype (and device, for a tensor). The one place the channel axis moves to where torch wants it."""
    import numpy as np
    import torch

    t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    return t.permute(0, 3, 1, 2).contiguous()


def resolve_device(name: Optional[str] = None) -> "torch.device":
    """``None``/"auto" → CUDA when available, else CPU; otherwise the named device, checked to exist."""
    import torch

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
    from tqdm import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
                disable=disable, leave=leave, file=sys.stderr)


def train_epoch(loss_fn, optimizer: "torch.optim.Optimizer", batches: Iterable, *, desc: str = "train",
                total: Optional[int] = None, scheduler=None,
                disable: Optional[bool] = None, check_every: Optional[int] = None) -> dict:
    """The optimisation loop of the learned attacks (GAN, ITN): one pass over ``batches``. (The trainer's
    step, with its augmentation and clipping, is :func:`patchcrypt.train.loop.train_step`.)

    Args:
        loss_fn: ``loss_fn(batch) -> (loss tensor, n_items)``; it may update other modules itself (e.g. a
            GAN discriminator) but must return the loss to minimise with ``optimizer``.
        optimizer: stepped once per batch after ``loss.backward()``; ``scheduler`` (optional) likewise.
        batches: an iterable of batches; ``total`` = number of items (images) for the progress bar.
        check_every: read the loss on the host (finite? progress bar) every this many steps. Default: every
            step for a loss on the CPU (a diverged loss is refused before its step is taken); 32 on an
            accelerator, where each read waits for the device: the running sum stays on the device and a
            loss that became inf/NaN is refused at the next read (and at the end of the epoch).

    Returns:
        ``{"loss": mean loss per item, "items": count, "seconds": wall time, "items_per_s": throughput}``.
    """
    import time

    t0 = time.perf_counter()
    total_loss, items, step, every = 0.0, 0, 0, check_every
    pending = None  # the loss sum since the last read, on the device (accelerators)
    with progress(total=total, desc=desc, disable=disable) as bar:
        for step, batch in enumerate(batches, 1):
            optimizer.zero_grad(set_to_none=True)
            loss, n = loss_fn(batch)
            if every is None:
                every = 1 if loss.device.type == "cpu" else 32
            if every == 1:
                total_loss += finite_loss(loss.detach(), desc) * n  # one read per step: before the step is taken
            else:
                pending = loss.detach() * n if pending is None else pending + loss.detach() * n
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            items += n
            bar.update(n)
            if pending is not None and step % every == 0:
                total_loss, pending = total_loss + finite_loss(pending, desc), None
            if step % (every or 1) == 0:
                bar.set_postfix(loss=f"{total_loss / max(items, 1):.4f}", refresh=False)
        if pending is not None:
            total_loss += finite_loss(pending, desc)
    seconds = time.perf_counter() - t0
    return {"loss": total_loss / max(items, 1), "items": items, "seconds": seconds,
            "items_per_s": items / seconds if seconds > 0 else 0.0}


def finite_loss(value: "torch.Tensor", desc: str) -> float:
    """``value`` as a Python float (one host read); a one-line error if the loss diverged (inf or NaN)."""
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise PatchcryptError(f"{desc}: loss became {out} (diverged); lower the learning rate")
    return out
