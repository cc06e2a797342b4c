"""The import contract of ``src/patchcrypt``, read statically (``ast``; nothing is imported).

Layers, lowest first; a module may import its own layer and the ones below, never one above:

    0 errors, atomic, bounded, runtime, security
    1 keys, blocks, codec, metrics
    2 ciphers, data (readers, and the train/test loading of data.loading), record, augment (device-side
      augmentation kernels)
    3 models, attacks, files, parts, inference, transforms
    4 train, serve, report
    5 evaluate, bench (the benchmark: attacks and a small training run)
    6 cli, __main__, the package root (the public façade)

and: no import circles between modules; nothing imports ``cli``; ``evaluate`` and ``serve`` never reach
``train``, even through other modules; ``record`` imports nothing from ``serve``; ``models.registry``
imports nothing in ``models``. Imports inside functions count (they run too); imports under
``if TYPE_CHECKING:`` do not.

A new top-level module needs a line in ``LAYERS``. The known violations are listed, each with why, in
``KNOWN``; the test fails on any other, and on a listed one that no longer exists (so the list shrinks).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "patchcrypt"

LAYERS: Dict[str, int] = {
    "errors": 0, "atomic": 0, "bounded": 0, "runtime": 0, "security": 0,
    "keys": 1, "blocks": 1, "codec": 1, "metrics": 1,
    "ciphers": 2, "data": 2, "record": 2, "augment": 2,
    "models": 3, "attacks": 3, "files": 3, "parts": 3, "inference": 3, "transforms": 3,
    "train": 4, "serve": 4, "report": 4,
    "evaluate": 5, "bench": 5,
    "cli": 6, "__main__": 6, "": 6,  # "" is the package root, patchcrypt/__init__.py
}

Edge = Tuple[str, str]
# Known violations (importer, imported), each with why, to be removed by the change it waits for. None today:
# a new one needs a reason here and a plan to remove it.
KNOWN: Dict[Edge, str] = {}


# -- reading the imports ---------------------------------------------------------------------------------------
def module_files(src: Path = SRC) -> Dict[str, Path]:
    """Dotted module name -> file, for every .py under ``src/patchcrypt``."""
    out = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> Set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (never run)."""
    skip: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports_of(name: str, path: Path, modules: Iterable[str]) -> Set[str]:
    """The patchcrypt modules ``name`` imports (``from a import b`` names ``a.b`` when that is a module)."""
    modules = set(modules)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_only(tree)
    out: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == ROOT}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    out.discard(name)
    return out


@functools.lru_cache(maxsize=None)
def import_graph(src: Path = SRC) -> Dict[str, Set[str]]:
    files = module_files(src)
    return {name: imports_of(name, path, files) for name, path in files.items()}


# -- the rules -------------------------------------------------------------------------------------------------
def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise AssertionError(f"{module} has no layer: add {top!r} to LAYERS in tests/meta/test_layers.py")
    return LAYERS[top]


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reaches(graph: Dict[str, Set[str]], start: str, target_prefix: str) -> List[str]:
    """A chain of imports from ``start`` to a module under ``target_prefix``, or [] when there is none."""
    seen, todo = {start: [start]}, [start]
    while todo:
        v = todo.pop()
        for w in sorted(graph.get(v, ())):
            if w not in seen:
                seen[w] = seen[v] + [w]
                if w == target_prefix or w.startswith(target_prefix + "."):
                    return seen[w]
                todo.append(w)
    return []


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: Dict[str, Set[str]], known: Iterable[Edge] = ()) -> Dict[Edge, str]:
    """Every edge that breaks a rule, with the rule it breaks; circles name each edge inside one, looked for
    with the ``known`` edges taken out (a circle is broken once one of its edges goes)."""
    bad: Dict[Edge, str] = {}
    for src, dsts in graph.items():
        for dst in dsts:
            if layer_of(dst) > layer_of(src):
                bad[(src, dst)] = f"layer {layer_of(src)} imports layer {layer_of(dst)}"
            if _under(dst, f"{ROOT}.cli") and not (_under(src, f"{ROOT}.cli") or src == f"{ROOT}.__main__"):
                bad[(src, dst)] = "imports cli"
            if _under(src, f"{ROOT}.record") and _under(dst, f"{ROOT}.serve"):
                bad[(src, dst)] = "record imports serve"
            if src == f"{ROOT}.models.registry" and _under(dst, f"{ROOT}.models"):
                bad[(src, dst)] = "models.registry imports models"
    known = set(known)
    pruned = {v: {w for w in ws if (v, w) not in known} for v, ws in graph.items()}
    for comp in circles(pruned):
        members = set(comp)
        for src in comp:
            for dst in pruned[src] & members:
                bad.setdefault((src, dst), f"circle: {' <-> '.join(comp)}")
    return bad


