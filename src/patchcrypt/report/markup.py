"""HTML pieces of a report: embedded images, figures, markdown tables."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Dict, List, Optional


def img_tag(png: bytes, alt: str, width: Optional[int] = None) -> str:
    w = f' style="max-width:{width}px"' if width else ""
    return (f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}">')


def shown_path(path) -> str:
    """How a page names a folder or file: relative to the working directory when it lies inside it, else by its
    last component. A page is made to be shared; the machine's folder layout (home folder, user name, where
    the private photos are) stays off it.

    >>> shown_path(Path.cwd() / "runs" / "bp"), shown_path("/home/someone/photos")
    ('runs/bp', 'photos')
    """
    full, cwd = Path(os.path.abspath(path)), Path.cwd()
    if cwd != Path(cwd.anchor):
        for a, b in ((full, cwd), (full.resolve(), cwd.resolve())):
            if a.is_relative_to(b):
                return a.relative_to(b).as_posix() or "."
    return full.name or "."


def scrub_paths(text: str, *paths) -> str:
    """``text`` (an error message, a command line) with each of ``paths`` named as :func:`shown_path` names it,
    the working directory left out and the home folder written ``~``."""
    for p in paths:
        forms = {os.path.abspath(p), str(Path(p).resolve())}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, shown_path(p))
    cwd, home = str(Path.cwd()), str(Path.home())
    if cwd != Path(cwd).anchor:
        text = text.replace(cwd + os.sep, "")
    return text.replace(home, "~") if home != Path(home).anchor else text


MAX_FIGURE_BYTES = 32 << 20  # one embedded figure file


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, symbolic links followed, is ``folder`` or below it."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def file_img(path: Path, alt: str, folder: Path) -> str:
    """A PNG file embedded, only when it lies inside ``folder`` (an input folder; links followed)."""
    name = html.escape(path.name)
    if not inside(path, folder):
        return (f'<p class="note">figure {name} skipped: a report embeds only files inside its input '
                "folders</p>")
    if not path.is_file():  # also no FIFO or device, which would block or never end
        return f'<p class="note">figure {name} is missing</p>'
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FIGURE_BYTES + 1)
    except OSError:
        return f'<p class="note">figure {name} is missing</p>'
    if len(data) > MAX_FIGURE_BYTES:
        return f'<p class="note">figure {name} skipped: over {MAX_FIGURE_BYTES >> 20} MB</p>'
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return f'<p class="note">figure {html.escape(path.name)} is not a PNG</p>'
    return img_tag(data, alt)


def fig_png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def markdown_to_html(text: str) -> str:
    """The markdown our benchmarks write: paragraphs and pipe tables."""
    out, table, para = [], [], []

    def flush_para():
        if para:
            out.append(f"<p>{html.escape(' '.join(para))}</p>")
            para.clear()

    def flush_table():
        if not table:
            return
        rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                if not set(r.replace("|", "").strip()) <= set("-: ")]
        head, body = rows[0], rows[1:]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            flush_para()
            table.append(line)
        elif not line.strip():
            flush_para()
            flush_table()
        else:
            flush_table()
            para.append(line.strip())
    flush_para()
    flush_table()
    return "\n".join(out)


def rows_table(rows: List[Dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, (dict, list))))

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return markdown_to_html("\n".join(lines))
