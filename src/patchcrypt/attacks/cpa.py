"""Chosen-plaintext attack: a few crafted images, encrypted once, reveal the whole key map.

Every fixed-key scheme is y[i] = x[g[i]] XOR m[i] over the flattened image, on bytes (masks 0 or 255) or on
4-bit halves (le/ele, masks 0 or 15). A crafted value with its top bit clear shows both where it went and
whether it was flipped (a flipped value has the top bit set), so every unit carries 7 bits of position code
per query (bytes) or 3 bits (halves). How many crafted images are needed follows from the scheme's structure
(its spec, not its name):

* in-block map shared by every block and no block scrambling (le, the shared single steps): each block of
  one image carries a different digit of the in-block position code, so one image usually holds them all;
* block-local steps (every output block comes from one input block: etc, block-pixel, ele, pe, ...): each
  unit gets code (block offset + in-block position); with block scrambling the smallest code of an encrypted
  block names its source block. One image when n + L − 1 codes fit in the per-unit alphabet, else more;
* whole pixels moved and colours shuffled per block (BS, RF, NP, CS: etc and its steps, 3 channels): one
  image whatever the block size; in every pixel, channel 0 carries its row and channel 1 its column, each
  in its own value range, and the three ranges also spell the block's number, so every encrypted value
  tells its source block, pixel and channel;
* anything else: a unique code per unit of the whole image, ⌈log(D) / bits⌉ images.

Declared steps only make the attack faster. The map they give is checked on one random image (its
ciphertext under the map must equal the oracle's); where none is declared, the declared steps are not ones
these plans model, or the check fails, the attack learns the scheme from the black box
(:func:`patchcrypt.attacks.blackbox.probe_value_model`: 256 constant images give every coordinate's value
map, ⌈log256 D⌉ position-coded images the moves), and where probing shows the scheme is not block-local it
says so (PatchcryptError, an n/a row) instead of scoring. Per-image keys are the control: each query is
encrypted under its own key, so the map the declared plan reveals decrypts nothing else (reported with
``verified`` False).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..blocks import block_layout
from ..ciphers import get_scheme
from ..ciphers.base import SchemeSpec, StepSpec
from ..ciphers.program import Map
from ..errors import PatchcryptError
from .base import AttackResult, require
from .blackbox import CountingOracle, probe_value_model
from .keymaps import decrypt_with, encrypt_with, from_units, to_units, unit_indices
from .registry import AttackOptions, Threat, register_attack
from .target import Target

# the "pixel" code's value ranges (byte values below 128): channel 0 in [0, 64), 1 in [64, 96), 2 in [96, 128)
_R0, _R1, _R2 = 64, 96, 128


def _pixel_ids(m: int) -> int:
    """Blocks the pixel code can name at block size m: (64 / m) · (32 / m) · 32."""
    return (_R0 // m) * ((_R1 - _R0) // m) * (_R2 - _R1)


def _pixel_craft(n: int, m: int) -> np.ndarray:
    """(n, m, m, 3) crafted blocks: channel 0 = a·m + row, channel 1 = 64 + b·m + column, channel 2 = 96 + j."""
    nb, nj = (_R1 - _R0) // m, _R2 - _R1
    ids = np.arange(n)
    a, rest = np.divmod(ids, nb * nj)
    b, j = np.divmod(rest, nj)
    rr, cc = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    out = np.empty((n, m, m, 3), np.uint8)
    out[..., 0] = a[:, None, None] * m + rr
    out[..., 1] = _R0 + b[:, None, None] * m + cc
    out[..., 2] = (_R1 + j)[:, None, None]
    return out


def _pixel_decode(blocks: np.ndarray, m: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encrypted crafted blocks (n, m, m, 3) → source block (n,), in-block source element (n, L), mask (n, L)."""
    n = len(blocks)
    flipped = blocks >= 128
    v = np.where(flipped, blocks ^ 255, blocks).astype(np.int64)
    ch = np.searchsorted(np.array([_R0, _R1]), v, side="right")       # plain channel of every value
    nb, nj = (_R1 - _R0) // m, _R2 - _R1
    # per output pixel, the value of each plain channel (CS keeps a pixel's three values together)
    per = np.zeros((n, m, m, 3), np.int64)
    np.put_along_axis(per, ch, v, axis=-1)
    row, a = per[..., 0] % m, per[..., 0] // m
    col, b = (per[..., 1] - _R0) % m, (per[..., 1] - _R0) // m
    j = per[..., 2] - _R1
    src = np.clip(((a * nb + b) * nj + j).reshape(n, -1)[:, 0], 0, n - 1)
    elem = ((row * m + col)[..., None] * 3 + ch).reshape(n, -1)
    return src, elem, np.where(flipped, 255, 0).astype(np.uint8).reshape(n, -1)


