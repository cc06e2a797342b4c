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
    "attack": "Attacks",
    "leaderboard": "Leaderboard: images-to-break against accuracy cost (benchmarks/leaderboard.py)",
}
# order of sections in the page
_ORDER = ["leaderboard", "demo_ciphers", "accuracy_table", "keyed_model", "demo_keyed", "compression",
          "attack_table", "attack", "encrypt_speed", "files_speed", "serve_load", "run"]


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
            raise PatchcryptError(f"{p}: not a run folder (metrics.csv), a results file (results.json with a "
                                  "'kind') or an attack's --out folder (metrics.json), and none inside")
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
        data = read_json(p)
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and "rows" in data:
            return [Item(data["kind"], p, data)]
        return []
    if not p.is_dir():
        return []
    if (p / "metrics.csv").is_file():
        return [Item("run", p)]
    if (p / "metrics.json").is_file():  # a 'patchcrypt attack ... --out' folder
        data = read_json(p / "metrics.json")
        if is_attack_result(data):
            return [Item("attack", p / "metrics.json", data)]
    out = []
    for name in ("results.json", "ciphers.json", "keyed.json"):
        if (p / name).is_file():
            out += _classify(p / name, 0)
    if depth > 0:
        for child in sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")):
            out += _classify(child, depth - 1)
    return out


def is_attack_result(data) -> bool:
    """Whether ``data`` is what ``patchcrypt attack`` writes to ``--out``: ``attack all``'s report (a verdict and
    its attacks) or one attack's metrics."""
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("verdict"), dict) and isinstance(data.get("attacks"), list):
        return True
    return isinstance(data.get("attack"), str) and "readable" in data and "n_images" in data


def read_json(p: Path):
    try:
        return json.loads(read_text_bounded(p, METADATA_MAX, "results file"))
    except json.JSONDecodeError as exc:
        raise PatchcryptError(f"{p}: not valid JSON (line {exc.lineno})") from None
    except RecursionError:
        raise PatchcryptError(f"{p}: not valid JSON (nested past the parser's depth)") from None
