"""Ciphertext-only key recovery from many images under one key (Li & Liu 2023; jigsaw attacks on ViT encryption).

The server of this system holds every training image and every query under one key. Whatever key material
is shared across images then shows in statistics pooled over all of them:

1. **In-block stage** (block-pixel, block-pixel-cs, step-ps, step-bf): the shared pixel shuffle and flip
   mask from the correlations of in-block positions over every block of every image (:mod:`.inblock`);
   step-ps-perblock: the same per block position, pooled over the images; ele: a 4-bit map per block
   position, pooled over the images (:mod:`.ele`).
2. **Jigsaw stage** (block scrambling, per-block states): one block order and one state per block for all
   images, with edge costs summed over the images (:mod:`.jigsaw`).
3. **Global stage**: what no edge can tell — one rotation/flip of the whole image, colour order and
   inversion — by matching mean image, per-channel value histograms and channel correlations to public
   plain images (:mod:`.statistics`). A left–right mirror changes these only slightly: it is the last
   thing to fall.

First, for the block method, a split-half test of what the images share (:func:`.statistics.sharing`: pair
statistics over two disjoint halves of the images agree under one key, by chance only under per-image keys)
stops the attack before any search when nothing is shared, and says so (``early_stop`` in its info). It
decides only on 100 images or more (``SHARING_MIN_IMAGES``): on 30, a one-key substitution table per
coordinate can look as unshared as per-image keys.

Before these, for a block-local scheme whose value maps are not in the step vocabulary (no declared steps,
or a step of its own such as "XOR"), the **value-map stage** recovers per-coordinate XOR or additive
masks, one substitution table, or a table shared by a group of in-block coordinates beside plain ones
(:mod:`.tables`), from the ciphertexts alone and strips them (:mod:`.valuemaps`).

Modules, by concept: :mod:`.facts` (which method a scheme's step facts call for), :mod:`.blocks` (the
three stages for block schemes), :mod:`.valuemaps` (value maps of a scheme's own), :mod:`.composite` (etc-gray: the luma by the jigsaw), :mod:`.chroma`
(etc-gray: 4:2:0 chroma placed by the luma), :mod:`.pixel` (pe), :mod:`.nibble` (le), :mod:`.ele` (ele: a
4-bit map per block position, then the jigsaw),
:mod:`.result` (the recovered map), :mod:`.attack` (:func:`many_image_attack`, :func:`score_key_map`),
:mod:`.runner` (the registered ``many`` attack). The recovered key is returned in the compiled form of
:class:`~patchcrypt.ciphers.program.Map` (y[i] = x[g[i]] XOR m[i] over the flattened image), so it can be
scored entry by entry against the true map (:func:`score_key_map`, scoring only).
"""

from .attack import many_image_attack, score_key_map
from .facts import generic_spec, method_for, supported
from .result import ManyImageResult
from .runner import RANK_IMAGES, run_many

__all__ = ["many_image_attack", "ManyImageResult", "score_key_map", "run_many", "method_for", "supported",
           "generic_spec", "RANK_IMAGES"]
