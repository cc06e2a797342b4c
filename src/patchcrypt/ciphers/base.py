"""The cipher object: key material compiled per image shape, applied to numpy or torch batches."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..blocks import check_geometry
from ..errors import PatchcryptError
from ..keys import Key, LabelPrefix
from .program import _BAND, BlockBatch, BlockMap, Map, Program, apply_blockwise
from .steps import Geometry, batch_step_map, effective_key_space_log10, step_map, transformations_log10

NONCE_BYTES = 16


@dataclass(frozen=True)
class StepFacts:
    """What one keyed step does to an image (DESIGN §3), for the solvers that model it.

    A symbol outside :data:`STEP_FACTS` (a user's own step, e.g. "XOR") has every fact False: no solver models it.
    """

    moves_blocks: bool = False      # BS: whole blocks change places
    rotates_blocks: bool = False    # RF: a block turned and/or mirrored (one of its 8 dihedral states)
    inverts_blocks: bool = False    # NP: a whole block inverted (v -> 255 - v)
    flip_mask: bool = False         # BF: one mask of inverted in-block positions, the same for every block
    inverts_values: bool = False    # NPV: every value its own inversion bit (pixel-based encryption)
    shuffles_colours: bool = False  # CS: the 3 channels of a block (or pixel) reordered
    shuffles_pixels: bool = False   # PS: the values of a block permuted
    nibbles: bool = False           # LE: acts on 4-bit halves (shuffled and flipped), not on bytes
    value_map: bool = False         # only moves values or flips them: one gather plus one XOR mask
    one_key: bool = False           # one key for all blocks whatever ``shared`` says (BF: one mask of L bits)


STEP_FACTS: Dict[str, StepFacts] = {
    "BS": StepFacts(moves_blocks=True, value_map=True),
    "RF": StepFacts(rotates_blocks=True, value_map=True),
    "NP": StepFacts(inverts_blocks=True, value_map=True),
    "BF": StepFacts(flip_mask=True, value_map=True, one_key=True),
    "NPV": StepFacts(inverts_values=True, value_map=True),
    "CS": StepFacts(shuffles_colours=True, value_map=True),
    "PS": StepFacts(shuffles_pixels=True, value_map=True),
    "LE": StepFacts(nibbles=True, value_map=True),
}
_NO_FACTS = StepFacts()


def _fact(name: str, doc: str) -> property:
    """A read-only StepSpec attribute that is its symbol's :class:`StepFacts` field ``name``."""
    return property(lambda self: getattr(self.facts, name), doc=doc)


@dataclass(frozen=True)
class StepSpec:
    """One step of a scheme: its symbol, whether its key is shared by all blocks, and what it does (its
    :class:`StepFacts`, read off the symbol, as attributes: ``step.moves_blocks``, ``step.shuffles_pixels``, ...).

    >>> StepSpec("PS", shared=True).shuffles_pixels, StepSpec("BS").block_state, StepSpec("XOR").value_map
    (True, True, False)
    """

    symbol: str
    shared: bool = False

    @property
    def label(self) -> str:
        return f"{self.symbol}{'-shared' if self.shared else ''}"

    @property
    def facts(self) -> StepFacts:
        return STEP_FACTS.get(self.symbol, _NO_FACTS)

    # what the step does, read off its symbol's StepFacts (a user's own symbol: all False)
    moves_blocks = _fact("moves_blocks", "Whole blocks change places (BS).")
    rotates_blocks = _fact("rotates_blocks", "A block turned and/or mirrored (RF).")
    inverts_blocks = _fact("inverts_blocks", "A whole block inverted (NP).")
    flip_mask = _fact("flip_mask", "One mask of inverted in-block positions (BF).")
    inverts_values = _fact("inverts_values", "Every value its own inversion bit (NPV).")
    shuffles_colours = _fact("shuffles_colours", "The channels of a block reordered (CS).")
    shuffles_pixels = _fact("shuffles_pixels", "The values of a block permuted: pixel shuffle (PS).")
    nibbles = _fact("nibbles", "Acts on 4-bit halves (LE).")
    value_map = _fact("value_map", "Only moves or flips values.")

    @property
    def inverts(self) -> bool:
        """Whether the step inverts values (v -> 255 - v): whole blocks (NP), a shared mask (BF) or each value (NPV)."""
        f = self.facts
        return f.inverts_blocks or f.flip_mask or f.inverts_values

    @property
    def block_state(self) -> bool:
        """Whether the step keeps every block whole: moves it (BS) or gives it one of the jigsaw piece states
        (rotation/flip RF, inversion NP, colour order CS), so whole pixels stay together."""
        f = self.facts
        return f.moves_blocks or f.rotates_blocks or f.inverts_blocks or f.shuffles_colours

    @property
    def same_for_every_block(self) -> bool:
        """Whether every block gets the same key material from this step (BF has one mask by definition)."""
        return self.shared or self.facts.one_key


# Derived from STEP_FACTS, kept for readers of the old names.
# Steps whose key is one for all blocks whatever ``shared`` says (DESIGN §3: BF is one mask of L bits).
SAME_FOR_EVERY_BLOCK = frozenset(s for s, f in STEP_FACTS.items() if f.one_key)
# Steps that only move values or flip them (v -> full - v): with these the scheme is one gather plus one XOR
# mask over the flattened image (DESIGN §3), which is what a known-plaintext solver models.
MOVE_OR_FLIP_STEPS = frozenset(s for s, f in STEP_FACTS.items() if f.value_map)


@dataclass(frozen=True)
class SchemeSpec:
    """What a scheme is: steps, the unit they act on, and what inputs it accepts."""

    name: str
    steps: Tuple[StepSpec, ...]
    summary: str
    unit: str = "byte"  # "nibble" for LE/ELE
    channels: Tuple[int, ...] = (1, 3)
    block_sizes: Optional[Tuple[int, ...]] = None  # None: any
    pixel_based: bool = False  # block size 1 whatever the user asks (PE)
    origin: str = ""
    options: Dict[str, Any] = field(default_factory=dict)
    # The keyed steps act on a grayscale composite made by a (lossy) colour conversion (etc-gray): the
    # ciphertext has another shape, and no pixel of it corresponds to one pixel of the plain image.
    composite: bool = False
    # Hides little of an image (``plain``, a single step): a client refuses to send such images unless told to
    weak: bool = False

    @property
    def lone_step(self) -> bool:
        """A single step registered for study (``step-*``): weak, unlike the no-encryption baseline it has a
        step; listings leave these out unless asked."""
        return self.weak and bool(self.steps)

    def resolve_block_size(self, block_size: Optional[int] = None, default: Optional[int] = None,
                           substitute: bool = False) -> int:
        """The block size M this scheme uses when ``block_size`` is asked for (None: not said).

        ``plain`` (no steps, no blocks) takes the size asked for, else ``default``, else 1. Otherwise an
        unsaid size is the scheme's own when it declares exactly one, else ``default``, else an error asking
        for ``--block-size``; a size the scheme does not take is an error, or with ``substitute`` its first
        declared size (listings that show every scheme at one M). Errors are one-line PatchcryptErrors.

        >>> from patchcrypt.ciphers import get_scheme
        >>> get_scheme("etc-gray").resolve_block_size(), get_scheme("etc").resolve_block_size(16)
        (8, 16)
        >>> get_scheme("etc-gray").resolve_block_size(16, substitute=True), get_scheme("plain").resolve_block_size()
        (8, 1)
        """
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)):
            raise PatchcryptError(f"block size must be a whole number, got {block_size!r}")
        if not self.steps:
            return int(block_size or default or 1)
        if block_size is None:
            if len(self.block_sizes or ()) == 1:
                return int(self.block_sizes[0])
            if default is not None:
                return int(default)
            raise PatchcryptError(f"say which block size your {self.name} images use (--block-size)")
        if substitute and self.block_sizes and block_size not in self.block_sizes:
            return int(self.block_sizes[0])
        if block_size < 1 or (self.block_sizes and block_size not in self.block_sizes):
            raise PatchcryptError(f"block size {block_size} is not valid for scheme {self.name!r}")
        return int(block_size)

    @property
    def survives_lossy(self) -> bool:
        """Whether ciphertexts stored lossily (JPEG) still decrypt to the image, up to that format's loss: every
        step keeps blocks whole (moves, turns or inverts a block, reorders its colours: EtC's steps), so an
        aligned block's DCT coefficients only move or change sign. Steps inside a block (pixel shuffle, bit
        masks, 4-bit values, per-value inversion) leave high frequencies that the quantiser ruins, and a
        user's own step is not known to survive. ``ciphers.lossy.LOSSY_PSNR`` has the measured cost.

        >>> from patchcrypt.ciphers import get_scheme
        >>> get_scheme("etc").survives_lossy, get_scheme("block-pixel").survives_lossy
        (True, False)
        """
        return self.unit == "byte" and all(s.block_state for s in self.steps)

    @property
    def symbols(self) -> frozenset:
        """The step symbols, e.g. {"BS", "PS", "BF"}."""
        return frozenset(s.symbol for s in self.steps)

    @property
    def value_map(self) -> bool:
        """Whether the scheme is one gather plus one XOR mask (0 or all ones) over the flattened image."""
        return not self.composite and all(s.value_map for s in self.steps)

    @property
    def keyable(self) -> Optional[str]:
        """How a keyed isotropic model can absorb the scheme (DESIGN §7): "shared" (one patch embedding: the
        in-block steps are the same for every block), "position-wise" (one embedding per block position), or
        None (nibble values, a colour conversion in front, or no key at all)."""
        if not self.steps or self.unit != "byte" or not self.value_map:
            return None
        in_block = [s for s in self.steps if not s.moves_blocks]
        return "shared" if all(s.same_for_every_block for s in in_block) else "position-wise"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


