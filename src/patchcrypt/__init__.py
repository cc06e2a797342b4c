"""patchcrypt: privacy-preserving image classification with block-wise encrypted images.

A data owner encrypts images block-wise with a secret :class:`Key`; isotropic networks (ViT, ConvMixer)
train and classify the encrypted images directly.
"""

from .errors import KeyMismatchError, PatchcryptError
from .keys import Key

__version__ = "0.1.0"

__all__ = ["Key", "PatchcryptError", "KeyMismatchError", "__version__"]
