"""The attack registry: every attack declares its threat model and which schemes it applies to.

``@register_attack(name, threat, summary, applies=...)`` on a runner (or ``register_attack(AttackSpec(...))``)
adds one;
``run_attack(name, scheme, ...)`` runs it against a registered scheme or a user's scheme class;
``run_all(scheme, ...)`` runs every registered attack and says "n/a" with the reason for the rest.

Every attack runs against a :class:`~patchcrypt.attacks.target.Target` (a black-box ``encrypt`` under one key,
declared facts, optional ``decrypt``, optional keyed model) and is scored by comparing its output with the
plain images (:mod:`patchcrypt.attacks.scoring`); attack modules register themselves with the
``@register_attack(...)`` decorator. Applicability is decided from the scheme's facts
(:class:`~patchcrypt.ciphers.SchemeSpec`: its steps and whether each is shared by all blocks, unit,
pixel_based, composite; and whether keys are per image), never from scheme names, so a user's own scheme is
rated by the same rules.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import PatchcryptError
from ..keys import Key
from .base import AttackResult
from .target import Target, make_target


class Threat(str, Enum):
    """What the attacker holds (besides public plain images and the published algorithm)."""

    CIPHERTEXT_ONLY = "ciphertext-only"                    # ciphertexts, attacked one image at a time
    CIPHERTEXT_MANY = "ciphertext-only, many images"       # many ciphertexts under one key (what a server holds)
    KNOWN_PLAINTEXT = "known plaintext"                    # some plain/encrypted pairs under the key
    CHOSEN_PLAINTEXT = "chosen plaintext"                  # ciphertexts of images the attacker chose
    MODEL_WEIGHTS = "model weights"                        # the keyed model (what a server holds)

    def __str__(self) -> str:
        return self.value


THREAT_HOLDERS: Dict[Threat, str] = {
    Threat.CIPHERTEXT_ONLY: "anyone who sees one ciphertext (a network observer, a report reader)",
    Threat.CIPHERTEXT_MANY: "the server: every training image and every query under one key",
    Threat.KNOWN_PLAINTEXT: "anyone who also knows a few of the plain images (public photos, leaked samples)",
    Threat.CHOSEN_PLAINTEXT: "anyone who can get an image of its choice encrypted (e.g. an uploaded query)",
    Threat.MODEL_WEIGHTS: "the server, or whoever obtains the keyed model",
}

Applies = Callable[[Target], Optional[str]]          # None: applies; otherwise the reason it does not
Runner = Callable[[Target, np.ndarray, Optional[np.ndarray], "AttackOptions"], AttackResult]


@dataclass
class AttackOptions:
    """Knobs an attack may read; ``extra`` carries options of attacks registered later."""

    pairs: int = 1
    epochs: int = 5
    device: Optional[str] = None
    seed: int = 0
    progress: Optional[bool] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackSpec:
    """One attack.

    Args:
        name: registry name (``patchcrypt attack NAME``).
        threat: the threat model (:class:`Threat`).
        summary: one line: what it does.
        run: ``run(target, test_images, train_images, options) -> AttackResult``; ``test_images`` are the
            plain images (N, H, W, C) uint8 to encrypt (through ``target.encrypt``) and attack; scoring
            compares the result with them. ``train_images``: the attacker's own plain images, or None.
        applies: ``applies(target) -> None`` or the reason it does not apply, from the target's facts.
        needs_train: needs the attacker's own images.
        headline: metric keys shown in one-line summaries and table columns, most important first (the
            up-to-global figures lead every headline).
        single: solves every image alone at a cost per image (the jigsaw): ``run_all`` hands it at most
            ``max_single`` of the images, evenly spaced, and says so.
    """

    name: str
    threat: Threat
    summary: str
    run: Runner
    applies: Optional[Applies] = None
    needs_train: bool = False
    headline: Tuple[str, ...] = ("readable", "exact_images_global", "ssim_global")
    single: bool = False

    def why_not(self, target: Target) -> Optional[str]:
        """None when the attack applies to ``target``, else the reason."""
        return self.applies(target) if self.applies else None


ATTACKS: Dict[str, AttackSpec] = {}


def _add(spec: AttackSpec, replace: bool) -> AttackSpec:
    if not isinstance(spec.threat, Threat):
        raise ValueError(f"attack {spec.name!r}: threat must be a Threat, got {spec.threat!r}")
    if spec.name in ATTACKS and not replace:
        raise ValueError(f"attack {spec.name!r} registered twice")
    if spec.name in ("all", "list"):
        raise ValueError(f"{spec.name!r} is a command word, not an attack name")
    ATTACKS[spec.name] = spec
    return spec


def register_attack(spec: Union[AttackSpec, str], threat: Optional[Threat] = None, summary: str = "", *,
                    applies: Optional[Applies] = None, needs_train: bool = False,
                    headline: Tuple[str, ...] = (), single: bool = False, replace: bool = False):
    """Add an attack to the registry.

    Either ``register_attack(AttackSpec(...))``, or as a decorator on the runner (timm's ``@register_model``
    pattern), in the attack's own module::

        @register_attack("fr", Threat.CIPHERTEXT_ONLY, "fold values so flips cancel", applies=...)
        def run_fr(target, test_images, train_images, options) -> AttackResult: ...

    ``headline`` keys are shown after the readable share and the up-to-global figures every attack leads with.
    """
    if isinstance(spec, AttackSpec):
        return _add(spec, replace)
    if threat is None:
        raise ValueError(f"attack {spec!r}: a threat model is required")
    lead = ("readable", "exact_images_global", "ssim_global")

    def decorate(fn: Runner) -> Runner:
        _add(AttackSpec(spec, threat, summary, fn, applies=applies, needs_train=needs_train,
                        headline=lead + tuple(k for k in headline if k not in lead), single=single), replace)
        return fn

    return decorate


def get_attack(name: str) -> AttackSpec:
    try:
        return ATTACKS[name]
    except KeyError:
        raise PatchcryptError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}") from None


def list_attacks(threat: Optional[Threat] = None) -> List[str]:
    """Registered attack names (only those of one threat model when ``threat`` is given)."""
    return [n for n, a in ATTACKS.items() if threat is None or a.threat == threat]


# -- applicability from the scheme's facts ----------------------------------------------------------------
def needs_steps(target: Target) -> Optional[str]:
    if target.steps is None:
        return "the scheme does not declare its steps (steps = ('BS', ...)), which this attack needs"
    return None


def needs_key(target: Target) -> Optional[str]:
    if target.steps is not None and not target.steps:
        return "there is no key to recover"
    return None


def needs_shared_key(target: Target) -> Optional[str]:
    if target.per_image:
        return "with per-image keys no two images share key material"
    return None


def needs_pixel_correspondence(target: Target) -> Optional[str]:
    if target.composite:
        return ("the ciphertext is a composite of another shape (e.g. a grayscale Y|Cb|Cr image), and this attack "
                "maps each encrypted block to the plain block in its place")
    return None


def all_of(*checks: Applies) -> Applies:
    """An ``applies`` that is the first failing reason of ``checks``."""

    def applies(target: Target) -> Optional[str]:
        for check in checks:
            reason = check(target)
            if reason:
                return reason
        return None

    return applies


# -- running ----------------------------------------------------------------------------------------------
def _check_geometry(target: Target, images: np.ndarray) -> None:
    if images.ndim != 4:
        raise PatchcryptError(f"images must be (N, H, W, C), got shape {images.shape}")
    h, w = images.shape[1:3]
    unit = 1 if target.spec.pixel_based else target.block_size
    if h % unit or w % unit:
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the block size {target.block_size}")


def run_attack(name: str, scheme: Union[str, type, Target], block_size: Optional[int], test_images: np.ndarray,
               train_images: Optional[np.ndarray] = None, key: Optional[Key] = None, per_image: bool = False,
               pairs: int = 1, epochs: int = 5, device: Optional[str] = None, seed: int = 0,
               progress: Optional[bool] = None, classify: Optional[Callable[[np.ndarray], np.ndarray]] = None,
               **extra) -> AttackResult:
    """Encrypt ``test_images`` uint8 (N, H, W, C) with (scheme, key) and attack them.

    ``scheme``: a registered name, a user scheme (``"module:Class"``, ``"file.py:Class"`` or the class), or
    a :class:`Target`. ``train_images`` are the attacker's own images: plain/encrypted training data for
    GAN/ITN, the known pairs for KPA (the first ``pairs`` of them). A fresh key is drawn when ``key`` is None.
    ``classify`` (uint8 images -> labels): a reference classifier of the domain, for the recognisability
    figure of the scoring. Raises PatchcryptError (one line) when the attack does not apply, saying why.
    """
    attack = get_attack(name)
    target = make_target(scheme, block_size, test_images, key=key, per_image=per_image)
    _check_geometry(target, test_images)
    reason = attack.why_not(target)
    if reason:
        raise PatchcryptError(f"attack {name!r} does not apply to scheme {target.name!r}: {reason}")
    if attack.needs_train and (train_images is None or len(train_images) == 0):
        raise PatchcryptError(f"attack {name!r} needs the attacker's own images (training data)")
    opts = AttackOptions(pairs=pairs, epochs=epochs, device=device, seed=seed, progress=progress, extra=extra)
    result = attack.run(target, test_images, train_images, opts)
    result.block_size, result.per_image, result.classify = target.block_size, target.per_image, classify
    if "key_map_fraction" not in result.extra:
        result.extra["key_map_fraction"] = key_map_score(target, result.key_map, test_images.shape[1:])
    return result


def key_map_score(target: Target, recovered, shape) -> Optional[float]:
    """Share of a registered scheme's key map that ``recovered`` (a Map, or None) gets right; None where no
    map was output or none exists to compare with (user schemes, per-image keys). Scoring only."""
    if recovered is None or not target.registered or target.per_image:
        return None
    from .keymaps import map_fraction

    return map_fraction(recovered, target.key_map(shape))


def headline_of(name: str, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The attack's headline metrics (those present and not None) from its full metrics."""
    spec = ATTACKS.get(name)
    keys = spec.headline if spec else ("readable", "exact_images_global", "ssim_global")
    return {k: metrics[k] for k in keys if metrics.get(k) is not None}


