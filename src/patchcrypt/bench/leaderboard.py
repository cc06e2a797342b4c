"""The leaderboard: one row per design, from the cards that exist; a design without a card says
"not measured" in every figure, never a guess.

``rows_from_cards(designs, cards_dir)`` -> rows; ``write_leaderboard(rows, json_path, md_path, plot_path)``
writes ``leaderboard.json`` (``{"rows": [...]}``), the markdown page's table and the frontier plot
(accuracy cost against images-to-break, log axis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..atomic import atomic_write
from ..errors import PatchcryptError
from .card import load_card

NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Design:
    """A leaderboard row's design: how to bench it and where it comes from."""

    label: str             # the row's name and its card folder
    scheme: str            # registered name, or module:Class / file.py:Class
    block_size: int
    per_image: bool = False
    origin: str = "this project"
    note: str = ""

    @property
    def folder(self) -> str:
        """The card's folder name: the label in lower case, runs of other characters as one '-'."""
        import re

        return re.sub(r"[^a-z0-9.]+", "-", self.label.lower()).strip("-.")


def _n_cell(d: Dict[str, Any]) -> Dict[str, Any]:
    return {"n_to_break": d["n_to_break"], "largest_tried": d["largest_tried"], "img_size": d["img_size"],
            "broken_by": d["broken_by"]}


def row_of(design: Design, card: Optional[Dict[str, Any]], card_path: Optional[str]) -> Dict[str, Any]:
    """One row; every figure ``"not measured"`` when ``card`` is None."""
    row: Dict[str, Any] = {"label": design.label, "scheme": design.scheme, "origin": design.origin,
                           "block_size": design.block_size, "per_image": design.per_image, "note": design.note}
    if card is None:
        row.update(n_to_break=NOT_MEASURED, q_to_break=NOT_MEASURED, pairs_to_break=NOT_MEASURED,
                   accuracy_cost=NOT_MEASURED, accuracy=NOT_MEASURED, verdict=NOT_MEASURED, card=None)
        return row
    acc = card["accuracy"]
    first = card["domains"][0]
    row.update(n_to_break={d["domain"]: _n_cell(d) for d in card["domains"]}, q_to_break=card["q_to_break"],
               pairs_to_break=card["pairs_to_break"],
               pairs_largest_tried=first["pairs_ladder"][-1]["n"] if first["pairs_ladder"] else None,
               pairs_applies=all(a["applies"] for r in first["pairs_ladder"][-1:] for a in r["attacks"]),
               accuracy_cost=acc.get("cost", NOT_MEASURED),
               accuracy={k: acc[k] for k in ("plain", "scheme", "model", "train_images", "epochs") if k in acc}
               or NOT_MEASURED,
               verdict=card["verdict"]["line"], broken=card["verdict"]["broken"], preset=card["preset"]["name"],
               wall_seconds=card["wall_seconds"], card=card_path)
    return row


def rows_from_cards(designs: Sequence[Design], cards_dir: Path, root: Optional[Path] = None) -> List[Dict[str, Any]]:
    """A row per design, read from ``cards_dir/<design folder>/card.json`` where it exists."""
    rows = []
    for d in designs:
        path = Path(cards_dir) / d.folder / "card.json"
        card = load_card(path) if path.is_file() else None
        shown = None if card is None else str(path.relative_to(root) if root is not None else path)
        rows.append(row_of(d, card, shown))
    return rows


def n_text(cell: Any) -> str:
    """An images-to-break cell as the page shows it: N, "> N" (not broken up to N), or not measured."""
    if not isinstance(cell, dict):
        return str(cell)
    return str(cell["n_to_break"]) if cell["n_to_break"] is not None else f"> {cell['largest_tried']}"


def markdown_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """The leaderboard table (markdown); domains are the union of the rows' domains."""
    domains = sorted({k for r in rows if isinstance(r["n_to_break"], dict) for k in r["n_to_break"]})
    head = (["design", "origin", "M", "keys"] + [f"images-to-break, {d}" for d in domains] +
            ["queries-to-break", "pairs-to-break", "accuracy cost", "verdict", "card (wall time)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], r["origin"], str(r["block_size"]), "per image" if r["per_image"] else "one key"]
        for d in domains:
            cell = r["n_to_break"].get(d, "–") if isinstance(r["n_to_break"], dict) else r["n_to_break"]
            cells.append(n_text(cell))
        cost = r["accuracy_cost"]
        pairs = r["pairs_to_break"]
        if pairs is None and r.get("pairs_applies") is False:
            pairs = "n/a"
        elif pairs is None:
            pairs = f"> {r['pairs_largest_tried']}" if r.get("pairs_largest_tried") else "not broken"
        cells += [str(r["q_to_break"] if r["q_to_break"] is not None else "not broken"), str(pairs),
                  f"{cost:+.3f}" if isinstance(cost, float) else str(cost),
                  ("BROKEN" if r.get("broken") else "not broken by these attacks") if r["card"] else NOT_MEASURED,
                  f"[card](../{Path(r['card']).parent}/card.md) ({r['wall_seconds']:.0f} s)" if r["card"] else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_frontier(rows: Sequence[Dict[str, Any]], path: Path, domain: str) -> Optional[Path]:
    """Accuracy cost (y) against images-to-break on ``domain`` (x, log axis); designs not broken are drawn at
    their largest N tried with a right-pointing marker. Rows without both figures are left out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    seen: Dict[tuple, int] = {}   # labels of designs at the same point go one under another
    for r in rows:
        cell = r["n_to_break"].get(domain) if isinstance(r["n_to_break"], dict) else None
        if cell is None or not isinstance(r["accuracy_cost"], float):
            continue
        broken = cell["n_to_break"] is not None
        x = cell["n_to_break"] if broken else cell["largest_tried"]
        ax.scatter([x], [r["accuracy_cost"]], marker="o" if broken else ">", s=40)
        k = seen[(x, r["accuracy_cost"])] = seen.get((x, r["accuracy_cost"]), -1) + 1
        ax.annotate(r["label"], (x, r["accuracy_cost"]), fontsize=7, xytext=(4, 3 - 9 * k), textcoords="offset points",
                    ha="right" if x >= 1000 else "left")
    ax.set_xscale("log")
    ax.set_xlabel(f"images-to-break on {domain} (log; > = not broken up to there)")
    ax.set_ylabel("accuracy cost (plain - scheme)")
    ax.set_title("Frontier: privacy against accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_leaderboard(rows: List[Dict[str, Any]], json_path: Path, meta: Optional[Dict[str, Any]] = None) -> None:
    """``json_path``: ``{"rows": [...], **meta}``."""
    if not rows:
        raise PatchcryptError("no designs for the leaderboard")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, json.dumps({**(meta or {}), "rows": rows}, indent=1).encode())


__all__ = ["Design", "NOT_MEASURED", "row_of", "rows_from_cards", "markdown_rows", "plot_frontier",
           "write_leaderboard", "n_text"]
