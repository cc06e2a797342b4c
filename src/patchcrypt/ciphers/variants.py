"""EtC with a subset of its steps (DESIGN §8): the per-image variants an invariant model can learn from.

Every variant keeps EtC's block scrambling and adds the per-block steps in EtC's order: ``step-bs`` (block
scrambling only, registered with the single steps), ``etc-bs-rf`` (+ rotation/flip), ``etc-bs-rf-np``
(+ negative-positive); the full ``etc`` adds the colour order. They are meant for per-image keys (``per_image=True``): every image then gets its own
block order and block states, drawn from its nonce, and nothing is shared between images. Under one shared
key they are weaker than ``etc`` (a subset of its steps) and fall to the same many-image attack.

``INVARIANT_VARIANTS`` maps each variant (``etc`` included) to the per-block group its in-block steps draw
from, in the names the invariant models use (``patchcrypt.models.vit_inv``).
"""

from __future__ import annotations

from typing import Dict, Tuple

from .base import SchemeSpec, StepSpec
from .nested import ETC_NESTED, NESTED_STEPS, PATCH_SHUFFLE, PATCH_SHUFFLE_MIX, NestedCipher
from .registry import register_scheme

_S = StepSpec
_ORIGIN = "subset of EtC (Kurihara et al. 2015) for per-image keys"

register_scheme(SchemeSpec(
    "etc-bs-rf", (_S("BS"), _S("RF")),
    "EtC's block scrambling and per-block rotation/flip (meant for per-image keys)",
    channels=(1, 3), origin=_ORIGIN))
register_scheme(SchemeSpec(
    "etc-bs-rf-np", (_S("BS"), _S("RF"), _S("NP")),
    "EtC's block scrambling, per-block rotation/flip and negative-positive (meant for per-image keys)",
    channels=(1, 3), origin=_ORIGIN))

# the published patch shuffle and the nested designs (ciphers/nested.py)
register_scheme(PATCH_SHUFFLE)
register_scheme(PATCH_SHUFFLE_MIX, NestedCipher)
register_scheme(ETC_NESTED, NestedCipher)

# variant -> the in-block steps its per-block states come from (block scrambling is in every variant)
INVARIANT_VARIANTS: Dict[str, Tuple[str, ...]] = {
    "step-bs": (),
    "etc-bs-rf": ("RF",),
    "etc-bs-rf-np": ("RF", "NP"),
    "etc": ("RF", "NP", "CS"),
}
# the patch shuffles and nested EtC -> their steps beyond the patch order ("SBS": sub-block order), the
# others acting on each m x m sub-block. A model invariant to those at m is invariant to the same steps on
# whole M x M blocks: a block's dihedral state, polarity or colour order moves its sub-blocks and gives each
# the same state.
NESTED_VARIANTS: Dict[str, Tuple[str, ...]] = {
    "patch-shuffle": (),
    "patch-shuffle-mix": ("SBS",),
    "etc-nested": ("SBS", "RF", "NP", "CS"),
}

