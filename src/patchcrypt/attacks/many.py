"""Ciphertext-only key recovery from many images under one key (Li & Liu 2023; jigsaw attacks on ViT encryption).

The server of this system holds every training image and every query under one key. Whatever key material
is shared across images then shows in statistics pooled over all of them:

1. **In-block stage** (block-pixel, block-pixel-cs, step-ps, step-bf): the shared pixel shuffle and flip
   mask from the correlations of in-block positions over every block of every image (many_inblock.py);
   step-ps-perblock: the same per block position, pooled over the images.
2. **Jigsaw stage** (block scrambling, per-block states): one block order and one state per block for all
   images, with edge costs summed over the images (many_jigsaw.py).
3. **Global stage**: what no edge can tell — one rotation/flip of the whole image, colour order and
   inversion — by matching mean image, per-channel value histograms and channel correlations to public
   plain images. A left–right mirror changes these only slightly: it is the last thing to fall.

``le`` (shared 4-bit map) and ``pe`` (per-value inversion, per-pixel colour order, same for every image)
have their own short attacks below. The recovered key is returned in the compiled form of
:class:`~patchcrypt.ciphers.program.Map` (y[i] = x[g[i]] XOR m[i] over the flattened image), so it can be
scored entry by entry against the true map (:func:`score_key_map`, scoring only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..blocks import block_layout
from ..ciphers import create_cipher, get_scheme, list_ciphers
from ..ciphers.base import SchemeSpec, StepSpec
from ..ciphers.program import Map
from ..errors import PatchcryptError
from ..keys import Key
from .base import AttackResult
from .registry import AttackOptions, Threat, register_attack
from .target import Target
from .many_inblock import block_rows, correlation, recover_flips, recover_permutation
from .many_jigsaw import COLOUR_ORDERS, Assembler, SideCosts, State, solve, state_list, transform

# Images used for the jigsaw's edge costs: its cost grows with them, and a few hundred leave no doubt.
JIGSAW_FLOP_BUDGET = 6e10
# The steps each method models: block moves, in-block shuffles and flips over bytes (the general method);
# the same on a grayscale composite; per-value inversion and per-pixel colour order (pixel-based schemes).
_BLOCK_STEPS = frozenset({"BS", "RF", "NP", "BF", "CS", "PS"})
_COMPOSITE_STEPS = frozenset({"BS", "RF", "NP"})
_PIXEL_STEPS = frozenset({"NPV", "CS"})


def method_for(spec: SchemeSpec) -> Optional[str]:
    """Which method of this module recovers the scheme's key, read off its facts: "composite", "pixel",
    "nibble", "blocks", or None (no key, per-block nibble keys, or steps no method models)."""
    if not spec.steps:
        return None
    if spec.composite:
        return "composite" if spec.symbols <= _COMPOSITE_STEPS else None
    if spec.pixel_based:
        return "pixel" if spec.symbols <= _PIXEL_STEPS else None
    if spec.unit == "nibble":  # one 4-bit map for every block (le); per-block maps (ele) are out of reach
        return "nibble" if spec.symbols == {"LE"} and all(s.same_for_every_block for s in spec.steps) else None
    return "blocks" if spec.symbols <= _BLOCK_STEPS else None


def supported() -> Tuple[str, ...]:
    """The registered schemes the many-image attack has a method for."""
    return tuple(n for n in list_ciphers(include_steps=True) if method_for(get_scheme(n)) is not None)


@dataclass
class ManyImageResult:
    """A recovered key map and how it was found.

    ``g``/``xor``: the forward map over the flat keyed image (HWC order; 4-bit halves for ``le``; the
    Y|Cb|Cr composite for composite schemes such as ``etc-gray``), in the form of ``Cipher.program(cipher, shape).map``.
    """

    scheme: str
    block_size: int
    plain_shape: Tuple[int, int, int]
    keyed_shape: Tuple[int, int, int]
    unit: str
    g: np.ndarray
    xor: np.ndarray
    info: Dict[str, Any] = field(default_factory=dict)
    composite: bool = False

    @property
    def map(self) -> Map:
        return Map(self.g, self.xor)

    def with_state(self, state) -> "ManyImageResult":
        """The map whose decryptions are this map's with one global state applied (see :mod:`.scoring`)."""
        from .scoring import state_as_map

        perm, mask = state_as_map(state, self.plain_shape)
        s = Map(perm, mask)
        s = s.lift_to_nibbles() if self.unit == "nibble" else s
        fwd = s.inverse().then(self.map)
        return ManyImageResult(self.scheme, self.block_size, self.plain_shape, self.keyed_shape, self.unit, fwd.g,
                               fwd.m, dict(self.info), self.composite)

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        """(N, H', W', C') uint8 ciphertexts → (N, H, W, C) uint8 decryptions under the recovered map."""
        y = np.ascontiguousarray(ciphertexts).reshape(len(ciphertexts), -1)
        if self.unit == "nibble":
            halves = np.stack((y >> 4, y & 15), axis=-1).reshape(len(y), -1)
            x = np.empty_like(halves)
            x[:, self.g] = halves ^ self.xor
            x = (x[:, 0::2] << 4) | x[:, 1::2]
        else:
            x = np.empty_like(y)
            x[:, self.g] = y ^ self.xor
        x = x.reshape(len(y), *self.keyed_shape)
        if self.composite:
            return _composite_facts(self.scheme, self.block_size).from_composite(x, False)
        return x


