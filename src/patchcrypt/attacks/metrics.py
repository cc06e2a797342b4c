"""Scores of a jigsaw reassembly (Chuman, Kurihara, Kiya): direct, neighbour and largest-component comparison.

A reassembly is given as ``placed[k]`` = the index of the original block now at position k (row-major on
a gh × gw grid). Dc: share of positions holding their own block. Nc: share of the original horizontal and
vertical neighbour pairs that are neighbours in the same relation in the result. Lc: share of blocks in the
largest 4-connected group whose members are placed consistently with one another (a correct sub-image,
possibly shifted).
"""

from __future__ import annotations

from typing import Dict

import numpy as np


def jigsaw_scores(placed: np.ndarray, gh: int, gw: int) -> Dict[str, float]:
    placed = np.asarray(placed).reshape(gh, gw)
    n = gh * gw
    dc = float((placed.reshape(-1) == np.arange(n)).mean())
    right_ok = placed[:, 1:] == placed[:, :-1] + 1
    right_ok &= (placed[:, :-1] % gw) != gw - 1          # original right neighbour exists on the same row
    down_ok = placed[1:, :] == placed[:-1, :] + gw
    total_pairs = gh * (gw - 1) + (gh - 1) * gw
    nc = float((right_ok.sum() + down_ok.sum()) / total_pairs) if total_pairs else 1.0
    # largest component joined by correct neighbour relations (union-find over the grid)
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r, c in zip(*np.nonzero(right_ok)):
        parent[find(r * gw + c)] = find(r * gw + c + 1)
    for r, c in zip(*np.nonzero(down_ok)):
        parent[find(r * gw + c)] = find((r + 1) * gw + c)
    roots = np.array([find(i) for i in range(n)])
    lc = float(np.bincount(roots).max() / n)
    return {"dc": dc, "nc": nc, "lc": lc}
