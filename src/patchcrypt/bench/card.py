"""A design's card: ``card.json`` (the schema below, checked by :func:`check_card`), ``card.md`` and a plot.

Schema (version 1)::

    format "patchcrypt-card", version 1
    design      {scheme, registered, origin, block_size, per_image, facts}
    preset      the preset's fields (ladder, attacks, accuracy recipe, seed)
    verdict     {broken, by, threat, line, ...} (attacks.registry.verdict over every domain's last rungs)
    n_to_break  {domain: smallest N on the ladder at which a ciphertext-only attack reads >= 50%, or null}
    q_to_break  chosen images that broke it (the first domain), or null
    pairs_to_break  known pairs that broke it (the first domain), or null
    accuracy    {plain, scheme, cost, model, how, train_images, test_images, epochs, domain} or {skipped}
    domains     [{domain, img_size, public, n_to_break, largest_tried, broken_by, ladder: [{n, broken,
                  attacks: [{attack, threat, applies, readable, ssim_global, recognisability, ...}]}],
                  q_to_break, cpa, pairs_to_break, pairs_ladder}]
    wall_seconds, versions, command, notes
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..atomic import atomic_write
from ..errors import PatchcryptError

TOP = ("format", "version", "design", "preset", "verdict", "n_to_break", "q_to_break", "pairs_to_break",
       "accuracy", "domains", "wall_seconds", "versions", "command", "notes")
DOMAIN = ("domain", "img_size", "public", "n_to_break", "largest_tried", "broken_by", "ladder", "q_to_break",
          "cpa", "pairs_to_break", "pairs_ladder")
NOT_SECURE = ("a design no attack breaks is 'not broken by these attacks', never 'secure' (Xiao, Suh & Devadas, "
              "CCS 2024: no non-trivial learnable encoding has worst-case security)")


def _versions() -> Dict[str, str]:
    from importlib import metadata

    import numpy
    import torch

    try:   # the installed distribution's version (the package root is above this layer)
        version = metadata.version("patchcrypt")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {"patchcrypt": version, "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__}


def _design(target) -> Dict[str, Any]:
    return {"scheme": target.name, "registered": bool(target.registered),
            "origin": getattr(target.spec, "origin", "") or ("registered" if target.registered else "user class"),
            "block_size": int(target.block_size), "per_image": bool(target.per_image),
            "facts": {k: v for k, v in (target.facts or {}).items() if isinstance(v, (str, int, float, bool))}}


def _rows_for_verdict(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for r in records:
        if r.get("applies"):
            rows.append({"attack": r["attack"], "threat": r["threat"], "applies": True, "metrics": r})
        else:
            rows.append({"attack": r["attack"], "threat": r["threat"], "applies": False, "reason": r.get("reason", "")})
    return rows


def _first_broken(records: List[Dict[str, Any]], key: str) -> Optional[int]:
    from .ladder import broken_by

    best = broken_by(records)
    return None if best is None else best.get(key)


def domain_part(d: Dict[str, Any]) -> Dict[str, Any]:
    """One domain of the card from :func:`patchcrypt.bench.run.rate_domain`'s output."""
    images, pairs = d["images"], d["pairs"]
    return {"domain": d["domain"], "img_size": d["img_size"], "victims_available": d["victims_available"],
            "public": d["public"], "n_to_break": images["to_break"], "largest_tried": images["largest_tried"],
            "broken_by": images["by"], "ladder": images["rungs"], "q_to_break": _first_broken(d["cpa"], "queries"),
            "cpa": d["cpa"], "pairs_to_break": pairs["to_break"], "pairs_ladder": pairs["rungs"]}


