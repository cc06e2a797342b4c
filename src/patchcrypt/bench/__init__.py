"""The evaluator as a benchmark: ``patchcrypt bench`` rates one design into a card; cards make a leaderboard.

:mod:`.ladder` (images-to-break and pairs-to-break ladders and the stopping rule), :mod:`.presets`
(quick, full), :mod:`.accuracy` (plain vs encrypted training, the cost), :mod:`.card` (schema, markdown,
plot), :mod:`.run` (:func:`bench`), :mod:`.leaderboard` (rows from cards, the page and the frontier plot).
"""

from .card import card_of, check_card, load_card, render_markdown, write_card
from .ladder import LADDER, PAIRS_LADDER, broken_by, climb, rungs
from .presets import PRESETS, Preset, get_preset
from .run import bench

__all__ = ["bench", "Preset", "PRESETS", "get_preset", "LADDER", "PAIRS_LADDER", "climb", "rungs", "broken_by",
           "card_of", "check_card", "load_card", "render_markdown", "write_card"]
