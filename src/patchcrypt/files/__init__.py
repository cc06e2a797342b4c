"""Encrypting and decrypting data sets of image files (DESIGN §5): the data owner's tool.

- :mod:`.sources`: what a run reads (one plan over an image file, a tree or plain shards; an encrypted tree's
  files or a shard set's samples, checked, for decrypt);
- :mod:`.staging`: where it writes (destination checks, the staging folder, the decrypt marker);
- :mod:`.engine`: the one encrypt loop and the one decrypt loop;
- :mod:`.runs`: one process, torchrun ranks, ``--part I/N``; :func:`encrypt` and :func:`decrypt` are the calls
  behind ``patchcrypt encrypt`` and ``patchcrypt decrypt``.
"""

from ..codec import resize_image  # noqa: F401  (re-exported, as before)
from .engine import CHUNK, PAUSE_ENV, PER_IMAGE_BATCH, EncryptOptions, load_manifest_for  # noqa: F401
from .runs import (decrypt, decrypt_shards, decrypt_tree, encrypt, encrypt_split, encrypt_tree,  # noqa: F401
                   parse_part, parse_salt)
from .sources import parse_size  # noqa: F401
from .staging import DECRYPTED_MARKER, write_decrypt_marker  # noqa: F401
