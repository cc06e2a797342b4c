"""The many-image attack as a function: ciphertexts under one key and public plain images in, the recovered
key map out (the method chosen by the scheme's facts, :mod:`.facts`)."""

from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ...ciphers import get_scheme
from ...ciphers.base import SchemeSpec
from ...errors import PatchcryptError
from .blocks import attack_blocks
from .composite import attack_gray
from .ele import attack_ele
from .facts import method_for, supported
from .nibble import attack_le
from .pixel import attack_pe
from .result import ManyImageResult
from .statistics import SHARING_MIN_IMAGES, nothing_shared, sharing
from .valuemaps import attack_value_maps


def many_image_attack(ciphertexts: np.ndarray, public: np.ndarray, scheme: Union[str, SchemeSpec], block_size: int,
                      plain_shape: tuple, progress: Optional[bool] = None, value_maps: bool = False) -> ManyImageResult:
    """Recover the key map of ``scheme`` from N ciphertexts under one key and public plain images.

    Args:
        ciphertexts: (N, H', W', C') uint8 as the scheme produces them, all under one key.
        public: (P, H, W, C) uint8 plain natural images (resized to ``plain_shape`` if they differ).
        scheme: a registered name or the facts of a scheme (:class:`SchemeSpec`, e.g. a user scheme's, or
            :func:`generic_spec` when it declared none); block_size: M.
        plain_shape: (H, W, C) of the plain images.
        value_maps: first recover and strip value maps of the scheme's own (per-coordinate XOR or additive
            masks, one substitution table; :mod:`.valuemaps`), for block schemes whose steps are not declared
            in the vocabulary.
    Returns:
        :class:`ManyImageResult` (the recovered forward map and ``decrypt``).
    """
    spec = get_scheme(scheme) if isinstance(scheme, str) else scheme
    scheme = spec.name
    method = method_for(spec)
    if method is None:
        raise PatchcryptError(f"the many-image attack has no method for scheme {scheme!r} "
                              f"(it handles {', '.join(supported())})")
    ciphertexts = np.asarray(ciphertexts)
    if ciphertexts.dtype != np.uint8 or ciphertexts.ndim != 4 or len(ciphertexts) < 2:
        raise PatchcryptError("ciphertexts must be (N, H, W, C) uint8 with N >= 2")
    plain_shape = tuple(int(v) for v in plain_shape)
    public = _fit_public(np.asarray(public), plain_shape)
    say = (lambda *a: print("many-image attack:", *a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)
    t0 = time.perf_counter()
    shared = sharing(ciphertexts, block_size) if method == "blocks" and len(ciphertexts) >= SHARING_MIN_IMAGES \
        else None
    if shared is not None and nothing_shared(shared):
        res = _nothing_shared(ciphertexts, scheme, block_size, plain_shape, shared, say)
    elif method == "composite":
        res = attack_gray(ciphertexts, public, scheme, block_size, plain_shape, say)
    elif method == "pixel":
        res = attack_pe(ciphertexts, public, scheme, plain_shape, say)
    elif method == "nibble-blocks":
        res = attack_ele(ciphertexts, public, scheme, block_size, plain_shape, say)
    elif method == "nibble":
        res = attack_le(ciphertexts, public, scheme, block_size, plain_shape, say)
    elif value_maps:
        res = attack_value_maps(ciphertexts, public, scheme, spec, block_size, plain_shape, say)
    else:
        res = attack_blocks(ciphertexts, public, scheme, spec, block_size, plain_shape, say)
    res.info["seconds"] = time.perf_counter() - t0
    res.info["n_images"] = int(len(ciphertexts))
    res.info["method"] = method
    if shared is not None:
        res.info.update(sharing_r=shared["r"], sharing_equal_r=shared["equal_r"], sharing_null=shared["null"],
                        sharing_coords=shared["coords"], shared_across_images=not nothing_shared(shared))
    res.composite = bool(spec.composite)
    return res


def _nothing_shared(y: np.ndarray, scheme: str, m: int, plain_shape, shared: Dict[str, float],
                    say) -> ManyImageResult:
    """The early stop: the ciphertexts share nothing across images (:func:`.statistics.sharing`), so there is
    no one map to search for; the output is the ciphertexts as they stand (the identity map), said so."""
    keyed = tuple(int(v) for v in y.shape[1:])
    d = int(np.prod(keyed))
    say(f"nothing shared across the {len(y)} images (split-half agreement of pair correlations "
        f"{shared['r']:.3f}, of equal pairs {shared['equal_r']:.3f}; chance {shared['null']:.3f}): "
        "per-image keys, no search")
    info = {"shared_across_images": False,
            "early_stop": "nothing shared across images (per-image keys): no one key map to search for; "
                          "the output is the ciphertext as it stands"}
    return ManyImageResult(scheme, m, tuple(plain_shape), keyed, "byte", np.arange(d, dtype=np.int64),
                           np.zeros(d, dtype=np.uint8), info)


def _fit_public(public: np.ndarray, shape: Tuple[int, int, int]) -> np.ndarray:
    if public.ndim != 4 or public.dtype != np.uint8 or len(public) < 2:
        raise PatchcryptError("public images must be (P, H, W, C) uint8 with P >= 2")
    if public.shape[3] != shape[2]:
        raise PatchcryptError(f"public images have {public.shape[3]} channels, the plain images {shape[2]}")
    if public.shape[1:3] == shape[:2]:
        return public
    from PIL import Image

    sq = lambda a: a[..., 0] if a.shape[2] == 1 else a  # noqa: E731
    out = [np.asarray(Image.fromarray(sq(p)).resize((shape[1], shape[0]), Image.BICUBIC)) for p in public]
    return np.stack(out).reshape(len(public), *shape)


def score_key_map(recovered: ManyImageResult, cipher, plain_shape: tuple, nonce: bytes = b"") -> Dict[str, Any]:
    """Compare a recovered map with the true one (scoring only: this reads the key).

    Returns ``key_map_fraction`` (entries where both g and xor are right), ``exact_key``, and for nibble
    schemes ``upper_half_fraction`` (the entries that carry a most significant half).
    """
    shape = recovered.keyed_shape if recovered.composite else tuple(plain_shape)
    true = cipher.key_map(shape, nonce)   # composites: over the composite the keyed steps act on
    g, m = np.asarray(recovered.g), np.asarray(recovered.xor)
    if g.shape != true.g.shape:
        raise PatchcryptError(f"recovered map has {g.size} entries, the true one {true.g.size}")
    ok = (g == true.g) & (m == true.m)
    out = {"key_map_fraction": float(ok.mean()), "exact_key": bool(ok.all())}
    if recovered.unit == "nibble":
        out["upper_half_fraction"] = float(ok[true.g % 2 == 0].mean())
    return out


__all__ = ["many_image_attack", "score_key_map"]