class Cipher:
    """A block-wise cipher under one key.

    Args:
        spec: the scheme.
        key: the secret key.
        block_size: M; images must be multiples of M (or use ``pad``).
        per_image: mix a per-image nonce into the key derivation (every image its own key).
        pad: edge-replicate images up to multiples of M; ``decrypt(..., crop=(H, W))`` crops back.

    ``encrypt``/``decrypt`` take uint8 numpy (N, H, W, C) / (H, W, C) / (H, W) or torch (N, C, H, W) /
    (C, H, W) and return the same type, layout and device.
    """

    _CACHE = 32
    _CACHE_BYTES = 256 << 20
    _LARGE = 1 << 18  # values per image from which the program cache is bounded by bytes too

    def __init__(self, spec: SchemeSpec, key: Key, block_size: int, per_image: bool = False,
                 pad: bool = False):
        if not isinstance(key, Key):
            raise PatchcryptError("a cipher needs a patchcrypt Key")
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise PatchcryptError(f"block size must be a positive integer, got {block_size!r}")
        if spec.block_sizes is not None and block_size not in spec.block_sizes:
            allowed = ", ".join(map(str, spec.block_sizes))
            raise PatchcryptError(f"scheme '{spec.name}' takes block size {allowed}, not {block_size}")
        self.spec = spec
        self.key = key
        self.block_size = int(block_size)
        self.per_image = bool(per_image)
        self.pad = bool(pad)
        self._programs: "OrderedDict[tuple, Program]" = OrderedDict()
        self._prefixes: Dict[tuple, LabelPrefix] = {}

    # -- description ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def steps(self) -> Tuple[str, ...]:
        return tuple(s.label for s in self.spec.steps)

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def __repr__(self) -> str:
        return (f"Cipher({self.name!r}, block_size={self.block_size}, per_image={self.per_image}, "
                f"key={self.fingerprint})")

    def describe(self) -> Dict[str, Any]:
        """Metadata safe to store beside encrypted data (no key material)."""
        return {"scheme": self.name, "block_size": self.block_size, "steps": list(self.steps),
                "per_image": self.per_image, "pad": self.pad, "key_fingerprint": self.fingerprint}

    def _block(self) -> int:
        return 1 if self.spec.pixel_based else self.block_size

    def _pad_unit(self) -> int:
        return self._block()

    def transformations_log10(self, height: int, width: int, channels: int = 3) -> float:
        """log10 of the number of distinct maps the scheme can be for this geometry (its transformation count)."""
        geo = self._geometry(height, width, channels)
        return transformations_log10(((s.symbol, s.shared) for s in self.spec.steps), geo)

    def key_space_log10(self, height: int, width: int, channels: int = 3) -> float:
        """log10 of the effective key space: the transformation count, capped by the 256-bit key (77.06)."""
        return effective_key_space_log10(self.transformations_log10(height, width, channels))

    def padded_size(self, height: int, width: int) -> Tuple[int, int]:
        """(H, W) an image of ``height``×``width`` is encrypted at: rounded up to the block grid under ``pad``."""
        if not self.pad:
            return height, width
        u = self._pad_unit()
        return height + (-height) % u, width + (-width) % u

    def encrypted_shape(self, height: int, width: int, channels: int) -> Tuple[int, int, int]:
        return (height, width, channels)

    # -- compilation ---------------------------------------------------------------------------------
    def _geometry(self, height: int, width: int, channels: int) -> Geometry:
        m = self._block()
        check_geometry(height, width, m)
        return Geometry((height // m) * (width // m), m, channels)

    def _label(self, symbol: str, shape: Tuple[int, int, int]) -> tuple:
        return ("scheme", self.name, "step", symbol, "block", self._block(), "shape", *shape)

    def _prefix(self, symbol: str, shape: Tuple[int, int, int]) -> LabelPrefix:
        """The encoded label of one step for one shape, kept (one per step and shape, no key material)."""
        cache = self._prefixes
        k = (symbol, tuple(shape))
        if k not in cache:
            if len(cache) > 256:
                cache.clear()
            cache[k] = LabelPrefix(self._label(symbol, shape))
        return cache[k]

    def _compile_blocks(self, shape: Tuple[int, int, int], nonce: bytes) -> BlockMap:
        """Every step of the scheme composed into one compact block map (block order)."""
        geo = self._geometry(*shape)
        return self._compose_steps(
            shape, lambda step: step_map(step.symbol, self.key.stream(self._prefix(step.symbol, shape), nonce),
                                         geo, step.shared),
            lambda width: BlockMap(geo.n, width))

    def _compile_batch(self, shape: Tuple[int, int, int], nonces: Sequence[bytes]) -> BlockBatch:
        """Every image's :meth:`_compile_blocks` at once (per-image keys): each step's streams are hashed per
        nonce, and the draws and compositions run once over the batch (the same maps, image by image)."""
        geo = self._geometry(*shape)
        return self._compose_steps(
            shape, lambda step: batch_step_map(step.symbol, self.key.streams(self._prefix(step.symbol, shape), nonces),
                                               geo, step.shared),
            lambda width: BlockBatch(len(nonces), geo.n, width))

    def _compose_steps(self, shape: Tuple[int, int, int], draw, identity):
        """The scheme's steps drawn one at a time (``draw(step)``: a BlockMap or BlockBatch) and composed in
        order; 4-bit schemes lift their byte-level steps to halves; ``identity(width)`` for a scheme of none.
        Each step's map is dropped once composed (a per-value step's draw is as large as the image)."""
        total = None
        for step in self.spec.steps:
            one = draw(step)
            if self.spec.unit == "nibble" and step.symbol != "LE":
                one = one.lift_to_nibbles()
            total = one if total is None else total.then(one)
            del one
        if total is None:
            total = identity(self._geometry(*shape).L * (2 if self.spec.unit == "nibble" else 1))
        return total

    def _compile_map(self, shape: Tuple[int, int, int], nonce: bytes) -> Map:
        """The scheme as one flat map in image (H, W, C) order (see :meth:`program`)."""
        return self.key_map(shape, nonce)

    def key_map(self, shape: Tuple[int, int, int], nonce: bytes = b"") -> Map:
        """The key as one map y[i] = x[g[i]] ^ m[i] (:class:`~.program.Map`: ``g`` int index, ``m`` uint8 mask)
        over the flat (H, W, C) input of the keyed steps, in bytes or, for nibble schemes, 4-bit halves.

        ``shape`` = (H, W, C) is what the keyed steps act on: the plain image, or for a composite scheme
        (etc-gray) its grayscale composite, ``encrypted_shape(H, W, C)``. ``nonce``: a per-image nonce (b"" for
        one key for every image). The map *is* the key: for scoring and tests, never for output.
        """
        return self.program(shape, nonce).map

    def program(self, shape: Tuple[int, int, int], nonce: bytes = b"") -> Program:
        """The compiled map for plain images of ``shape`` = (H, W, C) (cached)."""
        shape = self._check_channels(shape)
        k = (shape, nonce)
        prog = self._programs.get(k)
        if prog is None:
            if int(np.prod(shape)) >= self._LARGE:
                # a program over the byte budget is evicted once a large one is cached (_trim_cache): drop it
                # before compiling, not after, so a tree of large images of several sizes holds one at a time
                for old in [key for key, p in self._programs.items() if p.nbytes > self._CACHE_BYTES]:
                    del self._programs[old]
            prog = Program.from_blocks(self._compile_blocks(shape, nonce), self.spec.unit, shape, self._block())
            self._programs[k] = prog
            self._trim_cache()
        else:
            self._programs.move_to_end(k)
        return prog

    def _check_channels(self, shape) -> Tuple[int, int, int]:
        shape = tuple(int(v) for v in shape)
        if shape[2] not in self.spec.channels:
            want = " or ".join(map(str, self.spec.channels))
            raise PatchcryptError(f"scheme '{self.name}' needs images with {want} channel(s), got {shape[2]}")
        return shape

    def _trim_cache(self) -> None:
        """Keep at most ``_CACHE`` programs and, beyond the newest, at most ``_CACHE_BYTES`` of tables: a large
        image's tables are several bytes per value, and a tree of large images of many sizes must not keep
        one per size."""
        while len(self._programs) > self._CACHE:
            self._programs.popitem(last=False)
        newest = next(reversed(self._programs.values()))
        if int(np.prod(newest.shape_in)) < self._LARGE:  # small images: the count bounds it (32 x a few MB)
            return
        while len(self._programs) > 1 and sum(p.nbytes for p in self._programs.values()) > self._CACHE_BYTES:
            self._programs.popitem(last=False)

    # -- nonces ----------------------------------------------------------------------------------------
    @staticmethod
    def new_nonces(count: int) -> List[bytes]:
        """Fresh random per-image nonces (public; stored beside the images)."""
        return [secrets.token_bytes(NONCE_BYTES) for _ in range(count)]

    def _nonce_list(self, nonces, count: int) -> List[bytes]:
        if not self.per_image:
            if nonces is not None:
                raise PatchcryptError("nonces given, but this cipher was not created with per_image=True")
            return [b""]
        if nonces is None:
            raise PatchcryptError("a per-image cipher needs one nonce per image (see Cipher.new_nonces)")
        if isinstance(nonces, (bytes, bytearray)):
            nonces = [bytes(nonces)]
        nonces = [bytes(n) for n in nonces]
        if len(nonces) != count:
            raise PatchcryptError(f"{len(nonces)} nonces for {count} images")
        return nonces

    # -- application -------------------------------------------------------------------------------------
    def encrypt(self, x, nonces: Optional[Sequence[bytes]] = None):
        """Encrypt uint8 images (see class docstring for accepted layouts)."""
        return self._run(x, "enc", nonces, crop=None)

    def decrypt(self, y, nonces: Optional[Sequence[bytes]] = None, crop: Optional[Tuple[int, int]] = None):
        """Decrypt; ``crop=(H, W)`` undoes ``pad``."""
        return self._run(y, "dec", nonces, crop=crop)

    def _run(self, x, direction: str, nonces, crop):
        torch_in = _is_torch(x)
        batch, unbatch = _to_batch(x, torch_in)
        if torch_in:
            n, c, h, w = batch.shape
        else:
            n, h, w, c = batch.shape
        if direction == "enc" and self.pad:
            batch = _pad(batch, self._pad_unit(), torch_in)
            if torch_in:
                h, w = batch.shape[2:]
            else:
                h, w = batch.shape[1:3]
        out = self._apply(batch, direction, nonces, (h, w, c), torch_in)
        if direction == "dec" and crop is not None:
            ch, cw = crop
            out = out[:, :, :ch, :cw] if torch_in else out[:, :ch, :cw, :]
        return unbatch(out)

    def _apply(self, batch, direction: str, nonces, shape, torch_in: bool):
        """Encrypt or decrypt a 4-D batch of ``shape`` = (H, W, C) images. A subclass that converts images
        around its keyed steps (etc-gray's colour composite) overrides this and calls :meth:`_apply_keyed`."""
        return self._apply_keyed(batch, direction, nonces, shape, torch_in)

    def _apply_keyed(self, batch, direction: str, nonces, shape, torch_in: bool):
        """The keyed steps alone (the compiled map or its inverse) on a 4-D batch whose images have ``shape``."""
        n = batch.shape[0]
        h, w, c = shape
        nonce_list = self._nonce_list(nonces, n)
        if len(nonce_list) > 1 and h * w * c <= _BAND:
            return self._apply_per_image(batch, direction, nonce_list, shape, torch_in)
        flat = batch.reshape(n, -1) if torch_in else np.ascontiguousarray(batch).reshape(n, -1)
        if len(nonce_list) == 1:
            prog = self.program(shape, nonce_list[0])
            out = prog.apply_torch(flat, direction) if torch_in else prog.apply_numpy(flat, direction)
        else:  # per-image keys on large images: one image at a time, each in bands (no batch of tables)
            parts = [self._apply_keyed(batch[i:i + 1], direction, [nc], shape, torch_in)
                     for i, nc in enumerate(nonce_list)]
            return torch_cat(parts) if torch_in else np.concatenate(parts)
        return out.reshape(n, c, h, w) if torch_in else out.reshape(n, h, w, c)

    def _apply_per_image(self, batch, direction: str, nonce_list, shape, torch_in: bool):
        """Per-image keys on small images: the batch's compact block maps drawn and composed at once
        (:meth:`_compile_batch`), one batched gather (no program cache: fresh nonces would only evict the
        shared-key programs)."""
        h, w, c = shape
        shape = self._check_channels(shape)
        maps = self._compile_batch(shape, nonce_list)
        if direction == "dec":
            maps = maps.inverse()
        n = len(nonce_list)
        flat = batch.reshape(n, -1) if torch_in else np.ascontiguousarray(batch).reshape(n, -1)
        out = apply_blockwise(maps, flat, shape, self._block(), self.spec.unit, channels_first=torch_in)
        return out.reshape(n, c, h, w) if torch_in else out.reshape(n, h, w, c)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_programs"] = OrderedDict()  # recompiled on demand; keeps pickles small
        state["_prefixes"] = {}  # hash states do not pickle
        return state


def torch_cat(parts):
    import torch

    return torch.cat(parts)


def _to_batch(x, torch_in: bool):
    """Normalise input to a 4-D uint8 batch; return it and a function restoring the caller's layout."""
    if torch_in:
        import torch

        if x.dtype != torch.uint8:
            raise PatchcryptError(f"images must be uint8, got {x.dtype}")
        if x.ndim == 4:
            return x.contiguous(), lambda y: y
        if x.ndim == 3:
            return x.unsqueeze(0).contiguous(), lambda y: y[0]
        raise PatchcryptError(f"torch images must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise PatchcryptError(f"images must be uint8, got {x.dtype}")
    if x.ndim == 4:
        return x, lambda y: y
    if x.ndim == 3:
        return x[None], lambda y: y[0]
    if x.ndim == 2:
        return x[None, :, :, None], lambda y: y[0, :, :, 0]
    raise PatchcryptError(f"numpy images must be (N, H, W, C), (H, W, C) or (H, W), got shape {x.shape}")


def _pad(batch, m: int, torch_in: bool):
    if torch_in:
        import torch

        h, w = batch.shape[2:]
        rows = torch.arange(h + (-h) % m, device=batch.device).clamp(max=h - 1)
        cols = torch.arange(w + (-w) % m, device=batch.device).clamp(max=w - 1)
        return batch.index_select(2, rows).index_select(3, cols)
    _, h, w, _ = batch.shape
    return np.pad(batch, ((0, 0), (0, (-h) % m), (0, (-w) % m), (0, 0)), mode="edge")
