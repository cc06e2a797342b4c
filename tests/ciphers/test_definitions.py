"""The cipher definitions of DESIGN §2–4, checked step by step and against an independent reference.

Two kinds of checks, neither relying on golden hashes:

1. Properties of each compiled step over many blocks: every state a step may take occurs and acts as its
   definition says (all 8 dihedral states; all 6 colour orders; NP/BF/LE flips; per-block keys that differ
   between blocks where the definition says so; shared keys that do not).
2. A small reference implementation written from DESIGN with plain per-block loops, fed with the key
   material drawn from the same key streams as the library (same labels, same draws), that every scheme's
   compiled program must equal bit for bit.
"""

import itertools

import numpy as np
import pytest

from patchcrypt.ciphers import create_cipher, get_scheme, list_ciphers
from patchcrypt.ciphers.nested import NESTED_STEPS
from patchcrypt.keys import Key

KEY = Key.from_bytes(bytes(range(32)))
NONCE = bytes(range(16))
ORDERS = list(itertools.permutations(range(3)))  # colour orders, index → order (lexicographic)


# -- the definitions, written out independently -----------------------------------------------------------
def dihedral(block: np.ndarray, s: int) -> np.ndarray:
    """State s of a block (M, M, C): s % 4 counter-clockwise quarter turns, then a left-right flip if s ≥ 4."""
    out = np.rot90(block, k=s % 4, axes=(0, 1))
    return out[:, ::-1] if s >= 4 else out


def blocks(img: np.ndarray, m: int) -> list:
    """Row-major list of the (M, M, C) blocks of an (H, W, C) image."""
    h, w, _ = img.shape
    return [img[r:r + m, c:c + m].copy() for r in range(0, h, m) for c in range(0, w, m)]


def unblocks(bl: list, h: int, w: int, m: int) -> np.ndarray:
    out = np.empty((h, w, bl[0].shape[2]), np.uint8)
    k = 0
    for r in range(0, h, m):
        for c in range(0, w, m):
            out[r:r + m, c:c + m] = bl[k]
            k += 1
    return out


def to_halves(v: np.ndarray) -> np.ndarray:
    """Values → 4-bit halves, each value's upper half first."""
    return np.stack([v >> 4, v & 15], axis=-1).reshape(-1)


def from_halves(h: np.ndarray) -> np.ndarray:
    return ((h[0::2] << 4) | h[1::2]).astype(np.uint8)


# -- the key material, drawn from the library's streams ------------------------------------------------------
class Material:
    """Draws a step's key material exactly as DESIGN §3's table lists it, from the step's own stream."""

    def __init__(self, cipher, shape, nonce=b""):
        self.cipher, self.shape, self.nonce = cipher, tuple(shape), nonce

    def stream(self, symbol):
        return self.cipher.key.stream(self.cipher._label(symbol, self.shape), self.nonce)

    def draw(self, symbol, n, L, shared):
        s = self.stream(symbol)
        count = 1 if shared else n
        if symbol == "BS":
            return s.permutation(n)
        if symbol == "RF":
            return s.integers(8, count)
        if symbol == "NP":
            return s.bits(n)
        if symbol == "BF":
            return s.bits(L)
        if symbol == "NPV":
            return s.bits(n * L)
        if symbol == "CS":
            return s.integers(6, count)
        if symbol == "PS":
            return s.permutations(count, L)
        if symbol == "LE":
            return s.permutations(count, 2 * L), s.bits(count * 2 * L).reshape(count, 2 * L)
        raise KeyError(symbol)


# -- the reference: plain per-block loops -------------------------------------------------------------------------
def reference_encrypt(cipher, img: np.ndarray, nonce: bytes = b"") -> np.ndarray:
    """Encrypt one (H, W, C) uint8 image by DESIGN §2–4, one block at a time."""
    spec = cipher.spec
    m = 1 if spec.pixel_based else cipher.block_size
    h, w, c = img.shape
    mat = Material(cipher, img.shape, nonce)
    bl = blocks(img, m)
    n, L = len(bl), m * m * c
    for step in spec.steps:
        key = mat.draw(step.symbol, n, L, step.shared)
        pick = (lambda arr, i: arr[0 if step.shared else i])
        if step.symbol == "BS":
            bl = [bl[key[i]] for i in range(n)]  # output block i = input block π[i]
        elif step.symbol == "RF":
            bl = [dihedral(bl[i], int(pick(key, i))).copy() for i in range(n)]
        elif step.symbol == "NP":
            bl = [255 - bl[i] if key[i] else bl[i] for i in range(n)]
        elif step.symbol == "BF":
            bl = [np.where(key.reshape(m, m, c), 255 - bl[i], bl[i]) for i in range(n)]
        elif step.symbol == "NPV":
            bl = [np.where(key[i * L:(i + 1) * L].reshape(m, m, c), 255 - bl[i], bl[i]) for i in range(n)]
        elif step.symbol == "CS":
            bl = [bl[i][:, :, list(ORDERS[int(pick(key, i))])] for i in range(n)]
        elif step.symbol == "PS":
            bl = [bl[i].reshape(-1)[pick(key, i)].reshape(m, m, c) for i in range(n)]
        elif step.symbol == "LE":
            perms, flips = key
            out = []
            for i in range(n):
                halves = to_halves(bl[i].reshape(-1))[pick(perms, i)]
                halves = np.where(pick(flips, i), 15 - halves, halves)
                out.append(from_halves(halves).reshape(m, m, c))
            bl = out
        else:
            raise KeyError(step.symbol)
    return unblocks(bl, h, w, m)


