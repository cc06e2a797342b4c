"""The many-image attack on a composite scheme (etc-gray): blocks of a grayscale Y|Cb|Cr composite scrambled,
rotated/flipped and inverted, under one key.

The registered composite scheme converts with 4:2:0 chroma (its default); the conversion is public
(:func:`patchcrypt.ciphers.etc_gray.to_composite`), so the public images are put in the same layout.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ...ciphers.etc_gray import DEFAULT_SUBSAMPLING, to_composite
from ...errors import PatchcryptError
from .chroma import place_chroma
from .jigsaw import JIGSAW_FLOP_BUDGET, Assembler, SideCosts, State, solve, state_list, transform
from .result import ManyImageResult, WorkMap, WorkView
from .statistics import choose_global, global_transform, inversion

# How the chroma blocks are placed: "luma" (matched to the placed luma, the default) or "jigsaw" (solved as a
# puzzle of their own, Cb over Cr, then a global state; the older, weaker method, kept for comparison).
CHROMA_METHODS = ("luma", "jigsaw")
CHROMA_DEFAULT = "luma"   # the method when none is named (benchmarks/many_image_attack.py --gray-chroma sets it)


def _solve_part(blocks: np.ndarray, ids: np.ndarray, gb: np.ndarray, new_g: np.ndarray, new_k: np.ndarray,
                y: np.ndarray, comp_pub: np.ndarray, cols: Tuple[int, int], m: int, k_img: int) -> None:
    """Reassemble one part (luma or chroma) of the composite on its region (block columns ``cols`` =
    (first, count)) by the multi-image jigsaw, then give it a global state by public statistics; writes the
    region of the working map (``new_g``, ``new_k``) in place."""
    col0, ncols = cols
    gh = new_g.shape[0] // m
    states = state_list(True, True, False)
    asm = Assembler(SideCosts(blocks[ids, :k_img], False, True), states, m)
    grid = solve(asm, gh, ncols, False)
    for cell, v in enumerate(grid.reshape(-1)):
        piece, st = divmod(int(v), len(states))
        r, cc = divmod(cell, ncols)
        sl = (slice(r * m, (r + 1) * m), slice((col0 + cc) * m, (col0 + cc + 1) * m))
        new_g[sl] = transform(gb[ids[piece]], State(states[st].rot))
        new_k[sl] = 255 if states[st].neg else 0
    region = (slice(None), slice(col0 * m, (col0 + ncols) * m))
    view = WorkView(new_g[region].copy(), new_k[region].copy())
    rots = list(range(8)) if gh == ncols else [0, 2, 4, 6]
    best, _ = choose_global(view, y, np.ascontiguousarray(comp_pub[:, :, col0 * m:(col0 + ncols) * m]), rots,
                            [(0, 1, 2)], [(False,), (True,)])
    rot, _, inv = best
    new_g[region] = global_transform(view.G, rot, (0, 1, 2))
    new_k[region] = global_transform(view.K, rot, (0, 1, 2)) ^ inversion(inv)


def _chroma_by_luma(blocks: np.ndarray, ids: np.ndarray, gb: np.ndarray, new_g: np.ndarray, new_k: np.ndarray,
                    y: np.ndarray, comp_pub: np.ndarray, w: int, m: int) -> Dict[str, Any]:
    """Place the chroma blocks by the luma already placed in ``new_g``/``new_k`` (:mod:`.chroma`); may flip
    the luma's inversion when the joint (luma, Cb, Cr) model prefers it. Writes the working map in place."""
    flat = y.reshape(len(y), -1)
    lg, lk = new_g[:, :w, 0].reshape(-1), new_k[:, :w, 0].reshape(-1)
    luma = (flat[:, lg] ^ lk).reshape(len(y), new_g.shape[0], w)
    cells, flip, info = place_chroma(blocks, ids, luma, comp_pub, m)
    for (r, c), (bid, st) in cells.items():
        sl = (slice(r * m, (r + 1) * m), slice(w + c * m, w + (c + 1) * m))
        new_g[sl] = transform(gb[bid], State(st.rot))
        new_k[sl] = 255 if st.neg else 0
    if flip:
        new_k[:, :w] ^= 255
    info["luma_inversion_flipped"] = flip
    return info


def attack_gray(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape, say,
                chroma: Optional[str] = None) -> ManyImageResult:
    """Composite schemes (etc-gray): the Y|Cb|Cr composite's blocks are scrambled, rotated/flipped and inverted.

    Luma blocks are told from chroma blocks by their spread of values (chroma sits near mid-grey), then the
    luma is reassembled by the multi-image jigsaw and given its global state by public statistics. The
    chroma (``chroma="luma"``) is then placed by the luma (:mod:`.chroma`): each chroma block goes to the
    area whose luma edges it follows, Cb/Cr and inversions by a model of public (luma, Cb, Cr) triples.
    ``chroma="jigsaw"``: the older method, Cb over Cr solved as one puzzle whose seam carries no match.
    None: :data:`CHROMA_DEFAULT`.
    """
    chroma = CHROMA_DEFAULT if chroma is None else chroma
    if chroma not in CHROMA_METHODS:
        raise PatchcryptError(f"chroma method must be one of {', '.join(CHROMA_METHODS)}, not {chroma!r}")
    comp_pub = to_composite(public, DEFAULT_SUBSAMPLING, False)   # the public conversion, no key
    keyed = tuple(int(v) for v in y.shape[1:])
    if comp_pub.shape[1:] != keyed:
        raise PatchcryptError(f"{scheme} ciphertexts of shape {keyed} do not fit plain images {plain_shape}")
    h, wc, _ = keyed
    w = plain_shape[1]
    gh, gw_all, gw_y = h // m, wc // m, w // m
    n_all = gh * gw_all
    blocks = y.reshape(len(y), gh, m, gw_all, m, 1).transpose(1, 3, 0, 2, 4, 5).reshape(n_all, len(y), m, m, 1)
    spread = np.abs(blocks[:, :min(len(y), 2000)].astype(np.float32) - 127.5).mean((1, 2, 3, 4))
    order = np.argsort(-spread)
    luma_ids, chroma_ids = np.sort(order[:gh * gw_y]), np.sort(order[gh * gw_y:])
    work = WorkMap(keyed)
    gb = work.G.reshape(gh, m, gw_all, m, 1).transpose(0, 2, 1, 3, 4).reshape(n_all, m, m, 1)
    k_img = int(max(2, min(len(y), JIGSAW_FLOP_BUDGET // (16 * n_all * n_all * 2 * 4 * m * 2))))
    new_g, new_k = work.G.copy(), work.K.copy()
    _solve_part(blocks, luma_ids, gb, new_g, new_k, y, comp_pub, (0, gw_y), m, k_img)
    info: Dict[str, Any] = {"jigsaw_images": k_img, "chroma_method": chroma}
    if chroma == "luma":
        info.update(_chroma_by_luma(blocks, chroma_ids, gb, new_g, new_k, y, comp_pub, w, m))
    else:
        _solve_part(blocks, chroma_ids, gb, new_g, new_k, y, comp_pub, (gw_y, gw_all - gw_y), m, k_img)
    work.G, work.K = new_g, new_k
    fwd = work.forward()
    return ManyImageResult(scheme, m, plain_shape, keyed, "byte", fwd.g, fwd.m, info)


__all__ = ["attack_gray", "CHROMA_METHODS", "CHROMA_DEFAULT"]
