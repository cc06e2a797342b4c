"""Substitution tables shared by groups of in-block coordinates, some of them the identity: the value-map kind
"groups" of :mod:`.valuemaps`.

A design that passes a key subset of the L in-block coordinates through one substitution table and leaves
the others unchanged (AprilPyone & Kiya's FFX per block) is a value map per coordinate, but neither one table
for every value (kind "subst": its seriation mixes both halves) nor a mask (xor, add). What it leaves:

* **groups**: two coordinates under one map keep the plain rate of equal values (a bijection keeps equality),
  which for natural neighbours is several times the rate their value histograms give by chance; under two
  different maps the rate falls to about chance. Average-linkage clustering of the in-block coordinates,
  pooled over the blocks, by the inverse of that ratio gives the groups that share a map.
* **anchor**: the group whose values, as they stand, have the most natural partner differences under the
  public images is taken as plain (the identity; without one, the group's seriated table).
* **tables**: every other group's plain value of a cipher value a is read from the anchor's coordinates it
  sits beside: the mean plain value of the partners (the anchor coordinates that a bijection-invariant
  dependence, the correlation ratio, names) over every sample where the group shows a. The table is a
  permutation of the 256 values, so the order of those means is the order of the plain values: the plain
  value of a is its rank.

What remains is one global inversion at most, as for one table.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# one map when equal values are this many times as frequent as the histograms give by chance (the clustering
# cuts at the inverse); coordinates of one map in photos sit at 2 or more, of two maps at about 1
SAME_MAP_RATIO = 1.4
# partners in the anchor group per coordinate, and the largest share of groups among the coordinates (more
# groups than that: maps of every coordinate its own, which the masks model)
ANCHOR_PARTNERS = 4
MAX_GROUP_SHARE = 0.25
# samples per coordinate the grouping and the partner search look at, and the most pair comparisons
# (samples x L x L) they make: large blocks look at fewer samples
GROUP_SAMPLES = 200_000
GROUP_WORK = 4_000_000_000


def samples_for(width: int) -> int:
    """How many samples a statistic over every pair of ``width`` coordinates looks at."""
    return max(2_000, min(GROUP_SAMPLES, GROUP_WORK // max(1, width * width)))


def equality_ratio(v: np.ndarray) -> np.ndarray:
    """(L, L): how much more often than chance two coordinates of samples ``v`` (S, L) uint8 are equal."""
    L = v.shape[1]
    hist = np.stack([np.bincount(v[:, i], minlength=256) for i in range(L)]).astype(np.float64) / len(v)
    eq = np.stack([(v[:, i:i + 1] == v).mean(0) for i in range(L)])
    return eq / np.clip(hist @ hist.T, 1e-12, None)


def map_groups(v: np.ndarray) -> np.ndarray:
    """(L,) int64 labels 0..G−1 of the coordinates of samples ``v`` (S, L) that share one value map."""
    from scipy.cluster.hierarchy import fcluster, linkage

    r = equality_ratio(v[:samples_for(v.shape[1])])
    r = (r + r.T) / 2
    dist = 1.0 / np.clip(r[np.triu_indices(len(r), 1)], 1e-9, None)
    labels = fcluster(linkage(dist, "average"), 1.0 / SAME_MAP_RATIO, "distance")
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def correlation_ratio(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(A, B): for cipher coordinates ``y`` (S, A) uint8 and plain coordinates ``x`` (S, B) uint8, the share of
    the variance of x_b that the value of y_a explains (unchanged by any bijection of y_a)."""
    xf = x.astype(np.float64)
    var = xf.var(0) + 1e-9
    out = np.empty((y.shape[1], x.shape[1]))
    for a in range(y.shape[1]):
        n = np.bincount(y[:, a], minlength=256).astype(np.float64)
        for b in range(x.shape[1]):
            mean = np.bincount(y[:, a], weights=xf[:, b], minlength=256) / np.clip(n, 1, None)
            out[a, b] = ((n * (mean - xf[:, b].mean()) ** 2).sum() / len(y)) / var[b]
    return out


def anchored_table(y: np.ndarray, x: np.ndarray, passes: int = 3) -> np.ndarray:
    """(256,) int64 plain value of every cipher value of one table, from the group's coordinates ``y`` (S, A)
    and the anchor's plain coordinates ``x`` (S, B): cipher values ordered by the mean plain value of their
    partners; values never seen go after the rest. Each pass after the first puts every pair's means on
    one scale first (a line fitted against the ranks so far: channels differ by an offset, and a mean of
    neighbours is pulled towards the middle)."""
    take = samples_for(y.shape[1] + x.shape[1])
    eta = correlation_ratio(y[:take], x[:take])
    k = min(ANCHOR_PARTNERS, x.shape[1])
    part = np.argsort(-eta, axis=1)[:, :k]
    pairs = []
    for a in range(y.shape[1]):
        n = np.bincount(y[:, a], minlength=256).astype(np.float64)
        for b in part[a]:
            sums = np.bincount(y[:, a], weights=x[:, b].astype(np.float64), minlength=256)
            pairs.append((n, sums / np.clip(n, 1, None)))
    counts = sum(n for n, _ in pairs)
    rank = ranks(sum(n * m for n, m in pairs), counts)
    for _ in range(passes - 1):
        total = np.zeros(256)
        for n, m in pairs:
            slope, offset = np.polyfit(rank, m, 1, w=np.sqrt(n))
            total += n * (m - offset) / (slope if abs(slope) > 1e-3 else 1.0)
        rank = ranks(total, counts)
    return rank


def ranks(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(256,) int64 rank of every value by ``sums / counts``; values never counted go last."""
    mean = np.where(counts > 0, sums / np.clip(counts, 1, None), np.inf)
    order = np.argsort(mean, kind="stable")
    out = np.empty(256, dtype=np.int64)
    out[order] = np.arange(256)
    return out


def group_tables(v: np.ndarray, smooth, seriate_group) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(tables (L, 256) int64: plain value of cipher value a at in-block coordinate i, groups (L,)) from samples
    ``v`` (S, L) uint8 pooled over the blocks, or None where the coordinates do not fall into 2 to
    ``MAX_GROUP_SHARE``·L groups. ``smooth(values (S, A), cols)`` scores how natural the group's values look
    as they stand; ``seriate_group(values, cols)`` orders a group's table where no group is plain."""
    L = v.shape[1]
    groups = map_groups(v)
    n_groups = int(groups.max()) + 1
    if n_groups < 2 or n_groups > max(2, int(MAX_GROUP_SHARE * L)):
        return None
    cols = [np.flatnonzero(groups == g) for g in range(n_groups)]
    anchor = int(np.argmax([smooth(v[:, c], c) if len(c) > 1 else -np.inf for c in cols]))
    tables = np.empty((L, 256), dtype=np.int64)
    plain_anchor = seriate_group(v[:, cols[anchor]], cols[anchor])
    anchor_values = plain_anchor[v[:, cols[anchor]]]
    tables[cols[anchor]] = plain_anchor
    for g, c in enumerate(cols):
        if g != anchor:
            tables[c] = anchored_table(v[:, c], anchor_values)
    return tables, groups


__all__ = ["map_groups", "equality_ratio", "correlation_ratio", "anchored_table", "group_tables",
           "SAME_MAP_RATIO"]