def _composite_facts(scheme: str, block_size: int):
    """The public colour conversion of a composite scheme (the key in this object is never used)."""
    return create_cipher(scheme, Key(bytes(32)), block_size=block_size)


# ------------------------------------------------------------------------------------------------------------
# working decryption map: x̂ = y_flat[G] ^ K, with G, K arrays of the keyed image's shape
class _Work:
    def __init__(self, shape: Tuple[int, int, int]):
        self.shape = shape
        self.G = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        self.K = np.zeros(shape, dtype=np.uint8)

    def apply(self, y: np.ndarray) -> np.ndarray:
        flat = y.reshape(len(y), -1)
        return (flat[:, self.G.reshape(-1)] ^ self.K.reshape(-1)).reshape(len(y), *self.shape)

    def forward(self) -> Map:
        return Map(self.G.reshape(-1).copy(), self.K.reshape(-1).copy()).inverse()


def _global_transform(arr: np.ndarray, rot: int, order) -> np.ndarray:
    """A whole-image dihedral state then colour order on (..., H, W, C) arrays."""
    out = np.rot90(arr, rot % 4, axes=(-3, -2))
    if rot >= 4:
        out = out[..., :, ::-1, :]
    if out.shape[-1] == 3:
        out = out[..., list(order)]
    return np.ascontiguousarray(out)


# ------------------------------------------------------------------------------------------------------------
def many_image_attack(ciphertexts: np.ndarray, public: np.ndarray, scheme: Union[str, SchemeSpec], block_size: int,
                      plain_shape: tuple, progress: Optional[bool] = None) -> ManyImageResult:
    """Recover the key map of ``scheme`` from N ciphertexts under one key and public plain images.

    Args:
        ciphertexts: (N, H', W', C') uint8 as the scheme produces them, all under one key.
        public: (P, H, W, C) uint8 plain natural images (resized to ``plain_shape`` if they differ).
        scheme: a registered name or the facts of a scheme (:class:`SchemeSpec`, e.g. a user scheme's, or
            :func:`generic_spec` when it declared none); block_size: M.
        plain_shape: (H, W, C) of the plain images.
    Returns:
        :class:`ManyImageResult` (the recovered forward map and ``decrypt``).
    """
    spec = get_scheme(scheme) if isinstance(scheme, str) else scheme
    scheme = spec.name
    method = method_for(spec)
    if method is None:
        raise PatchcryptError(f"the many-image attack has no method for scheme {scheme!r} "
                              f"(it handles {', '.join(supported())})")
    ciphertexts = np.asarray(ciphertexts)
    if ciphertexts.dtype != np.uint8 or ciphertexts.ndim != 4 or len(ciphertexts) < 2:
        raise PatchcryptError("ciphertexts must be (N, H, W, C) uint8 with N >= 2")
    plain_shape = tuple(int(v) for v in plain_shape)
    public = _fit_public(np.asarray(public), plain_shape)
    say = (lambda *a: print("many-image attack:", *a, flush=True)) if progress else (lambda *a: None)
    t0 = time.perf_counter()
    if method == "composite":
        res = _attack_gray(ciphertexts, public, scheme, block_size, plain_shape, say)
    elif method == "pixel":
        res = _attack_pe(ciphertexts, public, scheme, plain_shape, say)
    elif method == "nibble":
        res = _attack_le(ciphertexts, public, scheme, block_size, plain_shape, say)
    else:
        res = _attack_blocks(ciphertexts, public, scheme, spec, block_size, plain_shape, say)
    res.info["seconds"] = time.perf_counter() - t0
    res.info["n_images"] = int(len(ciphertexts))
    res.info["method"] = method
    res.composite = bool(spec.composite)
    return res


