"""Encrypting and decrypting data sets of image files (DESIGN §5): the data owner's tool.

- :mod:`.sources`: what a run reads (the image files of a tree, their output names and classes);
- :mod:`.staging`: where it writes (destination checks, the staging folder, the decrypt marker);
- :mod:`.engine`: the encrypt and decrypt loops.
"""

from ..codec import resize_image  # noqa: F401  (re-exported, as before)
from .engine import (CHUNK, PAUSE_ENV, PER_IMAGE_BATCH, decrypt_tree, encrypt_tree,  # noqa: F401
                     load_manifest_for)
from .sources import parse_size  # noqa: F401
from .staging import DECRYPTED_MARKER, write_decrypt_marker  # noqa: F401
