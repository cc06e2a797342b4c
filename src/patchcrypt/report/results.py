"""The section of one benchmark results file: its table and figures."""

from __future__ import annotations

import html
from pathlib import Path

from .inputs import KNOWN_KINDS, Item
from .markup import _file_img, _rows_table, markdown_to_html


def results_section(item: Item) -> str:
    d = item.data
    title = KNOWN_KINDS.get(item.kind, item.kind.replace("_", " "))
    parts = [f"<h2>{html.escape(title)}</h2>", f'<p class="src">{html.escape(str(item.path))}']
    if d.get("command"):
        parts[-1] += f" — measured by <code>{html.escape(d['command'])}</code>"
    parts[-1] += "</p>"
    parts.append(markdown_to_html(d["markdown"]) if d.get("markdown") else _rows_table(d.get("rows", [])))
    captions = d.get("captions") if isinstance(d.get("captions"), dict) else {}
    for fig in d.get("figures", []):
        caption = str(captions.get(fig) or Path(fig).stem.replace("_", " "))
        parts.append(f"<figure>{_file_img(item.path.parent / fig, f'{title}: {caption}')}"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "<section>" + "\n".join(parts) + "</section>"
