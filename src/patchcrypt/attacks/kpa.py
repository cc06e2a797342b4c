"""Known-plaintext attack: recover the key material from k plain/encrypted pairs, decrypt everything else.

Every fixed-key scheme is y[i] = x[g[i]] XOR m[i] over the flattened image (bytes, masks 0/255; or 4-bit
halves for le/ele, masks 0/15). Three solvers, all vectorised:

* generic (any scheme): output position i can come from input position p with mask m only if
  y_j[i] = x_j[p] XOR m for every pair j; positions with exactly one candidate are recovered.
* structured (block scrambling + in-block steps shared by all blocks, e.g. block-pixel): the multiset of
  values at in-block position i over all blocks does not depend on the block order, so the in-block
  permutation and flip mask follow from matching sorted columns; the block order then follows from
  matching whole blocks. All blocks of all pairs are evidence, so one pair usually suffices.
* block matching (block scrambling + per-block rotation/flip, negative-positive, colour shuffle, e.g. etc):
  every encrypted block is some plain block in one of its (up to 96) states, found by content: each
  encrypted block is compared with every plain block in every state. One pair pins every block whose
  content is not symmetric or repeated; further pairs intersect the candidates of the ambiguous ones.

* black box (no steps declared, steps no solver models, or a declared solver's map that does not reproduce
  the pairs): any block-local scheme (moves, then a bijective value map per coordinate: XOR with any byte,
  addition, a substitution table), learned by :func:`patchcrypt.attacks.blackbox.known_plaintext_model` from
  the partition every coordinate induces on the pairs; ``pairs_needed`` says how many pairs it took.

``determined_fraction`` is the share of output positions whose source and mask the pairs determine uniquely
(the attacker's own certainty); ``key_map_fraction`` (scored by the registry against a registered scheme's
map) the share that is right.
"""

from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np

from ..blocks import block_layout
from ..ciphers import SchemeSpec, get_scheme
from ..ciphers.program import Map
from ..errors import PatchcryptError
from .base import AttackResult, require
from .blackbox import known_plaintext_model, row_ids as _row_ids
from .keymaps import encrypt_with, from_units as _from_units, to_units as _to_units
from .registry import AttackOptions, Threat, needs_key, needs_shared_key, register_attack
from .target import Target


