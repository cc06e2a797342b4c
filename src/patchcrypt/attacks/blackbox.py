"""Learn a block-local scheme from the black box: chosen images (CPA) or known pairs (KPA), no declared steps.

The model: over the flattened (H, W, C) image of D values, output coordinate i takes input coordinate g[i]
and changes its value by a bijection of its own, ``y[i] = T[i, x[g[i]]]`` (``g`` a permutation of D, ``T``
(D, 256) uint8, every row a permutation of 0..255). Every block-local scheme has this form, whatever it
declares: block scrambling, rotations/flips, pixel and colour shuffles (they only set ``g``), negation, a XOR
with any byte, an addition mod 256, any substitution table (they only set ``T``), in any order.

Chosen plaintext (:func:`probe_value_model`): a constant image shows no moves, so the 256 constant images
give every output coordinate's table; then images whose values are the base-256 digits of each input
coordinate's index (⌈log256 D⌉ of them), read back through the inverse tables, give ``g``. Two random probe
images check the model: the oracle's ciphertexts must equal the model's exactly. Where probing shows the
scheme is of another kind (values mixed across positions, values lost, a fresh key per call), it raises
:class:`PatchcryptError` with what it found instead of scoring a model that does not hold.

Known plaintext (:func:`known_plaintext_model`): a bijective value map keeps equalities, so output i and its
source g[i] split the k pairs into the same groups (pairs p, q together iff x_p[g[i]] == x_q[g[i]] iff
y_p[i] == y_q[i]). One canonical label vector per coordinate (label_p = the first pair with the same value)
matches outputs to inputs in O(D·k); the tables are read off the pairs, and their unseen entries filled by
the family the seen ones follow (XOR or addition of a constant, one table shared by every coordinate), else
by the nearest seen value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..ciphers.program import Map
from ..errors import PatchcryptError

_VALUES = np.arange(256, dtype=np.uint8)
_CHUNK = 1 << 24          # values per oracle call and per table operation: 16 MB of uint8


class CountingOracle:
    """An encrypt oracle that checks what it returns and counts the images it was sent.

    ``oracle``: (Q, H, W, C) uint8 → (Q, H, W, C) uint8. Calling this with (Q, H, W, C) or flat (Q, D) images
    returns the ciphertexts in the same shape, sent in calls of at most ``_CHUNK`` values (224 px: about a
    hundred images).
    """

    def __init__(self, oracle: Callable[[np.ndarray], np.ndarray], shape: Tuple[int, int, int]):
        self.oracle, self.shape, self.count = oracle, tuple(int(v) for v in shape), 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(Q, ...) uint8 images of D values each → their ciphertexts, in the same shape."""
        q = len(images)
        flat = images.reshape(q, -1)
        d = flat.shape[1]
        step = max(1, _CHUNK // d)
        out = np.empty((q, d), np.uint8)
        for s in range(0, q, step):
            part = np.ascontiguousarray(flat[s:s + step]).reshape((-1,) + self.shape)
            enc = np.asarray(self.oracle(part))
            if enc.shape != part.shape or enc.dtype != np.uint8:
                raise PatchcryptError(f"the oracle returned {enc.shape} {enc.dtype} for {part.shape} uint8 images")
            out[s:s + step] = enc.reshape(len(part), d)
            self.count += len(part)
        return out.reshape(images.shape)


def take_rows(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``table[i, values[n, i]]`` for every image n and coordinate i: table (D, 256), values (N, D) uint8 →
    (N, D) uint8, in chunks (the flat index is int64)."""
    d = table.shape[0]
    flat = table.reshape(-1)
    base = np.arange(d, dtype=np.int64) * 256
    out = np.empty(values.shape, np.uint8)
    step = max(1, _CHUNK // (8 * d))
    for s in range(0, len(values), step):
        out[s:s + step] = flat[base + values[s:s + step]]
    return out


def invert_tables(table: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row-wise inverse of value tables: table (D, 256) uint8 → (inverse (D, 256) uint8, bijective (D,) bool).

    A row that is not a permutation of 0..255 gets an inverse that is wrong somewhere; ``bijective`` says
    which rows are exact."""
    d = table.shape[0]
    inverse = np.zeros_like(table)
    ok = np.empty(d, bool)
    step = max(1, _CHUNK // (8 * 256))
    for s in range(0, d, step):
        rows = table[s:s + step]
        inv = np.zeros_like(rows)
        np.put_along_axis(inv, rows.astype(np.intp), np.broadcast_to(_VALUES, rows.shape), axis=1)
        ok[s:s + step] = (np.take_along_axis(inv, rows.astype(np.intp), axis=1) == _VALUES).all(1)
        inverse[s:s + step] = inv
    return inverse, ok


def _rows_like(table: np.ndarray, op: str) -> np.ndarray:
    """(D,) bool: row i is ``v XOR c`` (op "xor") or ``v + c mod 256`` (op "add") for one constant c."""
    c = table[:, :1]
    want = (_VALUES ^ c) if op == "xor" else _VALUES + c      # uint8: the sum wraps mod 256
    return (table == want).all(1)


@dataclass
class ValueModel:
    """A block-local scheme under one key: ``y[i] = table[i, x[g[i]]]`` over the flat (H, W, C) image.

    Attributes:
        g: (D,) int64, output coordinate i takes input coordinate g[i] (a permutation).
        table: (D, 256) uint8, row i the value map of output coordinate i.
        inverse: (D, 256) uint8, row i the inverse of ``table[i]`` (what decryption reads).
    """

    g: np.ndarray
    table: np.ndarray
    inverse: np.ndarray

    def encrypt(self, flat: np.ndarray) -> np.ndarray:
        """(N, D) uint8 plain → (N, D) uint8 ciphertexts under the model."""
        return take_rows(self.table, np.ascontiguousarray(flat[:, self.g]))

    def decrypt(self, flat: np.ndarray) -> np.ndarray:
        """(N, D) uint8 ciphertexts → (N, D) uint8: x[g[i]] = inverse[i, y[i]]."""
        out = np.empty_like(flat)
        out[:, self.g] = take_rows(self.inverse, flat)
        return out

    def value_maps(self) -> Dict[str, float]:
        """Share of coordinates whose value map is the identity, a XOR or an addition of a constant (other
        than the identity), or another table."""
        ident = (self.table == _VALUES).all(1)
        xor = _rows_like(self.table, "xor") & ~ident
        add = _rows_like(self.table, "add") & ~ident & ~xor
        return {"identity": float(ident.mean()), "xor": float(xor.mean()), "add": float(add.mean()),
                "table": float((~(ident | xor | add)).mean())}

    def to_map(self) -> Optional[Map]:
        """The same scheme as a :class:`Map` (y[i] = x[g[i]] ^ m[i]) when every value map is a XOR, else None."""
        if not _rows_like(self.table, "xor").all():
            return None
        return Map(self.g.astype(np.int64), self.table[:, 0].copy())


# -- chosen plaintext -------------------------------------------------------------------------------------
def _diagnose(query: CountingOracle, d: int, rng: np.random.Generator) -> Optional[str]:
    """Why a scheme is not block-local, found with a random image: two calls encrypt it differently, or one
    changed input value changes other than exactly one output value. None when neither shows."""
    probe = rng.integers(0, 256, (1, d), dtype=np.uint8)
    changed = probe.copy()
    changed[0, d // 2] ^= 0x5A
    enc = query(np.concatenate([probe, changed]))
    if not np.array_equal(enc[0], query(probe)[0]):      # a separate call: a key drawn per call shows too
        return "two encryptions of the same image differ (randomised per call)"
    moved = int((enc[0] != enc[1]).sum())
    if moved > 1:
        return f"changing one input value changed {moved} output values (values mix across positions)"
    if moved == 0:
        return "changing one input value changed no output value (values are lost)"
    return None


def _refuse(query: CountingOracle, d: int, rng: np.random.Generator, found: str) -> PatchcryptError:
    reason = _diagnose(query, d, rng) or found
    return PatchcryptError(f"probing: {reason}")


def _tables_from_constants(query: CountingOracle, d: int) -> np.ndarray:
    """(D, 256) uint8: column v is the ciphertext of the constant image v (moves are invisible on it)."""
    table = np.empty((d, 256), np.uint8)
    step = max(1, _CHUNK // d)
    for v in range(0, 256, step):
        values = _VALUES[v:v + step]
        table[:, v:v + len(values)] = query(np.repeat(values[:, None], d, axis=1)).T
    return table


def _gather_from_codes(query: CountingOracle, inverse: np.ndarray) -> Tuple[np.ndarray, float]:
    """Position-coded images: image t holds base-256 digit t of every input index. Returns g (D,) int64
    and the share of outputs whose decoded source is in range and named by no other output."""
    d = inverse.shape[0]
    digits = max(1, math.ceil(math.log(d, 256)))
    index = np.arange(d, dtype=np.int64)
    codes = np.stack([(index // 256 ** t) % 256 for t in range(digits)]).astype(np.uint8)
    read = take_rows(inverse, query(codes)).astype(np.int64)      # (digits, D) digits of each source
    g = (read * (256 ** np.arange(digits, dtype=np.int64))[:, None]).sum(0)
    valid = g < d
    counts = np.bincount(g[valid], minlength=d)
    one = valid & (counts[np.where(valid, g, 0)] == 1)
    return g, float(one.mean())


def probe_value_model(oracle: Callable[[np.ndarray], np.ndarray], shape: Tuple[int, int, int],
                      probes: int = 2, seed: int = 0) -> Tuple[ValueModel, int]:
    """Learn (g, T) of a block-local scheme from chosen images sent to ``oracle``.

    Args:
        oracle: (Q, H, W, C) uint8 → (Q, H, W, C) uint8, the scheme under the secret key (or a
            :class:`CountingOracle`, whose count then includes what was sent before).
        shape: (H, W, C) of the images.
        probes: random images the model must reproduce exactly.
    Returns the model and the number of images sent (256 + ⌈log256 D⌉ + ``probes`` when it holds).
    Raises PatchcryptError ("probing: ...") where the scheme is not of this kind.
    """
    query = oracle if isinstance(oracle, CountingOracle) else CountingOracle(oracle, shape)
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    table = _tables_from_constants(query, d)
    inverse, bijective = invert_tables(table)
    if not bijective.all():
        raise _refuse(query, d, rng, f"a constant image's ciphertext is not a bijection of values at "
                      f"{1 - bijective.mean():.0%} of coordinates (values mix or are lost)")
    g, one_to_one = _gather_from_codes(query, inverse)
    if one_to_one < 1:
        raise _refuse(query, d, rng, f"the position-coded images name no one-to-one source at "
                      f"{1 - one_to_one:.0%} of coordinates (positions depend on values)")
    model = ValueModel(g, table, inverse)
    plain = rng.integers(0, 256, (probes, d), dtype=np.uint8)
    wrong = float((model.encrypt(plain) != query(plain)).mean())
    if wrong > 0:
        raise _refuse(query, d, rng, f"the recovered moves and value maps miss {wrong:.1%} of a random "
                      "image's ciphertext values (not a block-local scheme)")
    return model, query.count


# -- known plaintext --------------------------------------------------------------------------------------
def row_ids(*arrays: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Shared integer ids for equal rows across 2-D arrays of one dtype and width (rows compared as bytes)."""
    stacked = np.ascontiguousarray(np.concatenate(arrays))
    view = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * stacked.shape[1]))).ravel()
    _, inverse = np.unique(view, return_inverse=True)
    inverse = inverse.reshape(-1)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return tuple(inverse[bounds[i]:bounds[i + 1]] for i in range(len(arrays)))


def partition_labels(values: np.ndarray) -> np.ndarray:
    """Canonical partition of the pairs at every coordinate: values (k, D) uint8 → labels (k, D), label[p, i]
    = the first pair q with values[q, i] == values[p, i] (uint8 for k ≤ 256, else uint16). Any bijection of
    a coordinate's values leaves its labels unchanged."""
    k, d = values.shape
    first = np.empty((d, 256), np.uint16 if k > 256 else np.uint8)
    rows = np.arange(d)
    for p in range(k - 1, -1, -1):      # a loop over pairs, each step vectorised over coordinates
        first[rows, values[p]] = p
    return first[rows[None], values]


def match_by_partition(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Outputs matched to inputs by the partition they induce on the k pairs: x, y (k, D) uint8.

    Returns g (D,) int64 (a permutation: tied inputs are shared out in index order), unique (D,) bool (only
    one input has output i's partition) and the share of outputs whose partition no input has."""
    lx, ly = partition_labels(x).T, partition_labels(y).T      # (D, k): one row per coordinate
    ids_x, ids_y = row_ids(np.ascontiguousarray(lx), np.ascontiguousarray(ly))
    size = int(max(ids_x.max(), ids_y.max())) + 1
    count_x = np.bincount(ids_x, minlength=size)
    unmatched = float((count_x[ids_y] == 0).mean())
    # the r-th output of a group takes the r-th input of the same group; the rest pair up in index order
    ox, oy = np.argsort(ids_x, kind="stable"), np.argsort(ids_y, kind="stable")
    rank_x = np.arange(len(ox)) - np.searchsorted(ids_x[ox], ids_x[ox])
    rank_y = np.arange(len(oy)) - np.searchsorted(ids_y[oy], ids_y[oy])
    key_x = ids_x[ox].astype(np.int64) * len(ox) + rank_x
    key_y = ids_y[oy].astype(np.int64) * len(oy) + rank_y
    pos = np.clip(np.searchsorted(key_x, key_y), 0, len(key_x) - 1)
    hit = key_x[pos] == key_y
    g = np.full(len(oy), -1, np.int64)
    g[oy[hit]] = ox[pos[hit]]
    left = np.setdiff1d(np.arange(len(ox)), g[g >= 0])
    g[g < 0] = left
    return g, count_x[ids_y] == 1, unmatched


def pairs_ladder(available: int) -> Tuple[int, ...]:
    """The doubling ladder 1, 2, 4, ... up to ``available`` pairs, ending at ``available``."""
    ladder = [1 << t for t in range(max(1, available).bit_length()) if (1 << t) < available]
    return tuple(ladder + [available])


def seen_tables(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """What the pairs show of every value map: x, y (k, D) uint8, g (D,) → table (D, 256) uint8 (entry v of
    row i: the output value seen for input value v at g[i]; 0 where unseen) and seen (D, 256) bool."""
    d = x.shape[1]
    rows = np.broadcast_to(np.arange(d), x.shape)
    src = x[:, g]
    table = np.zeros((d, 256), np.uint8)
    seen = np.zeros((d, 256), bool)
    table[rows, src] = y
    seen[rows, src] = True
    return table, seen


def _constant_fit(table: np.ndarray, seen: np.ndarray, op: str) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, the constant c and whether every seen entry is ``v XOR c`` (op "xor") or ``v + c`` ("add")."""
    diff = (table ^ _VALUES) if op == "xor" else table - _VALUES   # uint8: the difference wraps mod 256
    lo = np.where(seen, diff, np.uint8(255)).min(1)
    hi = np.where(seen, diff, np.uint8(0)).max(1)
    return lo, (lo == hi) & seen.any(1)


def _shared_fit(table: np.ndarray, seen: np.ndarray) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """One table for every coordinate: per input value the output value seen most often over all rows.
    Returns it (None when it is not a permutation of 0..255) and which rows agree with it where seen."""
    xs = np.broadcast_to(_VALUES, table.shape)[seen].astype(np.int64)
    counts = np.bincount(xs * 256 + table[seen], minlength=256 * 256).reshape(256, 256)
    shared = counts.argmax(1).astype(np.uint8)
    if counts.sum(1).min() == 0 or len(np.unique(shared)) < 256:
        return None, np.zeros(len(table), bool)
    return shared, ((table == shared) | ~seen).all(1) & seen.any(1)


def _nearest_inverse(table: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Inverse tables (R, 256) uint8 from seen entries only; an unseen output value takes the input value of
    the nearest seen output value (rows with nothing seen: the identity)."""
    r = len(table)
    inverse = np.zeros((r, 256), np.uint8)
    has = np.zeros((r, 256), bool)
    rows = np.broadcast_to(np.arange(r)[:, None], table.shape)[seen]
    inverse[rows, table[seen]] = np.broadcast_to(_VALUES, table.shape)[seen]
    has[rows, table[seen]] = True
    at = np.arange(256)
    left = np.maximum.accumulate(np.where(has, at, -1), axis=1)
    right = np.minimum.accumulate(np.where(has, at, 512)[:, ::-1], axis=1)[:, ::-1]
    pick = np.where((left >= 0) & ((at - left <= right - at) | (right > 255)), left, right)
    pick = np.where(has.any(1, keepdims=True), pick, at)
    out = np.take_along_axis(inverse, np.clip(pick, 0, 255), axis=1)
    return np.where(has.any(1, keepdims=True), out, _VALUES)


def complete_tables(table: np.ndarray, seen: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Dict[str, float]]:
    """Fill the unseen entries of value tables (D, 256) uint8 with ``seen`` (D, 256) bool.

    The families the seen entries may follow -- XOR with a constant, addition of a constant, one table
    shared by every coordinate -- are tried in the order of how many well-observed rows (8 or more values
    seen) each explains, so that a row with one or two values seen (which fits every family) follows the
    scheme's majority. Rows no family explains invert their seen entries and take the nearest seen value.
    Returns (forward tables (D, 256), inverse tables (D, 256), share of rows filled by each way).
    """
    fits = {op: _constant_fit(table, seen, op) for op in ("xor", "add")}
    shared, shared_ok = _shared_fit(table, seen)
    fits["shared"] = (shared, shared_ok)
    count = seen.sum(1)
    well = count >= 8 if (count >= 8).any() else count > 0
    order = sorted(fits, key=lambda f: -float(fits[f][1][well].mean()) if well.any() else 0.0)
    full = table.copy()
    done = np.zeros(len(table), bool)
    filled: Dict[str, float] = {}
    for name in order:
        const, ok = fits[name]
        rows = ok & ~done
        if name == "xor":
            full[rows] = _VALUES ^ const[rows, None]
        elif name == "add":
            full[rows] = _VALUES + const[rows, None]
        elif rows.any():
            full[rows] = shared
        done |= rows
        filled[name] = float(rows.mean())
    inverse, _ = invert_tables(full)
    inverse[~done] = _nearest_inverse(table[~done], seen[~done])
    filled["nearest"] = float((~done).mean())
    return full, inverse, filled


@dataclass
class KnownPlaintextFit:
    """What the known pairs gave: the model and the attacker's own figures.

    Attributes:
        model: the :class:`ValueModel` (its forward tables are exact only where a family filled them).
        pairs_needed: the smallest k on the doubling ladder at which ≥ ``target`` of the outputs match one
            input only, or None when even all the pairs do not.
        unique_fraction: share of outputs matched to one input only, with all the pairs.
        seen_fraction: share of the (D, 256) table entries the pairs show.
        filled: share of rows completed by each way (xor, add, shared, nearest).
        ladder: unique fraction at each rung tried.
    """

    model: ValueModel
    pairs_needed: Optional[int]
    unique_fraction: float
    seen_fraction: float
    filled: Dict[str, float]
    ladder: Dict[int, float]


def known_plaintext_model(x: np.ndarray, y: np.ndarray, target: float = 0.99) -> KnownPlaintextFit:
    """Learn a block-local scheme from k known pairs, no declared steps: x, y (k, D) uint8 (plain, encrypted).

    Raises PatchcryptError ("pairs: ...") when more than 1% of the output coordinates split the pairs unlike
    every input coordinate: then no bijective value map per coordinate explains them.
    """
    k = len(x)
    ladder: Dict[int, float] = {}
    needed = None
    for rung in pairs_ladder(k):
        g, unique, unmatched = match_by_partition(x[:rung], y[:rung])
        ladder[rung] = float(unique.mean())
        if ladder[rung] >= target:
            needed = rung
            break
    if rung != k:      # the best decryption uses every pair
        g, unique, unmatched = match_by_partition(x, y)
    if unmatched > 0.01:
        raise PatchcryptError(f"pairs: {unmatched:.0%} of the output coordinates group the known pairs unlike any "
                              "input coordinate (values mix across positions, or a value map is not one-to-one)")
    table, seen = seen_tables(x, y, g)
    full, inverse, filled = complete_tables(table, seen)
    return KnownPlaintextFit(ValueModel(g, full, inverse), needed, float(unique.mean()), float(seen.mean()), filled,
                             ladder)
