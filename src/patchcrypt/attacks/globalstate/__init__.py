"""The global state of a many-image decryption, how to score up to it, and how to choose it.

A many-image attack on a shared-key block scheme recovers every image only up to ONE state of the whole
image set that no statistic between neighbouring pixels can tell: a dihedral transform of the whole image
(8), an order of the three colour channels (6) and an inversion ``v -> 255 - v`` (2). These 96 states are
public and a person resolves them at a glance, so the suite scores an attack *up to* the state
(:func:`up_to_global`) and, separately, says how well the attacker itself picks it (:func:`rank_states`,
:func:`rank_of_true`).

One concept per module:

* :mod:`.states`: the 96 states, applying, undoing and composing them (the conventions are there);
* :mod:`.scoring`: an attacker's output scored up to the state (:func:`up_to_global`), the true state's rank;
* :mod:`.choice`: the attacker's own choice of the state from public plain images (:func:`rank_states`,
  :func:`score_states`), with the optional CNN expert in :mod:`.classifier`.

SSIM over a batch (:func:`ssim_batch`) is one of the suite's measures, in :mod:`patchcrypt.attacks.metrics`.
"""

from ..metrics import ssim_batch
from .choice import WORK_SIZE, rank_states, score_states
from .scoring import rank_of_true, up_to_global
from .states import (COLOUR_ORDERS, GLOBAL_STATES, GlobalState, StateLike, apply_state, compose, distinct_states,
                     invert_state, inverse)

__all__ = ["GlobalState", "GLOBAL_STATES", "COLOUR_ORDERS", "apply_state", "invert_state", "compose", "inverse",
           "distinct_states", "ssim_batch", "up_to_global", "rank_states", "rank_of_true", "score_states"]