def card_of(domains: List[Dict[str, Any]], accuracy: Dict[str, Any], preset, seconds: float,
            command: str = "") -> Dict[str, Any]:
    """The card from every domain's ladders and the accuracy part."""
    from ..attacks.registry import verdict

    parts = [domain_part(d) for d in domains]
    last = []
    for d in parts:
        last += d["ladder"][-1]["attacks"] + d["cpa"] + d["pairs_ladder"][-1]["attacks"]
    v = verdict(_rows_for_verdict(last))
    first = parts[0]
    notes = [NOT_SECURE,
             "images-to-break: the smallest N on the ladder 1, 3, 10, 30, 100, 300, 1000, 3000 (up to the preset's "
             "largest) at which a ciphertext-only attack reads >= 50% of the images; null when none does up to "
             "largest_tried. The ladder stops at the first broken rung.",
             "every run draws a fresh throwaway key; no key is written"]
    return {"format": "patchcrypt-card", "version": 1, "design": _design(domains[0]["target"]),
            "preset": preset.to_dict(), "verdict": v, "n_to_break": {d["domain"]: d["n_to_break"] for d in parts},
            "q_to_break": first["q_to_break"], "pairs_to_break": first["pairs_to_break"], "accuracy": accuracy,
            "domains": parts, "wall_seconds": round(seconds, 1), "versions": _versions(), "command": command,
            "notes": notes}


def check_card(card: Dict[str, Any]) -> None:
    """Raise PatchcryptError (one line) naming the first field a card lacks or holds wrongly."""
    if not isinstance(card, dict) or card.get("format") != "patchcrypt-card":
        raise PatchcryptError("not a patchcrypt card (format must be 'patchcrypt-card')")
    missing = [k for k in TOP if k not in card]
    if missing:
        raise PatchcryptError(f"card lacks {', '.join(missing)}")
    if not isinstance(card["verdict"], dict) or "broken" not in card["verdict"] or "line" not in card["verdict"]:
        raise PatchcryptError("card verdict must hold broken and line")
    acc = card["accuracy"]
    if not isinstance(acc, dict) or not ("skipped" in acc or {"plain", "scheme", "cost"} <= set(acc)):
        raise PatchcryptError("card accuracy must hold plain, scheme and cost (or skipped)")
    for d in card["domains"]:
        lacks = [k for k in DOMAIN if k not in d]
        if lacks:
            raise PatchcryptError(f"card domain {d.get('domain')!r} lacks {', '.join(lacks)}")
        n = d["n_to_break"]
        if n is not None and n not in [r["n"] for r in d["ladder"]]:
            raise PatchcryptError(f"card domain {d['domain']!r}: n_to_break {n} is not a rung that ran")
        if card["n_to_break"].get(d["domain"], "missing") != n:
            raise PatchcryptError(f"card n_to_break of {d['domain']!r} differs from its domain's")


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _ladder_table(d: Dict[str, Any]) -> List[str]:
    attacks = [a["attack"] for a in d["ladder"][0]["attacks"]] if d["ladder"] else []
    lines = ["| N | " + " | ".join(f"{a} readable / SSIM" for a in attacks) + " |",
             "|---|" + "---|" * len(attacks)]
    for rung in d["ladder"]:
        cells = []
        for a in rung["attacks"]:
            cells.append(f"{_fmt(a.get('readable'))} / {_fmt(a.get('ssim_global'))}" if a["applies"] else "n/a")
        lines.append(f"| {rung['n']}{' (broken)' if rung['broken'] else ''} | " + " | ".join(cells) + " |")
    return lines


def _break_line(n, largest, what: str) -> str:
    """``what`` is a plural ("images", "pairs"); one of them is singular."""
    if n is not None:
        return f"{n} {what[:-1] if n == 1 else what}"
    return f"not broken up to {largest} {what[:-1] if largest == 1 else what}"