def _say(progress: Optional[bool], text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def single_sample(n: int, max_single: Optional[int]) -> np.ndarray:
    """Indices of at most ``max_single`` of ``n`` images, evenly spaced (all of them when None)."""
    if max_single is None or max_single >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(1, int(max_single))).round().astype(np.int64))


def run_all(scheme: Union[str, type, Target], block_size: Optional[int], test_images: np.ndarray,
            train_images: Optional[np.ndarray] = None, key: Optional[Key] = None, per_image: bool = False,
            names: Optional[Sequence[str]] = None, on_result: Optional[Callable[[dict, Optional[AttackResult]], None]]
            = None, max_single: Optional[int] = None, progress: Optional[bool] = None,
            **options) -> Dict[str, Any]:
    """Every registered attack (or ``names``) against one scheme under one key, and the verdict.

    Returns ``{"verdict", "scheme", "block_size", "per_image", "n_images", "facts", "attacks": [row, ...]}``
    with one row per attack: ``{"attack", "threat", "applies": True, "headline": {...}, "metrics": {...}}`` or
    ``{"attack", "threat", "applies": False, "reason": "..."}``; ``verdict`` is :func:`verdict` of the rows.
    Attacks that solve every image alone (``single``) get at most ``max_single`` of the images, evenly
    spaced (their row says ``sampled``). ``on_result(row, result)`` is called as each finishes (result None
    when n/a); ``progress`` prints a line per attack on stderr.
    """
    target = make_target(scheme, block_size, test_images, key=key, per_image=per_image)
    _check_geometry(target, test_images)
    rows = []
    todo = list(names or ATTACKS)
    t_all = time.perf_counter()
    for k, name in enumerate(todo):
        attack = get_attack(name)
        row: Dict[str, Any] = {"attack": name, "threat": attack.threat.value}
        result = None
        reason = attack.why_not(target)
        if not reason and attack.needs_train and (train_images is None or len(train_images) == 0):
            reason = "needs the attacker's own images (training data)"
        images = test_images[single_sample(len(test_images), max_single)] if attack.single else test_images
        if not reason:
            _say(progress, f"attack {k + 1}/{len(todo)}: {name} ({attack.threat.value}) on {len(images)} images, "
                           f"{time.perf_counter() - t_all:.0f} s so far")
            t0 = time.perf_counter()
            try:
                result = run_attack(name, target, target.block_size, images, train_images, progress=progress,
                                    **options)
            except PatchcryptError as exc:   # e.g. probing found the scheme is not of the kind it models
                reason = str(exc)
        if reason:
            row.update(applies=False, reason=reason)
        else:
            metrics = result.metrics()
            row.update(applies=True, headline=headline_of(name, metrics), metrics=metrics,
                       seconds=round(time.perf_counter() - t0, 2))
            if len(images) < len(test_images):
                row["sampled"] = f"{len(images)} of {len(test_images)} images (at most --max-single)"
            _say(progress, f"attack {k + 1}/{len(todo)}: {name} done in {row['seconds']:.1f} s: "
                           f"{100 * metrics['readable']:.0f}% of {metrics['n_images']} images readable")
        rows.append(row)
        if on_result:
            on_result(row, result)
    return {"verdict": verdict(rows), "scheme": target.name, "registered": target.registered,
            "block_size": target.block_size, "per_image": target.per_image, "n_images": int(len(test_images)),
            "facts": target.facts, "attacks": rows}


