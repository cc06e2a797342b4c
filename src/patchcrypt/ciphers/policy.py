"""Scheme policy: which encryption a data owner may send to a server (the client's rules, kept by the schemes).

A client refuses, before any image leaves, a scheme that hides little of an image (``plain``, a single step:
:attr:`SchemeSpec.weak`) unless the owner allows it, and a block size the scheme does not accept.

>>> check_owner_choice("block-pixel", 16)
16
>>> is_weak_scheme("step-bs"), is_weak_scheme("etc")
(True, False)
"""

from __future__ import annotations

from typing import Optional

from ..errors import PatchcryptError
from .registry import get_scheme


def is_weak_scheme(scheme: str) -> bool:
    """``plain`` (no encryption) and the single steps (``step-*``), which hide little of an image."""
    return get_scheme(scheme).weak


def check_owner_choice(scheme: Optional[str], block_size: Optional[int], allow_weak_scheme: bool = False) -> int:
    """Validate the encryption the owner chose (never the server); returns the block size to use.

    Raises PatchcryptError when no scheme is given, the scheme is unknown or weak (unless allowed), or the
    block size is missing or not one the scheme accepts (:meth:`SchemeSpec.resolve_block_size`).
    """
    if not scheme:
        raise PatchcryptError("say how your images are encrypted: --scheme and --block-size (or a --config file "
                              "with scheme: and block_size:); the server's announcement is not trusted")
    spec = get_scheme(scheme)
    if spec.weak and not allow_weak_scheme:
        what = "is a single step that leaves images legible" if spec.steps else "sends images unencrypted"
        raise PatchcryptError(f"scheme {scheme!r} {what}; refusing (pass --allow-weak-scheme to send them anyway)")
    return spec.resolve_block_size(block_size)
