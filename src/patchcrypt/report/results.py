"""The section of one benchmark results file: its table and figures."""

from __future__ import annotations

import html
from pathlib import Path, PurePath
from typing import List

from .inputs import KNOWN_KINDS, Item
from .markup import file_img, rows_table, markdown_to_html, scrub_paths, shown_path


def figure_names(item: Item) -> List[str]:
    """The results file's ``figures`` entries that name files in its own folder: relative paths without
    ``..`` (anything else is left out, with a note in the section)."""
    figs = item.data.get("figures")
    if not isinstance(figs, list):
        return []
    return [f for f in figs if isinstance(f, str) and _relative(f)]


def _relative(name: str) -> bool:
    p = PurePath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and ":" not in name


def results_section(item: Item) -> str:
    d = item.data
    title = KNOWN_KINDS.get(item.kind, item.kind.replace("_", " "))
    parts = [f"<h2>{html.escape(title)}</h2>", f'<p class="src">{html.escape(shown_path(item.path))}']
    if d.get("command"):
        parts[-1] += f" — measured by <code>{html.escape(scrub_paths(str(d['command'])))}</code>"
    parts[-1] += "</p>"
    rows = d.get("rows") if isinstance(d.get("rows"), list) else []
    rows = [r for r in rows if isinstance(r, dict)]
    parts.append(markdown_to_html(d["markdown"]) if isinstance(d.get("markdown"), str) else rows_table(rows))
    captions = d.get("captions") if isinstance(d.get("captions"), dict) else {}
    folder = item.path.parent
    ok = figure_names(item)
    for fig in d.get("figures") if isinstance(d.get("figures"), list) else []:
        if fig not in ok:
            shown = html.escape(PurePath(str(fig)).name[:80])  # not the rest: it may be a path on the machine
            parts.append(f'<p class="note">figure {shown} skipped: a report embeds only files inside its input '
                         "folders (a relative name, no '..')</p>")
            continue
        caption = str(captions.get(fig) or Path(fig).stem.replace("_", " "))
        parts.append(f"<figure>{file_img(folder / fig, f'{title}: {caption}', folder)}"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "<section>" + "\n".join(parts) + "</section>"