def render_markdown(card: Dict[str, Any]) -> str:
    """``card.md``: the verdict, the headline figures, each domain's ladder, the recipe and how to rerun."""
    d0, acc, v = card["design"], card["accuracy"], card["verdict"]
    keys = "a key per image" if d0["per_image"] else "one key for every image"
    out = [f"# Card: {d0['scheme']} (M = {d0['block_size']}, {keys})", "",
           f"Origin: {d0['origin']}. Preset: {card['preset']['name']}. Wall time: {card['wall_seconds']:.0f} s.", "",
           f"**Verdict:** {v['line']}", "", "| figure | value |", "|---|---|"]
    for d in card["domains"]:
        out.append(f"| images-to-break, {d['domain']} at {d['img_size']} px (public: {d['public']['domain']}) | "
                   f"{_break_line(d['n_to_break'], d['largest_tried'], 'images')} |")
    first = card["domains"][0]
    tried_q = max([a.get("queries") or 0 for a in first["cpa"]] or [0])
    q = card["q_to_break"]
    out.append(f"| queries-to-break (chosen plaintext) | "
               f"{q if q is not None else f'not broken ({tried_q} chosen images tried)' if tried_q else 'not broken'} |")
    largest = first["pairs_ladder"][-1]["n"] if first["pairs_ladder"] else 0
    kpa_na = [a.get("reason", "") for r in first["pairs_ladder"][-1:] for a in r["attacks"] if not a["applies"]]
    pairs = f"n/a: {kpa_na[0]}" if kpa_na else _break_line(card["pairs_to_break"], largest, "pairs")
    out.append(f"| pairs-to-break (known plaintext) | {pairs} |")
    if "skipped" in acc:
        out.append(f"| accuracy | not measured: {acc['skipped']} |")
    else:
        out.append(f"| accuracy plain / scheme / cost | {acc['plain']:.3f} / {acc['scheme']:.3f} / "
                   f"{acc['cost']:+.3f} |")
        out += ["", f"Accuracy recipe: {acc['model']} on {acc['train_images']} training and {acc['test_images']} "
                    f"test images of {acc['domain']}, {acc['epochs']} epochs, no augmentation; {acc['how']}. "
                    "The cost of this short recipe, not the best accuracy of either model."]
    for d in card["domains"]:
        out += ["", f"## {d['domain']} at {d['img_size']} px", "",
                "Readable share / SSIM up to the global state of each ciphertext-only attack at each rung:", ""]
        out += _ladder_table(d)
        reasons = {a["attack"]: a.get("reason", "") for r in d["ladder"] for a in r["attacks"] if not a["applies"]}
        if reasons:
            out += [""] + [f"- n/a {a}: {why}" for a, why in sorted(reasons.items())]
        last = d["ladder"][-1] if d["ladder"] else {"n": 0, "attacks": []}
        rec = [(a["attack"], a["recognisability"]) for a in last["attacks"] if a.get("recognisability") is not None]
        if rec:
            out += ["", f"Recognisability at N = {last['n']} (a plain model's label agreement on the reconstruction "
                        "minus its agreement on what needs no attack): " +
                        ", ".join(f"{a} {r:+.3f}" for a, r in rec) + "."]
    out += ["", "## Reproduce", "", "```", card["command"] or "(not recorded)", "```", "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) +
            f". Seed {card['preset']['seed']}.", ""]
    out += [f"- {n}" for n in card["notes"]]
    return "\n".join(out) + "\n"


def plot_ladder(card: Dict[str, Any], path: Path) -> Optional[Path]:
    """Readable share against N (log axis) per attack and domain; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for d in card["domains"]:
        names = {a["attack"] for r in d["ladder"] for a in r["attacks"] if a["applies"]}
        for name in sorted(names):
            pts = [(r["n"], a["readable"]) for r in d["ladder"] for a in r["attacks"]
                   if a["attack"] == name and a["applies"]]
            ax.plot(*zip(*pts), marker="o", label=f"{d['domain']}: {name}")
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("images under one key (N)")
    ax.set_ylabel("readable share")
    ax.set_title(f"{card['design']['scheme']}: ciphertext-only ladder")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_card(out: Path, card: Dict[str, Any]) -> None:
    """``out/card.json``, ``out/card.md`` and ``out/ladder.png`` (after checking the card)."""
    check_card(card)
    atomic_write(out / "card.json", json.dumps(card, indent=1).encode())
    atomic_write(out / "card.md", render_markdown(card).encode())
    plot_ladder(card, out / "ladder.png")


def load_card(path: Path) -> Dict[str, Any]:
    """A card from ``path`` (a card.json or the folder holding one), checked."""
    path = Path(path)
    path = path / "card.json" if path.is_dir() else path
    from ..bounded import METADATA_MAX, read_text_bounded

    try:
        card = json.loads(read_text_bounded(path, METADATA_MAX, "card"))
    except (OSError, ValueError, RecursionError) as exc:
        raise PatchcryptError(f"{path}: cannot read the card ({exc.__class__.__name__})") from None
    check_card(card)
    return card


__all__ = ["card_of", "check_card", "render_markdown", "write_card", "load_card", "plot_ladder", "TOP", "DOMAIN"]
