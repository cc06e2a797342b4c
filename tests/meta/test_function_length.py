"""No function in ``src/patchcrypt`` is longer than 80 lines, from its ``def`` to its last line (read
statically with ``ast``; the docstring counts).

A long function is several steps that deserve names. The ones still over the limit are listed in ``KNOWN``;
the test fails on any other, and on a listed one that is no longer over (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict

SRC = Path(__file__).resolve().parents[2] / "src" / "patchcrypt"
LIMIT = 80
# "path/in/package.py:function" -> why it waits. None today.
KNOWN: Dict[str, str] = {}


def long_functions(src: Path = SRC, limit: int = LIMIT) -> Dict[str, int]:
    """``{"rel/path.py:qualified.name": lines}`` for every function or method over ``limit`` lines."""
    out: Dict[str, int] = {}
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = path.relative_to(src).as_posix()

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        lines = child.end_lineno - child.lineno + 1
                        if lines > limit:
                            out[f"{rel}:{name}"] = lines
                    visit(child, name + ".")
                else:
                    visit(child, prefix)

        visit(tree, "")
    return out


def test_no_function_over_the_limit():
    found = long_functions()
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, f"functions over {LIMIT} lines (split them into named steps): {new}"
    stale = sorted(set(KNOWN) - set(found))
    assert not stale, f"no longer over the limit, remove from KNOWN: {stale}"


def test_the_scan_sees_long_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"class C:\n    def ok(self):\n        pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == {"m.py:long": LIMIT + 1}
