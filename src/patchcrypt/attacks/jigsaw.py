"""Jigsaw-puzzle attack (Chuman, Kurihara, Kiya; extended solver): reassemble the blocks of one image.

Blocks are pieces; a piece may have been rotated/flipped (8 states), negative-positive transformed (2) and
colour-shuffled (6), as the scheme allows: up to 96 states. For every piece in every state the four edges
and their first-order predictions (2·edge − next row) are precomputed, so the dissimilarity of two pieces
side by side is a prediction error in both directions (in the spirit of Gallagher's MGC, with a squared
error). A greedy placer grows one connected assembly from the most confident matches, keeping it inside the
image's block grid. Vectorised over all pieces and states: every open slot keeps its cheapest state per
piece, so choosing the next placement scans n values per slot, and a placed variant's cost vectors are made
once per growth; 196 pieces × 96 states at 224×224 in about 4 s of CPU.

The result is determined up to one global state (the whole image rotated, flipped, negated or
colour-shuffled). An attacker resolves it by looking at the few candidates; for scoring, the candidate
closest to the plain image is taken, as the literature scores jigsaw attacks.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from typing import AbstractSet, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from ..blocks import merge_blocks, split_blocks
from ..ciphers.base import StepSpec
from ..errors import PatchcryptError
from ..metrics import ssim
from .base import AttackResult, require, scheme_steps
from .metrics import jigsaw_scores
from .registry import AttackOptions, Threat, needs_steps, register_attack
from .target import Target
from .placement import COLOUR_ORDERS, State, grow, seed_order, state_list, transform


def _facts(symbols: Iterable[str]) -> List[StepSpec]:
    """The steps of these symbols, whose facts (``block_state``, ``rotates_blocks``, ...) the solver reads."""
    return [StepSpec(s) for s in symbols]


def states_for(scheme: Union[str, AbstractSet[str]]) -> List[State]:
    """The per-block states (dihedral, negated, colour order) the scheme (a name or its step symbols) can
    produce."""
    steps = _facts(scheme_steps(scheme) if isinstance(scheme, str) else set(scheme))
    return state_list(any(s.rotates_blocks for s in steps), any(s.inverts_blocks for s in steps),
                      any(s.shuffles_colours for s in steps))


def _edges(variants: np.ndarray) -> Dict[str, np.ndarray]:
    """Edges and predictions of (V, M, M, C) blocks, each flattened to (V, M·C)."""
    v = variants
    flat = lambda a: a.reshape(len(v), -1)  # noqa: E731
    return {"top": flat(v[:, 0]), "top_pred": flat(2 * v[:, 0] - v[:, 1]),
            "bottom": flat(v[:, -1]), "bottom_pred": flat(2 * v[:, -1] - v[:, -2]),
            "left": flat(v[:, :, 0]), "left_pred": flat(2 * v[:, :, 0] - v[:, :, 1]),
            "right": flat(v[:, :, -1]), "right_pred": flat(2 * v[:, :, -1] - v[:, :, -2])}


def _cost_function(image: np.ndarray, block_size: int, states) -> Tuple[Callable[[int, str], np.ndarray], int, int]:
    """The edge dissimilarity of one (H, W, C) image's pieces in every state: ``cost_to(variant, side)`` ((n·S,)
    float32, every variant put on ``side`` of ``variant``), and n, S."""
    h, w, c = image.shape
    m = block_size
    n, s = (h // m) * (w // m), len(states)
    pieces = split_blocks(image[None].astype(np.float32), m)[0]
    variants = np.stack([transform(pieces, st) for st in states], axis=1).reshape(n * s, m, m, c)
    e = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in _edges(variants).items()}
    sq = {k: (v * v).sum(1) for k, v in e.items()}

    def cost_to(placed_var: int, side: str) -> np.ndarray:
        """Dissimilarity of every variant placed on ``side`` of ``placed_var`` (vector over variants)."""
        a_edge, a_pred, b_edge, b_pred = _SIDES[side]
        # ||a_pred - b||² + ||b_pred - a||², expanded so the work is two matrix-vector products
        d1 = (a := e[a_pred][placed_var]) @ a - 2 * e[b_edge] @ a + sq[b_edge]
        d2 = sq[b_pred] - 2 * e[b_pred] @ e[a_edge][placed_var] + sq[a_edge][placed_var]
        return d1 + d2

    return cost_to, n, s


_SIDES = {"right": ("right", "right_pred", "left", "left_pred"), "left": ("left", "left_pred", "right", "right_pred"),
          "below": ("bottom", "bottom_pred", "top", "top_pred"), "above": ("top", "top_pred", "bottom", "bottom_pred")}


def _one_thread():
    """BLAS on one thread: the solver makes thousands of small matrix-vector products, which threads only
    slow down (on 2 shared cores, 10× the CPU time); the products and their results are the same."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def solve(image: np.ndarray, block_size: int, states, restarts: int = 6) -> Tuple[np.ndarray, np.ndarray]:
    """Reassemble one (H, W, 3) image. Returns piece (gh, gw) and state index (gh, gw) per grid position.

    The greedy growth is started from ``restarts`` seed pieces (the ones with the most confident best
    match); the assembly with the lowest total dissimilarity between neighbours is kept. Within one growth a
    placed variant's cost vectors are computed once (n·4 vectors of n·S float32 at most: 59 MB at 224×224,
    M = 16, 96 states).
    """
    h, w, _ = image.shape
    m = block_size
    if h % m or w % m:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    gh, gw = h // m, w // m
    with _one_thread():
        cost_to, n, s = _cost_function(image, m, states)
        best = None
        for seed in seed_order(cost_to, n, s)[:restarts]:  # in state 0, which fixes the global frame
            cached = functools.lru_cache(maxsize=None)(cost_to)   # per growth: its placed variants only
            region = grow(cached, int(seed) * s, n, s, gh, gw, dtype=np.float32)
            total = _total_cost(region, cached)
            if best is None or total < best[0]:
                best = (total, region)
    region = best[1]
    return region // s, region % s


