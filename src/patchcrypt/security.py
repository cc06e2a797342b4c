"""What each scheme protects, against whom: the measured figures behind the README's threat model.

These are measurements, not guarantees: every figure was printed by the benchmark named in ``SOURCES``
and is shown by ``patchcrypt schemes`` so that nobody picks a scheme without seeing how it falls. The
ciphertext-only figures come from victims and public images of different domains (CIFAR-10 32x32, M=4,
attacked with flower photos; flower photos at 128 px, M=8 and 16, attacked with CIFAR-10) and count an image
as read when it is exact up to one whole-image rotation/flip, colour order and inversion (a person reads it).
The plaintext figures are CIFAR-10 32x32, M=4, unless they say 224x224, M=16. Rerun the benchmarks to check
them; a stronger attack only lowers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

SOURCES = {
    "ciphertexts": "benchmarks/many_image_attack.py, the commands in docs/security.md (CIFAR-10 victims with "
                   "flower photos as public images; flower photos with CIFAR-10 as public images)",
    "known_pairs": "benchmarks/attack_table.py, benchmarks/plaintext_attacks.py",
    "chosen_images": "benchmarks/plaintext_attacks.py",
    "model": "benchmarks/weights_attack.py",
}


@dataclass(frozen=True)
class Exposure:
    """How one scheme with one key for all images fell to our own attacks.

    ``ciphertexts``: what the server learns from ciphertexts alone (it holds every training image and query
    under one key); ``known_pairs`` / ``chosen_images``: with plaintext; ``model``: from the keyed model.
    """

    ciphertexts: str
    known_pairs: str
    chosen_images: str
    model: str
    readable_from_ciphertexts: Optional[int] = None  # fewest ciphertexts measured to read every image, if reached


EXPOSURES: Dict[str, Exposure] = {
    "etc": Exposure(
        "every image read from 10-30 ciphertexts (exact up to a whole-image rotation/flip; photos 128 px: from "
        "30, the fewest tried)", "1 pair (224x224: 97.8% of the key from 1, all from 2)", "1 image",
        "whole key with the public plain weights; alone, every block's state relative to one", 30),
    "etc-gray": Exposure(
        "every image read from 30 ciphertexts, as the key holder decrypts it (up to a whole-image rotation/flip; "
        "the luma by the jigsaw, the 4:2:0 chroma placed by the luma); photos 128 px: SSIM 0.99 and 98.6% of "
        "chroma blocks from 300",
        "not measured (lossy colour conversion)", "not measured", "no keyed model", 30),
    "block-pixel": Exposure(
        "every image read from 30 ciphertexts (exact up to a whole-image rotation/flip; photos 128 px: from 30, "
        "the fewest tried)", "2 pairs (1 pair: 97%)", "1 image (224x224: 2)",
        "whole key with the public plain weights; not recovered from the keyed model alone", 30),
    "block-pixel-cs": Exposure(
        "every image read from 30 ciphertexts (exact up to a whole-image rotation/flip)", "not measured",
        "1 image (224x224: 2)", "whole key with the public plain weights", 30),
    "le": Exposure(
        "every upper 4-bit half from 30 ciphertexts (SSIM 0.95 up to a whole-image state); lower halves: no "
        "method yet, not evidence of strength",
        "16 pairs: 98.8% of the key, 32 pairs: 99.9%", "1 image", "no keyed model"),
    "ele": Exposure(
        "every upper 4-bit half from 1000 ciphertexts (97.5% from 100, 99.4% from 300; SSIM 0.93-0.95 up to a "
        "whole-image state); lower halves: no method yet, not evidence of strength", "32 pairs: 99.9% of the key",
        "3 images (224x224: 4)", "no keyed model"),
    "pe": Exposure(
        "whole key from 10 ciphertexts (the fewest tried); one image alone is readable after FR", "8 pairs", "1 image",
        "whole key with the public plain weights", 10),
}
# EtC's step subsets (ciphers/variants.py) are meant for per-image keys and an invariant model; under one
# shared key they fall like etc, whose steps they are a subset of (not measured separately).
for _variant in ("etc-bs-rf", "etc-bs-rf-np"):
    EXPOSURES[_variant] = Exposure(
        "not measured with one key: a subset of etc's steps (etc: every image read from 10-30 ciphertexts); use "
        "per-image keys", "not measured (a subset of etc)", "not measured (a subset of etc)",
        "with per-image keys an invariant model holds no key")

# the patch shuffles and nested EtC (ciphers/nested.py) are designs for per-image keys and a position-free ViT
for _variant in ("patch-shuffle", "patch-shuffle-mix", "etc-nested"):
    EXPOSURES[_variant] = Exposure(
        "not measured with one key (a design for per-image keys: docs/invariant.md)", "not measured",
        "not measured", "with per-image keys an invariant model holds no key")
# AprilPyone & Kiya's block-wise transformations (ciphers/published.py), measured by their cards
# (benchmarks/leaderboard.py --run: results/cards/ak-*/card.md, CIFAR-10 at 32 px, M = 4)
EXPOSURES.update({
    "ak-shuffle": Exposure("every image read from 10 ciphertexts (quick card)", "1 pair", "2 images", "not measured",
                           10),
    "ak-flip": Exposure("every image read from 3 ciphertexts (quick card)", "1 pair", "2 images", "not measured", 3),
    "ak-ffx": Exposure("every image read from 10 ciphertexts (quick card; SSIM 0.97 up to a whole-image state, a few "
                       "close values swapped: the value-map kind 'groups')", "30 pairs (one key; another: not "
                       "up to 30)", "260 images", "no keyed model", 10),
})

STEP_EXCEPTIONS = {
    "step-ps-perblock": "60% of the key map from 1,000 ciphertexts (SSIM 0.80); not exact",
}

PER_IMAGE = Exposure(
    "the many-image attack fails (no image read; SSIM <= 0.04 up to a whole-image state)", "no pair helps another image",
    "no crafted image helps another image", "no keyed model exists")


def exposure(scheme: str, per_image: bool = False) -> Optional[Exposure]:
    """The measured exposure of ``scheme`` (None for ``plain`` and single steps, which hide nothing)."""
    if per_image:
        return PER_IMAGE
    return EXPOSURES.get(scheme)


def headline(scheme: str) -> str:
    """One line for ``patchcrypt schemes``: what a party holding many ciphertexts under one key gets."""
    if scheme == "plain":
        return "nothing hidden"
    e = EXPOSURES.get(scheme)
    if scheme in STEP_EXCEPTIONS:
        return STEP_EXCEPTIONS[scheme]
    if e is None:
        return "a single step: falls to the many-image attack by 10-30 ciphertexts"
    return e.ciphertexts
