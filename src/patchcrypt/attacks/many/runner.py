"""The registered ``many`` attack: any target, its declared facts choosing the method (or the generic facts
when it declares none), the global state ranked by public images."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import numpy as np

from ...errors import PatchcryptError
from ..base import AttackResult
from ..registry import AttackOptions, Threat, register_attack
from ..target import Target
from .attack import many_image_attack
from .facts import outside_vocabulary, spec_for


def _many_applies(t: Target) -> Optional[str]:
    return spec_for(t)[1]


# images the global-state ranker looks at
RANK_IMAGES = 1000


@register_attack("many", Threat.CIPHERTEXT_MANY, "N ciphertexts under one key + public plain images: statistics "
                 "pooled over all N recover one shared permutation and flip mask (no declared facts needed)",
                 applies=_many_applies, needs_train=True, headline=("global_state_rank", "exact_images",
                                                                    "key_map_fraction"))
def run_many(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    """Encrypt ``test`` (N, H, W, C) uint8 through the target (one key, or per-image keys: the control),
    recover the shared map from the ciphertexts and the public images ``train``, and decrypt.

    The map is recovered up to one global state; the public images then rank the 96 states
    (:func:`..scoring.rank_states`), and where the method's remaining ambiguity is exactly those 96 states
    the first is applied (otherwise the method's own choice stands and the ranker orders the rest).
    """
    from ..scoring import GLOBAL_STATES, apply_state, rank_states

    if train is None or len(train) < 2:
        raise PatchcryptError("the many-image attack needs public plain images (training data)")
    spec, reason = spec_for(t)
    if reason:
        raise PatchcryptError(f"attack 'many' does not apply to scheme {t.name!r}: {reason}")
    enc = t.encrypt(test)
    res = many_image_attack(enc, train, spec, t.block_size, test.shape[1:], progress=o.progress,
                            value_maps=outside_vocabulary(t))
    base = res.decrypt(enc)
    t0 = time.perf_counter()
    order = [int(i) for i in rank_states(base[:RANK_IMAGES], train, seed=o.seed)]
    if res.composite or res.info.get("global_candidates") != len(GLOBAL_STATES):
        # the method's own choice stands: its ambiguity is not the 96 whole-image states (a composite, a
        # smaller set the facts allow, or per-channel inversions); the ranker orders the alternatives
        order = [0] + [i for i in order if i != 0]
    elif order[0] != 0:
        res = res.with_state(GLOBAL_STATES[order[0]])
    rec = base if order[0] == 0 else apply_state(base, GLOBAL_STATES[order[0]])
    extra: Dict[str, Any] = {k: v for k, v in res.info.items() if isinstance(v, (bool, int, float, str))}
    facts = "none (generic)" if t.steps is None else ("declared, outside the vocabulary (generic)"
                                                     if outside_vocabulary(t) else "declared")
    extra.update(rank_seconds=time.perf_counter() - t0, facts=facts)
    extra["seconds"] = res.info["seconds"] + extra["rank_seconds"]
    return AttackResult("many", t.name, test, enc, rec, extra, candidates=base, state_order=order, key_map=res.map)


__all__ = ["run_many", "RANK_IMAGES"]
