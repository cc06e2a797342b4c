"""The many-image attack on a composite scheme (etc-gray): blocks of a grayscale Y|Cb|Cr composite scrambled,
rotated/flipped and inverted, under one key.

The registered composite scheme converts with 4:2:0 chroma (its default); the conversion is public
(:func:`patchcrypt.ciphers.etc_gray.to_composite`), so the public images are put in the same layout.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ...ciphers.etc_gray import DEFAULT_SUBSAMPLING, to_composite
from ...errors import PatchcryptError
from .jigsaw import JIGSAW_FLOP_BUDGET, Assembler, SideCosts, State, solve, state_list, transform
from .result import ManyImageResult, WorkMap, WorkView
from .statistics import choose_global, global_transform, inversion


def attack_gray(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape, say) -> ManyImageResult:
    """Composite schemes (etc-gray): the Y|Cb|Cr composite's blocks are scrambled, rotated/flipped and inverted.

    Luma blocks are told from chroma blocks by their spread of values (chroma sits near mid-grey), then
    each part is reassembled on its own grid by the multi-image jigsaw and given its global state by
    public statistics of the same part. Cb and Cr share one region (Cb over Cr) and are solved as one
    puzzle, whose seam between them carries no match: the chroma is the weak part.
    """
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
    parts = {"luma": np.sort(order[:gh * gw_y]), "chroma": np.sort(order[gh * gw_y:])}
    work = WorkMap(keyed)
    gb = work.G.reshape(gh, m, gw_all, m, 1).transpose(0, 2, 1, 3, 4).reshape(n_all, m, m, 1)
    states = state_list(True, True, False)
    info: Dict[str, Any] = {}
    k_img = int(max(2, min(len(y), JIGSAW_FLOP_BUDGET // (16 * n_all * n_all * 2 * 4 * m * 2))))
    new_g = work.G.copy()
    new_k = work.K.copy()
    for name, (col0, cols) in (("luma", (0, gw_y)), ("chroma", (gw_y, gw_all - gw_y))):
        ids = parts[name]
        asm = Assembler(SideCosts(blocks[ids, :k_img], False, True), states, m)
        grid = solve(asm, gh, cols, False)
        for cell, v in enumerate(grid.reshape(-1)):
            piece, st = divmod(int(v), len(states))
            r, cc = divmod(cell, cols)
            sl = (slice(r * m, (r + 1) * m), slice((col0 + cc) * m, (col0 + cc + 1) * m))
            new_g[sl] = transform(gb[ids[piece]], State(states[st].rot))
            new_k[sl] = 255 if states[st].neg else 0
        region = (slice(None), slice(col0 * m, (col0 + cols) * m))
        view = WorkView(new_g[region].copy(), new_k[region].copy())
        rots = list(range(8)) if gh == cols else [0, 2, 4, 6]
        best, _ = choose_global(view, y, np.ascontiguousarray(comp_pub[:, :, col0 * m:(col0 + cols) * m]), rots,
                                 [(0, 1, 2)], [(False,), (True,)])
        rot, _, inv = best
        new_g[region] = global_transform(view.G, rot, (0, 1, 2))
        new_k[region] = global_transform(view.K, rot, (0, 1, 2)) ^ inversion(inv)
    work.G, work.K = new_g, new_k
    info["jigsaw_images"] = k_img
    fwd = work.forward()
    return ManyImageResult(scheme, m, plain_shape, keyed, "byte", fwd.g, fwd.m, info)


__all__ = ["attack_gray"]