def _unit_layout(shape, block: int, nibble: bool) -> np.ndarray:
    """(n, Lu) unit index of every in-block unit (bytes, or 2 halves per byte in (value, half) order)."""
    return unit_indices(block_layout(*shape, block), nibble)


def _spec(scheme: Union[str, SchemeSpec]) -> SchemeSpec:
    return get_scheme(scheme) if isinstance(scheme, str) else scheme


def cpa_plan(scheme: Union[str, SchemeSpec], block_size: int, plain_shape: Tuple[int, int, int]) -> Dict[str, object]:
    """How the attack crafts its queries for a scheme (a registered name or its facts) and image shape:
    kind, queries, bits per unit. Undeclared or unmodelled steps get the generic plan (a code per value)."""
    spec = _spec(scheme)
    nibble = spec.unit == "nibble"
    bits = 3 if nibble else 7
    base = 2 ** bits
    block = 1 if spec.pixel_based else block_size
    h, w, c = plain_shape
    n = (h // block) * (w // block)
    lu = block * block * c * (2 if nibble else 1)
    steps = spec.steps
    moves = any(s.moves_blocks for s in steps)
    # whole pixels moved, a block's colours shuffled, whole blocks negated (BS, RF, NP, CS)
    if (steps and all(s.block_state for s in steps) and not nibble and c == 3 and block <= 32
            and n <= _pixel_ids(block)):
        return {"kind": "pixel", "queries": 1, "bits": bits}
    if steps and all(s.value_map for s in steps):   # every value stays inside its block
        shared = all(s.same_for_every_block for s in steps)
        if shared and not moves:
            digits = max(1, math.ceil(math.log(lu, base)))
            return {"kind": "shared", "queries": math.ceil(digits / n), "digits": digits, "bits": bits}
        need = n + lu - 1 if moves else lu
        return {"kind": "block-local", "queries": max(1, math.ceil(math.log(need, base))), "bits": bits}
    total = h * w * c * (2 if nibble else 1)
    return {"kind": "generic", "queries": max(1, math.ceil(math.log(total, base))), "bits": bits}


def _digits(codes: np.ndarray, base: int, count: int) -> np.ndarray:
    """(count, ...) base-``base`` digits of ``codes``, least significant first."""
    return np.stack([(codes // base ** d) % base for d in range(count)])


def chosen_plaintext_attack(encrypt_oracle: Callable[[np.ndarray], np.ndarray], scheme: Union[str, SchemeSpec],
                            block_size: int, plain_shape: Tuple[int, int, int]) -> Tuple[Map, int]:
    """Recover the key map with crafted images sent to ``encrypt_oracle``.

    Args:
        encrypt_oracle: (Q, H, W, C) uint8 → (Q, H, W, C) uint8, the scheme under the secret key.
        plain_shape: (H, W, C) of the images to decrypt later.
    Returns the recovered :class:`Map` (over bytes, or 4-bit halves for nibble schemes, like
    ``cipher.key_map(shape)``) and the number of crafted images used.
    """
    spec = _spec(scheme)
    scheme = spec.name
    require(bool(spec.steps) and not spec.composite, "cpa", scheme, "no key map over the RGB image to recover "
            "(no keyed steps, or they act on a lossy grayscale composite)")
    h, w, c = (int(v) for v in plain_shape)
    nibble = spec.unit == "nibble"
    plan = cpa_plan(spec, block_size, (h, w, c))
    bits, q = int(plan["bits"]), int(plan["queries"])
    base, full = 2 ** bits, (15 if nibble else 255)
    block = 1 if spec.pixel_based else block_size
    moves = any(s.moves_blocks for s in spec.steps)
    if plan["kind"] == "pixel":
        layout = block_layout(h, w, c, block)
        crafted = np.empty(h * w * c, np.uint8)
        crafted[layout] = _pixel_craft(len(layout), block).reshape(len(layout), -1)
        enc = np.asarray(encrypt_oracle(crafted.reshape(1, h, w, c)))
        if enc.shape != (1, h, w, c) or enc.dtype != np.uint8:
            raise PatchcryptError(f"the oracle returned {enc.shape} {enc.dtype} for (1, {h}, {w}, {c}) uint8")
        src, elem, mask = _pixel_decode(enc.reshape(-1)[layout].reshape(-1, block, block, c), block)
        g = np.empty(h * w * c, np.int64)
        m = np.empty(h * w * c, np.uint8)
        g[layout] = np.take_along_axis(layout[src], np.clip(elem, 0, layout.shape[1] - 1), axis=1)
        m[layout] = mask
        return Map(g, m), 1
    if plan["kind"] == "generic":
        ul = np.arange(h * w * c * (2 if nibble else 1))[None]
    else:
        ul = _unit_layout((h, w, c), block, nibble)               # (n, Lu)
    n, lu = ul.shape
    units = np.zeros((q, ul.size), np.uint8)
    if plan["kind"] == "shared":
        # query t, block b carries digit (t·n + b) mod digits of every in-block position code
        count = int(plan["digits"])
        which = np.arange(q * n) % count
        units[:, ul] = _digits(np.arange(lu), base, count)[which].reshape(q, n, lu)
    else:
        offset = np.arange(n)[:, None] if moves else 0
        codes = (offset + np.arange(lu)[None]) if plan["kind"] == "block-local" else ul
        units[:, ul] = _digits(codes, base, q)
    crafted = from_units(units, nibble).reshape(q, h, w, c)
    enc = np.asarray(encrypt_oracle(crafted))
    if enc.shape != crafted.shape or enc.dtype != np.uint8:
        raise PatchcryptError(f"the oracle returned {enc.shape} {enc.dtype} for {crafted.shape} uint8 images")
    out = to_units(enc.reshape(q, -1), nibble)[:, ul]          # (q, n, Lu) in output block order
    flipped = out >= base
    digit = np.where(flipped, out ^ full, out).astype(np.int64)
    mask = np.where(flipped[0], full, 0).astype(np.uint8)         # (n, Lu)
    g = np.empty(ul.size, np.int64)
    m = np.empty(ul.size, np.uint8)
    if plan["kind"] == "shared":
        first = digit.reshape(q * n, lu)[:int(plan["digits"])]       # the first block to carry each digit
        local = (first * (base ** np.arange(len(first)))[:, None]).sum(0)   # (Lu,) one map for all blocks
        local = np.clip(local, 0, lu - 1)
        g[ul] = ul[:, local]
        m[ul] = mask[0][None]
    else:
        code = (digit * (base ** np.arange(q))[:, None, None]).sum(0)   # (n, Lu)
        if plan["kind"] == "generic":
            g[ul[0]] = np.clip(code[0], 0, ul.size - 1)
        else:
            src = np.clip(code.min(1) if moves else np.arange(n), 0, n - 1)
            local = np.clip(code - (src[:, None] if moves else 0), 0, lu - 1)
            g[ul] = ul[src[:, None], local]
        m[ul] = mask
    return Map(g, m), q


def _cpa_applies(t: Target) -> Optional[str]:
    if t.steps is not None and not t.steps:
        return "there is no key to recover"
    if t.composite:
        return "the ciphertext is not a value map of the image (a lossy colour conversion, or another shape)"
    if t.spec.unit == "nibble" and t.steps is None:
        return "4-bit units need declared steps"
    return None


def facts_of(t: Target) -> SchemeSpec:
    """The target's declared facts, or (none declared) facts that select the generic plan."""
    if t.steps is not None:
        return t.spec
    return replace(t.spec, steps=(StepSpec("undeclared"),))


def _declared_plan(t: Target, spec: SchemeSpec, shape: Tuple[int, int, int]) -> Optional[str]:
    """The plan kind the declared steps give, or None when there are none or no plan models them (bytes)."""
    if t.steps is None:
        return None
    kind = str(cpa_plan(spec, t.block_size, shape)["kind"])
    return None if kind == "generic" and spec.unit != "nibble" else kind


def _declared_map(query: CountingOracle, spec: SchemeSpec, block_size: int, shape: Tuple[int, int, int],
                  seed: int) -> Tuple[Map, bool]:
    """The declared plan's map and whether it reproduces the oracle's ciphertext of one random image."""
    rec, _ = chosen_plaintext_attack(query, spec, block_size, shape)
    probe = np.random.default_rng(seed).integers(0, 256, (1,) + tuple(shape), dtype=np.uint8)
    return rec, bool(np.array_equal(encrypt_with(rec, probe, spec), query(probe)))


@register_attack("cpa", Threat.CHOSEN_PLAINTEXT, "crafted images reveal the moves and value maps: a few with "
                 "declared steps, about 258 from the black box", applies=_cpa_applies,
                 headline=("key_map_fraction", "queries"))
def run_cpa(t: Target, test: np.ndarray, train: Optional[np.ndarray], o: AttackOptions) -> AttackResult:
    """Recover the scheme with crafted images sent through the target's ``encrypt``; decrypt its ciphertexts
    of ``test`` (N, H, W, C) uint8. With per-image keys every query is under its own key (the control).

    ``extra``: queries (every image sent), plan kind ("black-box" when learned from the black box),
    verified (the recovered scheme reproduced random images), seconds; from the black box also value_maps
    (share of coordinates whose value map is the identity, a XOR, an addition, another table).
    Raises PatchcryptError ("probing: ...") where probing shows the scheme is not block-local.
    """
    shape = tuple(int(v) for v in test.shape[1:])
    spec = facts_of(t)
    nibble = spec.unit == "nibble"
    query = CountingOracle(t.encrypt, shape)
    t0 = time.perf_counter()
    kind = _declared_plan(t, spec, shape)
    if kind is not None:
        rec, verified = _declared_map(query, spec, t.block_size, shape, o.seed)
        if not verified and nibble and not t.per_image:
            raise PatchcryptError("probing: the map the declared 4-bit steps give does not reproduce a random "
                                  "image's ciphertext, and the black-box plan models byte values only")
        if verified or t.per_image:
            seconds = time.perf_counter() - t0
            enc = t.encrypt(test)
            return AttackResult("cpa", t.name, test, enc, decrypt_with(rec, enc, spec),
                                {"queries": query.count, "plan": kind, "verified": verified, "seconds": seconds},
                                key_map=rec)
    try:
        model, _ = probe_value_model(query, shape, seed=o.seed)
    except PatchcryptError as exc:
        note = " (the map the declared steps give did not reproduce a random image either)" if kind else ""
        raise PatchcryptError(f"{exc}{note}") from None
    seconds = time.perf_counter() - t0
    enc = t.encrypt(test)
    dec = model.decrypt(enc.reshape(len(enc), -1)).reshape(test.shape)
    return AttackResult("cpa", t.name, test, enc, dec, {"queries": query.count, "plan": "black-box", "verified": True,
                                                        "value_maps": model.value_maps(), "seconds": seconds},
                        key_map=model.to_map())


__all__ = ["chosen_plaintext_attack", "run_cpa", "cpa_plan"]