SHAPES = [(16, 24), (32, 32)]


def _cases():
    for name in list_ciphers(include_steps=True):
        if name in ("plain", "etc-gray", "ak-ffx") or get_scheme(name).symbols & NESTED_STEPS:
            continue  # two-level schemes: their reference is in test_nested.py; ak-ffx: a substitution table
        for (h, w), m in zip(SHAPES, (4, 8)):
            yield name, h, w, m


@pytest.mark.parametrize("name,h,w,m", list(_cases()))
def test_compiled_program_equals_reference(name, h, w, m):
    cipher = create_cipher(name, KEY, block_size=m)
    channels = 3
    x = np.random.default_rng(h * w + m).integers(0, 256, (2, h, w, channels), dtype=np.uint8)
    y = cipher.encrypt(x)
    for k in range(2):
        assert np.array_equal(y[k], reference_encrypt(cipher, x[k])), name
    gray = {"step-cs", "step-cs-shared", "etc", "block-pixel-cs", "pe"}
    if name not in gray:  # one-channel images where the scheme allows them
        x1 = x[:1, :, :, :1].copy()
        assert np.array_equal(cipher.encrypt(x1)[0], reference_encrypt(cipher, x1[0])), name


@pytest.mark.parametrize("name", ["etc", "block-pixel", "ele", "pe"])
def test_per_image_programs_equal_reference(name):
    cipher = create_cipher(name, KEY, block_size=4, per_image=True)
    x = np.random.default_rng(5).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    nonces = [NONCE, bytes(16)]
    y = cipher.encrypt(x, nonces=nonces)
    for k in range(2):
        assert np.array_equal(y[k], reference_encrypt(cipher, x[k], nonces[k]))
    assert not np.array_equal(reference_encrypt(cipher, x[0], nonces[0]), reference_encrypt(cipher, x[0], nonces[1]))


@pytest.mark.parametrize("subsampling", ["420", "444"])
def test_etc_gray_equals_reference_on_its_composite(subsampling):
    gray = create_cipher("etc-gray", KEY, block_size=8, color=False)
    x = np.random.default_rng(2).integers(0, 256, (1, 32, 48, 1), dtype=np.uint8)
    assert np.array_equal(gray.encrypt(x)[0], reference_encrypt(gray, x[0]))
    colour = create_cipher("etc-gray", KEY, block_size=8, subsampling=subsampling)
    rgb = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    comp = colour.to_composite(rgb, False)[0]
    assert np.array_equal(colour.encrypt(rgb)[0], reference_encrypt(colour, comp))


# -- per-step properties on the compiled maps ---------------------------------------------------------------------
BIG = (64, 64)  # 256 blocks of 4×4: a state with probability 1/8 is missing with probability < 1e-13