def _fit_public(public: np.ndarray, shape: Tuple[int, int, int]) -> np.ndarray:
    if public.ndim != 4 or public.dtype != np.uint8 or len(public) < 2:
        raise PatchcryptError("public images must be (P, H, W, C) uint8 with P >= 2")
    if public.shape[3] != shape[2]:
        raise PatchcryptError(f"public images have {public.shape[3]} channels, the plain images {shape[2]}")
    if public.shape[1:3] == shape[:2]:
        return public
    from PIL import Image

    sq = lambda a: a[..., 0] if a.shape[2] == 1 else a  # noqa: E731
    out = [np.asarray(Image.fromarray(sq(p)).resize((shape[1], shape[0]), Image.BICUBIC)) for p in public]
    return np.stack(out).reshape(len(public), *shape)


def _steps(spec) -> Dict[str, bool]:
    """symbol → shared, for the scheme's steps."""
    return {s.symbol: s.shared for s in spec.steps}


def _attack_blocks(y: np.ndarray, public: np.ndarray, scheme: str, spec, m: int, plain_shape, say):
    steps = _steps(spec)
    keyed_shape = tuple(int(v) for v in y.shape[1:])
    if public.shape[1:] != keyed_shape:
        raise PatchcryptError(f"ciphertexts of shape {keyed_shape} do not fit plain images {plain_shape} "
                              f"under {scheme!r}")
    h, w, c = keyed_shape
    if h % m or w % m:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {m}")
    work = _Work(keyed_shape)
    info: Dict[str, Any] = {}
    lay = block_layout(h, w, c, m)
    ps_est = "PS" in steps

    # 1. in-block: shared shuffle/flip mask (or per block position for step-ps-perblock)
    if "PS" in steps or "BF" in steps:
        t = time.perf_counter()
        corr_plain = _blur_plain(correlation(block_rows(public, m)), steps, m, c)
        if "PS" in steps and not steps["PS"]:
            groups = [[k] for k in range(lay.shape[0])]
        else:
            groups = [list(range(lay.shape[0]))]
        gflat, kflat = work.G.reshape(-1), work.K.reshape(-1)
        newg, newk = gflat.copy(), kflat.copy()
        yb = y.reshape(len(y), -1)
        for grp in groups:
            if len(groups) == 1:
                rows = block_rows(y, m)
            else:
                rows = yb[:, lay[grp[0]]].astype(np.float64)
            ce = correlation(rows)
            flips = recover_flips(ce) if "BF" in steps else np.zeros(lay.shape[1], bool)
            sgn = np.where(flips, -1.0, 1.0)
            if "PS" in steps:
                sigma, _ = recover_permutation(ce * sgn[:, None] * sgn[None, :], corr_plain,
                                               starts=(8 if lay.shape[1] <= 256 else 6) if len(groups) == 1 else 3)
            else:
                sigma = np.arange(lay.shape[1])
            for k in grp:
                newg[lay[k][sigma]] = gflat[lay[k]]
                newk[lay[k][sigma]] = kflat[lay[k]] ^ np.where(flips, 255, 0).astype(np.uint8)
        work.G, work.K = newg.reshape(keyed_shape), newk.reshape(keyed_shape)
        info["inblock_seconds"] = time.perf_counter() - t
        say(f"in-block map in {info['inblock_seconds']:.1f} s")

    # 2. jigsaw: block order and per-block states, costs summed over the images
    rf_free = "RF" in steps or ps_est
    np_free = "NP" in steps
    cs_free = c == 3 and (("CS" in steps and not steps["CS"]) or ("PS" in steps and not steps["PS"]))
    fixed = "BS" not in steps
    if not fixed or rf_free or np_free or cs_free:
        t = time.perf_counter()
        n_blocks = lay.shape[0]
        gh, gw = h // m, w // m
        states = state_list(rf_free, np_free, cs_free)
        per_image = 4 * n_blocks * 4 * n_blocks * 2 * 4 * m * c * (6 if cs_free else 1) * (2 if np_free else 1)
        k_img = int(max(2, min(len(y), JIGSAW_FLOP_BUDGET // per_image)))
        z = work.apply(y[:k_img])
        pieces = z.reshape(k_img, gh, m, gw, m, c).transpose(1, 3, 0, 2, 4, 5).reshape(n_blocks, k_img, m, m, c)
        asm = Assembler(SideCosts(pieces, cs_free, np_free), states, m)
        seed_states = [k for k, st in enumerate(states) if not st.neg and st.order == (0, 1, 2)]
        grid = solve(asm, gh, gw, fixed, seed_states=seed_states if fixed else None)
        gb = work.G.reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(n_blocks, m, m, c)
        kb = work.K.reshape(gh, m, gw, m, c).transpose(0, 2, 1, 3, 4).reshape(n_blocks, m, m, c)
        new_g, new_k = np.empty_like(gb), np.empty_like(kb)
        for cell, v in enumerate(grid.reshape(-1)):
            piece, st = divmod(int(v), len(states))
            state = states[st]
            new_g[cell] = transform(gb[piece], State(state.rot, False, state.order))
            new_k[cell] = transform(kb[piece], State(state.rot, False, state.order)) ^ (255 if state.neg else 0)
        work.G = new_g.reshape(gh, gw, m, m, c).transpose(0, 2, 1, 3, 4).reshape(keyed_shape)
        work.K = new_k.reshape(gh, gw, m, m, c).transpose(0, 2, 1, 3, 4).reshape(keyed_shape)
        info.update(jigsaw_images=k_img, jigsaw_seconds=time.perf_counter() - t, jigsaw_states=len(states))
        say(f"jigsaw of {n_blocks} pieces x {len(states)} states over {k_img} images in "
            f"{info['jigsaw_seconds']:.1f} s")

    # 3. global state: whole-image rotation/flip (blocks were scrambled), colour order, inversion
    rots = ([0, 1, 2, 3, 4, 5, 6, 7] if h == w else [0, 2, 4, 6]) if not fixed else [0]
    orders = COLOUR_ORDERS if (c == 3 and ("CS" in steps or "PS" in steps)) else [(0, 1, 2)]
    inverts = [(False,) * c, (True,) * c] if ({"NP", "BF", "NPV"} & set(steps)) else [(False,) * c]
    t = time.perf_counter()
    best, ranked = _choose_global(work, y, public, rots, orders, inverts)
    info.update(global_seconds=time.perf_counter() - t, global_candidates=len(ranked),
                global_margin=float(ranked[1][0] - ranked[0][0]) if len(ranked) > 1 else float("inf"))
    rot, order, inv = best
    work.G = _global_transform(work.G, rot, order)
    work.K = _global_transform(work.K, rot, order) ^ _inversion(inv)
    fwd = work.forward()
    return ManyImageResult(scheme, m, plain_shape, keyed_shape, "byte", fwd.g, fwd.m, info)


def _blur_plain(corr: np.ndarray, steps: Dict[str, bool], m: int, c: int) -> np.ndarray:
    """The plain in-block correlation as the shared in-block stage sees it: averaged over the per-block
    rotations/flips and colour orders applied before the shared shuffle (they mix every block's positions)."""
    from ..ciphers.steps import colour_tables, dihedral_tables

    tables = [np.arange(len(corr))]
    if "RF" in steps and not steps["RF"]:
        tables = list(dihedral_tables(m, c))
    if c == 3 and "CS" in steps and not steps["CS"]:
        tables = [t[ct] for t in tables for ct in colour_tables(m)]
    return np.mean([corr[np.ix_(t, t)] for t in tables], axis=0)


class _View(_Work):
    """A rectangular part of a working map (its own G and K, indices into the whole ciphertext)."""

    def __init__(self, g: np.ndarray, k: np.ndarray):
        self.shape, self.G, self.K = g.shape, g, k


def _attack_gray(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape, say) -> ManyImageResult:
    """Composite schemes (etc-gray): the Y|Cb|Cr composite's blocks are scrambled, rotated/flipped and inverted.

    Luma blocks are told from chroma blocks by their spread of values (chroma sits near mid-grey), then
    each part is reassembled on its own grid by the multi-image jigsaw and given its global state by
    public statistics of the same part. Cb and Cr share one region (Cb over Cr) and are solved as one
    puzzle, whose seam between them carries no match: the chroma is the weak part.
    """
    facts = _composite_facts(scheme, m)
    comp_pub = facts.to_composite(public, False)
    keyed = tuple(int(v) for v in y.shape[1:])
    if comp_pub.shape[1:] != keyed or facts.subsampling != "420":
        raise PatchcryptError(f"{scheme} ciphertexts of shape {keyed} do not fit plain images {plain_shape}")
    h, wc, _ = keyed
    w = plain_shape[1]
    gh, gw_all, gw_y = h // m, wc // m, w // m
    n_all = gh * gw_all
    blocks = y.reshape(len(y), gh, m, gw_all, m, 1).transpose(1, 3, 0, 2, 4, 5).reshape(n_all, len(y), m, m, 1)
    spread = np.abs(blocks[:, :min(len(y), 2000)].astype(np.float32) - 127.5).mean((1, 2, 3, 4))
    order = np.argsort(-spread)
    parts = {"luma": np.sort(order[:gh * gw_y]), "chroma": np.sort(order[gh * gw_y:])}
    work = _Work(keyed)
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
        view = _View(new_g[region].copy(), new_k[region].copy())
        rots = list(range(8)) if gh == cols else [0, 2, 4, 6]
        best, _ = _choose_global(view, y, np.ascontiguousarray(comp_pub[:, :, col0 * m:(col0 + cols) * m]), rots,
                                 [(0, 1, 2)], [(False,), (True,)])
        rot, _, inv = best
        new_g[region] = _global_transform(view.G, rot, (0, 1, 2))
        new_k[region] = _global_transform(view.K, rot, (0, 1, 2)) ^ _inversion(inv)
    work.G, work.K = new_g, new_k
    info["jigsaw_images"] = k_img
    fwd = work.forward()
    return ManyImageResult(scheme, m, plain_shape, keyed, "byte", fwd.g, fwd.m, info)


# ------------------------------------------------------------------------------------------------------------
# global stage: statistics of decryptions against public plain images
def _features(x: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-image statistics of (N, H, W, C) uint8: mean image, channel histograms, channel correlations."""
    xf = x.astype(np.float32)
    c = x.shape[3]
    codes = (np.arange(len(x))[:, None, None] * c + np.arange(c)[None, None, :]) * 16 + \
        (x.reshape(len(x), -1, c) >> 4)
    hist = np.bincount(codes.reshape(-1), minlength=len(x) * c * 16).reshape(len(x), c, 16).astype(np.float64)
    hist /= x.shape[1] * x.shape[2]
    flat = xf.reshape(len(x), -1, c)
    cen = flat - flat.mean(1, keepdims=True)
    cov = np.einsum("npa,npb->nab", cen, cen) / flat.shape[1]
    return {"mean": xf, "hist": hist, "cov": cov, **_gradients(xf)}


def _gradients(mean: np.ndarray) -> Dict[str, np.ndarray]:
    """Horizontal and vertical differences of (..., H, W, C) arrays. Of a mean image they are the mean
    differences, which in natural images are small and steady: weighted by their own (small) variance they
    tell a left–right mirror far better than the mean image does."""
    return {"dx": mean[..., :, 1:, :] - mean[..., :, :-1, :], "dy": mean[..., 1:, :, :] - mean[..., :-1, :, :]}


def _inversion(inv) -> np.ndarray:
    """XOR mask over the channel axis for a per-channel inversion tuple."""
    return np.where(np.asarray(inv, dtype=bool), 255, 0).astype(np.uint8)


def _transform_features(f: Dict[str, np.ndarray], rot: int, order, inv) -> Dict[str, np.ndarray]:
    """Features of the images after a global state (inv: one bool per output channel)."""
    mean = _global_transform(f["mean"], rot, order)
    hist, cov = f["hist"], f["cov"]
    if mean.shape[-1] == 3:
        hist = hist[..., list(order), :]
        cov = cov[..., list(order), :][..., list(order)]
    flip = np.asarray(inv, dtype=bool)
    if flip.any():
        mean = np.where(flip, 255.0 - mean, mean)
        hist = np.where(flip[:, None], hist[..., ::-1], hist)
        sgn = np.where(flip, -1.0, 1.0)
        cov = cov * sgn[:, None] * sgn[None, :]
    return {"mean": mean, "hist": hist, "cov": cov, **_gradients(mean)}


def _summary(x: np.ndarray, chunk: int = 256) -> Dict[str, np.ndarray]:
    """Means over images of the features (and their variances, for z-scores)."""
    sums, sq, n = {}, {}, 0
    for a in range(0, len(x), chunk):
        f = _features(x[a:a + chunk])
        for k, v in f.items():
            sums[k] = sums.get(k, 0) + v.sum(0)
            sq[k] = sq.get(k, 0) + (v.astype(np.float64) ** 2).sum(0)
        n += len(f["mean"])
    return {k: sums[k] / n for k in sums} | {k + "_var": sq[k] / n - (sums[k] / n) ** 2 for k in sums} | {"n": n}


_FEATURES = ("mean", "hist", "cov", "dx", "dy")


def _choose_global(work: _Work, y: np.ndarray, public: np.ndarray, rots, orders, inverts):
    """The global state whose decryption statistics are closest to the public images'; ranked candidates."""
    pub = _summary(public)
    cur = _summary(_apply_chunks(work, y))
    n, p = cur["n"], pub["n"]
    ranked, dx_score = [], {}
    for rot in rots:
        for order in orders:
            for inv in inverts:
                f = _transform_features({"mean": cur["mean"][None], "hist": cur["hist"][None],
                                         "cov": cur["cov"][None]}, rot, order, inv)
                score = 0.0
                for k in _FEATURES:
                    var = pub[k + "_var"] * (1.0 / n + 1.0 / p) + 1e-6
                    term = float((((f[k][0] - pub[k]) ** 2) / var).mean())
                    score += term
                    if k == "dx":
                        dx_score[(rot, tuple(order), inv)] = term
                ranked.append((score, (rot, tuple(order), inv)))
    ranked.sort(key=lambda r: r[0])
    best = ranked[0][1]
    # the left-right mirror changes only the odd part of the statistics; the mean horizontal differences
    # carry it, the rest only adds noise to that one choice
    partner = ((best[0] + 4) % 8, best[1], best[2])
    if partner in dx_score and dx_score[partner] < dx_score[best]:
        best = partner
    return best, ranked


def _apply_chunks(work: _Work, y: np.ndarray, chunk: int = 512) -> np.ndarray:
    return np.concatenate([work.apply(y[a:a + chunk]) for a in range(0, len(y), chunk)])


# ------------------------------------------------------------------------------------------------------------
def _pe_neighbours(h: int, w: int):
    """Pairs of 4-adjacent pixel indices (a, b), row-major flat pixel numbering."""
    idx = np.arange(h * w).reshape(h, w)
    return np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                           np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1)])


def _attack_pe(y: np.ndarray, public: np.ndarray, scheme: str, plain_shape, say) -> ManyImageResult:
    """Pixel-based schemes (pe): every value its own inversion bit and every pixel its own colour order, the same in every image.

    Across the N images, a value correlates with the values of the neighbouring pixels: strongly and
    positively with the same colour channel when neither is inverted. Growing from one pixel in a fixed
    frame, each next pixel takes the colour order and inversion bits that best agree (by correlation over
    the images) with its already decided neighbours; the one global colour order and inversion left is
    settled by public statistics.
    """
    h, w, c = plain_shape
    if y.shape[1:] != (h, w, c) or c != 3:
        raise PatchcryptError(f"{scheme} ciphertexts must have the plain images' shape and 3 channels")
    n = len(y)
    x = y.reshape(n, h * w, 3).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    # the 48 (order, flips) states of a pixel as signed channel selections: value k = s_k·v[order[k]]
    states = [(o, f) for o in COLOUR_ORDERS for f in range(8)]
    order_of = np.array([s[0] for s in states])          # (48, 3)
    sign_of = np.array([[1 - 2 * ((s[1] >> k) & 1) for k in range(3)] for s in states], dtype=np.float64)
    # decoded pixel under state t: plain channel order[k] ← s_k·v_k, i.e. decode = P·diag(s)
    decoded_index = np.argsort(order_of, axis=1)  # plain channel j comes from cipher slot inv_order[j]
    state = -np.ones(h * w, dtype=np.int64)
    dec = np.zeros((n, h * w, 3))
    start = (h // 2) * w + w // 2
    state[start] = 0
    dec[:, start] = _pe_decode(x[:, start], order_of[0], sign_of[0])
    nbr = [[] for _ in range(h * w)]
    for a, b in _pe_neighbours(h, w):
        nbr[a].append(b)
        nbr[b].append(a)
    import heapq

    heap: List[Tuple[float, int]] = []
    for b in nbr[start]:
        heapq.heappush(heap, (0.0, b))
    while heap:
        _, p = heapq.heappop(heap)
        if state[p] >= 0:
            continue
        done = [q for q in nbr[p] if state[q] >= 0]
        ref = dec[:, done].mean(1)                          # (n, 3) plain-frame neighbours
        corr = x[:, p].T @ ref / n                          # corr[slot, plain channel]
        # score of a state: Σ_j s·corr[inv_order[j], j]
        score = (sign_of[np.arange(48)[:, None], decoded_index] * corr[decoded_index, np.arange(3)[None, :]]).sum(1)
        t = int(np.argmax(score))
        state[p] = t
        dec[:, p] = _pe_decode(x[:, p], order_of[t], sign_of[t])
        for q in nbr[p]:
            if state[q] < 0:
                heapq.heappush(heap, (-float(np.sort(score)[-1] - np.sort(score)[-2]), q))
    work = _Work(plain_shape)
    G = work.G.reshape(h * w, 3)
    K = work.K.reshape(h * w, 3)
    inv_order = decoded_index[state]                     # (pixels, 3): plain channel j ← slot inv_order[j]
    flips = sign_of[state] < 0                           # per slot
    work.G = np.take_along_axis(G, inv_order, 1).reshape(plain_shape)
    work.K = (np.take_along_axis(np.where(flips, 255, 0), inv_order, 1).astype(np.uint8) ^ K).reshape(plain_shape)
    inverts = [tuple(bool((b >> k) & 1) for k in range(3)) for b in range(8)]
    best, ranked = _choose_global(work, y, public, [0], COLOUR_ORDERS, inverts)
    _, order, inv = best
    work.G = _global_transform(work.G, 0, order)
    work.K = _global_transform(work.K, 0, order) ^ _inversion(inv)
    fwd = work.forward()
    return ManyImageResult(scheme, 1, plain_shape, plain_shape, "byte", fwd.g, fwd.m,
                           {"global_margin": float(ranked[1][0] - ranked[0][0])})


def _pe_decode(v: np.ndarray, order: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """(n, 3) cipher slots → (n, 3) plain channels: plain channel order[k] = sign_k · slot k."""
    out = np.empty_like(v)
    out[:, order] = v * sign[None, :]
    return out


# ------------------------------------------------------------------------------------------------------------
def _attack_le(y: np.ndarray, public: np.ndarray, scheme: str, m: int, plain_shape, say) -> ManyImageResult:
    """One 4-bit map for every block (le): one map of 2L 4-bit halves per block. The upper halves carry the image's correlations.

    The halves are split into the L that correlate strongly with others (upper halves) and the rest;
    the upper halves' flips and permutation come from the in-block stage against the upper halves of
    public images. The lower halves are matched the same way against the public lower halves (their
    correlations are weak: expect them largely wrong), and to the leftover values.
    """
    h, w, c = plain_shape
    L = m * m * c
    lay = block_layout(h, w, c, m)

    def nibble_rows(img: np.ndarray) -> np.ndarray:
        rows = block_rows(img, m).astype(np.int64)           # (r, L) bytes
        return np.stack((rows >> 4, rows & 15), axis=-1).reshape(len(rows), 2 * L).astype(np.float64)

    ce = correlation(nibble_rows(y))
    strength = np.sort(np.abs(ce - np.eye(2 * L)), axis=1)[:, -3:].mean(1)
    upper = np.sort(np.argsort(-strength)[:L])
    lower = np.setdiff1d(np.arange(2 * L), upper)
    pub = nibble_rows(public)
    cp_u, cp_l = correlation(pub[:, 0::2]), correlation(pub[:, 1::2])
    flips = np.zeros(2 * L, dtype=bool)
    target = np.zeros(2 * L, dtype=np.int64)                 # cipher half → plain half (2·value + h)
    for sel, cp, half in ((upper, cp_u, 0), (lower, cp_l, 1)):
        sub = ce[np.ix_(sel, sel)]
        f = recover_flips(sub)
        s = np.where(f, -1.0, 1.0)
        sigma, _ = recover_permutation(sub * s[:, None] * s[None, :], cp, starts=6)
        flips[sel] = f
        target[sel] = 2 * sigma + half
    # stage 3 by public statistics is left to the upper halves' global inversion; the dihedral/colour
    # symmetry of the block is settled by the mean-statistics choice below on whole decryptions
    n_blocks = lay.shape[0]
    half_lay = np.stack((2 * lay, 2 * lay + 1), -1).reshape(n_blocks, 2 * L)
    G = np.arange(2 * h * w * c, dtype=np.int64)
    K = np.zeros(2 * h * w * c, dtype=np.uint8)
    newg, newk = G.copy(), K.copy()
    for k in range(n_blocks):
        newg[half_lay[k][target]] = G[half_lay[k]]
        newk[half_lay[k][target]] = np.where(flips, 15, 0)
    dec = Map(newg, newk)                                   # x̂_half = y_half[g] ^ k
    best = None
    from ..ciphers.steps import colour_tables, dihedral_tables

    syms = [(d, o) for d in range(8) for o in (range(6) if c == 3 else [0])]
    tabs_d, tabs_c = dihedral_tables(m, c), (colour_tables(m) if c == 3 else None)
    pub_sum = _summary(public)
    ysub = y[:2000]
    for d, o in syms:
        for inv in (False, True):
            local = tabs_d[d] if tabs_c is None else tabs_d[d][tabs_c[o]]
            perm = np.empty(h * w * c, dtype=np.int64)
            perm[lay.reshape(-1)] = lay[:, local].reshape(-1)   # plain value ← value perm[...]
            hp = np.stack((2 * perm, 2 * perm + 1), -1).reshape(-1)
            g2, k2 = dec.g[hp], dec.m[hp] ^ (np.tile([15, 0], h * w * c).astype(np.uint8) if inv else 0)
            res = ManyImageResult(scheme, m, plain_shape, plain_shape, "nibble", *_nibble_forward(g2, k2), {})
            f = _summary(res.decrypt(ysub))
            score = sum(float((((f[k] - pub_sum[k]) ** 2) / (pub_sum[k + "_var"] + 1e-6)).mean())
                        for k in _FEATURES)
            if best is None or score < best[0]:
                best = (score, res)
    res = best[1]
    res.info["upper_halves_found"] = L
    return res


def _nibble_forward(g: np.ndarray, k: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    fwd = Map(g, k).inverse()
    return fwd.g, fwd.m


# ------------------------------------------------------------------------------------------------------------
def score_key_map(recovered: ManyImageResult, cipher, plain_shape: tuple, nonce: bytes = b"") -> Dict[str, Any]:
    """Compare a recovered map with the true one (scoring only: this reads the key).

    Returns ``key_map_fraction`` (entries where both g and xor are right), ``exact_key``, and for nibble
    schemes ``upper_half_fraction`` (the entries that carry a most significant half).
    """
    from ..ciphers.base import Cipher

    shape = recovered.keyed_shape if recovered.composite else tuple(plain_shape)
    true = Cipher.program(cipher, shape, nonce).map   # composites: over the composite the keyed steps act on
    g, m = np.asarray(recovered.g), np.asarray(recovered.xor)
    if g.shape != true.g.shape:
        raise PatchcryptError(f"recovered map has {g.size} entries, the true one {true.g.size}")
    ok = (g == true.g) & (m == true.m)
    out = {"key_map_fraction": float(ok.mean()), "exact_key": bool(ok.all())}
    if recovered.unit == "nibble":
        out["upper_half_fraction"] = float(ok[true.g % 2 == 0].mean())
    return out


# ------------------------------------------------------------------------------------------------------------
# the registered attack: any target, its declared facts choosing the method, or the generic one
def generic_spec(name: str) -> SchemeSpec:
    """The facts assumed for a scheme that declares none: every block-local move and flip the block method
    models at once (blocks scrambled, each block rotated/flipped, negated and colour-shuffled on its own,
    one in-block pixel shuffle and one flip mask shared by every block). Any scheme of that form -- one
    fixed permutation and one fixed negation mask over M x M blocks -- is recovered; declaring fewer steps
    only makes it faster."""
    return SchemeSpec(name, (StepSpec("BS"), StepSpec("RF"), StepSpec("NP"), StepSpec("CS"), StepSpec("PS", True),
                             StepSpec("BF", True)), "generic: block-local moves and flips")


def _spec_for(t: Target) -> Tuple[Optional[SchemeSpec], Optional[str]]:
    """(facts the attack runs on, None) or (None, the reason it does not apply)."""
    if t.steps is not None and not t.steps:
        return None, "there is no key to recover"
    if t.composite and not t.registered:
        return None, "the ciphertext has another shape than the image (a composite); no method without its conversion"
    if t.steps is None:
        if t.spec.unit == "nibble":
            return None, "no method for undeclared steps on 4-bit halves"
        return generic_spec(t.name), None
    if method_for(t.spec) is None:
        return None, ("no method for these steps yet (per-block 4-bit keys, or a step no method models: "
                      f"{', '.join(sorted(t.steps))}); it handles " + ", ".join(supported()))
    return t.spec, None


def _many_applies(t: Target) -> Optional[str]:
    return _spec_for(t)[1]


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
    (:func:`.scoring.rank_states`), and where the method's remaining ambiguity is exactly those 96 states
    the first is applied (otherwise the method's own choice stands and the ranker orders the rest).
    """
    from .scoring import GLOBAL_STATES, apply_state, rank_states

    if train is None or len(train) < 2:
        raise PatchcryptError("the many-image attack needs public plain images (training data)")
    spec, reason = _spec_for(t)
    if reason:
        raise PatchcryptError(f"attack 'many' does not apply to scheme {t.name!r}: {reason}")
    enc = t.encrypt(test)
    res = many_image_attack(enc, train, spec, t.block_size, test.shape[1:], progress=o.progress)
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
    extra.update(rank_seconds=time.perf_counter() - t0, facts="declared" if t.steps is not None else "none (generic)")
    extra["seconds"] = res.info["seconds"] + extra["rank_seconds"]
    return AttackResult("many", t.name, test, enc, rec, extra, candidates=base, state_order=order, key_map=res.map)


__all__ = ["many_image_attack", "ManyImageResult", "score_key_map", "run_many", "method_for", "supported",
           "generic_spec"]
