"""The nested cells at other sub-block sizes (issue 29): ``etc-nested`` at M = 8 with m = 2 and m = 8.

``benchmarks/invariant_table.py`` appends :data:`NESTED_M_CELLS` to its ``CELLS`` (run with ``--dataset
cifar8``, ``--only "m=2, mean pool"`` or ``--only "m=8, mean pool"``). The model's ``sub_block`` is also
the cipher's: a run encrypts a nested scheme at its model's m (``train.inputs.scheme_options``).

m = 2: every 8×8 patch a bag of 16 canonical 2×2 sub-blocks. m = 8 = M: one sub-block per patch, so the
sub-block order is trivial and the scheme is the patch order plus one dihedral state, polarity and colour
order per patch — per-image ``etc`` at M = 8 under ``etc-nested``'s key labels; the nested model's token is
its canonical patch through the same inner map, GELU and projection as at m = 2 and 4.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

INV_VIT = "vit_pico_inv_patch4_32"   # invariant_table.py's INV_VIT (patch size set per data set)

# label, model, scheme, per_image, model kwargs: the same shape as invariant_table.CELLS
NESTED_M_CELLS: List[Tuple[str, str, str, bool, Dict]] = [
    (f"inv ViT (etc-nested group, m={m}, mean pool), per-image etc-nested", INV_VIT, "etc-nested", True,
     {"invariance": "etc-nested", "sub_block": m})
    for m in (2, 8)
]
