"""Block-wise image ciphers (DESIGN §3–§4): every scheme compiles to one gather plus one XOR mask."""

from .base import Cipher, SchemeSpec, StepSpec
from .etc_gray import EtcGrayCipher
from .registry import SCHEMES, create_cipher, get_scheme, list_ciphers, register_scheme
from .variants import INVARIANT_VARIANTS, NESTED_VARIANTS  # registers the EtC subsets for per-image keys

__all__ = ["Cipher", "EtcGrayCipher", "SchemeSpec", "StepSpec", "SCHEMES", "create_cipher", "get_scheme",
           "list_ciphers", "register_scheme", "INVARIANT_VARIANTS",
           "NESTED_VARIANTS"]
