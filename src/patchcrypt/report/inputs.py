"""What a report is made of: run folders and benchmark results files, found and ordered (:func:`collect`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from ..bounded import METADATA_MAX, read_text_bounded
from ..errors import PatchcryptError

KNOWN_KINDS = {
    "accuracy_table": "Accuracy on encrypted images",
    "compression": "Encryption-then-compression: rate–distortion",
    "attack_table": "Attacks: what each scheme protects",
    "keyed_model": "Keyed models: plain-trained, encrypted-input",
    "encrypt_speed": "Encryption speed",
    "files_speed": "File throughput (encrypt / decrypt trees)",
    "serve_load": "Serving under load",
    "demo_ciphers": "Every scheme on real photos",
    "demo_keyed": "Keyed models (demo)",
    "leaderboard": "Leaderboard: images-to-break against accuracy cost (benchmarks/leaderboard.py)",
}
# order of sections in the page
_ORDER = ["leaderboard", "demo_ciphers", "accuracy_table", "keyed_model", "demo_keyed", "compression", "attack_table",
          "encrypt_speed", "files_speed", "serve_load", "run"]


@dataclass
class Item:
    kind: str          # a results kind, or "run"
    path: Path
    data: Dict = field(default_factory=dict)


def collect(paths: Sequence) -> List[Item]:
    """Classify every input; unknown inputs are a clear error naming the path."""
    items: List[Item] = []
    for p in map(Path, paths):
        found = _classify(p, depth=2)
        if not found:
            if not p.exists():
                raise PatchcryptError(f"{p}: no such file or folder")
            raise PatchcryptError(f"{p}: not a run folder (metrics.csv) or a results file (results.json with a "
                                  "'kind'), and none inside")
        items += found
    seen, unique = set(), []
    for it in items:
        if it.path.resolve() not in seen:
            seen.add(it.path.resolve())
            unique.append(it)
    return sorted(unique, key=lambda it: (_ORDER.index(it.kind) if it.kind in _ORDER else len(_ORDER),
                                          str(it.path)))


def _classify(p: Path, depth: int) -> List[Item]:
    if p.is_file():
        if p.suffix != ".json":
            return []
        data = _read_json(p)
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and "rows" in data:
            return [Item(data["kind"], p, data)]
        return []
    if not p.is_dir():
        return []
    if (p / "metrics.csv").is_file():
        return [Item("run", p)]
    out = []
    for name in ("results.json", "ciphers.json", "keyed.json"):
        if (p / name).is_file():
            out += _classify(p / name, 0)
    if depth > 0:
        for child in sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")):
            out += _classify(child, depth - 1)
    return out


def _read_json(p: Path):
    try:
        return json.loads(read_text_bounded(p, METADATA_MAX, "results file"))
    except json.JSONDecodeError as exc:
        raise PatchcryptError(f"{p}: not valid JSON (line {exc.lineno})") from None
    except RecursionError:
        raise PatchcryptError(f"{p}: not valid JSON (nested past the parser's depth)") from None
