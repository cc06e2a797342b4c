"""Model zoo: isotropic networks (ViT, ConvMixer) and the baselines (ResNet-18, with adaptation network).

``create_model(name, **kw)`` and ``list_models(pattern)`` as timm; importing this package registers all.
Layout as timm's: ``registry`` (names), ``factory`` (``create_model``), ``pretrained`` (``load_weights``, the
one weights loader), ``checkpoint`` (save / load / ``build_model``).
"""

from . import convmixer, resnet, vit, vit_inv  # noqa: F401  (registration)
from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .factory import create_model
from .layers import BlockwiseEmbed, InputNorm, KeyedEmbed, check_block_size, embed_matrix, set_embed_matrix
from .pretrained import load_weights
from .registry import list_models, model_entrypoint, register_model

__all__ = ["create_model", "list_models", "register_model", "model_entrypoint", "load_weights", "save_checkpoint",
           "load_checkpoint", "build_model", "check_block_size", "BlockwiseEmbed", "KeyedEmbed", "InputNorm",
           "embed_matrix", "set_embed_matrix"]