def _total_cost(region: np.ndarray, cost_to) -> float:
    """Sum of the dissimilarities of every pair of neighbours in a (gh, gw) grid of variants."""
    total = 0.0
    for y in range(region.shape[0]):
        for x in range(region.shape[1]):
            if x + 1 < region.shape[1]:
                total += float(cost_to(int(region[y, x]), "right")[region[y, x + 1]])
            if y + 1 < region.shape[0]:
                total += float(cost_to(int(region[y, x]), "below")[region[y + 1, x]])
    return total


def assemble(image: np.ndarray, block_size: int, states, piece: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 image whose grid cell (y, x) is block ``piece[y, x]`` of ``image`` in state
    ``states[state[y, x]]``."""
    h, w, _ = image.shape
    pieces = split_blocks(image[None], block_size)[0]
    out = np.stack([transform(pieces[p], states[st]) for p, st in zip(piece.reshape(-1), state.reshape(-1))])
    return merge_blocks(out[None], h, w)[0]


def _global_candidates(img: np.ndarray, piece: np.ndarray, states):
    """The image and placement under every global state (all 8 dihedral states on square grids, the 4 that
    keep the shape otherwise; colour orders on colour images)."""
    for r in (range(8) if img.shape[0] == img.shape[1] else (0, 2, 4, 6)):
        g_img = np.rot90(img, r % 4)
        g_piece = np.rot90(piece, r % 4)
        if r >= 4:
            g_img, g_piece = g_img[:, ::-1], g_piece[:, ::-1]
        for neg in (False, True):
            for order in (COLOUR_ORDERS if img.shape[2] == 3 else [(0,)]):
                v = 255 - g_img if neg else g_img
                yield np.ascontiguousarray(v[..., list(order)]), np.ascontiguousarray(g_piece)


def why_not_jigsaw(steps: AbstractSet[str]) -> Optional[str]:
    """None when the solver models every step in ``steps``, else the reason it does not apply."""
    facts = _facts(set(steps))
    if not any(s.moves_blocks for s in facts):
        return "there are no scrambled blocks to reassemble"
    # the solver models block moves and the per-block states; any other step changes values inside a block
    others = sorted(s.symbol for s in facts if not s.block_state)
    if others:
        return (f"values inside each block are shuffled or changed individually ({', '.join(others)}), so block "
                "edges carry no match")
    return None


def jigsaw_attack(plain: np.ndarray, encrypted: np.ndarray, scheme: str, block_size: int,
                  block_source: Optional[np.ndarray] = None, steps: Optional[AbstractSet[str]] = None,
                  progress: Optional[bool] = None) -> AttackResult:
    """Solve every encrypted image uint8 (N, H, W, C), each on its own (so per-image keys change nothing);
    ``block_source[k]`` = plain block of encrypted block k (for the Dc/Nc/Lc scores; without it only
    SSIM/PSNR). ``steps``: the scheme's step symbols (default: read off the registered scheme ``scheme``).
    ``progress``: a line per image on stderr with the time left."""
    steps = scheme_steps(scheme) if steps is None else set(steps)
    reason = why_not_jigsaw(steps)
    require(reason is None, "jigsaw", scheme, reason or "")
    states = states_for(steps)
    t0 = time.perf_counter()
    recs, scores = [], []
    for p_img, e_img in zip(plain, encrypted):
        piece, state = solve(e_img, block_size, states)
        img = assemble(e_img, block_size, states, piece, state)
        best = None
        for cand, cand_piece in _global_candidates(img, piece, states):
            s_val = ssim(p_img, cand)
            if best is None or s_val > best[0]:
                best = (s_val, cand, cand_piece)
        _, cand, cand_piece = best
        gh, gw = cand_piece.shape
        if block_source is not None:
            scores.append(jigsaw_scores(block_source[cand_piece.reshape(-1)], gh, gw))
        recs.append(cand)
        if progress:
            done, spent = len(recs), time.perf_counter() - t0
            print(f"  jigsaw: {done}/{len(plain)} images, about {spent / done * (len(plain) - done):.0f} s left",
                  file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    extra = {k: float(np.mean([s[k] for s in scores])) for k in ("dc", "nc", "lc")} if scores else {}
    extra.update(states=len(states), seconds=seconds, seconds_per_image=seconds / len(plain))
    return AttackResult("jigsaw", scheme, plain, encrypted, np.stack(recs), extra)


# what the solver assumes of a scheme that declares nothing: blocks moved, each in any of the 96 states
ALL_BLOCK_STATES = frozenset({"BS", "RF", "NP", "CS"})


def _jigsaw_applies(t: Target) -> Optional[str]:
    if t.steps is None:
        return None if not t.composite else needs_steps(t)   # undeclared: every block state is tried
    if t.spec.unit == "nibble":
        return "values are split into 4-bit halves and permuted inside each block, so block edges carry no match"
    if t.composite and not t.has_composite_view:
        return "the ciphertext is a composite of another shape and the scheme gives no to_composite/from_composite"
    return why_not_jigsaw(t.steps)


@register_attack("jigsaw", Threat.CIPHERTEXT_ONLY, "reassemble scrambled blocks in every allowed state, each "
                 "image alone (Chuman et al.); every block state when the scheme declares none",
                 applies=_jigsaw_applies, headline=("nc",), single=True)
def run_jigsaw(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Each image of ``test`` (N, H, W, C) uint8 solved on its own from its ciphertext (under its own key
    with per-image keys: the attack needs nothing shared)."""
    from ..metrics import batch_quality

    steps = ALL_BLOCK_STATES if t.steps is None else t.steps
    enc = t.encrypt(test)
    source = None if t.per_image else t.block_source
    if not t.composite:
        return jigsaw_attack(test, enc, t.name, t.block_size, source and source(test.shape[1:]), steps=steps,
                             progress=o.progress)
    # a composite (etc-gray): the puzzle is the grayscale Y|Cb|Cr image; the solution is converted back to RGB
    plain_comp = t.cipher.to_composite(test, False)
    res = jigsaw_attack(plain_comp, enc, t.name, t.block_size, source and source(enc.shape[1:]), steps=steps,
                        progress=o.progress)
    res.extra["composite_ssim"] = float(batch_quality(plain_comp, res.reconstructed)["ssim_mean"])
    return AttackResult("jigsaw", t.name, test, enc, t.cipher.from_composite(res.reconstructed, False), res.extra)
