"""Training on encrypted images: ``patchcrypt train`` (one process, or DDP under ``torchrun``).

Read top to bottom: resolve the config → load data → decide how images are encrypted → build the model →
epochs of :func:`~patchcrypt.train.loop.train_step` → evaluate → checkpoint. DDP turns on only when torchrun
sets ``RANK``/``WORLD_SIZE``; every rank derives the same cipher from the same key file.

Three ways in (DESIGN §6, §7):
1. plain data + key (data owner): augmentation (random crop with padding, flip) on uint8 batches *before*
   encryption, then the batch is encrypted on the fly on its device (:class:`patchcrypt.transforms.Encrypt`);
2. a tree written by ``patchcrypt encrypt`` (server): no key; only augmentation valid on encrypted images
   (mixup commutes with the schemes' affine maps; none by default);
3. EtC JPEG (``--jpeg-quality Q``): encrypt → JPEG → decode per batch at train time, and once for the test set
   (:class:`patchcrypt.transforms.JpegRoundTrip`, decoded as ``patchcrypt decrypt`` decodes the record's JPEGs).

Fine-tuning (``--pretrained PATH``, :func:`prepare_finetune`): the pretrained weights (timm layout or a
patchcrypt run) are loaded into the model (head replaced when the class count differs, position
embedding resized), the model is re-expressed on centred inputs (x/255 − 0.5)/0.5 (the same function), and
with ``--init keyed`` transformed with the owner's key so that fine-tuning on encrypted images follows the
keyed image of plain fine-tuning (see :mod:`patchcrypt.models.keyed`). ``--init plain`` (the paper's method)
fine-tunes the plain weights directly on encrypted images. ``--freeze backbone`` trains the head only.

The GPU recipe (``benchmarks/gpu_accuracy.py``, all off by default): ``data_on_device`` (the training images
held on the device; batch gather, crop and flip there, :mod:`patchcrypt.augment`), ``amp`` (bf16 autocast),
``fused`` (fused AdamW) and ``clip_grad`` (global gradient-norm clipping).

Modules: :mod:`.config` (TrainConfig), :mod:`.inputs` (split, encryption pipeline), :mod:`.model` (model,
optimiser, schedule), :mod:`.finetune`, :mod:`.run` (run folder, resume, checkpoints, metrics),
:mod:`.dist` (torchrun), :mod:`.loop` (:func:`train` and its epoch).
"""

from ..augment import random_crop_flip as augment_crop_flip
from ..inference import predict_logits, to_tensor
from .config import RESUME_FREE, TrainConfig, check_config
from .dist import Dist, is_main_process, setup_distributed
from .finetune import freeze_backbone, prepare_finetune
from .inputs import Pipeline, resolve_encryption, split_sets
from .loop import train
from .model import build_model, make_optimizer, make_scheduler, weight_decay_groups

__all__ = ["TrainConfig", "train", "resolve_encryption", "Pipeline", "prepare_finetune", "freeze_backbone",
           "make_optimizer", "make_scheduler", "weight_decay_groups", "is_main_process", "setup_distributed",
           "Dist", "augment_crop_flip", "split_sets", "build_model", "check_config", "RESUME_FREE",
           "predict_logits", "to_tensor"]
