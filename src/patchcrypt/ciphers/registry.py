"""Scheme registry: ``create_cipher(name, key, block_size=M, **options)`` and ``list_ciphers()``."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from ..errors import PatchcryptError
from ..keys import Key
from .base import Cipher, SchemeSpec, StepSpec
from .etc_gray import EtcGrayCipher

_S = StepSpec

SCHEMES: Dict[str, SchemeSpec] = {}
_CLASSES: Dict[str, type] = {}


def register_scheme(spec: SchemeSpec, cls: type = Cipher) -> SchemeSpec:
    if spec.name in SCHEMES:
        raise ValueError(f"scheme {spec.name!r} registered twice")
    SCHEMES[spec.name] = spec
    _CLASSES[spec.name] = cls
    return spec


# -- the schemes of the literature (DESIGN §4) --------------------------------------------------------------
register_scheme(SchemeSpec("plain", (), "no encryption (baseline)", origin="baseline", weak=True))
register_scheme(SchemeSpec(
    "etc", (_S("BS"), _S("RF"), _S("NP"), _S("CS")),
    "EtC: block scrambling, rotation/flip, negative-positive, colour shuffle; every block its own key",
    channels=(3,), origin="Kurihara, Kikuchi, Imaizumi, Shiota, Kiya 2015"))
register_scheme(SchemeSpec(
    "etc-gray", (_S("BS"), _S("RF"), _S("NP")),
    "grayscale-based EtC: YCbCr components side by side, then BS, RF, NP on 8x8 blocks; colour images "
    "decrypt up to the YCbCr conversion (4:2:0 chroma), not bit for bit",
    channels=(1,), block_sizes=(8,), origin="Chuman, Sirichotedumrong, Kiya 2017/2019", composite=True),
    EtcGrayCipher)
register_scheme(SchemeSpec(
    "block-pixel", (_S("BS"), _S("PS", shared=True), _S("BF")),
    "block scrambling, then pixel shuffling and bit flipping shared by all blocks",
    origin="Kiya et al. 2022 (arXiv 2207.05366); Qi et al. 2022 (arXiv 2205.12041)"))
register_scheme(SchemeSpec(
    "block-pixel-cs", (_S("BS"), _S("PS", shared=True), _S("BF"), _S("CS", shared=True)),
    "block-pixel plus one colour-channel order for all blocks", channels=(3,),
    origin="Kiya et al. 2022"))
register_scheme(SchemeSpec(
    "le", (_S("LE", shared=True),),
    "learnable encryption: 4-bit halves shuffled and flipped, one key for all blocks",
    unit="nibble", origin="Tanaka 2018"))
register_scheme(SchemeSpec(
    "ele", (_S("BS"), _S("LE")),
    "extended learnable encryption: block scrambling, then LE with a key per block",
    unit="nibble", origin="Madono et al. 2020"))
register_scheme(SchemeSpec(
    "pe", (_S("NPV"), _S("CS")),
    "pixel-based encryption: negative-positive per value, colour shuffle per pixel",
    channels=(3,), pixel_based=True, origin="Sirichotedumrong, Maekawa, Kinoshita, Kiya 2019"))

# -- single steps, usable alone -----------------------------------------------------------------------------
for _sym, _shared, _doc in (
    ("BS", False, "block scrambling only"),
    ("RF", False, "per-block rotation/flip only"),
    ("RF", True, "one rotation/flip for all blocks"),
    ("NP", False, "per-block negative-positive only"),
    ("BF", False, "bit flipping (one mask for all blocks) only"),
    ("CS", False, "per-block colour shuffle only"),
    ("CS", True, "one colour order for all blocks"),
    ("PS", True, "pixel shuffling (one permutation for all blocks) only"),
    ("PS", False, "pixel shuffling with a permutation per block"),
):
    _name = f"step-{_sym.lower()}{'-shared' if _shared and _sym != 'PS' else ''}"
    if _sym == "PS" and not _shared:
        _name = "step-ps-perblock"
    register_scheme(SchemeSpec(_name, (_S(_sym, shared=_shared),), _doc,
                               channels=(3,) if _sym == "CS" else (1, 3), origin="single step", weak=True))


def list_ciphers(include_steps: bool = False) -> List[str]:
    """Registered scheme names (single steps only when ``include_steps``)."""
    return [n for n, spec in SCHEMES.items() if include_steps or not spec.lone_step]


def get_scheme(name: str) -> SchemeSpec:
    try:
        return SCHEMES[name]
    except KeyError:
        valid = ", ".join(list_ciphers(include_steps=True))
        raise PatchcryptError(f"unknown scheme '{name}' (valid: {valid})") from None


def create_cipher(name: str, key: Optional[Key], block_size: int = 16, **options) -> Cipher:
    """Build the cipher ``name`` under ``key`` for M×M blocks.

    Options: ``per_image`` (bool), ``pad`` (bool); ``etc-gray`` also ``subsampling`` ("420"/"444") and
    ``color`` (bool). ``plain`` accepts ``key=None``.

    >>> from patchcrypt import Key
    >>> c = create_cipher("block-pixel", Key.from_bytes(bytes(32)), block_size=4)
    >>> import numpy as np; x = np.zeros((2, 8, 8, 3), np.uint8)
    >>> bool((c.decrypt(c.encrypt(x)) == x).all())
    True
    """
    spec = get_scheme(name)
    if key is None:
        if name != "plain":
            raise PatchcryptError(f"scheme '{name}' needs a key")
        key = Key(bytes(32))  # plain uses no key material
    cls: Callable[..., Cipher] = _CLASSES[name]
    names = _option_names(cls)
    unknown = sorted(set(options) - names) if names is not None else []
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        raise PatchcryptError(f"scheme '{name}' takes no option {', '.join(unknown)} (its options: {takes})")
    try:
        return cls(spec, key, block_size, **options)
    except TypeError as exc:
        raise PatchcryptError(f"bad option for scheme '{name}': {exc}") from None


def _option_names(cls) -> Optional[set]:
    """The keyword options a cipher class's constructor takes after spec, key and block size (None when it
    takes any: ``**kwargs``)."""
    import inspect

    params = list(inspect.signature(cls).parameters.values())[3:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


# -- published designs: AprilPyone & Kiya's block-wise transformations (IEEE TIFS 2021), see ciphers/published.py
def _register_published() -> None:
    from .published import FfxBlocksCipher

    origin = "AprilPyone & Kiya, IEEE TIFS 2021 (arXiv 2010.00801)"
    register_scheme(SchemeSpec("ak-shuffle", (_S("PS", shared=True),), "pixel shuffling: one permutation of "
                               "the values of every block, no block scrambling", origin=origin))
    register_scheme(SchemeSpec("ak-flip", (_S("BF"),), "bit flipping: v -> 255 - v at a key subset of the "
                               "in-block positions, no block scrambling", origin=origin))
    register_scheme(SchemeSpec("ak-ffx", (_S("FFX", shared=True),), "FFX encryption: a keyed permutation of the "
                               "byte values at a key subset of the in-block positions, no block scrambling",
                               origin=origin), FfxBlocksCipher)


_register_published()
# -- end of published designs (AprilPyone & Kiya) --