# -- the tests -------------------------------------------------------------------------------------------------
def test_every_module_has_a_layer():
    for name in import_graph():
        layer_of(name)


def test_no_new_violations_of_the_import_contract():
    new = {e: why for e, why in violations(import_graph(), KNOWN).items() if e not in KNOWN}
    assert not new, "import contract broken:\n" + "\n".join(f"  {a} -> {b}: {why}"
                                                           for (a, b), why in sorted(new.items()))


def test_known_violations_still_exist():
    """A fixed violation leaves the list, so the list never excuses a new import of the same kind."""
    gone = [e for e in KNOWN if e not in violations(import_graph())]
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def test_evaluate_and_serve_never_reach_train():
    graph = import_graph()
    for start in [m for m in graph if m == f"{ROOT}.evaluate" or _under(m, f"{ROOT}.serve")]:
        chain = reaches(graph, start, f"{ROOT}.train")
        assert not chain, " -> ".join(chain)


def test_the_checker_catches_what_it_should():
    """The rules themselves, on a made-up graph: an upward import, a circle, cli, record -> serve."""
    g = {"patchcrypt.keys": {"patchcrypt.models"}, "patchcrypt.models": {"patchcrypt.keys"},
         "patchcrypt.record": {"patchcrypt.serve.client"}, "patchcrypt.serve.client": set(),
         "patchcrypt.evaluate": {"patchcrypt.cli.app", "patchcrypt.files"}, "patchcrypt.cli.app": set(),
         "patchcrypt.files": {"patchcrypt.train"}, "patchcrypt.train": set(),
         "patchcrypt.models.registry": {"patchcrypt.models.vit"}, "patchcrypt.models.vit": set()}
    bad = violations(g)
    assert "layer 1 imports layer 3" in bad[("patchcrypt.keys", "patchcrypt.models")]
    assert bad[("patchcrypt.models", "patchcrypt.keys")].startswith("circle")
    assert bad[("patchcrypt.evaluate", "patchcrypt.cli.app")] == "imports cli"
    assert bad[("patchcrypt.record", "patchcrypt.serve.client")] == "record imports serve"
    assert bad[("patchcrypt.models.registry", "patchcrypt.models.vit")] == "models.registry imports models"
    assert reaches(g, "patchcrypt.evaluate", "patchcrypt.train") == ["patchcrypt.evaluate", "patchcrypt.files",
                                                                      "patchcrypt.train"]


def test_imports_are_read_as_python_resolves_them(tmp_path):
    pkg = tmp_path / "patchcrypt"
    (pkg / "serve").mkdir(parents=True)
    for f in ("__init__.py", "errors.py", "record.py", "serve/__init__.py", "serve/client.py"):
        (pkg / f).write_text("")
    (pkg / "serve" / "client.py").write_text("from .. import errors\nfrom ..record import X\n"
                                             "def f():\n    from . import app\n")
    (pkg / "record.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from .serve.client import Client\nimport patchcrypt.errors\n")
    g = import_graph(tmp_path)
    assert g["patchcrypt.serve.client"] == {"patchcrypt.errors", "patchcrypt.record", "patchcrypt.serve"}
    assert g["patchcrypt.record"] == {"patchcrypt.errors"}
