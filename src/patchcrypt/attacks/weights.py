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

Results are per-block pieces (σ, g, mask) and the compiled image map (:mod:`.keymaps`), scored against the
true map (exact share, and share up to the one global symmetry the weights cannot fix).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np

from ..errors import PatchcryptError
from ..keys import Key
from .base import AttackResult, require
from .registry import AttackOptions, Threat, register_attack
from .target import Target
if TYPE_CHECKING:
    import torch.nn as nn

from .keymaps import (block_map_to_image, decrypt_with, dihedral_colour_states, grid_symmetries, map_fraction,
                      true_key_map)


@dataclass
class RecoveredBlocks:
    """Per-block key pieces: encrypted block k holds plain block sigma[k]; element i ← element g[k, i], XOR mask."""

    sigma: np.ndarray   # (n,)
    g: np.ndarray       # (n, L)
    mask: np.ndarray    # (n, L) uint8, 0 or 255

    def image_map(self, shape, block_size: int):
        return block_map_to_image(self.sigma, self.g, self.mask, shape, block_size)


# -- pieces ---------------------------------------------------------------------------------------------------
def _keyed_tensors(model: nn.Module) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Folded patch embedding as (n or 1, D, L) float64 and the patch rows of the position embedding (n, D)."""
    from ..models.keyed import folded_embedding

    if not getattr(model, "is_isotropic", False):
        raise PatchcryptError(f"{type(model).__name__} has no single linear patch embedding to read a key from")
    w, _ = folded_embedding(model)
    w = w.numpy()
    if w.ndim == 2:
        w = w[None]
    pos = model.pos_embed.detach().double().numpy()[0, 1:] if hasattr(model, "pos_embed") else None
    return w, pos


def _unit_columns(w: np.ndarray) -> np.ndarray:
    return w / np.maximum(np.linalg.norm(w, axis=-2, keepdims=True), 1e-30)


def match_columns(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Signed column matching: a[:, i] ≈ s[i] · b[:, g[i]] with g a permutation.

    Args:
        a, b: (D, L) float. Returns g (L,) int64, s (L,) ±1.0, and the worst |cosine| of a matched pair
        (1.0 when a is exactly a signed column permutation of b).
    """
    c = _unit_columns(a).T @ _unit_columns(b)                  # (L, L) cosines
    score = np.abs(c)
    g = score.argmax(1)
    if len(np.unique(g)) != len(g):                           # not a permutation: solve the assignment
        from scipy.optimize import linear_sum_assignment

        _, g = linear_sum_assignment(-score)
    picked = c[np.arange(len(g)), g]
    return g.astype(np.int64), np.where(picked < 0, -1.0, 1.0), float(np.abs(picked).min())


