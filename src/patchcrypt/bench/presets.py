"""Presets of ``patchcrypt bench``: how far each ladder climbs, which attacks run, how the accuracy is measured.

``quick`` rates a 32-px design on the victims' own domain in minutes on two CPU cores: the ciphertext-only
ladder to 1,000 images (stopped once broken), chosen-plaintext once, known pairs up to 30, and the accuracy
of a small model trained for a short while on a subset, plain and encrypted alike (the cost, not the best
accuracy: the card says so). ``full`` climbs to 3,000 images, adds the learned attacks, attacks photo domains
at 224 px and trains longer (quick: 2,000 training images, 2 epochs; full: all of them, 30 epochs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Optional, Tuple

from ..errors import PatchcryptError


@dataclass(frozen=True)
class Preset:
    """What one card measures.

    Args:
        name: ``quick`` or ``full`` (or a custom name for tests).
        ladder_max: the largest rung of the images-to-break ladder.
        attacks: the ciphertext-only attacks climbed up the ladder.
        max_single: attacks that solve each image alone (the jigsaws) get at most this many images per rung.
        cpa_images: victims of the chosen-plaintext attack (queries are counted, not images).
        pairs_max: the largest rung of the pairs-to-break ladder; ``kpa_images`` victims.
        public: the attacker's own plain images (another domain) loaded per domain.
        train_images, test_images, epochs, batch_size, lr: the accuracy run (one model, plain and encrypted).
        img_size: the side photo domains are brought to (shorter side resized, centre crop); None: as stored.
        seed: seeds the image choice, the throwaway key's use and the model's initialisation.
    """

    name: str
    ladder_max: int = 1000
    attacks: Tuple[str, ...] = ("fr", "jigsaw", "hjigsaw", "many")
    max_single: int = 4
    cpa_images: int = 10
    pairs_max: int = 30
    kpa_images: int = 10
    public: int = 1000
    train_images: int = 2000
    test_images: int = 1000
    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    img_size: Optional[int] = None
    seed: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


PRESETS: Dict[str, Preset] = {
    "quick": Preset("quick"),
    "full": Preset("full", ladder_max=3000, attacks=("fr", "jigsaw", "hjigsaw", "many", "gan", "itn"), max_single=8,
                   cpa_images=100, pairs_max=100, kpa_images=100, public=2000, train_images=50000,
                   test_images=10000, epochs=30, img_size=224),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """A preset by name with ``overrides`` applied (one-line error on an unknown name or field)."""
    if name not in PRESETS:
        raise PatchcryptError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    try:
        return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    except TypeError as exc:
        raise PatchcryptError(f"preset {name}: {exc}") from None


__all__ = ["Preset", "PRESETS", "get_preset"]
