"""What every attack shares: the result record and the applicability check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

from ..ciphers import get_scheme
from ..errors import PatchcryptError
from ..metrics import batch_quality


@dataclass
class AttackResult:
    """Reconstructions of the plain images from what the attacker saw, plus metrics."""

    attack: str
    scheme: str
    plain: np.ndarray            # (N, H, W, C) the truth, for scoring only
    encrypted: np.ndarray        # (N, H', W', C') what the attacker saw
    reconstructed: np.ndarray    # (N, H, W, C)
    extra: Dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> Dict[str, Any]:
        m = batch_quality(self.plain, self.reconstructed)
        m.update(attack=self.attack, scheme=self.scheme, **self.extra)
        return m


def scheme_steps(scheme: str) -> set:
    return {s.symbol for s in get_scheme(scheme).steps}


def require(condition: bool, attack: str, scheme: str, reason: str) -> None:
    if not condition:
        raise PatchcryptError(f"attack {attack!r} does not apply to scheme {scheme!r}: {reason}")