# -- the verdict ------------------------------------------------------------------------------------------
BROKEN_AT = 0.5   # some attack reads at least this share of the images it attacked
# which breaking attack the verdict names first: the one that needs the least (one ciphertext before many,
# before the model, before known pairs, before chosen images)
THREAT_ORDER = (Threat.CIPHERTEXT_ONLY, Threat.CIPHERTEXT_MANY, Threat.MODEL_WEIGHTS, Threat.KNOWN_PLAINTEXT,
                Threat.CHOSEN_PLAINTEXT)


def verdict(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One verdict from the rows of :func:`run_all`.

    Broken: some attack read at least ``BROKEN_AT`` of the images it attacked (the ``readable`` rule of
    :mod:`patchcrypt.attacks.scoring`); ``by`` names the one that needs the least (``THREAT_ORDER``), then
    reads the most. Not broken says which attacks ran and which could not, and is never evidence of
    strength. Returns ``{"broken", "by", "threat", "readable", "n_images", "queries", "pairs", "broken_by",
    "ran", "not_run": [{"attack", "reason"}], "line"}``.
    """
    ran = [r for r in rows if r.get("applies")]
    not_run = [{"attack": r["attack"], "reason": r["reason"]} for r in rows if not r.get("applies")]
    rank = {t.value: i for i, t in enumerate(THREAT_ORDER)}
    breaking = [r for r in ran if (r["metrics"].get("readable") or 0.0) >= BROKEN_AT]
    pool = breaking or ran
    best = min(pool, key=lambda r: (rank.get(r["threat"], len(rank)) if breaking else 0,
                                    -(r["metrics"].get("readable") or 0.0))) if pool else None
    m = best["metrics"] if best else {}
    out = {"broken": bool(breaking), "by": best["attack"] if breaking else None,
           "threat": best["threat"] if breaking else None,
           "readable": float(m.get("readable") or 0.0) if best else 0.0,
           "n_images": int(m["n_images"]) if best else 0,
           "queries": m.get("queries") if breaking else None,
           "pairs": (m.get("pairs_needed") or m.get("pairs")) if breaking else None,
           "broken_by": [r["attack"] for r in breaking], "ran": [r["attack"] for r in ran], "not_run": not_run}
    out["line"] = verdict_line(out)
    return out


def verdict_line(v: Dict[str, Any]) -> str:
    """The verdict in words, as ``attack all`` prints it first."""
    if v["broken"]:
        extra = f", {v['queries']} chosen images" if v.get("queries") else ""
        extra += f", {v['pairs']} known pairs" if v.get("pairs") and not v.get("queries") else ""
        others = [a for a in v["broken_by"] if a != v["by"]]
        also = f" (also broken by {', '.join(others)})" if others else ""
        return (f"BROKEN by {v['by']} ({v['threat']}): {100 * v['readable']:.0f}% of {v['n_images']} images "
                f"readable{extra}{also}")
    reasons = "; ".join(f"{r['attack']}: {r['reason']}" for r in v["not_run"])
    could_not = f"; {len(v['not_run'])} could not run ({reasons})" if v["not_run"] else ""
    return (f"NOT BROKEN by the {len(v['ran'])} attacks that ran ({', '.join(v['ran']) or 'none'}){could_not} "
            "— this is not evidence of strength")


_LABELS = {"readable": "readable", "exact_images_global": "exact up to global state",
           "ssim_global": "SSIM up to global state",
           "psnr_global": "PSNR up to global state", "global_state_rank": "true state ranked",
           "exact_images": "exact", "ssim": "SSIM", "psnr": "PSNR", "nc": "Nc", "dc": "Dc", "lc": "Lc",
           "key_map_fraction": "key map", "queries": "queries",
           "inblock_fraction_up_to_global": "in-block states up to one global state",
           "block_order_fraction_up_to_grid_symmetry": "block order up to grid symmetry"}


def format_headline(headline: Dict[str, Any]) -> str:
    """``{"exact_images_global": 1.0, "ssim_global": 1.0}`` -> ``"exact up to global state 1.000, ..."``."""
    parts = []
    for k, v in headline.items():
        label = _LABELS.get(k, k)
        parts.append(f"{label} {v:.3f}" if isinstance(v, float) else f"{label} {v}")
    return ", ".join(parts)


# -- the result table ---------------------------------------------------------------------------------------
def result_cell(name: str, metrics: Optional[Dict[str, Any]] = None, *, reason: Optional[str] = None,
                sampled: Optional[str] = None) -> str:
    """One attack's result in words, as every table of attack results shows it: its headline figures
    (:func:`headline_of`, :func:`format_headline`) and, when it ran on part of the images, which part; or
    ``n/a`` (with ``reason`` when given) when it did not run (``metrics`` None)."""
    if metrics is None:
        return f"n/a: {reason}" if reason else "n/a"
    return format_headline(headline_of(name, metrics)) + (f" ({sampled})" if sampled else "")


def column_head(name: str) -> str:
    """An attack's column heading: its name and threat model, e.g. ``many (ciphertext-only, many images)``."""
    return f"{name} ({ATTACKS[name].threat.value})" if name in ATTACKS else name


def report_table(report: Dict[str, Any]) -> str:
    """The table of a :func:`run_all` report, as ``attack all`` prints it: the verdict first, then what was
    attacked, then one line per attack: its threat model and headline, or n/a with the reason."""
    keys = "per-image keys" if report["per_image"] else "one key"
    lines = [report["verdict"]["line"],
             f"attacks on {report['scheme']} (M={report['block_size']}, {report['n_images']} images, {keys}); "
             "'up to global state': up to one whole-image rotation/flip, colour order and inversion"]
    rows = [(r["attack"], r["threat"], result_cell(r["attack"], r["metrics"] if r["applies"] else None,
                                                   reason=r.get("reason"), sampled=r.get("sampled")))
            for r in report["attacks"]]
    w, t = max(len(r[0]) for r in rows + [("attack",)]), max(len(r[1]) for r in rows + [("", "threat model")])
    lines.append(f"{'attack':<{w}}  {'threat model':<{t}}  result")
    lines += [f"{a:<{w}}  {th:<{t}}  {res}" for a, th, res in rows]
    return "\n".join(lines)


__all__ = ["Threat", "THREAT_HOLDERS", "AttackSpec", "AttackOptions", "ATTACKS", "register_attack", "get_attack",
           "list_attacks", "run_attack", "run_all", "verdict", "verdict_line", "single_sample", "headline_of",
           "format_headline", "result_cell", "column_head", "report_table", "needs_steps", "needs_key",
           "needs_shared_key", "needs_pixel_correspondence", "all_of"]
