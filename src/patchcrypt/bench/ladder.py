"""The ladders of a card: images-to-break (ciphertext only), pairs-to-break (known plaintext).

A ladder is a rising list of counts. :func:`climb` runs ``step(n)`` at each rung and stops at the first rung
that breaks the design (the smallest count that suffices; nothing above it is run), or at the end of the
ladder; ``to_break`` is that rung, or None with ``largest_tried`` the last rung run. ``step`` returns one
record per attack (``{"attack", "readable", ...}``); a rung is broken when some attack reads at least
:data:`~patchcrypt.attacks.registry.BROKEN_AT` of the images it attacked.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from ..attacks.registry import BROKEN_AT

LADDER = (1, 3, 10, 30, 100, 300, 1000, 3000)     # images-to-break (Jang et al. 2024's framing)
PAIRS_LADDER = (1, 3, 10, 30, 100)                 # pairs-to-break

Step = Callable[[int], List[Dict[str, Any]]]


def rungs(ladder: Sequence[int], largest: int) -> List[int]:
    """The rungs of ``ladder`` up to ``largest`` (at least the first rung)."""
    out = [int(n) for n in ladder if n <= largest]
    return out or [int(ladder[0])]


def broken_by(records: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The record that reads the most among those that break (readable >= BROKEN_AT), or None."""
    breaking = [r for r in records if (r.get("readable") or 0.0) >= BROKEN_AT]
    return max(breaking, key=lambda r: r["readable"]) if breaking else None


def climb(step: Step, ladder: Sequence[int], stop_when_broken: bool = True,
          on_rung: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Run ``step`` up the ladder.

    Returns ``{"to_break": n or None, "largest_tried": n, "by": attack or None, "rungs": [{"n", "attacks":
    [...], "broken"}]}``. With ``stop_when_broken`` (the card's rule) no rung above the first broken one
    is run. ``on_rung(rung)`` is called as each rung finishes (to save it).
    """
    out: Dict[str, Any] = {"to_break": None, "largest_tried": None, "by": None, "rungs": []}
    for n in ladder:
        records = step(int(n))
        best = broken_by(records)
        rung = {"n": int(n), "attacks": records, "broken": best is not None}
        out["rungs"].append(rung)
        out["largest_tried"] = int(n)
        if on_rung:
            on_rung(rung)
        if best is not None and out["to_break"] is None:
            out["to_break"], out["by"] = int(n), best["attack"]
            if stop_when_broken:
                break
    return out


__all__ = ["LADDER", "PAIRS_LADDER", "rungs", "broken_by", "climb"]
