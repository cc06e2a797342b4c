"""What an attack is pointed at: a registered scheme or a user's own scheme class, behind one interface.

Rate your own scheme
--------------------
Any class with this interface runs through ``patchcrypt attack all --scheme my_module:MyScheme`` (or
``--scheme path/to/file.py:MyScheme``) and gets the same table as the registered schemes::

    class MyScheme:
        block_size = 4                      # M (or pass --block-size); the harness passes it back to __init__
        steps = ("BS", "BF")                # optional declared facts, see below

        def __init__(self, key: bytes, block_size: int):
            ...                             # key: 32 random bytes drawn by the harness; derive everything from it

        def encrypt(self, images: np.ndarray) -> np.ndarray:
            ...                             # uint8 (N, H, W, C) -> uint8 (N, H', W', C'), one ciphertext per image

        def decrypt(self, images: np.ndarray) -> np.ndarray:   # optional; checked for exactness if present
            ...

Required: ``__init__(key, block_size)`` and ``encrypt``. ``encrypt`` must give the same output for the same
image under one instance (one key for every image, as a server sees it); per-image keys are the harness's
job (``--per-image`` makes one instance, i.e. one key, per image). If repeated calls differ and the class
does not declare ``per_image = True``, it is refused with one line (a non-deterministic ``encrypt`` is
almost always a bug: a seed drawn per call, a global random state).

Declared facts (optional class attributes; an attack that needs an undeclared one says "n/a" and why):

* ``name`` (str): shown in tables; default the class name.
* ``steps`` (sequence of str): the keyed steps in order, in the vocabulary of DESIGN §3 -- "BS" (block
  scrambling), "RF" (rotation/flip), "NP" (negative-positive per block), "BF" (one flip mask for all
  blocks), "CS" (colour shuffle), "PS" (pixel shuffle), "LE" (4-bit halves), "NPV" (per-value flip); append
  "-shared" where one key serves every block (e.g. "PS-shared"). Any other name is a step the solvers do
  not model (e.g. "XOR" for an arbitrary byte mask), so attacks that need to model every step say n/a.
* ``unit`` ("byte" or "nibble", default "byte"), ``pixel_based`` (bool, default False).
* ``composite`` (bool, default False): the ciphertext has another shape than the image (e.g. a grayscale
  composite); without it, a shape change is refused as a bug.
* ``per_image`` (bool, default False): the scheme gives every image its own key material by itself (e.g.
  from a nonce it draws); attacks that need key material shared across images then say n/a.

Measured, not declared: whether the ciphertext keeps the plain image's shape (if not, and the class declares
``composite = True``, it is rated like a composite: attacks that need pixel correspondence say n/a), whether
``encrypt`` is deterministic, and whether ``decrypt`` (if given) inverts ``encrypt`` exactly.
"""

from __future__ import annotations

import importlib
import importlib.util
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..ciphers import SchemeSpec, StepSpec, create_cipher, get_scheme
from ..errors import PatchcryptError
from ..keys import Key
from .keymaps import block_source


