"""What every attack shares: the result record (scored in one vocabulary) and the applicability check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..ciphers import get_scheme
from ..errors import PatchcryptError


@dataclass
class AttackResult:
    """The attacker's output for the plain images it was handed the ciphertexts of, plus its own figures.

    Attributes:
        plain: (N, H, W, C) uint8, the truth (for scoring only).
        encrypted: (N, H', W', C') uint8, what the attacker saw.
        reconstructed: (N, H, W, C) uint8, the attacker's chosen output.
        extra: the attack's own figures (seconds, queries, ...; ``key_map_fraction`` where a key map was
            recovered and could be scored against a registered scheme's).
        candidates, state_order: when the attacker ranks the global states, its candidates are
            ``apply_state(candidates, GLOBAL_STATES[i])`` for i in ``state_order``, best first.
    """

    attack: str
    scheme: str
    plain: np.ndarray
    encrypted: np.ndarray
    reconstructed: np.ndarray
    extra: Dict[str, Any] = field(default_factory=dict)
    candidates: Optional[np.ndarray] = None
    state_order: Optional[List[int]] = None
    key_map: Optional[Any] = None    # the recovered Map (y[i] = x[g[i]] ^ m[i]) when the attack outputs one
    block_size: Optional[int] = None  # M, for the outputs that need no attack (set by the harness)
    per_image: bool = False           # every image under its own key: a global state per image (set by the harness)
    classify: Optional[Any] = None    # a reference classifier of the domain, images -> labels (set by the harness)

    def metrics(self) -> Dict[str, Any]:
        """The schema of :mod:`patchcrypt.attacks.scoring` (``SCHEMA``) plus the attack's own figures."""
        from .scoring import score

        m: Dict[str, Any] = {"attack": self.attack, "scheme": self.scheme}
        m.update({k: v for k, v in self.extra.items() if k != "key_map_fraction"})
        m.update(score(self.plain, self.reconstructed, self.candidates, self.state_order,
                       self.extra.get("key_map_fraction"), encrypted=self.encrypted, block_size=self.block_size,
                       per_image=self.per_image, classify=self.classify))
        return m

    def top_candidates(self, count: int = 4) -> List[np.ndarray]:
        """The attacker's first ``count`` candidates, each (N, H, W, C) uint8 (the chosen output first)."""
        from .scoring import GLOBAL_STATES, apply_state

        if self.candidates is None or not self.state_order:
            return [self.reconstructed]
        return [apply_state(self.candidates, GLOBAL_STATES[i]) for i in self.state_order[:count]]


def scheme_steps(scheme: str) -> set:
    return {s.symbol for s in get_scheme(scheme).steps}


def require(condition: bool, attack: str, scheme: str, reason: str) -> None:
    if not condition:
        raise PatchcryptError(f"attack {attack!r} does not apply to scheme {scheme!r}: {reason}")
