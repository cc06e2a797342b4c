"""The whole page: every section in order, styles and the image check, written atomically."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, Optional, Sequence

from ..errors import PatchcryptError
from .attacks import attack_section
from .examples import page_shows_plain
from .inputs import collect
from .results import figure_names, results_section
from .run import run_plan, run_section

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d1d1f;padding:0 1em}h1{font-size:1.7em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f3f3f5}tbody tr:nth-child(even){background:#fafafa}img{max-width:100%;display:block;
margin:.8em 0;image-rendering:pixelated}.src,.note{color:#666;font-size:.85em}code{background:#f3f3f5;padding:0 .3em}
figure{margin:1em 0}figcaption{color:#555;font-size:.85em}"""

# after load, count images that failed to decode: the headless-browser check reads data-broken-images
CHECK_JS = """window.addEventListener('load',function(){var n=0;var imgs=document.images;
for(var i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0){n++;}}
document.body.setAttribute('data-broken-images',String(n));
document.body.setAttribute('data-images',String(imgs.length));});"""


def build_report(paths: Sequence, out, key_path: Optional[Path] = None, title: str = "patchcrypt report",
                 progress=None, data: Sequence = ()) -> Dict:
    """Write the HTML report to ``out`` (atomically); returns {"path", "sections", "images"}.

    ``data``: the data folders a run's examples may be read from (a run's ``config.yaml`` alone never lets the
    report read a folder). ``key_path``: the runs' key, to show ciphertext examples under it.
    """
    from datetime import datetime, timezone

    from ..atomic import atomic_write

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise PatchcryptError(f"{out}: the report is HTML; name it *.html")
    if not out.parent.is_dir():
        raise PatchcryptError(f"{out.parent}: no such folder")
    from ..keys import Key

    data_roots = [Path(d) for d in data]
    for d in data_roots:
        if not d.exists():
            raise PatchcryptError(f"{d}: no such data folder")
    items = collect(paths)
    key = Key.load(key_path) if key_path is not None else None
    # first every run's examples, so that the rule can look at the whole page (see report.examples)
    plans = {id(it): run_plan(it, key, data_roots) for it in items if it.kind == "run"}
    shows_plain = page_shows_plain(plans.values(), [it.kind for it in items if it.kind != "run" and figure_names(it)])
    sections = []
    for it in items:
        sections.append(run_section(it, plans[id(it)], shows_plain) if it.kind == "run"
                        else attack_section(it) if it.kind == "attack" else results_section(it))
        if progress:
            progress(1)
    body = "\n".join(sections)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{CHECK_JS}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=note>{len(items)} section(s), written {when}. Keys are never "
            "included; fingerprints identify them.</p>" + body + "</body></html>")
    atomic_write(out, page.encode())
    return {"path": str(out), "sections": len(items), "images": page.count("<img ")}