class Target:
    """A scheme under one secret key, as an attack sees it.

    Attributes:
        name: shown in tables.
        spec: the scheme's facts (steps, unit, pixel_based, composite, ...). For a user scheme these are
            the declared ones (``steps_declared`` False when it declared none) plus the measured ones.
        block_size: M.
        per_image: every image under its own key material.
        registered: a registered scheme; then ``key`` and ``cipher`` are the patchcrypt ones, and the true
            key map is available for scoring (:meth:`key_map`, :meth:`block_source`).
        cipher: the patchcrypt :class:`Cipher`, or the user's scheme instance.
        decrypt: the owner's exact decryption (None when the scheme has none, or keys are per image); for
            checks, never handed to an attack as an oracle.
        keyed_model: ``keyed_model(img_size, channels, seed) -> (plain model, keyed model)`` where a keyed
            model of the scheme exists (registered schemes that models.keyed absorbs), else None.
    """

    def __init__(self, name: str, spec: SchemeSpec, block_size: int, per_image: bool,
                 encrypt: Callable[[np.ndarray], np.ndarray], encrypt_fresh_keys: Callable[[np.ndarray], np.ndarray],
                 cipher: object, registered: bool, key: Optional[Key] = None, steps_declared: bool = True,
                 facts: Optional[dict] = None, decrypt: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 keyed_model: Optional[Callable[..., tuple]] = None):
        self.name, self.spec, self.block_size, self.per_image = name, spec, int(block_size), bool(per_image)
        self._encrypt, self._fresh = encrypt, encrypt_fresh_keys
        self.cipher, self.registered, self.key, self.steps_declared = cipher, registered, key, steps_declared
        self.facts = dict(facts or {})   # measured facts of a user scheme (for the report header)
        self.decrypt = decrypt           # the owner's decryption, when the scheme has one (never an attacker's)
        # keyed_model(img_size, channels, seed) -> (plain model, keyed model): the server's model, where one exists
        self.keyed_model = keyed_model

    def __repr__(self) -> str:
        kind = "registered" if self.registered else "user"
        return f"Target({self.name!r}, {kind}, block_size={self.block_size}, per_image={self.per_image})"

    # -- facts ---------------------------------------------------------------------------------------------
    @property
    def steps(self) -> Optional[frozenset]:
        """Step symbols, or None when a user scheme did not declare them."""
        return self.spec.symbols if self.steps_declared else None

    @property
    def composite(self) -> bool:
        return self.spec.composite

    @property
    def has_composite_view(self) -> bool:
        """Whether the plain image can be put in the ciphertext's layout and back (etc-gray)."""
        return hasattr(self.cipher, "to_composite") and hasattr(self.cipher, "from_composite")

    # -- what the attacker is handed -----------------------------------------------------------------------
    def encrypt(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> the ciphertexts under this target's key (one key per image if per_image)."""
        return self._encrypt(images)

    def encrypt_fresh_keys(self, images: np.ndarray) -> np.ndarray:
        """Every image under its own fresh key (what an attacker who knows the algorithm makes for itself)."""
        return self._fresh(images)

    def key_map(self, shape, nonce: bytes = b""):
        """For scoring only: the compiled key map (:class:`~patchcrypt.ciphers.program.Map`) of a registered
        scheme for plain images of ``shape`` (the composite's for composite schemes); None for user schemes."""
        if not self.registered:
            return None
        shape = tuple(int(v) for v in shape)
        if self.composite:
            shape = self.cipher.encrypted_shape(*shape)
        return self.cipher.key_map(shape, nonce)

    def block_source(self, shape) -> Optional[np.ndarray]:
        """For scoring only: ``source[k]`` = plain block held by encrypted block k; None for user schemes."""
        if not self.registered:
            return None
        return block_source(self.cipher, shape, self.block_size)


# -- registered schemes -----------------------------------------------------------------------------------
def registered_target(scheme: str, block_size: int, key: Optional[Key] = None, per_image: bool = False,
                      **options: Any) -> Target:
    """A registered scheme under ``key`` (a fresh one when None); ``options``: further cipher options (e.g.
    the nested schemes' ``sub_block``), the same for the attacker's fresh keys."""
    spec = get_scheme(scheme)
    block_size = spec.resolve_block_size(block_size, default=spec.block_sizes[0] if spec.block_sizes else None)
    key = key or Key.generate()
    cipher = create_cipher(scheme, key, block_size=block_size, per_image=per_image, **options)
    fresh = create_cipher(scheme, Key.generate(), block_size=block_size, per_image=True, **options)

    def encrypt(images: np.ndarray) -> np.ndarray:
        return cipher.encrypt(images, cipher.new_nonces(len(images)) if per_image else None)

    def encrypt_fresh(images: np.ndarray) -> np.ndarray:
        return fresh.encrypt(images, fresh.new_nonces(len(images)))

    keyed = None
    if spec.keyable is not None and not per_image:
        def keyed(img_size: int, channels: int, seed: int = 0, model: str = "vit_pico_patch4_32"):
            """A plain model (random weights, ``seed``) and the keyed model the owner would make from it."""
            import copy

            from ..models import create_model
            from ..models.keyed import key_model

            plain = create_model(model, seed=seed, img_size=img_size, in_chans=channels, patch_size=block_size)
            k_model = copy.deepcopy(plain)
            key_model(k_model, key, scheme, block_size)
            return plain, k_model

    def decrypt(images: np.ndarray) -> np.ndarray:
        return cipher.decrypt(images)

    return Target(scheme, spec, block_size, per_image, encrypt, encrypt_fresh, cipher, True, key=key,
                  decrypt=None if per_image else decrypt, keyed_model=keyed)


# -- user schemes -----------------------------------------------------------------------------------------
def is_user_scheme(scheme) -> bool:
    """A ``module:Class`` / ``file.py:Class`` reference or a class (not a registered scheme name)."""
    return isinstance(scheme, type) or (isinstance(scheme, str) and ":" in scheme)


def load_user_scheme(ref: str) -> type:
    """Import ``module:Class`` or ``path/to/file.py:Class`` and return the class (one-line errors)."""
    module_name, sep, cls_name = ref.rpartition(":")
    if not sep or not module_name or not cls_name:
        raise PatchcryptError(f"--scheme {ref!r}: expected a registered scheme name, module:Class or file.py:Class")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise PatchcryptError(f"--scheme {ref!r}: no such file {path}")
        name = f"patchcrypt_user_scheme_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module   # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise PatchcryptError(f"--scheme {ref!r}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise PatchcryptError(f"--scheme {ref!r}: module not found ({exc})") from None
        except Exception as exc:
            raise PatchcryptError(f"--scheme {ref!r}: importing {module_name} failed: "
                                  f"{type(exc).__name__}: {exc}") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        raise PatchcryptError(f"--scheme {ref!r}: {module_name} has no class {cls_name!r}")
    return cls


def _steps_of(cls: type) -> Optional[tuple]:
    declared = getattr(cls, "steps", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not isinstance(declared, (tuple, list)):
        raise PatchcryptError(f"{cls.__name__}.steps must be a sequence of step names such as ('BS', 'PS-shared')")
    out = []
    for s in declared:
        if isinstance(s, StepSpec):
            out.append(s)
        elif isinstance(s, str) and s:
            sym, shared = (s[:-len("-shared")], True) if s.endswith("-shared") else (s, False)
            out.append(StepSpec(sym, shared=shared))
        else:
            raise PatchcryptError(f"{cls.__name__}.steps: {s!r} is not a step name")
    return tuple(out)


def _checked(out, images: np.ndarray, who: str) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise PatchcryptError(f"{who} returned {type(out).__name__}, expected a numpy array")
    if out.dtype != np.uint8:
        raise PatchcryptError(f"{who} returned dtype {out.dtype}, expected uint8")
    if out.ndim != 4 or len(out) != len(images):
        raise PatchcryptError(f"{who} returned shape {out.shape} for {len(images)} images; expected (N, H, W, C) "
                              f"with N = {len(images)}")
    return out


def user_target(cls: Union[type, str], block_size: Optional[int], probe: np.ndarray, key: Optional[Key] = None,
                per_image: bool = False) -> Target:
    """A user's scheme class (see the module docstring) under one key, checked on ``probe`` images.

    ``probe``: a few plain images, uint8 (N, H, W, C), encrypted once to check the output and measure facts.
    """
    if isinstance(cls, str):
        cls = load_user_scheme(cls)
    label = getattr(cls, "name", None) or cls.__name__
    if not callable(getattr(cls, "encrypt", None)):
        raise PatchcryptError(f"{label}: the class has no encrypt(images) method")
    if block_size is None:
        block_size = getattr(cls, "block_size", None)
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise PatchcryptError(f"{label}: declare block_size on the class or pass --block-size")
    steps = _steps_of(cls)
    unit = getattr(cls, "unit", "byte")
    if unit not in ("byte", "nibble"):
        raise PatchcryptError(f"{label}.unit must be 'byte' or 'nibble', got {unit!r}")

    def make(key_bytes: bytes):
        try:
            return cls(key=key_bytes, block_size=int(block_size))
        except PatchcryptError:
            raise
        except Exception as exc:
            raise PatchcryptError(f"{label}(key=..., block_size={block_size}) failed: "
                                  f"{type(exc).__name__}: {exc}") from None

    def run(obj, images: np.ndarray, method: str = "encrypt") -> np.ndarray:
        try:
            out = getattr(obj, method)(images)
        except PatchcryptError:
            raise
        except Exception as exc:
            raise PatchcryptError(f"{label}.{method} failed on {images.dtype} {images.shape}: "
                                  f"{type(exc).__name__}: {exc}") from None
        return _checked(out, images, f"{label}.{method}")

    instance = make(key._bytes if key is not None else secrets.token_bytes(32))
    probe = np.ascontiguousarray(probe[:2])
    first = run(instance, probe)
    deterministic = bool(np.array_equal(first, run(instance, probe)))
    keeps_shape = first.shape == probe.shape
    if not keeps_shape and not getattr(cls, "composite", False):
        raise PatchcryptError(f"{label}.encrypt returned shape {first.shape} for images of shape {probe.shape}; a "
                              "scheme whose ciphertext has another shape declares composite = True")
    decrypt_exact = None
    if callable(getattr(instance, "decrypt", None)):
        decrypt_exact = bool(np.array_equal(run(instance, first, "decrypt"), probe))
    declared_per_image = bool(getattr(cls, "per_image", False))
    if not deterministic and not declared_per_image:
        raise PatchcryptError(f"{label}.encrypt is not deterministic: two calls on the same images under one key "
                              "gave different ciphertexts (declare per_image = True if it draws key material per "
                              "call)")
    own_per_image = not deterministic          # the scheme draws key material per call itself
    per_image = per_image or own_per_image or declared_per_image

    def fresh(images: np.ndarray) -> np.ndarray:
        return np.concatenate([run(make(secrets.token_bytes(32)), images[i:i + 1]) for i in range(len(images))])

    def encrypt(images: np.ndarray) -> np.ndarray:
        if per_image and not own_per_image:
            return fresh(images)
        return run(instance, images)

    spec = SchemeSpec(label, steps or (), getattr(cls, "__doc__", None) or "user scheme", unit=unit,
                      pixel_based=bool(getattr(cls, "pixel_based", False)), origin=f"user: {cls.__module__}",
                      composite=not keeps_shape)
    facts = {"deterministic": deterministic, "keeps_shape": keeps_shape, "decrypt_exact": decrypt_exact,
             "steps": None if steps is None else [s.label for s in steps]}
    owner_decrypt = None
    if decrypt_exact and not per_image:
        def owner_decrypt(images: np.ndarray) -> np.ndarray:
            return run(instance, images, "decrypt")

    return Target(label, spec, int(block_size), per_image, encrypt, fresh, instance, False,
                  steps_declared=steps is not None, facts=facts, decrypt=owner_decrypt)


def make_target(scheme: Union[str, type, Target], block_size: Optional[int], probe: Optional[np.ndarray] = None,
                key: Optional[Key] = None, per_image: bool = False, **options: Any) -> Target:
    """A :class:`Target` from a registered name, a ``module:Class`` reference, or a class; ``options`` are a
    registered scheme's further cipher options (e.g. ``sub_block``)."""
    if isinstance(scheme, Target):
        return scheme
    if is_user_scheme(scheme):
        if probe is None or len(probe) == 0:
            raise PatchcryptError("a user scheme is checked on the images it is attacked with; none given")
        if options:
            raise PatchcryptError(f"cipher options ({', '.join(options)}) are for registered schemes; a user's "
                                  "scheme class takes its own")
        return user_target(scheme, block_size, probe, key=key, per_image=per_image)
    if not isinstance(scheme, str):
        raise PatchcryptError(f"a scheme is a registered name, module:Class or a class, not {type(scheme).__name__}")
    return registered_target(scheme, block_size, key=key, per_image=per_image, **options)


__all__ = ["Target", "make_target", "registered_target", "user_target", "load_user_scheme", "is_user_scheme"]
