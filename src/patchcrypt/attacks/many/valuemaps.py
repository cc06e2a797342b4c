"""The value-map stage of the many-image attack: per-coordinate XOR or additive masks, or one substitution
table, recovered from ciphertexts alone and stripped before the moves are solved.

A block-local scheme moves values independently of what they are and maps every output coordinate's value
by a map of its own. Values of one block stay in one block, so the partners of a coordinate -- the
coordinates whose plain values are its neighbours' -- are found among the other coordinates of its block,
by a similarity each kind of map leaves unchanged:

* **xor** (y = x ^ c_i): every bit plane of y is that of x, flipped or not, so absolute bit-plane
  correlations are the plain ones, and the signs of each plane's leading eigenvector give the high bits
  (planes 7..4) up to one constant. For a partner pair the histogram of y_i ^ y_j over the images is the
  plain neighbours' XOR histogram (peaked at 0: neighbours are often equal) moved to c_i ^ c_j; the low
  bits come from those relations (a Z2 synchronisation per bit, then coordinate ascent).
* **add** (y = x + c_i mod 256): on the circle z = exp(2πi·y/256) an additive mask is a rotation, so the
  modulus of the complex correlation is the plain one and the angles of its leading eigenvector give the
  masks up to one constant; y_i − y_j mod 256 peaks at c_i − c_j.
* **subst** (y = S[x], one table): equal plain values give equal cipher values, so how often two
  coordinates are equal is the plain rate; the co-occurrence of cipher values over partner pairs is
  concentrated near the diagonal once the values are put in plain order, which a spectral seriation (the
  Fiedler vector of the 256-value co-occurrence graph) recovers up to reversal.

* **groups** (y = S_g[x], one table per group of in-block coordinates, some groups the identity): which
  coordinates share a map shows in how often they are equal, and the tables are read against the plain
  group (:mod:`.tables`).

Where one mask serves every block (its top bit plane or angles stay as correlated pooled over the blocks
as within one) the statistics of all blocks are pooled: N·(H/M)·(W/M) samples per coordinate instead of N,
which is what makes the lowest bits certain. What no relation fixes -- one constant per block, and per
group of coordinates only spatial-looking pairs join (a photo's channels) -- is the one whose decryptions
have the most likely values and neighbour differences under the public images. What remains is a global
inversion (xor, subst) or, per block, an inversion the jigsaw settles (xor masks that differ by block).

The kind is the one whose decryptions have the smoothest partner pairs; a mask that only flips values
(0/255) is no value map: the block method models those itself. After stripping, the block method runs on
the generic block-local moves, with an in-block shuffle only where the stripped in-block correlations
do not already match the public images' as they stand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ...blocks import block_layout
from ...ciphers.base import SchemeSpec
from .facts import moves_spec
from .result import ManyImageResult
from .statistics import images_within

KINDS = ("xor", "add", "subst", "groups")
# partners per coordinate, and the images the scores look at (more change nothing but the time)
PARTNERS = 8
SCORE_IMAGES = 300
# the first types of neighbour pair of :class:`PlainModel` are spatial (horizontal, vertical, diagonals)
SPATIAL_TYPES = 4
# bit planes whose correlations find xor partners (lower planes are close to noise in natural images)
XOR_PLANES = (7, 6, 5, 4)
# a group whose seriated table is within this many values of the identity (or its inversion), on average,
# is plain: the seriation of plain values only swaps close ones
PLAIN_ORDER = 4.0
# entries of one working array of pair values (pairs x images), to bound memory on large images
CHUNK = 20_000_000
# the kinds are compared on blocks worth at most this many in-block coordinate pairs (nb x L x L): every block
# of a 32 x 32 image, 16 of the 196 blocks of 16 x 16 x 3 at 224 x 224 (masks that differ by block cost
# L x L per block; the shared ones pool every block)
MASK_SCORE_WORK = 16 * 768 * 768
# values of the public images the plain model counts its histograms on: every image of 32 x 32 sets of a few
# thousand images, 132 photos at 224 x 224 (neighbour histograms of 20 million pairs per type)
MODEL_VALUES = 20_000_000


@dataclass
class PlainModel:
    """Neighbour statistics of public plain images, as log-probabilities.

    ``hist`` (256,): values; ``diff`` (511,): x_a − x_b + 255 of spatial neighbours; ``rel[kind]`` (T, 256):
    x_a ^ x_b (xor) or x_a − x_b mod 256 (add) of T types of neighbour pair (horizontal, vertical, both
    diagonals, every ordered pair of channels of one pixel): what a coordinate's partners in its block are;
    ``diffs`` (T, 511): x_a − x_b + 255 of each type.
    """

    hist: np.ndarray
    diff: np.ndarray
    rel: Dict[str, np.ndarray]
    diffs: np.ndarray

    @classmethod
    def of(cls, public: np.ndarray) -> "PlainModel":
        """From (P, H, W, C) uint8 public plain images (at most :data:`MODEL_VALUES` values of them, whole
        images evenly spaced: :func:`model_images`)."""
        x = public[model_images(public.shape)].astype(np.int16)
        pairs = [(x[:, :, 1:], x[:, :, :-1]), (x[:, 1:], x[:, :-1]), (x[:, 1:, 1:], x[:, :-1, :-1]),
                 (x[:, 1:, :-1], x[:, :-1, 1:])]
        # the channels of one pixel, each ordered pair its own type (their means differ)
        pairs += [(x[..., a], x[..., b]) for a in range(x.shape[3]) for b in range(x.shape[3]) if a != b]
        rel: Dict[str, list] = {"xor": [], "add": []}
        counts = []
        for p0, p1 in pairs:      # one type at a time: a few arrays of the sample's size, never all of them
            for kind in rel:
                rel[kind].append(_log_prob(np.bincount(strip(kind, p0, p1).reshape(-1), minlength=256)))
            counts.append(np.bincount((p0 - p1).reshape(-1) + 255, minlength=511))
        return cls(hist=_log_prob(np.bincount(x.reshape(-1), minlength=256)), diff=_log_prob(sum(counts[:4])),
                   rel={k: np.stack(v) for k, v in rel.items()}, diffs=np.stack([_log_prob(c) for c in counts]))


def model_images(shape) -> np.ndarray:
    """Indices of the public images the plain model is counted on (:data:`MODEL_VALUES`)."""
    return images_within(shape, MODEL_VALUES)


def _log_prob(counts: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    p = counts.astype(np.float64) + 0.5
    p /= p.sum()
    return np.log(p + floor).astype(np.float32)


def combine(kind: str, a, b):
    """The group operation of a kind on uint8-valued ints: y = x ⊕ c (xor, or + mod 256)."""
    return np.bitwise_xor(a, b) if kind == "xor" else (np.asarray(a) + b) % 256


def strip(kind: str, y, c):
    """The inverse of :func:`combine`: x = y ⊖ c."""
    return np.bitwise_xor(y, c) if kind == "xor" else (np.asarray(y) - c) % 256


@dataclass
class ValueMaps:
    """What the value-map stage found.

    ``kind``: "xor", "add", "subst" or "none" (no value map beyond 0/255 flips); ``table`` (D, 256) uint8:
    plain value of cipher value v at flat coordinate i (None for "none"); ``mask`` (D,) uint8 for xor and
    add; ``scores``: the smoothness of each kind's decryptions (higher is better).
    """

    kind: str
    table: Optional[np.ndarray]
    mask: Optional[np.ndarray] = None
    scores: Dict[str, float] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

    def apply(self, y: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 ciphertexts → the same with every coordinate's value map undone."""
        if self.table is None:
            return y
        flat = y.reshape(len(y), -1)
        return self.table[np.arange(flat.shape[1])[None], flat].reshape(y.shape)


