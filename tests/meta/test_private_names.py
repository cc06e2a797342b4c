"""Private names used across modules of ``src/patchcrypt``, read statically (``ast``; nothing is imported).

A name that starts with one underscore is its module's own business: another module that imports it
(``from .files import _decode_file``) or reads it off the module (``files._decode_file``) depends on what the
owner is free to change, and such names pile up wherever one module grew into several. Module names count
too (``from . import _impl``). Dunder names (``__version__``) and aliases given on import
(``from ..codec import RGB2YCC as _RGB2YCC``: the name taken is public) do not.

The uses of today are listed in ``KNOWN``; the test fails on any other, and on a listed one that no longer
exists (so the list only shrinks). Fix a new one by making the name public where it is defined (a name other
modules need is part of the module's interface: document it) or by moving the code to the module that owns
the name.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, Set, Tuple

try:
    from tests.meta.test_layers import ROOT, SRC, module_files
except ImportError:  # run from tests/meta itself
    from test_layers import ROOT, SRC, module_files  # type: ignore

Use = Tuple[str, str]  # (using module, "defining.module:_name")
# Known uses, "using module" -> names it takes from others, each to be removed by the change that makes the
# name public or moves the code. The goal: at most 8.
KNOWN: Dict[str, Set[str]] = {
    # the cipher base's helpers, reused by the grayscale scheme and the program's band size
    "patchcrypt.ciphers.base": {"patchcrypt.ciphers.program:_BAND"},
    "patchcrypt.ciphers.etc_gray": {"patchcrypt.ciphers.base:_is_torch", "patchcrypt.ciphers.base:_to_batch"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The dotted module a ``from X import ...`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    parts = package.split(".")
    base = parts[:len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_uses_of(name: str, path: Path, modules: Set[str]) -> Set[Use]:
    """Every private name ``name`` takes from another patchcrypt module: imported, or read as an attribute of
    a name bound to a patchcrypt module (``import patchcrypt.x as m``, ``from . import m``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out: Set[Use] = set()
    bound: Dict[str, str] = {}  # local name -> the patchcrypt module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == ROOT and a.name in modules:
                    bound[a.asname or a.name] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, path, node)
            if source.split(".")[0] != ROOT or source == name:
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                if _private(a.name):
                    out.add((name, f"{source}:{a.name}"))
                if sub in modules:
                    bound[a.asname or a.name] = sub
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            source = _module_read(node.value, bound)
            if source in modules and source != name:
                out.add((name, f"{source}:{node.attr}"))
    return out


def _module_read(node: ast.expr, bound: Dict[str, str]) -> str:
    """The dotted module an expression such as ``m`` or ``patchcrypt.files`` names ("" when none)."""
    rest = []
    while isinstance(node, ast.Attribute):
        rest.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in bound:
        return ""
    return ".".join([bound[node.id]] + rest[::-1])


@functools.lru_cache(maxsize=None)
def private_uses(src: Path = SRC) -> Dict[str, Set[str]]:
    """``{using module: {"defining.module:_name", ...}}`` over every module of ``src/patchcrypt``."""
    files = module_files(src)
    out: Dict[str, Set[str]] = {}
    for name, path in files.items():
        for user, used in private_uses_of(name, path, set(files)):
            out.setdefault(user, set()).add(used)
    return out


def _count(uses: Dict[str, Set[str]]) -> int:
    return sum(len(v) for v in uses.values())


def test_no_new_private_names_across_modules():
    new = {m: sorted(u - KNOWN.get(m, set())) for m, u in private_uses().items() if u - KNOWN.get(m, set())}
    assert not new, ("private names used from another module (make them public where they are defined, or "
                     "move the code):\n" + "\n".join(f"  {m}: {', '.join(u)}" for m, u in sorted(new.items())))


def test_known_private_uses_still_exist():
    """A fixed use leaves the list, so the list only shrinks."""
    found = private_uses()
    gone = {m: sorted(u - found.get(m, set())) for m, u in KNOWN.items() if u - found.get(m, set())}
    assert not gone, f"no longer used, remove from KNOWN: {gone}"


def test_the_checker_catches_what_it_should(tmp_path):
    pkg = tmp_path / ROOT
    (pkg / "serve").mkdir(parents=True)
    files = {"__init__.py": "", "files.py": "_x = 1\n__version__ = 1\nY = 2\n", "serve/__init__.py": "",
             "serve/routes.py": "_y = 1\n",
             "serve/app.py": ("from .routes import _y\nfrom ..files import Y as _Y, __version__\n"
                              "from .. import files\nimport patchcrypt.files as pf\n"
                              "def f():\n    return files._x, pf._x, _y._z, _Y._w\n"),
             "parts.py": "import patchcrypt.files\nfrom .files import _x as x\nv = patchcrypt.files._x\n"}
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    uses = private_uses(tmp_path)
    assert uses == {"patchcrypt.serve.app": {"patchcrypt.serve.routes:_y", "patchcrypt.files:_x"},
                    "patchcrypt.parts": {"patchcrypt.files:_x"}}


if __name__ == "__main__":  # python tests/meta/test_private_names.py: the count and the uses, by module
    found = private_uses()
    print(f"{_count(found)} private names used across modules (goal: at most 8)")
    for user, names in sorted(found.items()):
        print(f"  {user}: {', '.join(sorted(names))}")
