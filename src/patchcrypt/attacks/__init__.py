"""Attack suite (DESIGN §8): every attack registered with its threat model and the schemes it applies to.

``run_attack(name, scheme, ...)`` encrypts images with a scheme (a registered one or a user's own class,
see :mod:`patchcrypt.attacks.target`) and attacks them; ``run_all(scheme, ...)`` runs every registered
attack and says "n/a" with the reason for the others; ``create_attack(name)`` returns one runner with
defaults bound; ``list_attacks()`` names them. Attack modules register themselves with the
``@register_attack(name, threat, summary, applies=...)`` decorator (:mod:`patchcrypt.attacks.registry`);
every result is scored in one vocabulary (:mod:`patchcrypt.attacks.scoring`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from .base import AttackResult
from .keymaps import block_source
from .registry import (ATTACKS, THREAT_HOLDERS, AttackOptions, AttackSpec, Threat, all_of, format_headline,
                       get_attack, headline_of, list_attacks, needs_key, needs_pixel_correspondence,
                       needs_shared_key, needs_steps, register_attack, run_all, run_attack)
from .target import Target, load_user_scheme, make_target

# Every attack module registers its attacks when imported (``@register_attack``); the order here is the
# order of ``patchcrypt attack list`` and of the table of ``attack all``.
from . import fr, jigsaw, hierarchical, learned_runs, kpa, many, cpa, weights  # noqa: E402,F401,I001


def create_attack(name: str, **defaults) -> Callable[..., AttackResult]:
    """The runner for one attack, with default options bound (see :func:`run_attack`)."""
    get_attack(name)
    return partial(run_attack, name, **defaults)


def contact_sheet(result: AttackResult, path, rows: int = 6, candidates: int = 4, show_plain: bool = True) -> None:
    """PNG contact sheet, one row per image: [plain |] encrypted | the attacker's top candidates, best first.

    The candidates are the attacker's output under its first ``candidates`` global states (one column when
    it ranks none). Pass ``show_plain=False`` unless the key is a throwaway one made for the figure: a plain
    image beside its ciphertext under a real key gives that key away.
    """
    from ..codec import as_display, write_image

    cands = result.top_candidates(candidates)
    lines = []
    for i, (p, e) in enumerate(list(zip(result.plain, result.encrypted))[:rows]):
        gap = np.full((p.shape[0], 2, 3), 255, np.uint8)
        cells = ([p] if show_plain else []) + [as_display(e, p.shape)] + [as_display(c[i]) for c in cands]
        line = [cells[0]]
        for cell in cells[1:]:
            line += [gap, cell]
        lines.append(np.concatenate(line, axis=1))
        lines.append(np.full((2, lines[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(lines[:-1], axis=0)
    scale = 96 // result.plain.shape[1] if result.plain.shape[1] < 96 else 1  # small images: enlarge
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    write_image(path, grid)


__all__ = ["run_attack", "run_all", "create_attack", "list_attacks", "get_attack", "register_attack", "AttackSpec",
           "AttackOptions", "Threat", "THREAT_HOLDERS", "Target", "make_target", "load_user_scheme", "AttackResult",
           "ATTACKS", "headline_of", "format_headline", "contact_sheet", "block_source",
           "all_of", "needs_key", "needs_pixel_correspondence", "needs_shared_key", "needs_steps"]