def block_values(y: np.ndarray, m: int) -> Tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 → (values (nb, N, L) uint8, layout (nb, L) int64): every block's coordinates."""
    n, h, w, c = y.shape
    lay = block_layout(h, w, c, m)
    return np.ascontiguousarray(y.reshape(n, -1)[:, lay].transpose(1, 0, 2)), lay


def _block_chunks(nb: int, per_block: int):
    step = max(1, CHUNK // max(1, per_block))
    return [slice(a, min(nb, a + step)) for a in range(0, nb, step)]


def _image_chunks(n: int, per_image: int):
    step = max(1, CHUNK // max(1, per_image))
    return [slice(a, min(n, a + step)) for a in range(0, n, step)]


def _correlations(kind: str, v: np.ndarray) -> np.ndarray:
    """(F, b, L, L) correlations of features of block values ``v`` (b, N, L) uint8 that a kind's value
    maps change only by a sign (xor: bit planes) or a phase (add: the value as an angle)."""
    if kind == "xor":
        feats = [((v >> p) & 1).astype(np.float32) for p in XOR_PLANES]
    else:
        feats = [np.exp(2j * np.pi * v.astype(np.float32) / 256).astype(np.complex64)]
    out = []
    for f in feats:
        f = f - f.mean(1, keepdims=True)
        cov = np.conj(f.transpose(0, 2, 1)) @ f
        sd = np.sqrt(np.clip(np.abs(np.diagonal(cov, axis1=1, axis2=2)), 1e-9, None))
        out.append(cov / sd[:, :, None] / sd[:, None, :])
    return np.stack(out)


def coarse(kind: str, yb: np.ndarray, k: int = PARTNERS) -> Tuple[np.ndarray, np.ndarray]:
    """(partners (nb, L, k) int64, coarse masks (nb, L) int64 up to one constant per block).

    Partners: the coordinates of the block most like plain neighbours by a measure the kind's maps leave
    unchanged (absolute bit-plane correlations for xor, the modulus of the angle covariance for add, how
    often two values are equal for subst). Coarse masks: xor, the high bits (planes 7..4) as the signs of
    each plane's leading eigenvector (neighbours' bit planes are positively correlated); add, the angles of
    the angle covariance's leading eigenvector (neighbours' values differ little); subst, none (zeros).
    """
    nb, n, L = yb.shape
    part = np.empty((nb, L, min(k, L - 1)), dtype=np.int64)
    masks = np.zeros((nb, L), dtype=np.int64)
    # per block: its values (or, for subst, their L x L equalities) and the F planes' L x L correlations
    for sl in _block_chunks(nb, n * L * (L if kind == "subst" else 1) + 2 * len(XOR_PLANES) * L * L):
        v = yb[sl]
        if kind == "subst":
            part[sl] = partners((v[..., :, None] == v[..., None, :]).mean(1), k)
            continue
        corr = _correlations(kind, v)
        part[sl] = partners(np.abs(corr).sum(0), k)
        vec = np.linalg.eigh(corr)[1][..., -1]                           # (F, b, L)
        if kind == "xor":
            masks[sl] = ((vec.real < 0).astype(np.int64) << np.array(XOR_PLANES)[:, None, None]).sum(0)
        else:   # corr[i, j] ~ exp(2πi (c_j − c_i) / 256): the eigenvector ~ exp(−2πi c / 256)
            masks[sl] = np.round(-np.angle(vec[0]) * 256 / (2 * np.pi)).astype(np.int64) % 256
    return part, masks


def partners(sim: np.ndarray, k: int = PARTNERS) -> np.ndarray:
    """(nb, L, k) int64: every coordinate's k most similar other coordinates of its block."""
    s = sim.copy()
    idx = np.arange(s.shape[1])
    s[:, idx, idx] = -np.inf
    k = min(k, s.shape[1] - 1)
    return np.argsort(-s, axis=2, kind="stable")[:, :, :k]


def pair_scores(kind: str, yb: np.ndarray, part: np.ndarray, model: PlainModel) -> Tuple[np.ndarray, np.ndarray]:
    """(scores (nb, L, K, 256) float32, types (nb, L, K) int64): log-likelihood, summed over the images, that
    c_i ⊖ c_j = d for every coordinate i, its partner j and offset d, under the relation histogram of the
    type of public neighbour pair that fits the pair best (that type)."""
    nb, n, L = yb.shape
    K = part.shape[2]
    u_idx = np.arange(256)
    # [u, type·256 + d] = log P_type(u ⊖ d); each pair is scored under the type that fits it best
    lmat = np.concatenate([r[strip(kind, u_idx[:, None], u_idx[None, :])] for r in model.rel[kind]], axis=1)
    types = len(model.rel[kind])
    out = np.empty((nb, L, K, 256), dtype=np.float32)
    kinds = np.empty((nb, L, K), dtype=np.int64)
    for sl in _block_chunks(nb, n * L * K + L * K * types * 256):     # pair values, and every type's scores
        b = len(yb[sl])
        hist = np.zeros(b * L * K * 256, dtype=np.int64)
        for im in _image_chunks(n, b * L * K):
            v = yb[sl, im].astype(np.int64)                                  # (b, n', L)
            j = np.broadcast_to(part[sl][:, None], (b, v.shape[1], L, K)).reshape(b, v.shape[1], L * K)
            u = strip(kind, np.repeat(v, K, axis=2), np.take_along_axis(v, j, axis=2))   # (b, n', L*K)
            hist += np.bincount((np.arange(b * L * K).reshape(b, 1, L * K) * 256 + u).reshape(-1),
                                minlength=b * L * K * 256)
        sc = (hist.reshape(-1, 256).astype(np.float32) @ lmat).reshape(-1, types, 256)
        fit = sc.max(2).argmax(1)
        out[sl] = sc[np.arange(len(sc)), fit].reshape(b, L, K, 256)
        kinds[sl] = fit.reshape(b, L, K)
    return out, kinds


def low_bits(scores: np.ndarray, part: np.ndarray, base: np.ndarray) -> np.ndarray:
    """xor: (nb, L) masks with the low four bits added to ``base`` (high bits known up to a constant per
    block): every pair's best relation among the 16 its high bits allow, weighted by its margin, then a
    Z2 synchronisation per bit (the sign of the leading eigenvector)."""
    nb, L, K, _ = scores.shape
    bj = np.take_along_axis(base, part.reshape(nb, -1), axis=1).reshape(part.shape)
    allowed = (base[..., None] ^ bj)[..., None] | np.arange(16)                # (nb, L, K, 16)
    s = np.take_along_axis(scores, allowed, axis=3)
    top2 = np.sort(s, axis=3)[..., -2:]
    w = (top2[..., 1] - top2[..., 0]).astype(np.float64)
    best = s.argmax(3)
    b_idx = np.broadcast_to(np.arange(nb)[:, None, None], part.shape)
    i_idx = np.broadcast_to(np.arange(L)[None, :, None], part.shape)
    a = np.zeros((4, nb, L, L))
    for bit in range(4):
        np.add.at(a[bit], (b_idx, i_idx, part), w * (1 - 2 * ((best >> bit) & 1)))
    a = a + a.transpose(0, 1, 3, 2)
    vec = np.linalg.eigh(a)[1][..., -1]                                       # (4, nb, L)
    return base | ((vec < 0).astype(np.int64) << np.arange(4)[:, None, None]).sum(0)


def polish(kind: str, c: np.ndarray, cand: np.ndarray, scores: np.ndarray, part: np.ndarray, sweeps: int = 30,
           seed: int = 0) -> np.ndarray:
    """Coordinate ascent on Σ scores[i, k, c_i ⊖ c_part(i,k)] over the candidates ``cand`` (nb, L, W) of
    every coordinate (edges both ways), each sweep's changes kept for a random half of the coordinates so
    that neighbours do not swap back and forth. ``c`` (nb, L): the start."""
    nb, L, K, _ = scores.shape
    rng = np.random.default_rng(seed)
    flat_target = (np.arange(nb)[:, None, None] * L + part).reshape(-1)
    cand_j = np.take_along_axis(cand, part.reshape(nb, -1, 1), axis=1).reshape(nb, L, K, -1)
    for _ in range(sweeps):
        cj = np.take_along_axis(c, part.reshape(nb, -1), axis=1).reshape(nb, L, K)
        gain = np.take_along_axis(scores, strip(kind, cand[:, :, None, :], cj[..., None]), axis=3).sum(2)
        back = np.take_along_axis(scores, strip(kind, c[:, :, None, None], cand_j), axis=3)   # as c_j = cand
        rev = np.zeros((nb * L, cand.shape[2]), dtype=np.float64)
        np.add.at(rev, flat_target, back.reshape(-1, cand.shape[2]))
        new = np.take_along_axis(cand, (gain + rev.reshape(nb, L, -1)).argmax(2)[..., None], axis=2)[..., 0]
        move = (new != c) & (rng.random(c.shape) < 0.5)
        if not move.any() and np.array_equal(new, c):
            break
        c = np.where(move, new, c)
    return c


def constants(kind: str, yb: np.ndarray, c: np.ndarray, part: np.ndarray, model: PlainModel,
              groups: np.ndarray) -> np.ndarray:
    """(nb, L) masks: ``c`` with one constant (of 256) added to every group of coordinates, the one whose
    decryptions have the most likely values and partner differences (pairs inside the group) under the
    public images' statistics. ``groups`` (nb, L) int64: labels 0..G−1, each inside one block."""
    nb, n, L = yb.shape
    K = part.shape[2]
    v = np.arange(256)
    cand = strip(kind, v[:, None], v[None, :]).astype(np.int16)          # [u, c'] = u ⊖ c'
    pair_t = (model.hist[cand][:, None, :] + model.hist[cand][None, :, :]
              + model.diff[cand[:, None, :] - cand[None, :, :] + 255]).reshape(65536, 256)
    n_groups = int(groups.max()) + 1
    best = np.zeros(n_groups, dtype=np.int64)
    for sl in _block_chunks(nb, n * L * K):
        gi, gj = groups[sl], np.take_along_axis(groups[sl], part[sl].reshape(len(groups[sl]), -1), axis=1)
        same = (np.repeat(gi, K, axis=1) == gj)                               # (b, L*K): pairs inside a group
        lo, hi = int(gi.min()), int(gi.max()) + 1
        joint = np.zeros((hi - lo) * 65536, dtype=np.float64)
        for im in _image_chunks(n, len(gi) * L * K):
            u = strip(kind, yb[sl, im].astype(np.int64), c[sl][:, None, :])      # (b, n', L)
            j = np.broadcast_to(part[sl][:, None], (len(gi), u.shape[1], L, K)).reshape(len(gi), u.shape[1], -1)
            code = np.repeat(u, K, axis=2) * 256 + np.take_along_axis(u, j, axis=2) + (gj[:, None, :] - lo) * 65536
            joint += np.bincount(code[np.broadcast_to(same[:, None, :], code.shape)], minlength=len(joint))
        best[lo:hi] = (joint.reshape(hi - lo, 65536).astype(np.float32) @ pair_t).argmax(1)
    return combine(kind, c, best[groups])


def spatial_groups(types: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(nb, L) labels: coordinates joined by pairs whose relation fits spatial neighbours (not two channels
    of one pixel, whose values differ by an offset an additive mask cannot tell from its own)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nb, L, K = part.shape
    src = np.broadcast_to((np.arange(nb)[:, None] * L + np.arange(L))[..., None], part.shape)
    dst = np.arange(nb)[:, None, None] * L + part
    keep = types < SPATIAL_TYPES
    graph = coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(nb * L, nb * L))
    return connected_components(graph, directed=False)[1].reshape(nb, L).astype(np.int64)


def _near(kind: str, c: np.ndarray, width: int) -> np.ndarray:
    """(..., width) candidate masks near ``c``: its low bits changed (xor) or c ± width/2 (add)."""
    e = np.arange(width)
    return c[..., None] ^ e if kind == "xor" else (c[..., None] + e - width // 2) % 256


def cooccurrence(yb: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(256, 256) float64: how often cipher values a and b sit on a pair of partners, over every pair and
    image, symmetrised."""
    nb, n, L = yb.shape
    K = part.shape[2]
    out = np.zeros(65536, dtype=np.float64)
    for sl, im in ((sl, im) for sl in _block_chunks(nb, n * L * K) for im in _image_chunks(n, nb * L * K)):
        v = yb[sl, im].astype(np.int64)
        j = np.broadcast_to(part[sl][:, None], (v.shape[0], v.shape[1], L, K)).reshape(v.shape[0], v.shape[1], -1)
        out += np.bincount((np.repeat(v, K, axis=2) * 256 + np.take_along_axis(v, j, axis=2)).reshape(-1),
                           minlength=65536)
    out = out.reshape(256, 256)
    return out + out.T


def seriate(co: np.ndarray, counts: np.ndarray, ends: int = 4) -> np.ndarray:
    """(256,) int64 plain value (rank) of every cipher value of one shared substitution, up to reversal.

    The Fiedler vector of the co-occurrence graph orders the values (partners' values are close in the
    plain domain). It cannot place clipped values: a photo's 0 and 255 sit beside every value of a dark or
    blown-out region, so they land a few ranks inside; a value among the ``ends`` nearest an end of the
    order that is seen more than twice as often as any other there (the clipping spike) goes to that end.
    Values never seen go after the rest (nothing tells where they belong)."""
    seen = counts > 0
    w = co[np.ix_(seen, seen)]
    deg = w.sum(1) + 1e-9
    lap = np.eye(len(w)) - w / np.sqrt(deg[:, None] * deg[None, :])
    fied = np.linalg.eigh(lap)[1][:, 1] / np.sqrt(deg)
    order = list(np.flatnonzero(seen)[np.argsort(fied, kind="stable")])
    for flip in (False, True):
        seq = order[::-1] if flip else order
        head = seq[:ends]
        c = counts[head]
        top = int(np.argmax(c))
        if len(head) > 1 and c[top] > 2 * np.delete(c, top).max():
            seq = [head[top]] + [v for v in seq if v != head[top]]
        order = seq[::-1] if flip else seq
    order += list(np.flatnonzero(~seen))
    rank = np.empty(256, dtype=np.int64)
    rank[np.asarray(order)] = np.arange(256)
    return rank


def score_blocks(nb: int, L: int) -> np.ndarray:
    """Indices of the blocks on which the kinds of value map are compared (and masks that differ by block
    are first recovered): every block while nb·L² is at most :data:`MASK_SCORE_WORK`, else that budget's
    worth, evenly spaced. The masks of the kind that wins are then recovered on every block."""
    if nb * L * L <= MASK_SCORE_WORK:
        return np.arange(nb)
    return np.unique(np.linspace(0, nb - 1, max(4, MASK_SCORE_WORK // (L * L))).round().astype(np.int64))


def shared_across_blocks(kind: str, yb: np.ndarray, images: int = SCORE_IMAGES) -> bool:
    """Whether one mask serves every block: the top bit plane (xor) or the angles (add) of in-block
    coordinates pooled over all blocks stay as correlated as within one block (block masks that differ
    flip or turn them block by block, and pooled they cancel)."""
    L = yb.shape[2]
    # within: a sample of blocks, evenly spaced, where every block's L x L correlations would not fit
    v = yb[np.unique(np.linspace(0, len(yb) - 1, max(8, CHUNK // (4 * L * L))).round().astype(np.int64)), :images]
    off = ~np.eye(L, dtype=bool)
    within = float(np.abs(_correlations(kind, v)[0])[:, off].mean())
    pooled = float(np.abs(_correlations(kind, yb[:, :images].reshape(1, -1, L))[0, 0])[off].mean())
    return pooled > 0.5 * within


def masks(kind: str, yb: np.ndarray, model: PlainModel, shared: bool) -> Tuple[np.ndarray, np.ndarray]:
    """xor or add: (masks (nb, L) int64, partners (nb, L, K)) of every coordinate of every block; with
    ``shared``, one mask for every block, its statistics pooled over all blocks."""
    nb, n, L = yb.shape
    work = yb.transpose(1, 0, 2).reshape(1, -1, L) if shared else yb
    part, base = coarse(kind, work, 2 * PARTNERS if shared else PARTNERS)
    scores, types = pair_scores(kind, work, part, model)
    if kind == "xor":
        start, cand = low_bits(scores, part, base), _near(kind, base, 16)
    else:
        start, cand = base, _near(kind, base, 32)
    c = polish(kind, start, cand, scores, part)
    groups = np.broadcast_to(np.arange(len(work))[:, None], c.shape)
    c = constants(kind, work, c, part, model, np.ascontiguousarray(groups))
    c = regroup(kind, work, c.copy(), part, types, model)
    if shared:
        return np.broadcast_to(c, (nb, L)), np.broadcast_to(part[:, :, :PARTNERS], (nb, L, PARTNERS))
    return c, part


def smoothness(x: np.ndarray, part: np.ndarray, model: PlainModel) -> float:
    """How natural decryptions (nb, n, L) look: every coordinate's mean log-likelihood of the difference to
    its best-fitting partner (among ``part`` (nb, L, K)), averaged over the coordinates."""
    nb, n, L = x.shape
    xi = x.astype(np.int64)
    xj = np.take_along_axis(xi, part.reshape(nb, 1, -1), axis=2).reshape(nb, n, L, -1)
    return float(model.diff[xi[..., None] - xj + 255].mean(1).max(2).mean())


def _flips_only(mask: np.ndarray) -> bool:
    """Whether an xor mask (nb, L) only inverts values (0/255 within every block, up to its constant): an
    arbitrary byte mask has 2 in 256 of its entries there, a flip mask all (most, where a few low bits
    came out wrong)."""
    rel = mask ^ mask[:, :1]
    return bool(np.isin(rel, (0, 255)).mean() > 0.5)


def _inversions_only(tables: np.ndarray) -> bool:
    """Whether group tables (L, 256) are each the identity or the inversion v -> 255 - v (a flip mask), up to
    a few close values swapped (``PLAIN_ORDER`` on average)."""
    v = np.arange(256)
    return bool(all(min(np.abs(t - v).mean(), np.abs(t - (255 - v)).mean()) < PLAIN_ORDER for t in tables))


def recover_value_maps(y: np.ndarray, public: np.ndarray, m: int,
                       say: Callable[..., None] = lambda *a: None) -> ValueMaps:
    """Every kind's value maps from ciphertexts ``y`` (N, H, W, C) uint8 and public plain images, and the
    kind whose decryptions are the smoothest (block size ``m``: values never leave their block)."""
    t0 = time.perf_counter()
    model = PlainModel.of(public)
    yb, lay = block_values(y, m)
    sb = score_blocks(*yb.shape[::2])
    found: Dict[str, Tuple[np.ndarray, bool]] = {}
    parts = []
    for kind in ("xor", "add"):
        shared = shared_across_blocks(kind, yb)
        c, part = masks(kind, yb if shared else yb[sb], model, shared)
        found[kind] = (c[sb] if shared else c, shared)
        parts.append(part[sb] if shared else part)
    part_s = coarse("subst", yb[sb])[0]
    rank = seriate(cooccurrence(yb[sb], part_s[:, :, :PARTNERS // 2]), np.bincount(y.reshape(-1), minlength=256))
    parts.append(part_s)
    union = np.concatenate(parts, axis=2)
    ys = yb[sb, :SCORE_IMAGES]
    scores = {"none": smoothness(ys, union, model), "subst": smoothness(rank[ys], union, model)}
    grouped = group_value_maps(yb, model)
    if grouped is not None:
        scores["groups"] = smoothness(grouped[0][np.arange(yb.shape[2]), ys], union, model)
    scores.update({k: smoothness(strip(k, ys, c[:, None, :]), union, model) for k, (c, _) in found.items()})
    kind = max(scores, key=scores.get)
    if (kind == "xor" and _flips_only(found["xor"][0])) or (kind == "groups" and _inversions_only(grouped[0])):
        kind = "none"      # 0/255 flips: the block method models them
    info = {"value_map_kind": kind, "value_map_seconds": time.perf_counter() - t0,
            **{f"value_map_score_{k}": v for k, v in scores.items()}}
    if len(model_images(public.shape)) < len(public):
        info["value_map_public_images"] = f"{len(model_images(public.shape))} of {len(public)} (MODEL_VALUES)"
    if len(sb) < yb.shape[0]:
        info["value_map_scored_blocks"] = f"{len(sb)} of {yb.shape[0]} (evenly spaced; MASK_SCORE_WORK)"
    say(f"value maps: {kind} ({', '.join(f'{k} {v:.2f}' for k, v in scores.items())}) in "
        f"{info['value_map_seconds']:.1f} s")
    d = int(np.prod(y.shape[1:]))
    if kind == "none":
        return ValueMaps("none", None, scores=scores, info=info)
    if kind == "subst":
        return ValueMaps(kind, np.broadcast_to(rank.astype(np.uint8), (d, 256)), scores=scores, info=info)
    if kind == "groups":
        table = np.empty((d, 256), dtype=np.uint8)
        table[lay] = grouped[0].astype(np.uint8)[None]
        info["value_map_groups"] = int(grouped[1].max()) + 1
        return ValueMaps(kind, table, scores=scores, info=info)
    c, shared = found[kind]
    if shared:
        c = np.broadcast_to(c[:1], (yb.shape[0], c.shape[1]))
    elif len(sb) < yb.shape[0]:      # scored on a sample of the blocks: now every block's own masks
        c = masks(kind, yb, model, False)[0]
        info["value_map_seconds"] = time.perf_counter() - t0
    mask = np.empty(d, dtype=np.int64)
    mask[lay] = c
    info["value_map_shared"] = bool(shared)
    table = strip(kind, np.arange(256)[None, :], mask[:, None]).astype(np.uint8)
    return ValueMaps(kind, table, mask.astype(np.uint8), scores, info)


def group_value_maps(yb: np.ndarray, model: PlainModel) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Kind "groups" (:mod:`.tables`): (tables (L, 256) int64, groups (L,)) of in-block coordinates that share
    a substitution table, some of them possibly the identity, from block values ``yb`` (nb, N, L) pooled over
    the blocks; None where the coordinates fall into no such groups."""
    from .tables import group_tables

    v = yb.transpose(1, 0, 2).reshape(-1, yb.shape[2])

    def smooth(x: np.ndarray, cols) -> float:
        xi = x[:20_000].astype(np.int64)
        d = model.diff[xi[:, :, None] - xi[:, None, :] + 255].mean(0)
        np.fill_diagonal(d, -np.inf)
        return float(d.max(1).mean())

    def anchor_table(x: np.ndarray, cols) -> np.ndarray:
        if len(cols) < 2:
            return np.arange(256)
        xb = x[None]
        part = partners((xb[..., :, None] == xb[..., None, :]).mean(1), PARTNERS)
        rank = seriate(cooccurrence(xb, part[:, :, :PARTNERS // 2]), np.bincount(x.reshape(-1), minlength=256))
        ident = np.arange(256)
        if min(np.abs(rank - ident).mean(), np.abs(rank - ident[::-1]).mean()) < PLAIN_ORDER:
            return ident      # the seriation only swaps a few close values: the group is plain
        return rank if smooth(rank[x], cols) > smooth(x, cols) else ident

    return group_tables(v, smooth, anchor_table)


def attack_value_maps(y: np.ndarray, public: np.ndarray, scheme: str, spec: SchemeSpec, m: int, plain_shape,
                      say: Callable[..., None]) -> ManyImageResult:
    """The key of a block-local scheme with value maps of its own, from ciphertexts ``y`` (N, H, W, C)
    uint8 and public images of that shape: value maps first (:func:`recover_value_maps`), then the block
    method on the stripped values (``spec``, the generic facts, where no value map was found)."""
    from .blocks import attack_blocks

    vm = recover_value_maps(y, public, m, say)
    if vm.kind == "none":
        res = attack_blocks(y, public, scheme, spec, m, plain_shape, say)
    else:
        z = vm.apply(y)
        per_block_inversion = vm.kind == "xor" and not vm.info.get("value_map_shared", False)
        shuffled = inblock_shuffled(z, public, m)
        res = attack_blocks(z, public, scheme, moves_spec(scheme, per_block_inversion, shuffled), m, plain_shape,
                            say)
        res.values = vm.table
        res.info["inblock_shuffle"] = shuffled
    res.info.update(vm.info)
    return res


def inblock_shuffled(z: np.ndarray, public: np.ndarray, m: int, margin: float = 0.5) -> bool:
    """Whether the in-block positions of stripped ciphertexts ``z`` (N, H, W, C) uint8 are shuffled: the
    positions as they stand fit the public images' correlations less than ``margin`` times as well as the
    best match (:func:`.inblock.recover_permutation`). A shuffle leaves next to no fit as they stand, positions
    in place nearly all of it; the cut sits between the two, not near 1: with hundreds of positions (16 x 16
    x 3) the search fits the public images' own correlations a few per cent better than the right answer,
    and a search that is not needed only finds such a near-symmetry, which the jigsaw's states would have
    to undo."""
    from ..qap import objective
    from .inblock import block_rows, correlation, recover_permutation

    ce, cp = correlation(block_rows(z, m)), correlation(block_rows(public, m))
    best = recover_permutation(ce, cp)[1]
    as_is = objective(ce - ce.mean(), cp - cp.mean(), np.arange(len(ce)))
    return bool(as_is < margin * best)


def regroup(kind: str, yb: np.ndarray, c: np.ndarray, part: np.ndarray, types: np.ndarray, model: PlainModel,
            sweeps: int = 2) -> np.ndarray:
    """(nb, L) masks with one more constant per group of coordinates that only spatial-looking pairs join
    (in photos, the channels): relations between channels are the weakest (their values differ by an
    offset), so a whole channel can be off by one constant the partner relations cannot see. Each group's
    constant is chosen, the others fixed, by the likelihood of its pairs (inside it and to the rest) under
    the public values and neighbour differences."""
    groups = spatial_groups(types, part)
    nb, n, L = yb.shape
    K = part.shape[2]
    sizes = np.bincount(groups.reshape(-1))
    if len(sizes) <= nb or len(sizes) > 4 * nb:      # one group per block, or no channel-like structure
        return c
    v = np.arange(256)
    cand = strip(kind, v[:, None], v[None, :]).astype(np.int16)           # [a, e] = a ⊖ e
    inside = (model.hist[cand][:, None, :] + model.hist[cand][None, :, :]
              + model.diff[cand[:, None, :] - cand[None, :, :] + 255]).reshape(65536, 256)
    across = (model.hist[cand][:, None, :] + model.diff[cand[:, None, :] - v[None, :, None] + 255]).reshape(65536, 256)
    take = np.arange(min(n, 20 * SCORE_IMAGES))
    for _ in range(sweeps):
        for g in np.argsort(-sizes)[1:]:
            b = int(np.flatnonzero((groups == g).any(1))[0])
            mine = groups[b] == g
            u = strip(kind, yb[b, take].astype(np.int64), c[b][None, :])           # (n', L): all but g final
            pi = np.flatnonzero(mine)
            pj = part[b, pi]                                                       # (m, K)
            same = mine[pj]
            code = u[:, pi][:, :, None] * 256 + u[:, pj]
            joint_in = np.bincount(code[:, same].reshape(-1), minlength=65536).astype(np.float32)
            joint_out = np.bincount(code[:, ~same].reshape(-1), minlength=65536).astype(np.float32)
            e = int(np.argmax(joint_in @ inside + joint_out @ across))
            c[b, mine] = combine(kind, c[b, mine], e)
    return c
