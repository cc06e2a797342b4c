"""Helpers the CLI tests share: run a command in-process, check a one-line error, write a small image tree
(the `key` fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from patchcrypt.cli import main
from patchcrypt.codec import write_image


def run(capsys, *args) -> Tuple[int, str, str]:
    """Run ``patchcrypt ARGS`` in this process; (exit code, stdout, stderr) of this command only."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, match: str = "") -> None:
    """The CLI's contract for bad input: exit 2 and one line on stderr starting ``error:`` (never a traceback)."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert "Traceback" not in err
    assert match in lines[0], lines[0]


def make_tree(root: Path, n: int = 6, size: int = 32, classes: Sequence[str] = ("cat", "dog")) -> Path:
    """``root/<class>/<00000..>.png``: ``n`` random ``size``×``size`` RGB images per class (seeded by ``n``)."""
    rng = np.random.default_rng(n)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / c / f"{i:05d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def encrypt_args(src, dst, key, *extra, scheme: str = "block-pixel", block_size: int = 4) -> list:
    """The arguments of ``patchcrypt encrypt SRC DST --key KEY --scheme ... --block-size ... EXTRA``."""
    return ["encrypt", src, dst, "--key", key, "--scheme", scheme, "--block-size", block_size, *extra]