def _match_rows(x: np.ndarray, x_flipped: np.ndarray, y: np.ndarray, full: int
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row of ``y``, the first equal row of ``x`` (mask 0) or else of ``x_flipped`` (mask ``full``).

    Returns the source row (0 where none matches), the uint8 mask and whether exactly one row of ``x`` and
    ``x_flipped`` together matches."""
    ids_x, ids_xf, ids_y = _row_ids(x, x_flipped, y)
    size = max(ids_x.max(), ids_xf.max(), ids_y.max()) + 1
    count_x = np.bincount(ids_x, minlength=size)
    count_xf = np.bincount(ids_xf, minlength=size)
    first_x = np.full(size, -1)
    first_x[ids_x[::-1]] = np.arange(len(ids_x))[::-1]
    first_xf = np.full(size, -1)
    first_xf[ids_xf[::-1]] = np.arange(len(ids_xf))[::-1]
    direct = count_x[ids_y] > 0
    src = np.where(direct, first_x[ids_y], first_xf[ids_y])
    mask = np.where(direct, 0, full).astype(np.uint8)
    unique = (count_x[ids_y] + count_xf[ids_y]) == 1
    return np.where(src < 0, 0, src), mask, unique  # no candidate at all: cannot happen for consistent pairs


def solve_generic(x: np.ndarray, y: np.ndarray, full: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y: (k, D) units of the pairs. Returns source g (D,), mask m (D,), and a uniqueness flag (D,)."""
    xt, yt = x.T.copy(), y.T.copy()                              # (D, k): one row per position
    return _match_rows(xt, (full - xt).astype(np.uint8), yt, full)


def solve_structured(x: np.ndarray, y: np.ndarray, shape, m_blk: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block scrambling + one in-block permutation/flip for all blocks. x, y: (k, D) bytes."""
    h, w, c = shape
    layout = block_layout(h, w, c, m_blk)                      # (n, L)
    n, L = layout.shape
    xb = x[:, layout]                                          # (k, n, L)
    yb = y[:, layout]
    # in-block: column i of the encrypted blocks (over pairs and blocks, sorted) = some plain column, maybe flipped
    xcols = np.sort(xb.transpose(2, 0, 1).reshape(L, -1), axis=1)
    xfcols = np.sort((255 - xb).transpose(2, 0, 1).reshape(L, -1), axis=1)
    ycols = np.sort(yb.transpose(2, 0, 1).reshape(L, -1), axis=1)
    sigma, flip, unique_col = _match_rows(xcols, xfcols, ycols, 255)
    # undo the in-block step on the encrypted blocks, then match whole blocks to recover the block order
    yu = np.empty_like(yb)
    yu[:, :, sigma] = yb ^ flip[None, None, :]
    ids_x, ids_y = _row_ids(xb.transpose(1, 0, 2).reshape(n, -1), yu.transpose(1, 0, 2).reshape(n, -1))
    size = max(ids_x.max(), ids_y.max()) + 1
    count = np.bincount(ids_x, minlength=size)
    first = np.full(size, -1)
    first[ids_x[::-1]] = np.arange(n)[::-1]
    pi = first[ids_y]
    unique_blk = count[ids_y] == 1
    pi = np.where(pi < 0, 0, pi)
    # compose into an image-level map: output image index layout[k, i] <- layout[pi[k], sigma[i]]
    g = np.empty(h * w * c, dtype=np.int64)
    msk = np.empty(h * w * c, dtype=np.uint8)
    g[layout] = layout[pi][:, sigma]
    msk[layout] = np.broadcast_to(flip, (n, L))
    uniq = np.empty(h * w * c, dtype=bool)
    uniq[layout] = unique_blk[:, None] & unique_col[None, :]
    return g, msk, uniq


def structured(spec: SchemeSpec) -> bool:
    """Whether the structured solver fits: byte values, blocks (not pixels), and every step either block
    scrambling or one in-block map shared by all blocks (block-pixel, PS, BF, shared CS/RF)."""
    return (bool(spec.steps) and spec.unit == "byte" and not spec.pixel_based and spec.value_map
            and all(s.moves_blocks or s.same_for_every_block for s in spec.steps))


def block_states(spec: SchemeSpec, block_size: int, channels: int) -> Tuple[np.ndarray, np.ndarray]:
    """In-block states a block-matching scheme can give a block: gathers (S, L) and XOR masks (S, L) uint8.

    A state maps a plain block u to u[gather] XOR mask; S = 8 (RF) · 2 (NP) · 6 (CS), as the scheme has them.
    """
    from ..ciphers.steps import colour_tables, dihedral_tables

    L = block_size * block_size * channels
    rotate, colour, negate = (any(getattr(s, f) for s in spec.steps)
                              for f in ("rotates_blocks", "shuffles_colours", "inverts_blocks"))
    rf = dihedral_tables(block_size, channels) if rotate else np.arange(L)[None]
    cs = colour_tables(block_size) if colour and channels == 3 else np.arange(L)[None]
    gathers = np.stack([r[c] for r in rf for c in cs])
    masks = [np.zeros(L, np.uint8)] + ([np.full(L, 255, np.uint8)] if negate else [])
    return (np.concatenate([gathers] * len(masks)),
            np.concatenate([np.broadcast_to(m, gathers.shape) for m in masks]))


def block_matching(spec: SchemeSpec) -> bool:
    """Whether the block-matching solver fits: byte values, blocks (not pixels), block scrambling and per-block
    RF / NP / CS only (etc and its single steps), and not already the structured case."""
    return (bool(spec.steps) and spec.unit == "byte" and not spec.pixel_based and spec.value_map
            and all(s.block_state for s in spec.steps) and not structured(spec))


def solve_blocks(x: np.ndarray, y: np.ndarray, shape, m_blk: int, spec: SchemeSpec
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block matching. x, y: (k, D) bytes of the pairs. Returns g (D,), mask (D,), uniqueness (D,) per position.

    Candidates of encrypted block b are the (plain block, state) pairs whose transformed content equals it in
    every pair; a position is unique when all remaining candidates give it the same source and mask.
    """
    h, w, c = shape
    layout = block_layout(h, w, c, m_blk)                      # (n, L)
    n, L = layout.shape
    gathers, masks = block_states(spec, m_blk, c)              # (S, L)
    s = len(gathers)
    cand = np.ones((n, n * s), dtype=bool)                     # [encrypted block, plain block · S + state]
    for xj, yj in zip(x, y):
        xb, yb = xj[layout], yj[layout]                        # (n, L)
        variants = (xb[:, gathers] ^ masks[None]).reshape(n * s, L)
        ids_v, ids_y = _row_ids(variants, yb)
        cand &= ids_y[:, None] == ids_v[None, :]
    # repeated blocks (flat sky, say) fit several sources: pick a one-to-one assignment among the candidates
    from scipy.optimize import linear_sum_assignment

    allowed = cand.reshape(n, n, s).any(2)
    _, chosen = linear_sum_assignment((~allowed).astype(float))
    g = np.empty(h * w * c, dtype=np.int64)
    msk = np.empty(h * w * c, dtype=np.uint8)
    uniq = np.zeros(h * w * c, dtype=bool)
    for b in range(n):
        options = np.flatnonzero(cand[b])
        if len(options) == 0:                                  # inconsistent pairs: keep the block in place
            g[layout[b]], msk[layout[b]] = layout[b], 0
            continue
        blk, st = np.divmod(options, s)
        src = layout[blk[:, None], gathers[st]]                # (options, L) image index of each source
        mk = masks[st]
        pick = int(np.flatnonzero(blk == chosen[b])[0]) if (blk == chosen[b]).any() else 0
        g[layout[b]], msk[layout[b]] = src[pick], mk[pick]
        uniq[layout[b]] = (src == src[0]).all(0) & (mk == mk[0]).all(0)
    return g, msk, uniq


def kpa_attack(pairs_plain: np.ndarray, pairs_enc: np.ndarray, plain: np.ndarray, encrypted: np.ndarray,
               scheme: str, block_size: int, spec: Optional[SchemeSpec] = None,
               solver: str = "auto") -> AttackResult:
    """Recover the key map from (pairs_plain, pairs_enc) and decrypt ``encrypted`` (held-out images).

    All arrays uint8 (N, H, W, C) of one shape; ``spec`` defaults to the registered scheme ``scheme``'s.
    ``solver``: "auto" (the strongest that applies), or "generic", "structured", "blocks" to force one."""
    spec = spec or get_scheme(scheme)
    require(spec.value_map, "kpa", scheme, "the colour conversion in front is lossy; not a value map"
            if spec.composite else "a step is not a move or a v -> 255 - v flip, which is all the solver models")
    if len(pairs_plain) < 1:
        raise PatchcryptError("the known-plaintext attack needs at least one plain/encrypted pair (--pairs)")
    t0 = time.perf_counter()
    k = len(pairs_plain)
    shape = pairs_plain.shape[1:]
    x = pairs_plain.reshape(k, -1)
    y = pairs_enc.reshape(k, -1)
    nibble = spec.unit == "nibble"
    if solver == "auto":
        solver = "structured" if structured(spec) else "blocks" if block_matching(spec) else "generic"
    if solver not in ("generic", "structured", "blocks"):
        raise PatchcryptError(f"unknown KPA solver {solver!r}; valid: auto, generic, structured, blocks")
    if solver == "structured":
        require(structured(spec), "kpa", scheme, "the structured solver needs one in-block map for all blocks")
        g, m, unique = solve_structured(x, y, shape, block_size)
    elif solver == "blocks":
        require(block_matching(spec), "kpa", scheme, "block matching needs block scrambling and per-block "
                "rotation/flip, negative-positive or colour shuffle only")
        g, m, unique = solve_blocks(x, y, shape, block_size, spec)
    else:
        g, m, unique = solve_generic(_to_units(x, nibble), _to_units(y, nibble), 15 if nibble else 255)
    yt = _to_units(encrypted.reshape(len(encrypted), -1), nibble)
    xt = np.zeros_like(yt)  # positions no pair pins down stay 0 (deterministic scoring)
    xt[:, g] = yt ^ m                                         # x[g[i]] = y[i] XOR m[i]
    rec = _from_units(xt, nibble).reshape(plain.shape)
    extra = {"pairs": k, "solver": solver, "determined_fraction": float(unique.mean()),
             "seconds": time.perf_counter() - t0}
    key_map = Map(np.asarray(g, np.int64), np.asarray(m, np.uint8))
    return AttackResult("kpa", scheme, plain, encrypted, rec, extra, key_map=key_map)


def blackbox_kpa_attack(pairs_plain: np.ndarray, pairs_enc: np.ndarray, plain: np.ndarray, encrypted: np.ndarray,
                        scheme: str, target: float = 0.99) -> AttackResult:
    """Learn a block-local scheme from the pairs with no declared steps and decrypt ``encrypted``.

    All arrays uint8 (N, H, W, C) of one shape. ``extra``: pairs, solver "black-box", pairs_needed (the
    smallest k on the doubling ladder 1, 2, 4, ... at which ≥ ``target`` of the outputs match one input only;
    None when all the pairs do not), determined_fraction (that share with all the pairs), unique_by_pairs
    (the share at each rung tried), seen_fraction (share of the value tables' entries the pairs show),
    filled (share of coordinates whose unseen entries came from a XOR or an addition of a constant, one
    shared table, or the nearest seen value), seconds. Raises PatchcryptError ("pairs: ...") when the pairs
    show that values mix across positions.
    """
    if len(pairs_plain) < 1:
        raise PatchcryptError("the known-plaintext attack needs at least one plain/encrypted pair (--pairs)")
    t0 = time.perf_counter()
    k = len(pairs_plain)
    fit = known_plaintext_model(pairs_plain.reshape(k, -1), pairs_enc.reshape(k, -1), target)
    rec = fit.model.decrypt(encrypted.reshape(len(encrypted), -1)).reshape(plain.shape)
    extra = {"pairs": k, "solver": "black-box", "pairs_needed": fit.pairs_needed,
             "determined_fraction": fit.unique_fraction, "unique_by_pairs": {str(r): u for r, u in fit.ladder.items()},
             "seen_fraction": fit.seen_fraction, "filled": fit.filled, "seconds": time.perf_counter() - t0}
    return AttackResult("kpa", scheme, plain, encrypted, rec, extra, key_map=fit.model.to_map())


def _declared_solver_fits(t: Target) -> bool:
    """Whether the target declares steps the structured, block-matching or value solvers model."""
    return t.steps is not None and bool(t.steps) and t.spec.value_map


def _kpa_applies(t: Target) -> Optional[str]:
    reason = needs_shared_key(t) or needs_key(t)
    if reason:
        return reason
    if t.composite:
        return "the colour conversion in front is lossy; not a value map"
    if t.spec.unit == "nibble" and not _declared_solver_fits(t):
        return "4-bit units need declared steps the solvers model (the black-box solver models byte values)"
    return None


@register_attack("kpa", Threat.KNOWN_PLAINTEXT, "recover the key map from k plain/encrypted pairs (declared steps, "
                 "or any block-local scheme from the black box), decrypt the rest", applies=_kpa_applies,
                 needs_train=True, headline=("key_map_fraction", "pairs_needed"))
def run_kpa(t: Target, test: np.ndarray, train: np.ndarray, o: AttackOptions) -> AttackResult:
    """The first ``o.pairs`` of the attacker's images as known pairs; the target's ciphertexts of ``test``
    decrypted with the map they give. Declared steps pick a solver; its map must reproduce ≥ 99% of the pairs'
    ciphertext values (``verified``), else (and with no declared steps) the black-box solver runs."""
    if o.pairs < 1 or o.pairs > len(train):
        raise PatchcryptError(f"--pairs must be between 1 and {len(train)}, got {o.pairs}")
    known = train[:o.pairs]
    known_enc, enc = t.encrypt(known), t.encrypt(test)
    if _declared_solver_fits(t):
        res = kpa_attack(known, known_enc, test, enc, t.name, t.block_size, spec=t.spec)
        agree = float((encrypt_with(res.key_map, known, t.spec) == known_enc).mean())
        res.extra["verified"] = agree >= 0.99
        if res.extra["verified"] or t.spec.unit == "nibble":
            return res
    return blackbox_kpa_attack(known, known_enc, test, enc, t.name)