def sources(cipher, h, w, c, m):
    """For every block b and value l of the output: (source block, source value) and the XOR mask, from
    the compiled program. Shapes (n, L), (n, L), (n, L)."""
    prog = cipher.program((h, w, c))
    g, mask = prog.map.g, prog.map.m
    out_blocks = blocks(np.arange(h * w * c).reshape(h, w, c), m)
    src_block = np.empty((len(out_blocks), m * m * c), np.int64)
    src_value = np.empty_like(src_block)
    masks = np.empty((len(out_blocks), m * m * c), np.uint8)
    for b, idx in enumerate(out_blocks):
        flat = g[idx.reshape(-1)]
        r, col, ch = flat // (w * c), (flat // c) % w, flat % c
        src_block[b] = (r // m) * (w // m) + col // m
        src_value[b] = ((r % m) * m + col % m) * c + ch
        masks[b] = mask[idx.reshape(-1)]
    return src_block, src_value, masks


def states_of(src_value, m, c, table):
    """Index into ``table`` (a list of (L,) local gathers) of every block's local gather; -1 if none."""
    keys = {t.tobytes(): k for k, t in enumerate(table)}
    return np.array([keys.get(v.astype(np.int64).tobytes(), -1) for v in src_value])


def dihedral_table(m, c):
    probe = np.arange(m * m * c).reshape(m, m, c)
    return [np.ascontiguousarray(dihedral(probe, s)).reshape(-1) for s in range(8)]


def colour_table(m):
    probe = np.arange(m * m * 3).reshape(m, m, 3)
    return [np.ascontiguousarray(probe[:, :, list(o)]).reshape(-1) for o in ORDERS]


def test_rf_all_eight_states_occur_and_act_as_defined():
    h, w, m = *BIG, 4
    cipher = create_cipher("step-rf", KEY, block_size=m)
    sb, sv, mk = sources(cipher, h, w, 3, m)
    assert (sb == np.arange(len(sb))[:, None]).all() and not mk.any()  # blocks stay, nothing inverted
    states = states_of(sv, m, 3, dihedral_table(m, 3))
    assert (states >= 0).all()  # every block in one of the 8 defined states
    assert set(states.tolist()) == set(range(8))  # rotations without flips, flips alone, ... all occur
    drawn = Material(cipher, (h, w, 3)).draw("RF", len(sb), m * m * 3, False)
    assert np.array_equal(states, drawn)  # state s acts as s: s % 4 quarter turns, then a flip if s ≥ 4
    # the 8 states are 8 different maps on a block (M ≥ 2)
    assert len({t.tobytes() for t in dihedral_table(m, 3)}) == 8


def test_rf_shared_one_state_for_every_block_and_states_vary_with_the_key():
    seen = set()
    for k in range(24):
        cipher = create_cipher("step-rf-shared", Key.from_bytes(bytes([k]) * 32), block_size=4)
        states = states_of(sources(cipher, 16, 16, 3, 4)[1], 4, 3, dihedral_table(4, 3))
        assert (states >= 0).all() and len(set(states.tolist())) == 1
        seen.add(int(states[0]))
    assert len(seen) >= 6  # 24 keys: P(fewer than 6 of 8 states) is tiny for uniform draws


def test_np_inverts_whole_blocks_both_ways():
    cipher = create_cipher("step-np", KEY, block_size=4)
    sb, sv, mk = sources(cipher, *BIG, 3, 4)
    assert (sb == np.arange(len(sb))[:, None]).all() and (sv == np.arange(sv.shape[1])).all()
    per_block = mk[:, 0]
    assert ((mk == per_block[:, None]).all()) and set(per_block.tolist()) == {0, 255}
    assert 0.3 < (per_block == 255).mean() < 0.7


def test_bf_one_mask_for_every_block_with_both_values():
    cipher = create_cipher("step-bf", KEY, block_size=4)
    sb, sv, mk = sources(cipher, *BIG, 3, 4)
    assert (sb == np.arange(len(sb))[:, None]).all() and (sv == np.arange(sv.shape[1])).all()
    assert (mk == mk[0]).all() and set(mk[0].tolist()) == {0, 255}


def test_cs_all_six_orders_occur_and_act_as_defined():
    h, w, m = *BIG, 4
    cipher = create_cipher("step-cs", KEY, block_size=m)
    sb, sv, mk = sources(cipher, h, w, 3, m)
    assert (sb == np.arange(len(sb))[:, None]).all() and not mk.any()
    orders = states_of(sv, m, 3, colour_table(m))
    assert (orders >= 0).all() and set(orders.tolist()) == set(range(6))
    assert np.array_equal(orders, Material(cipher, (h, w, 3)).draw("CS", len(sb), m * m * 3, False))
    shared = create_cipher("step-cs-shared", KEY, block_size=m)
    assert len(set(states_of(sources(shared, h, w, 3, m)[1], m, 3, colour_table(m)).tolist())) == 1


def test_ps_permutes_within_blocks_shared_or_per_block():
    m, L = 4, 48
    for name, shared in (("step-ps", True), ("step-ps-perblock", False)):
        sb, sv, mk = sources(create_cipher(name, KEY, block_size=m), 32, 32, 3, m)
        assert (sb == np.arange(len(sb))[:, None]).all() and not mk.any()
        assert all(sorted(v.tolist()) == list(range(L)) for v in sv)  # a permutation of the block's values
        assert (sv != np.arange(L)).mean() > 0.8  # and a real one: most values move
        distinct = len({v.tobytes() for v in sv})
        assert distinct == 1 if shared else distinct == len(sv)
    # the shared σ mixes channels too: values leave their channel
    sv = sources(create_cipher("step-ps", KEY, block_size=m), 32, 32, 3, m)[1]
    assert (sv[0] % 3 != np.arange(L) % 3).any()


def test_bs_moves_whole_blocks_by_a_permutation():
    sb, sv, mk = sources(create_cipher("step-bs", KEY, block_size=4), *BIG, 3, 4)
    assert (sb == sb[:, :1]).all() and (sv == np.arange(sv.shape[1])).all() and not mk.any()
    pi = sb[:, 0]
    assert sorted(pi.tolist()) == list(range(len(pi))) and (pi != np.arange(len(pi))).mean() > 0.9


def nibble_sources(cipher, h, w, c, m):
    """LE/ELE on 4-bit halves: for every output block, (source block, source half) of each of its 2L halves
    and the flip mask (0 or 15)."""
    prog = cipher.program((h, w, c))
    g, mask = prog.map.g, prog.map.m
    out_blocks = blocks(np.arange(h * w * c).reshape(h, w, c), m)
    res = []
    for idx in out_blocks:
        halves = np.stack([2 * idx.reshape(-1), 2 * idx.reshape(-1) + 1], axis=1).reshape(-1)
        src = g[halves]
        byte, half = src // 2, src % 2
        r, col, ch = byte // (w * c), (byte // c) % w, byte % c
        sblock = (r // m) * (w // m) + col // m
        slocal = 2 * (((r % m) * m + col % m) * c + ch) + half
        res.append((sblock, slocal, mask[halves]))
    return res


def test_le_one_key_with_flips_and_halves_moving_across_values():
    m, two_l = 4, 96
    res = nibble_sources(create_cipher("le", KEY, block_size=m), 32, 32, 3, m)
    for b, (sblock, slocal, flips) in enumerate(res):
        assert (sblock == b).all() and sorted(slocal.tolist()) == list(range(two_l))
        assert set(flips.tolist()) <= {0, 15}
    assert all(np.array_equal(r[1], res[0][1]) and np.array_equal(r[2], res[0][2]) for r in res)  # shared key
    flips = res[0][2]
    assert 0.3 < (flips == 15).mean() < 0.7  # LE flips occur (and not everywhere)
    slocal = res[0][1]
    assert (slocal % 2 != np.arange(two_l) % 2).any()  # upper and lower halves trade places


def test_ele_every_block_its_own_key_after_block_scrambling():
    m, two_l = 4, 96
    res = nibble_sources(create_cipher("ele", KEY, block_size=m), *BIG, 3, m)
    src_blocks = [int(r[0][0]) for r in res]
    assert all((r[0] == r[0][0]).all() for r in res)  # a block's halves come from one block
    assert sorted(src_blocks) == list(range(len(res))) and src_blocks != list(range(len(res)))
    perms = {r[1].tobytes() for r in res}
    masks = {r[2].tobytes() for r in res}
    assert len(perms) == len(res) and len(masks) == len(res)  # blocks differ in key
    assert all(0 < (r[2] == 15).sum() < two_l for r in res)  # every block's own flips occur


def test_pe_per_value_inversion_and_per_pixel_colour_order():
    h, w = 32, 32
    cipher = create_cipher("pe", KEY, block_size=16)  # pixel-based: the block size is not used
    sb, sv, mk = sources(cipher, h, w, 3, 1)
    assert (sb == np.arange(len(sb))[:, None]).all()
    orders = states_of(sv, 1, 3, colour_table(1))
    assert (orders >= 0).all() and set(orders.tolist()) == set(range(6))
    assert set(mk.reshape(-1).tolist()) == {0, 255} and len({r.tobytes() for r in mk}) == 8  # per value


def test_etc_per_block_states_differ_between_blocks():
    """etc: every block its own RF, NP and CS; 96 combined states, many of them present over 256 blocks."""
    h, w, m = *BIG, 4
    cipher = create_cipher("etc", KEY, block_size=m)
    sb, sv, mk = sources(cipher, h, w, 3, m)
    assert (sb == sb[:, :1]).all()
    combined = [dihedral_table(m, 3)[s][colour_table(m)[o]] for s in range(8) for o in range(6)]
    states = states_of(sv, m, 3, combined)
    assert (states >= 0).all() and len(set(states.tolist())) > 40
    assert set(mk[:, 0].tolist()) == {0, 255}
