"""Model zoo: isotropic networks (ViT, ConvMixer) and the baselines (ResNet-18, with adaptation network).

``create_model(name, **kw)`` and ``list_models(pattern)`` as timm; importing this package registers all.
Layout as timm's: ``registry`` (names), ``factory`` (``create_model``), ``pretrained`` (``load_weights``, the
one weights loader), ``checkpoint`` (save / load / ``build_model``).
"""

from . import convmixer, resnet, vit, vit_inv  # noqa: F401  (registration)
from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .factory import create_model
from .layers import BlockwiseEmbed, InputNorm, KeyedEmbed, embed_matrix, set_embed_matrix
from .pretrained import load_weights
from .registry import list_models, model_entrypoint, register_model

__all__ = ["create_model", "list_models", "register_model", "model_entrypoint", "load_weights", "save_checkpoint",
           "load_checkpoint", "build_model", "check_block_size", "BlockwiseEmbed", "KeyedEmbed", "InputNorm", "embed_matrix",
           "set_embed_matrix"]


def check_block_size(model, block_size) -> None:
    """Clear error unless the model's patch size equals the cipher's block size (isotropic models)."""
    from ..errors import PatchcryptError

    patch = getattr(model, "patch_size", None)
    if block_size is None or patch is None:
        return
    if patch != block_size:
        kind = "patch size" if getattr(model, "is_isotropic", False) else "adaptation block size"
        raise PatchcryptError(f"the model's {kind} is {patch} but the data's block size is {block_size}; "
                              "they must be equal")
