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
PHOTO_BLOCK = 16      # block size of the photo cards: the patch of ViT-B/16 at 224 px
PHOTOS = "photos"     # a design's photo card: cards/<design>/photos/card.json


@dataclass(frozen=True)
class Design:
    """A leaderboard row's design: how to bench it and where it comes from."""

    label: str             # the row's name and its card folder
    scheme: str            # registered name, or module:Class / file.py:Class
    block_size: int
    per_image: bool = False
    origin: str = "this project"
    note: str = ""
    photo_block_size: Optional[int] = None   # M at the photo geometry (default: 16, a ViT-B/16 patch; 1 stays 1)

    @property
    def photo_m(self) -> int:
        """The block size of the design's photo card (224 px)."""
        if self.photo_block_size:
            return int(self.photo_block_size)
        return PHOTO_BLOCK if self.block_size > 1 else int(self.block_size)

    @property
    def folder(self) -> str:
        """The card's folder name: the label in lower case, runs of other characters as one '-'."""
        import re

        return re.sub(r"[^a-z0-9.]+", "-", self.label.lower()).strip("-.")


def _n_cell(d: Dict[str, Any], block_size: int) -> Dict[str, Any]:
    return {"n_to_break": d["n_to_break"], "largest_tried": d["largest_tried"], "img_size": d["img_size"],
            "block_size": int(block_size), "broken_by": d["broken_by"]}


def _cells(card: Optional[Dict[str, Any]], block_size: int) -> Dict[str, Any]:
    return {d["domain"]: _n_cell(d, block_size) for d in card["domains"]} if card else {}


def row_of(design: Design, card: Optional[Dict[str, Any]], card_path: Optional[str],
           photo: Optional[Dict[str, Any]] = None, photo_path: Optional[str] = None) -> Dict[str, Any]:
    """One row; every figure ``"not measured"`` when ``card`` is None. ``photo`` is the design's photo card
    (224 px, :attr:`Design.photo_m`): its domains join ``n_to_break`` and a break there breaks the row."""
    row: Dict[str, Any] = {"label": design.label, "scheme": design.scheme, "origin": design.origin,
                           "block_size": design.block_size, "per_image": design.per_image, "note": design.note}
    photo_fields = {"photo_card": photo_path, "photo_block_size": design.photo_m,
                    "photo_wall_seconds": photo["wall_seconds"] if photo else None}
    if card is None:
        row.update(n_to_break=_cells(photo, design.photo_m) or NOT_MEASURED, q_to_break=NOT_MEASURED,
                   pairs_to_break=NOT_MEASURED, accuracy_cost=NOT_MEASURED, accuracy=NOT_MEASURED,
                   verdict=photo["verdict"]["line"] if photo else NOT_MEASURED,
                   broken=bool(photo and photo["verdict"]["broken"]), card=None, **photo_fields)
        return row
    acc = card["accuracy"]
    first = card["domains"][0]
    broken = [c for c in (card, photo) if c and c["verdict"]["broken"]]
    row.update(n_to_break={**_cells(card, design.block_size), **_cells(photo, design.photo_m)},
               q_to_break=card["q_to_break"], pairs_to_break=card["pairs_to_break"],
               pairs_largest_tried=first["pairs_ladder"][-1]["n"] if first["pairs_ladder"] else None,
               pairs_applies=all(a["applies"] for r in first["pairs_ladder"][-1:] for a in r["attacks"]),
               accuracy_cost=acc.get("cost", NOT_MEASURED),
               accuracy={k: acc[k] for k in ("plain", "scheme", "model", "train_images", "epochs") if k in acc}
               or NOT_MEASURED,
               verdict=(broken[0] if broken else card)["verdict"]["line"], broken=bool(broken),
               preset=card["preset"]["name"], wall_seconds=card["wall_seconds"], card=card_path, **photo_fields)
    return row


def rows_from_cards(designs: Sequence[Design], cards_dir: Path, root: Optional[Path] = None) -> List[Dict[str, Any]]:
    """A row per design, read from ``cards_dir/<design folder>/card.json`` and its ``photos/card.json`` where
    they exist."""
    def read(path: Path):
        if not path.is_file():
            return None, None
        return load_card(path), str(path.relative_to(root) if root is not None else path)

    rows = []
    for d in designs:
        folder = Path(cards_dir) / d.folder
        rows.append(row_of(d, *read(folder / "card.json"), *read(folder / PHOTOS / "card.json")))
    return rows


