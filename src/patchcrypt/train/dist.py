"""Several processes under ``torchrun``: DDP turns on only when torchrun sets ``RANK``/``WORLD_SIZE``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    owned: bool = False  # the process group was initialised here, so it is destroyed here when the run ends

    @property
    def main(self) -> bool:
        return self.rank == 0


def _launched_distributed() -> bool:
    """True when torchrun started this process as one of several (it sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) >= 2


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 under torchrun: the process that writes and prints."""
    return not _launched_distributed() or int(os.environ["RANK"]) == 0


def setup_distributed(device: torch.device) -> Dist:
    if not _launched_distributed():
        return Dist()
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), owned)


def teardown_distributed(dist: Dist) -> None:
    """Destroy the process group :func:`setup_distributed` initialised (its threads end with it, not at
    interpreter exit, where gloo can abort a rank under load); a group the caller made is left alone."""
    if dist.owned:
        import torch.distributed

        torch.distributed.destroy_process_group()


def wrap_ddp(model: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """``model`` itself in one process, else wrapped in DistributedDataParallel (gradients averaged)."""
    if dist.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
