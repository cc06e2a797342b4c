"""A self-contained HTML report (images embedded) from run folders and benchmark results.

Inputs, each a path:
    run folder          (metrics.csv / summary.json from ``patchcrypt train``): loss and accuracy curves,
                        confusion matrix when evaluated, and examples (see below);
    results.json        (or a folder holding one) from a benchmark: its table and figures (accuracy table,
                        rate–distortion curves, attack table with reconstructions, ...);
    a folder of those   (e.g. ``make demo``'s output): every run and results file inside, two levels deep.

A report is made to be shared, so no plain image on a page ever has its ciphertext under a real key on the
same page or on any other report page, whatever the inputs (one such pair recovers a ``block-pixel`` key): examples are split by image
content (:func:`patchcrypt.report.examples.content_side`). It reads no key unless one is passed
(``key_path``), no data folder unless it is named (``data``; a run's config naming its data is not enough),
and embeds only figure files inside its input folders. Examples are plain | encrypted | decrypted under a
throwaway key generated for the page; with the run's key passed, ciphertext only, of images on the cipher
side; an already encrypted data set (the server's view) shows ciphertext only, and only with its key, which
tells its plain content (without it, no example: another page may show the same images in plain).
Captions say which. See docs/limits-and-safety.md.

One file per part: ``inputs`` (finding runs and results), ``markup`` (HTML pieces), ``results`` and ``run``
(one section each), ``examples`` (a run's example images), ``page`` (the whole page).
"""

from .inputs import KNOWN_KINDS, Item, collect
from .markup import markdown_to_html
from .page import CHECK_JS, CSS, build_report
from .results import results_section
from .run import run_section

__all__ = ["CHECK_JS", "CSS", "KNOWN_KINDS", "Item", "build_report", "collect", "markdown_to_html",
           "results_section", "run_section"]
