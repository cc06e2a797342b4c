"""What a run is: :class:`TrainConfig` (YAML file + CLI overrides) and the checks no run can pass."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..bounded import METADATA_MAX, read_text_bounded
from ..data.split import val_fraction
from ..errors import PatchcryptError
from ..models import list_models
from ..models.checkpoint import check_model_kwargs

# fields that may change on --resume without changing the result
RESUME_FREE = {"epochs", "device", "workers", "resume", "config", "out", "stream"}


@dataclass
class TrainConfig:
    data: str = ""
    model: str = "vit_pico_patch4_32"
    out: str = "runs/run"
    scheme: Optional[str] = None
    key: Optional[str] = None            # path of the key file (never its content)
    block_size: Optional[int] = None
    per_image: bool = False
    jpeg_quality: Optional[int] = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: str = "auto"                # auto | crop-flip | mixup | none
    subset: Optional[int] = None
    test_subset: Optional[int] = None
    seed: int = 0
    device: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    pretrained: Optional[str] = None     # weights to fine-tune: timm state dict or a patchcrypt run/checkpoint
    init: str = "plain"                  # plain (the paper's method) | keyed (transform with the key first)
    freeze: Optional[str] = None         # None | backbone (linear probe: the head alone is trained)
    resume: bool = False
    max_steps: Optional[int] = None      # stop after this many optimiser steps (smoke runs on big data)
    img_size: Optional[int] = None       # images resized/cropped to this on load (default: the model's size)
    stream: Optional[bool] = None        # None: stream when the decoded set exceeds the memory budget
    workers: Optional[int] = None        # DataLoader workers when streaming (default: CPUs - 1)
    # -- the GPU recipe (benchmarks/gpu_accuracy.py); all off by default ----------------------------------------
    data_on_device: bool = False         # training images held on the device; batches, crops, flips made there
    amp: bool = False                    # bf16 autocast for forward passes (training and test); float32 loss
    fused: bool = False                  # fused AdamW kernel (CUDA)
    clip_grad: Optional[float] = None    # clip the global gradient norm to this before each step
    channels_last: bool = False          # the model in channels-last memory format (cuDNN convolutions)
    eval_batch: Optional[int] = None     # test images per forward pass (default 500; streaming: batch_size)
    # what chooses best.pt, never the test split: auto (a val/ or validation/ folder beside test/, else the
    # last epoch), none (the last epoch), a folder name, or a share of train/ held out ("0.1")
    val_split: str = "auto"

    @classmethod
    def from_sources(cls, yaml_path: Optional[Path], overrides: Dict[str, Any]) -> "TrainConfig":
        """YAML file values, then CLI overrides (None = not given)."""
        values: Dict[str, Any] = {}
        if yaml_path is not None:
            import yaml

            try:
                loaded = yaml.safe_load(read_text_bounded(yaml_path, METADATA_MAX, "config")) or {}
            except yaml.YAMLError as exc:
                raise PatchcryptError(f"{yaml_path}: cannot read the config ({str(exc).splitlines()[0]})") from None
            if not isinstance(loaded, dict):
                raise PatchcryptError(f"{yaml_path}: a config must be a mapping of option: value")
            values.update(loaded)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("val_split"), (int, float)) and not isinstance(values["val_split"], bool):
            values["val_split"] = str(values["val_split"])  # "val_split: 0.1" in a YAML file
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise PatchcryptError(f"unknown config option(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# what each option's value may be (a --config file or a saved run may hold text where a number belongs)
_TYPES = {"str": ((str, os.PathLike), "text"), "int": ((int,), "a whole number"), "float": ((int, float), "a number"),
          "bool": ((bool,), "true or false"), "Dict[str, Any]": ((dict,), "a mapping")}


def check_types(cfg: TrainConfig) -> None:
    """One line naming the first option whose value has the wrong type (``img_size: "32"``), before any
    comparison with it; ``model_kwargs`` as a checkpoint's model options (types and bounds)."""
    for f in dataclasses.fields(cfg):
        v, kind = getattr(cfg, f.name), str(f.type)
        optional = kind.startswith("Optional[")
        kind = kind[len("Optional["):-1] if optional else kind
        if v is None and optional:
            continue
        types, want = _TYPES[kind]
        if not isinstance(v, types) or (isinstance(v, bool) and kind != "bool"):
            got = type(v).__name__
            article = "an" if got[0] in "aeiou" else "a"
            raise PatchcryptError(f"config option {f.name} has the wrong type: {article} {got} ({str(v)[:40]!r}), "
                                  f"not {want}")
    check_model_kwargs(cfg.model_kwargs, "config option model_kwargs")


def check_config(cfg: TrainConfig) -> None:
    """One-line errors for options that no run can use."""
    check_types(cfg)
    if cfg.model not in list_models():
        raise PatchcryptError(f"unknown model {cfg.model!r}; valid: {', '.join(list_models())}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise PatchcryptError("--epochs, --batch-size and --lr must be positive")
    if cfg.augment not in ("auto", "crop-flip", "resized-crop", "mixup", "none"):
        raise PatchcryptError(f"--augment must be auto, crop-flip, resized-crop, mixup or none, got {cfg.augment!r}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise PatchcryptError(f"--max-steps must be positive, got {cfg.max_steps}")
    if cfg.init not in ("plain", "keyed"):
        raise PatchcryptError(f"--init must be plain or keyed, got {cfg.init!r}")
    if cfg.freeze not in (None, "backbone"):
        raise PatchcryptError(f"--freeze must be backbone, got {cfg.freeze!r}")
    if not cfg.pretrained and (cfg.init == "keyed" or cfg.freeze):
        raise PatchcryptError("--init keyed and --freeze backbone need --pretrained weights")
    if cfg.clip_grad is not None and cfg.clip_grad <= 0:
        raise PatchcryptError(f"--clip-grad must be positive, got {cfg.clip_grad}")
    if cfg.eval_batch is not None and cfg.eval_batch < 1:
        raise PatchcryptError(f"--eval-batch must be positive, got {cfg.eval_batch}")
    val_fraction(cfg.val_split)  # a share out of range is one line before any data is read
    if cfg.pretrained:  # a hub name that cannot be fetched: one line before any data is read
        from .hub import resolve_pretrained

        resolve_pretrained(cfg.pretrained)



def config_changes(saved: Dict[str, Any], cfg: TrainConfig) -> list:
    """The options of ``cfg`` that differ from a run's saved config and change its result (sorted names).
    An option the saved config lacks (a run from before it existed) counts as its default."""
    defaults = TrainConfig().to_dict()
    new = cfg.to_dict()
    return sorted(k for k in new if k not in RESUME_FREE and saved.get(k, defaults[k]) != new[k])
