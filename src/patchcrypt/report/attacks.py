"""The section of an attack's ``--out`` folder: the verdict first, then a part per attack (what it read, or why
it could not run). Figures are not embedded: under the owner's key they would show the attack's decryptions."""

from __future__ import annotations

import html
from typing import Any, Dict, List

from .inputs import Item
from .markup import rows_table, shown_path

# the figures of one attack, in the order a reader wants them (name in metrics.json, label)
_HEADLINE = [("n_images", "images"), ("readable", "readable"), ("exact_images_global", "exact up to global state"),
             ("ssim_global", "SSIM up to global state"), ("baseline_ssim", "SSIM of what needs no attack"),
             ("ssim", "SSIM, chosen output"), ("psnr", "PSNR, chosen output (dB)"), ("queries", "chosen images"),
             ("pairs_needed", "pairs needed"), ("key_map_fraction", "share of the key map"),
             ("seconds", "seconds")]


def attack_rows(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows of :func:`patchcrypt.attacks.registry.run_all` (``attack all``), or the one row of a single
    attack's metrics."""
    if isinstance(data.get("attacks"), list):
        return [r for r in data["attacks"] if isinstance(r, dict) and isinstance(r.get("attack"), str)]
    from ..attacks.registry import get_attack
    from ..errors import PatchcryptError

    try:
        threat = get_attack(data["attack"]).threat.value
    except PatchcryptError:
        threat = "unknown threat model"
    return [{"attack": data["attack"], "threat": threat, "applies": True, "metrics": data}]


def _figure(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return html.escape(str(v))


def _attack_part(row: Dict[str, Any]) -> str:
    name, threat = html.escape(str(row["attack"])), html.escape(str(row.get("threat", "")))
    head = f"<h3>{name} <span class=note>({threat})</span></h3>"
    if not row.get("applies"):
        return head + f"<p>n/a: {html.escape(str(row.get('reason', 'did not run')))}</p>"
    m = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
    table = rows_table([{label: _figure(m[k]) for k, label in _HEADLINE if k in m}])
    note = f"<p class=note>{html.escape(str(row['sampled']))}</p>" if row.get("sampled") else ""
    return head + table + note


def attack_section(item: Item) -> str:
    """The HTML section of one attack result (``attack all`` or a single attack)."""
    from ..attacks.registry import verdict

    d = item.data
    rows = attack_rows(d)
    v = d.get("verdict") if isinstance(d.get("verdict"), dict) else verdict(rows)
    scheme = html.escape(str(d.get("scheme", "?")))
    m = f", M = {html.escape(str(d['block_size']))}" if d.get("block_size") else ""
    parts = [f"<h2>Attacks on {scheme}{m}</h2>", f'<p class="src">{html.escape(shown_path(item.path.parent))}</p>',
             f"<p><b>{html.escape(str(v.get('line', '')))}</b></p>"]
    parts += [_attack_part(r) for r in rows]
    return "<section>" + "\n".join(parts) + "</section>"
