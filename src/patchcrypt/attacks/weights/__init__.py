"""Key recovery from a keyed model: what the server holds is enough to read the key off the weights.

A keyed ViT (:mod:`patchcrypt.models.keyed`) embeds encrypted block k with W′_k = W₀ S_k⁻¹ (S_k the block's
signed in-block permutation, input normalisation folded in) and carries the plain position embedding with
rows moved by the block permutation σ. Two attacks:

* **with the plain weights** (a public checkpoint the keyed model was made from): σ from matching position
  rows, and every block's in-block map from matching W′_k's columns to W₀'s (a column is a plain column,
  negated where the value is flipped). Exact, for shared (block-pixel) and position-wise (etc, pe) models.
* **from the keyed weights alone**:
  - position-wise models: all W′_k are one matrix under different in-block maps, so matching block k's
    columns to block 0's gives every block's map relative to block 0 — the key up to one global in-block
    state (for etc, one of its 96 states);
  - the block permutation: in a trained ViT, position embeddings of neighbouring patches are similar;
    arranging the rows on the grid so that similar rows are close (a quadratic assignment, solved by
    spectral start + pairwise swaps) gives σ up to the grid's symmetries, as far as training made the
    embedding smooth;
  - shared models (block-pixel): the trained embedding is smooth over neighbouring pixels and correlated
    across the colours of one pixel, so arranging W′'s columns on the M×M×C block the same way gives the
    pixel shuffle up to the block's symmetries, and the signs of the correlations give the flips up to
    one global negation.

Results are per-block pieces (σ, g, mask) and the compiled image map (:mod:`..keymaps`), scored against the
true map (exact share, and share up to the one global symmetry the weights cannot fix).

Modules, by concept: :mod:`.pieces` (per-block key pieces from the weights), :mod:`.arrange` (the blind
arrangement on the grid or block, a quadratic assignment), :mod:`.scoring` (scores up to the global
symmetry), :mod:`.runner` (:func:`run_weights_attack` and the registered attacks).
"""

from .arrange import arrange, grid_from_pos_embed, inblock_from_embedding
from .pieces import RecoveredBlocks, match_columns, match_rows, recover_with_plain, relative_states
from .runner import run_weights, run_weights_attack, run_weights_blind
from .scoring import global_candidates

__all__ = ["run_weights_attack", "recover_with_plain", "relative_states", "grid_from_pos_embed",
           "inblock_from_embedding", "match_columns", "match_rows", "arrange", "global_candidates",
           "RecoveredBlocks", "run_weights", "run_weights_blind"]