def match_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row k of ``a`` is row idx[k] of ``b`` (closest in Euclidean distance, one-to-one). a, b: (n, D)."""
    from scipy.optimize import linear_sum_assignment

    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
    _, idx = linear_sum_assignment(d)
    return idx.astype(np.int64)


def _masks(s: np.ndarray) -> np.ndarray:
    return np.where(s < 0, 255, 0).astype(np.uint8)


def recover_with_plain(keyed: nn.Module, plain: nn.Module) -> Tuple[RecoveredBlocks, Dict[str, float]]:
    """Attack (a): the key pieces of ``keyed`` from the plain model it was made from (exact)."""
    wk, pk = _keyed_tensors(keyed)
    w0, p0 = _keyed_tensors(plain)
    n = pk.shape[0] if pk is not None else getattr(keyed, "grid_size", 1) ** 2
    if pk is not None and p0 is not None:
        sigma = match_rows(pk, p0)
    else:  # no position embedding (ConvMixer): blocks cannot have moved
        sigma = np.arange(n)
    L = wk.shape[-1]
    g, s = np.empty((n, L), np.int64), np.empty((n, L))
    worst = 1.0
    for k in range(n):
        src = w0[sigma[k] if w0.shape[0] > 1 else 0]
        gk, sk, wk_cos = match_columns(wk[k if wk.shape[0] > 1 else 0], src)
        g[k], s[k], worst = gk, sk, min(worst, wk_cos)
        if wk.shape[0] == 1 and w0.shape[0] == 1:   # shared: one match serves every block
            g[:], s[:] = gk, sk
            break
    # check: a flip also moves the bias, b′_k = b₀ − W′_k t_k (t = 255 where flipped)
    from ..models.keyed import folded_embedding

    bk = np.broadcast_to(folded_embedding(keyed)[1].numpy(), (n, wk.shape[1]))
    b0 = np.broadcast_to(folded_embedding(plain)[1].numpy(), (n, wk.shape[1]))
    w_k = np.broadcast_to(wk, (n,) + wk.shape[1:])
    predicted = b0[sigma if w0.shape[0] > 1 else np.zeros(n, np.int64)] - np.einsum("kdl,kl->kd", w_k, 255.0 * (s < 0))
    residual = float(np.abs(predicted - bk).max() / max(np.abs(bk).max(), 1e-12))
    return RecoveredBlocks(sigma, g, _masks(s)), {"worst_column_cosine": worst, "bias_residual": residual}


def relative_states(keyed: nn.Module, reference: int = 0) -> Tuple[np.ndarray, np.ndarray, float]:
    """Attack (b), position-wise models: every block's in-block map relative to block ``reference``.

    Returns g_rel, s_rel (n, L) with W′_k[:, i] = s_rel[k, i] · W′_ref[:, g_rel[k, i]], and the worst |cosine|.
    With the reference's true map (g₀, s₀): g_k = g₀[g_rel[k]], s_k = s_rel[k] · s₀[g_rel[k]].
    """
    wk, _ = _keyed_tensors(keyed)
    if wk.shape[0] == 1:
        raise PatchcryptError("this keyed model has one shared embedding; relative block states need a "
                              "position-wise one")
    out_g, out_s, worst = [], [], 1.0
    for k in range(wk.shape[0]):
        gk, sk, c = match_columns(wk[k], wk[reference])
        out_g.append(gk)
        out_s.append(sk)
        worst = min(worst, c)
    return np.stack(out_g), np.stack(out_s), worst


def _qap_swaps(sim: np.ndarray, kernel: np.ndarray, order: np.ndarray, max_steps: int = 5000) -> Tuple[np.ndarray, float]:
    """Steepest-ascent pairwise swaps for max Σ sim[order[a], order[b]] · kernel[a, b]; returns (order, value)."""
    order = order.copy()
    n = len(order)
    for _ in range(max_steps):
        p = sim[np.ix_(order, order)]                        # similarity in cell order
        gmat = p @ kernel                                    # gmat[x, y] = Σ_c p[x, c] k[c, y]
        dg = np.diag(gmat)
        # gain of swapping cells a, b (both symmetric matrices): 2 Σ_{c≠a,b} (p[b,c] − p[a,c])(k[a,c] − k[b,c])
        gain = gmat.T + gmat - dg[:, None] - dg[None, :]
        pd, kd = np.diag(p), np.diag(kernel)
        corr = (p - pd[:, None]) * (kd[:, None] - kernel) + (pd[None, :] - p) * (kernel - kd[None, :])
        gain = 2 * (gain - corr)
        np.fill_diagonal(gain, 0)
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        if gain[a, b] <= 1e-12 * max(1.0, np.abs(p).max()):
            break
        order[[a, b]] = order[[b, a]]
    p = sim[np.ix_(order, order)]
    return order, float((p * kernel).sum())


def _spectral_starts(sim: np.ndarray, coords: np.ndarray, kernel: np.ndarray, keep: int = 4) -> list:
    """Starting orders from a spectral embedding of ``sim``, matched to the cells by assignment.

    The embedding is unique only up to a rotation/reflection of its first two axes (exactly so on a square
    grid, whose two lowest modes have one eigenvalue), so the axes are scanned over angles and both
    handednesses; the ``keep`` best by the objective are returned as ``order[cell] = item``.
    """
    from scipy.optimize import linear_sum_assignment

    k = coords.shape[1]
    a = np.maximum(sim, 0)
    np.fill_diagonal(a, 0)
    deg = np.maximum(a.sum(1), 1e-12)
    lap = np.eye(len(a)) - a / np.sqrt(deg[:, None] * deg[None])   # normalised Laplacian
    _, vec = np.linalg.eigh(lap)
    emb = vec[:, 1:1 + k] / np.sqrt(deg)[:, None]
    emb = (emb - emb.mean(0)) / np.maximum(emb.std(0), 1e-12)
    cc = (coords - coords.mean(0)) / np.maximum(coords.std(0), 1e-12)
    found = []
    for flip in (1.0, -1.0):
        for theta in np.linspace(0, np.pi, 12, endpoint=False):
            e = emb.copy()
            if k >= 2:
                c_, s_ = np.cos(theta), np.sin(theta)
                e[:, :2] = emb[:, :2] @ np.array([[c_, -s_], [s_, c_]])
                e[:, 1] *= flip
            cost = ((cc[:, None, :] - e[None, :, :]) ** 2).sum(-1)   # cell × item
            _, order = linear_sum_assignment(cost)
            found.append(((sim[np.ix_(order, order)] * kernel).sum(), order))
            if k < 2:
                break
    found.sort(key=lambda t: -t[0])
    return [o for _, o in found[:keep]]


def _matched_starts(sim: np.ndarray, kernel: np.ndarray, k: int = 4) -> list:
    """Starting orders from matching eigenvectors of ``sim`` to those of the template ``kernel``.

    Umeyama's match of absolute eigenvector entries over all modes, plus the leading ``k`` modes with every
    choice of their signs matched by assignment. Returns orders ``order[cell] = item``.
    """
    from scipy.optimize import linear_sum_assignment

    _, u = np.linalg.eigh(sim)
    _, v = np.linalg.eigh(kernel)
    u, v = u[:, ::-1], v[:, ::-1]                              # leading modes first
    out = [linear_sum_assignment(-(np.abs(v) @ np.abs(u).T))[1]]
    for signs in np.array(np.meshgrid(*[[1.0, -1.0]] * k)).reshape(k, -1).T:
        cost = ((v[:, None, :k] - (u[:, :k] * signs)[None]) ** 2).sum(-1)   # cell × item
        out.append(linear_sum_assignment(cost)[1])
    return out


def arrange(sim: np.ndarray, coords: np.ndarray, width: float = 1.0, restarts: int = 8,
            seed: int = 0, kernel: Optional[np.ndarray] = None, kicks: int = 1000) -> np.ndarray:
    """Put n items on n cells (coordinates ``coords`` (n, k)) so that similar items sit close together.

    Maximises Σ sim[item(a), item(b)] · exp(−|a − b|² / 2 width²) over cells a ≠ b: a spectral start and
    ``restarts`` random ones, each improved by pairwise swaps; the best is then kicked (three random swaps)
    and re-improved ``kicks`` times, keeping improvements. Returns ``cell_of[item]``.
    """
    n = len(sim)
    if kernel is None:
        d2 = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
        kernel = np.exp(-d2 / (2 * width ** 2))
    np.fill_diagonal(kernel, 0)
    sim = (sim + sim.T) / 2
    rng = np.random.default_rng(seed)
    best = None
    starts = (_spectral_starts(sim, coords, kernel) + _matched_starts(sim, kernel)
              + [rng.permutation(n) for _ in range(restarts)])
    for start in starts:
        order, value = _qap_swaps(sim, kernel, start)
        if best is None or value > best[1]:
            best = (order, value)
    # iterated local search: kick the best order with a few random swaps, re-climb, keep improvements
    for _ in range(kicks):
        order = best[0].copy()
        for _ in range(3):
            a, b = rng.choice(n, 2, replace=False)
            order[[a, b]] = order[[b, a]]
        order, value = _qap_swaps(sim, kernel, order)
        if value > best[1] + 1e-12:
            best = (order, value)
    cell_of = np.empty(n, np.int64)
    cell_of[best[0]] = np.arange(n)
    return cell_of


def _row_similarity(pos: np.ndarray) -> np.ndarray:
    u = pos - pos.mean(0)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-30)
    return u @ u.T


def grid_from_pos_embed(pos: np.ndarray, gh: int, gw: int, width: float = 1.0, restarts: int = 8,
                        seed: int = 0, reference: Optional[np.ndarray] = None) -> np.ndarray:
    """Attack (b): σ estimate from the keyed position embedding alone (up to the grid's symmetries).

    pos: (n, D) patch rows of the keyed model's position embedding (encrypted block order). Without
    ``reference`` the template is a Gaussian of grid distance (``width``); with ``reference`` (n, D), the
    position embedding of any model of the same architecture trained on public images (not the victim's
    plain model), its row similarities in grid order are the template. Returns (n,) the plain grid cell of
    every encrypted block.
    """
    yy, xx = np.divmod(np.arange(gh * gw), gw)
    kernel = _row_similarity(reference) if reference is not None else None
    return arrange(_row_similarity(pos), np.stack([yy, xx], 1).astype(float), width, restarts, seed, kernel)


def _column_correlation(w: np.ndarray) -> np.ndarray:
    u = _unit_columns(w - w.mean(1, keepdims=True))
    return u.T @ u


def inblock_from_embedding(w: np.ndarray, block_size: int, channels: int, width: float = 1.0,
                           colour_weight: float = 0.8, restarts: int = 20, seed: int = 0,
                           reference: Optional[np.ndarray] = None, kicks: int = 3000
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """Attack (b), shared models: the in-block shuffle and flips from a trained embedding W′ (D, L) alone.

    Columns of a trained patch embedding are similar (in absolute correlation) for neighbouring pixels and
    for the colours of one pixel; they are arranged on the M×M×C block accordingly. Flips follow from the
    signs of the correlations compared with the template's (relative to column 0). With ``reference``
    (D', L), the folded embedding of a model of the same architecture trained on public images, its
    absolute column correlations are the template instead of the generic kernel. Returns g (L,) with
    W′[:, i] ≈ ±W₀[:, g[i]] up to the block's symmetries, and signs (L,) up to one global negation.
    """
    m, c = block_size, channels
    L = m * m * c
    if w.shape[1] != L:
        raise PatchcryptError(f"embedding has {w.shape[1]} columns; a {m}x{m}x{c} block has {L}")
    corr = _column_correlation(w)
    r, col, ch = np.unravel_index(np.arange(L), (m, m, c))
    d2 = (r[:, None] - r[None]) ** 2 + (col[:, None] - col[None]) ** 2
    kernel = np.exp(-d2 / (2 * width ** 2)) * np.where(ch[:, None] == ch[None], 1.0, colour_weight)
    if reference is not None:
        kernel = np.abs(_column_correlation(reference))
    # the spectral start places columns by their pixel only; the swaps then sort out the colours
    cell_of = arrange(np.abs(corr), np.stack([r, col], 1).astype(float), restarts=restarts, seed=seed,
                      kernel=kernel, kicks=kicks)
    # signs: s_i s_j corr[i, j] should agree in sign with the template's correlation of the cells they sit
    # on (the reference's signed correlations; else the positive smoothness kernel), so s is the sign
    # pattern of the leading eigenvector of corr ∘ template (up to one global negation)
    template = _column_correlation(reference) if reference is not None else kernel
    lead = np.linalg.eigh(corr * template[np.ix_(cell_of, cell_of)])[1][:, -1]
    s = np.where(lead < 0, -1.0, 1.0)
    s = s * s[0]
    return cell_of, s


# -- scoring up to the global symmetry ------------------------------------------------------------------------
def global_candidates(sigma: np.ndarray, g: np.ndarray, s: np.ndarray, gh: int, gw: int, block_size: int,
                      channels: int, sigma_known: bool = False):
    """Every key consistent with a recovery up to one global symmetry: (grid symmetry, in-block state).

    ``g``, ``s`` (n, L) are in-block maps relative to an unknown reference state (g = g₀[g_rel]); ``sigma`` is
    the block permutation up to a grid symmetry (unless ``sigma_known``). Yields (sigma, g, mask).
    """
    gathers, signs = dihedral_colour_states(block_size, channels)
    sym = grid_symmetries(gh, gw) if not sigma_known else np.arange(gh * gw)[None]
    for h in sym:
        sig = h[sigma]
        for q_g, q_s in zip(gathers, signs):
            yield sig, q_g[g], _masks(s * q_s[g])


def _score_up_to(rec: RecoveredBlocks, truth, shape, block_size: int, sigma_known: bool):
    """Best exact share over the global candidates, and the block-permutation share up to a grid symmetry."""
    h, w, c = shape
    gh, gw = h // block_size, w // block_size
    s = np.where(rec.mask == 255, -1.0, 1.0)
    best = 0.0
    for sig, g, msk in global_candidates(rec.sigma, rec.g, s, gh, gw, block_size, c, sigma_known):
        best = max(best, map_fraction(block_map_to_image(sig, g, msk, shape, block_size), truth))
    return best


def _inblock_up_to_global(rec: RecoveredBlocks, scheme: str, key: Key, block_size: int, shape) -> float:
    """Share of (block, element) in-block maps right, up to the best single global in-block state."""
    from ..models.keyed import block_maps

    true = block_maps(scheme, key, block_size, shape[0], shape[2])
    gathers, signs = dihedral_colour_states(block_size, shape[2])
    s = np.where(rec.mask == 255, -1.0, 1.0)
    return max(float(np.mean((q_g[rec.g] == true.g) & (s * q_s[rec.g] == true.s)))
               for q_g, q_s in zip(gathers, signs))


def _true_blocks(truth, shape, block_size: int) -> np.ndarray:
    from ..blocks import block_layout, locate_in_blocks

    layout = block_layout(*shape, block_size)
    block_of, _ = locate_in_blocks(layout)
    return block_of[truth.g[layout[:, 0]]]


# -- the runner ------------------------------------------------------------------------------------------------
def run_weights_attack(scheme: str, block_size: int, test_images: np.ndarray,
                       train_images: Optional[np.ndarray] = None, key: Optional[Key] = None,
                       per_image: bool = False, progress: Optional[bool] = None,
                       plain_model: Optional[nn.Module] = None,
                       keyed_model: Optional[nn.Module] = None, with_plain: bool = True,
                       reference_model: Optional[nn.Module] = None,
                       model: str = "vit_pico_patch4_32", seed: int = 0, width: float = 1.0,
                       restarts: int = 8, encrypt=None) -> AttackResult:
    """Recover the key from a keyed model and decrypt ``test_images`` (N, H, W, C) encrypted under it.

    The calling convention of the attack registry's named runners; ``train_images`` and ``progress`` are
    not used (the attacker's data here are weights).

    Args:
        plain_model: the plain model the keyed one is made from (a public checkpoint); when None, a
            ``model`` is built with ``seed`` (random weights: enough for attack (a) and for the relative
            states of (b), not for what (b) reads from trained smoothness).
        keyed_model: the server's keyed model; when None it is made from ``plain_model`` with ``key``.
        with_plain: attack (a) (uses the plain weights) or (b) (keyed weights alone).
        reference_model: for (b), a plain model of the same architecture the attacker trained on public
            images (another seed, other images); its structure is the template for the arrangement.
        width, restarts: of the grid arrangement in (b).
        encrypt: how ``test_images`` reach the attacker (default: the scheme under ``key``).
    ``extra``: key_map_fraction (exact), key_map_fraction_up_to_global (best over the global symmetry the
    weights cannot fix), block_order_fraction(_up_to_grid_symmetry), seconds; the result's ``key_map`` is
    the recovered map.
    """
    import copy

    from ..ciphers import create_cipher, get_scheme
    from ..models import create_model
    from ..models.keyed import key_model

    require(not per_image, "weights", scheme, "per-image keys give every image its own transformation; no "
            "keyed model exists to steal")
    spec = get_scheme(scheme)
    require(spec.keyable is not None, "weights", scheme, "no keyed model can absorb it (nibble values, a colour "
            "conversion in front, or no key; see models.keyed)")
    key = key or Key.generate()
    n_img, h, w, c = test_images.shape
    if keyed_model is None:
        if plain_model is None:
            plain_model = create_model(model, seed=seed, img_size=h, in_chans=c, patch_size=block_size)
        keyed_model = copy.deepcopy(plain_model)
        key_model(keyed_model, key, scheme, block_size)
    keyed_model = keyed_model.float().eval()
    t0 = time.perf_counter()
    truth = true_key_map(scheme, key, block_size, (h, w, c))
    gh, gw = h // block_size, w // block_size
    extra: Dict[str, object] = {"with_plain_weights": bool(with_plain),
                                "embedding": getattr(keyed_model, "embed", "shared")}
    if with_plain:
        if plain_model is None:
            raise PatchcryptError("attack (a) needs the plain model the keyed one was made from")
        rec, info = recover_with_plain(keyed_model, plain_model.float().eval())
        extra.update(info)
        sigma_known = True
    else:
        wk, pos = _keyed_tensors(keyed_model)
        ref_w, ref_pos = _keyed_tensors(reference_model.float()) if reference_model is not None else (None, None)
        extra["reference_model"] = reference_model is not None
        if pos is not None:
            sigma = grid_from_pos_embed(pos, gh, gw, width=width, restarts=restarts, seed=seed, reference=ref_pos)
        else:
            sigma = np.arange(gh * gw)
        if wk.shape[0] > 1:
            g, s, worst = relative_states(keyed_model)
            extra["worst_column_cosine"] = worst
        else:
            g1, s1 = inblock_from_embedding(wk[0], block_size, c, seed=seed,
                                            reference=None if ref_w is None else ref_w[0])
            if "PS" not in {st.symbol for st in spec.steps}:   # no pixel shuffle: only flips to find
                g1 = np.arange(len(g1))
            g, s = np.broadcast_to(g1, (gh * gw, len(g1))), np.broadcast_to(s1, (gh * gw, len(s1)))
        rec = RecoveredBlocks(sigma, np.ascontiguousarray(g), _masks(s))
        sigma_known = pos is None
    recovered = rec.image_map((h, w, c), block_size)
    seconds = time.perf_counter() - t0
    true_sigma = _true_blocks(truth, (h, w, c), block_size)
    extra["key_map_fraction"] = map_fraction(recovered, truth)
    extra["block_order_fraction"] = float((rec.sigma == true_sigma).mean())
    extra["block_order_fraction_up_to_grid_symmetry"] = max(
        float((hh[rec.sigma] == true_sigma).mean()) for hh in grid_symmetries(gh, gw))
    extra["inblock_fraction_up_to_global"] = _inblock_up_to_global(rec, scheme, key, block_size, (h, w, c))
    extra["key_map_fraction_up_to_global"] = (extra["key_map_fraction"] if with_plain else
                                             _score_up_to(rec, truth, (h, w, c), block_size, sigma_known))
    enc = encrypt(test_images) if encrypt is not None else create_cipher(scheme, key, block_size=block_size).encrypt(
        test_images)
    dec = decrypt_with(recovered, enc, scheme)
    extra["seconds"] = seconds
    name = "weights" if with_plain else "weights-blind"
    return AttackResult(name, scheme, test_images, enc, dec, extra, key_map=recovered)


def _weights_applies(t: Target) -> Optional[str]:
    if t.keyed_model is not None:
        return None
    if t.per_image:
        return "per-image keys give every image its own transformation: no keyed model exists"
    if not t.registered:
        return ("no keyed model: patchcrypt makes keyed models for registered schemes only (models.keyed); "
                "a user scheme has none to read a key from")
    return "no keyed model absorbs this scheme (see models.keyed)"


def _run_on_target(t: Target, test: np.ndarray, o: AttackOptions, with_plain: bool) -> AttackResult:
    plain, keyed = t.keyed_model(test.shape[1], test.shape[3], seed=o.seed)
    return run_weights_attack(t.name, t.block_size, test, key=t.key, plain_model=plain, keyed_model=keyed,
                              with_plain=with_plain, seed=o.seed, encrypt=t.encrypt)


@register_attack("weights", Threat.MODEL_WEIGHTS, "the keyed model and the public plain weights it was made from: "
                 "match position-embedding rows and patch-embedding columns", applies=_weights_applies,
                 headline=("key_map_fraction",))
def run_weights(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Attack (a) on the target's keyed model (made from a plain model of random weights, ``o.seed``)."""
    return _run_on_target(t, test, o, True)


@register_attack("weights-blind", Threat.MODEL_WEIGHTS, "the keyed model alone: per-position embeddings compared "
                 "with one another, position embeddings arranged on the grid", applies=_weights_applies,
                 headline=("inblock_fraction_up_to_global", "block_order_fraction_up_to_grid_symmetry"))
def run_weights_blind(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Attack (b): the keyed model's weights alone."""
    return _run_on_target(t, test, o, False)


__all__ = ["run_weights_attack", "recover_with_plain", "relative_states", "grid_from_pos_embed",
           "inblock_from_embedding", "match_columns", "match_rows", "arrange", "global_candidates",
           "RecoveredBlocks"]