def n_text(cell: Any, block_size: Optional[int] = None) -> str:
    """An images-to-break cell as the page shows it: N, "> N" (not broken up to N), or not measured; with
    the cell's M where it differs from ``block_size`` (the row's)."""
    if not isinstance(cell, dict):
        return str(cell)
    text = str(cell["n_to_break"]) if cell["n_to_break"] is not None else f"> {cell['largest_tried']}"
    m = cell.get("block_size")
    return f"{text} (M = {m})" if m is not None and block_size is not None and m != block_size else text


def _card_link(path: Optional[str], seconds: Optional[float], name: str) -> str:
    return f"[{name}](../{Path(path).parent}/card.md) ({seconds:.0f} s)" if path else ""


def markdown_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """The leaderboard table (markdown); domains are the union of the rows' domains (with their side)."""
    sides: Dict[str, set] = {}
    for r in rows:
        for k, cell in (r["n_to_break"].items() if isinstance(r["n_to_break"], dict) else ()):
            sides.setdefault(k, set()).add(cell.get("img_size"))
    domains = sorted(sides, key=lambda k: (min(s or 0 for s in sides[k]), k))
    head = (["design", "origin", "M", "keys"] +
            [f"images-to-break, {d} ({'/'.join(str(s) for s in sorted(sides[d]) if s)} px)" for d in domains] +
            ["queries-to-break", "pairs-to-break", "accuracy cost", "verdict", "cards (wall time)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], r["origin"], str(r["block_size"]), "per image" if r["per_image"] else "one key"]
        for d in domains:
            cell = r["n_to_break"].get(d, NOT_MEASURED) if isinstance(r["n_to_break"], dict) else r["n_to_break"]
            cells.append(n_text(cell, r["block_size"]))
        cost = r["accuracy_cost"]
        pairs = r["pairs_to_break"]
        if pairs is None and r.get("pairs_applies") is False:
            pairs = "n/a"
        elif pairs is None:
            pairs = f"> {r['pairs_largest_tried']}" if r.get("pairs_largest_tried") else "not broken"
        measured = r["card"] or r.get("photo_card")
        links = [_card_link(r["card"], r.get("wall_seconds"), "card"),
                 _card_link(r.get("photo_card"), r.get("photo_wall_seconds"), "photos")]
        cells += [str(r["q_to_break"] if r["q_to_break"] is not None else "not broken"), str(pairs),
                  f"{cost:+.3f}" if isinstance(cost, float) else str(cost),
                  ("BROKEN" if r.get("broken") else "not broken by these attacks") if measured else NOT_MEASURED,
                  ", ".join(x for x in links if x) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_frontier(rows: Sequence[Dict[str, Any]], path: Path, domains) -> Optional[Path]:
    """Accuracy cost (y) against images-to-break (x, log axis), one panel per domain of ``domains`` (a name or
    a list); designs not broken are drawn at their largest N tried with a right-pointing marker. Rows without
    both figures are left out of a panel."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    domains = [domains] if isinstance(domains, str) else list(domains)
    fig, axes = plt.subplots(1, len(domains), figsize=(6.4 * len(domains), 4.4), squeeze=False, sharey=True)
    for ax, domain in zip(axes[0], domains):
        _frontier_panel(ax, rows, domain)
    axes[0][0].set_ylabel("accuracy cost (plain - scheme, CIFAR-10)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _frontier_panel(ax, rows: Sequence[Dict[str, Any]], domain: str) -> None:
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
                    ha="right" if x >= 100 else "left")
    ax.set_xscale("log")
    ax.set_xlabel(f"images-to-break on {domain} (log; > = not broken up to there)")
    ax.set_title(f"Frontier on {domain}: privacy against accuracy")


def write_leaderboard(rows: List[Dict[str, Any]], json_path: Path, meta: Optional[Dict[str, Any]] = None) -> None:
    """``json_path``: ``{"rows": [...], **meta}``."""
    if not rows:
        raise PatchcryptError("no designs for the leaderboard")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, json.dumps({**(meta or {}), "rows": rows}, indent=1).encode())


__all__ = ["Design", "NOT_MEASURED", "row_of", "rows_from_cards", "markdown_rows", "plot_frontier",
           "write_leaderboard", "n_text"]
