"""Which method of the many-image attack recovers a scheme's key, read off the facts of its steps (flags of
:class:`~patchcrypt.ciphers.StepSpec`), never its name, so a user's scheme is rated by the same rules."""

from __future__ import annotations

from typing import Optional, Tuple

from ...ciphers import get_scheme, list_ciphers
from ...ciphers.base import STEP_FACTS, SchemeSpec, StepSpec
from ..target import Target


# The steps each method models: block moves, in-block shuffles and flips over bytes (the general method);
# block moves, rotations/flips and inversions of a grayscale composite; per-value inversion and per-pixel
# colour order (pixel-based schemes); one 4-bit map shared by every block.
def blocks_models(step: StepSpec) -> bool:
    """BS, RF, NP, BF, CS, PS: a move or flip of bytes that keeps every value in its block."""
    return step.value_map and not step.nibbles and not step.inverts_values


def composite_models(step: StepSpec) -> bool:
    """BS, RF, NP: what a grayscale composite (one channel) can go through."""
    return step.block_state and not step.shuffles_colours


def pixel_models(step: StepSpec) -> bool:
    """NPV, CS: per-value inversion and colour order, the steps of pixel-based encryption."""
    return step.inverts_values or step.shuffles_colours


def nibble_models(step: StepSpec) -> bool:
    """LE with one key for every block (le)."""
    return step.nibbles and step.same_for_every_block


def nibble_blocks_models(step: StepSpec) -> bool:
    """LE with a key per block position, and block moves (ele): every block position sees one 4-bit map."""
    return step.nibbles or (step.moves_blocks and step.value_map and not step.inverts_values)


def method_for(spec: SchemeSpec) -> Optional[str]:
    """Which method of this package recovers the scheme's key, read off its facts: "composite", "pixel",
    "nibble", "nibble-blocks", "blocks", or None (no key, or steps no method models)."""
    if not spec.steps:
        return None
    if spec.composite:
        method, models = "composite", composite_models
    elif spec.pixel_based:
        method, models = "pixel", pixel_models
    elif spec.unit == "nibble" and not all(nibble_models(s) for s in spec.steps):
        method, models = "nibble-blocks", nibble_blocks_models
    elif spec.unit == "nibble":
        method, models = "nibble", nibble_models
    else:
        method, models = "blocks", blocks_models
    return method if all(models(s) for s in spec.steps) else None


def supported() -> Tuple[str, ...]:
    """The registered schemes the many-image attack has a method for."""
    return tuple(n for n in list_ciphers(include_steps=True) if method_for(get_scheme(n)) is not None)


def generic_spec(name: str) -> SchemeSpec:
    """The facts assumed for a scheme that declares none: every block-local move and flip the block method
    models at once (blocks scrambled, each block rotated/flipped, negated and colour-shuffled on its own,
    one in-block pixel shuffle and one flip mask shared by every block). Any scheme of that form -- one
    fixed permutation and one fixed negation mask over M x M blocks -- is recovered; declaring fewer steps
    only makes it faster."""
    return SchemeSpec(name, (StepSpec("BS"), StepSpec("RF"), StepSpec("NP"), StepSpec("CS"), StepSpec("PS", True),
                             StepSpec("BF", True)), "generic: block-local moves and flips")


def outside_vocabulary(t: Target) -> bool:
    """Whether a target's value maps are unknown to the step vocabulary: it declares no steps, or a step no
    method models (a user's "XOR", "SUBST"); the value-map stage (:mod:`.valuemaps`) then runs first."""
    if t.steps is None:
        return True
    return any(s.symbol not in STEP_FACTS for s in t.spec.steps) and t.spec.unit == "byte" and \
        not t.spec.pixel_based and not t.composite


def moves_spec(name: str, invert_blocks: bool, shuffle: bool) -> SchemeSpec:
    """The facts assumed once value maps are stripped: every block-local move (blocks scrambled, each
    rotated/flipped and colour-shuffled on its own; with ``shuffle``, one in-block pixel shuffle for every
    block), and per-block inversions where the stripped values are known only up to one (``invert_blocks``:
    an xor mask per block)."""
    steps = (StepSpec("BS"), StepSpec("RF"), StepSpec("CS")) + ((StepSpec("PS", True),) if shuffle else ())
    return SchemeSpec(name, steps + ((StepSpec("NP"),) if invert_blocks else ()),
                      "generic: block-local moves after value maps")


def spec_for(t: Target) -> Tuple[Optional[SchemeSpec], Optional[str]]:
    """(facts the attack runs on, None) or (None, the reason it does not apply)."""
    if t.steps is not None and not t.steps:
        return None, "there is no key to recover"
    if t.composite and not t.registered:
        return None, "the ciphertext has another shape than the image (a composite); no method without its conversion"
    if t.steps is not None and method_for(t.spec) is None and outside_vocabulary(t):
        return generic_spec(t.name), None
    if t.steps is None:
        if t.spec.unit == "nibble":
            return None, "no method for undeclared steps on 4-bit halves"
        return generic_spec(t.name), None
    if method_for(t.spec) is None:
        return None, ("no method for these steps yet (a step no method models: "
                      f"{', '.join(sorted(t.steps))}); it handles " + ", ".join(supported()))
    return t.spec, None


__all__ = ["method_for", "supported", "generic_spec", "spec_for", "outside_vocabulary", "moves_spec", "blocks_models", "composite_models",
           "pixel_models", "nibble_models", "nibble_blocks_models"]
