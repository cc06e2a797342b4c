"""The leaderboard: a card per design (``patchcrypt bench``), then ``results/leaderboard.json``,
``docs/leaderboard.md``'s table and ``docs/leaderboard-frontier.png`` from the cards that exist.

    .venv/bin/python benchmarks/leaderboard.py                    # rebuild from the cards in results/cards/
    .venv/bin/python benchmarks/leaderboard.py --run              # bench every design without a card first
    .venv/bin/python benchmarks/leaderboard.py --run --only etc,block-pixel
    .venv/bin/python benchmarks/leaderboard.py --run --domain photos       # the photo cards only

Run it from the repository root (user classes are named relative to it). Cards are written to
``results/cards/<design>/`` by the same code as ``patchcrypt bench`` (quick preset, CIFAR-10 at 32 px,
public images: flowers, another domain), and each design's photo card to ``results/cards/<design>/photos/``
(quick preset on the hymenoptera photos' evaluation split, brought to 224 px, at the photo geometry M = 16
(pixel-based designs keep M = 1); public images: flowers, another domain, enlarged to 224; no accuracy part);
a cut-off card resumes from its ``partial.json``, one piece at a time. A design with no card is a row that
says "not measured".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from patchcrypt.bench import bench, get_preset, load_card, write_card  # noqa: E402
from patchcrypt.bench.leaderboard import (PHOTOS, Design, markdown_rows, plot_frontier,  # noqa: E402
                                          rows_from_cards, write_leaderboard)

SHARED = ROOT.parent / "shared" / "datasets"
ORIGIN = {
    "etc": "Kurihara et al. 2015 (EtC)", "etc-gray": "Chuman, Sirichotedumrong, Kiya 2019",
    "block-pixel": "Kiya et al. 2022", "block-pixel-cs": "Kiya et al. 2022", "le": "Tanaka 2018",
    "ele": "Madono et al. 2020", "pe": "Sirichotedumrong, Maekawa, Kinoshita, Kiya 2019",
    "pe-access": "Sirichotedumrong, Kinoshita, Kiya, IEEE Access 2019",
    "ak": "AprilPyone & Kiya, IEEE TIFS 2021", "hao": "Hao et al., IJCAI 2025",
}
DESIGNS = [
    Design("XorBlocks (example user class)", "examples/value_schemes.py:XorBlocks", 4,
           origin="examples/value_schemes.py", note="a user's class, no declared steps"),
    Design("block-pixel", "block-pixel", 4, origin=ORIGIN["block-pixel"]),
    Design("block-pixel-cs", "block-pixel-cs", 4, origin=ORIGIN["block-pixel-cs"]),
    Design("etc", "etc", 4, origin=ORIGIN["etc"]),
    Design("etc-gray", "etc-gray", 8, origin=ORIGIN["etc-gray"], photo_block_size=8,
           note="defined on 8x8 blocks only (the JPEG block of its grayscale composite), at 224 px too"),
    Design("le", "le", 4, origin=ORIGIN["le"]),
    Design("ele", "ele", 4, origin=ORIGIN["ele"]),
    Design("pe one key", "pe", 1, origin=ORIGIN["pe"], note="the registered default: one key for every image"),
    Design("pe per-image (as published)", "pe", 1, per_image=True, origin=ORIGIN["pe-access"],
           note="the paper draws a key per image ('without key management')"),
    Design("ak-shuffle", "ak-shuffle", 4, origin=ORIGIN["ak"]),
    Design("ak-flip", "ak-flip", 4, origin=ORIGIN["ak"]),
    Design("ak-ffx", "ak-ffx", 4, origin=ORIGIN["ak"], note="FFX within the byte domain (the paper: 3 decimal digits)"),
    Design("etc per-image (invariant)", "etc", 4, per_image=True,
           note="trained with the invariant ViT (vit_pico_inv)"),
    Design("etc-bs-rf-np per-image (invariant)", "etc-bs-rf-np", 4, per_image=True,
           note="trained with the invariant ViT"),
    Design("patch-shuffle (Hao et al.)", "patch-shuffle", 4, per_image=True, origin=ORIGIN["hao"],
           note="trained with the invariant ViT; at the photo geometry (224 px, M = 16) the jigsaw reads photos "
                "from one ciphertext each"),
    Design("etc-nested per-image (nested invariant)", "etc-nested", 8, per_image=True,
           note="patch order, then EtC on 4x4 sub-blocks inside every patch; trained with the nested invariant "
                "ViT (invariance etc-nested)"),
]
PHOTO_DATA, PHOTO_SIZE = "hymenoptera", 224


def run_missing(designs, out: Path, preset: str, domain: str = "cifar") -> None:
    """Bench every design whose card folder (or photo card folder, ``domain="photos"``) has no card.json yet
    (resuming a partial one)."""
    from patchcrypt.ciphers import list_ciphers
    from patchcrypt.errors import PatchcryptError

    known = set(list_ciphers(include_steps=True))
    photos = domain == "photos"
    data, size = (PHOTO_DATA, PHOTO_SIZE) if photos else ("cifar10-jpeg", None)
    for d in designs:
        folder = out / d.folder / (PHOTOS if photos else "")
        if (folder / "card.json").is_file():
            continue
        if ":" not in d.scheme and d.scheme not in known:
            print(f"skip {d.label}: scheme {d.scheme!r} is not registered here", flush=True)
            continue
        t0 = time.perf_counter()
        m = d.photo_m if photos else d.block_size
        flag = (" --per-image" if d.per_image else "") + (f" --img-size {size}" if size else "")
        cmd = (f"patchcrypt bench --scheme {d.scheme} --block-size {m}{flag}"
               f" --data ../shared/datasets/{data} --public ../shared/datasets/flowers5-128 --preset {preset}"
               f" --out {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}")
        try:
            card = bench(d.scheme, [SHARED / data], get_preset(preset, img_size=size), folder, block_size=m,
                         per_image=d.per_image, public=SHARED / "flowers5-128", progress=True, command=cmd)
        except PatchcryptError as exc:
            print(f"{d.label}: error: {exc}", flush=True)
            continue
        print(f"{d.label}{' (photos)' if photos else ''}: {card['verdict']['line']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="bench the designs that have no card yet")
    ap.add_argument("--only", default="", help="comma-separated design labels (with --run)")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--domain", choices=("cifar", "photos", "all"), default="all",
                    help="with --run: the CIFAR-10 cards, the photo cards, or both")
    ap.add_argument("--cards", type=Path, default=ROOT / "results" / "cards")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "leaderboard.json")
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "leaderboard.md")
    args = ap.parse_args()
    if args.run:
        only = [s for s in args.only.split(",") if s]   # run in this order
        by_label = {d.label: d for d in DESIGNS}
        unknown = [s for s in only if s not in by_label]
        if unknown:
            raise SystemExit(f"unknown design label(s): {', '.join(unknown)}")
        for domain in (("cifar", "photos") if args.domain == "all" else (args.domain,)):
            run_missing([by_label[s] for s in only] if only else DESIGNS, args.cards, args.preset, domain)
    for folder in sorted([*args.cards.glob("*/card.json"), *args.cards.glob(f"*/{PHOTOS}/card.json")]):   # card.md and ladder.png as this version draws them
        card = load_card(folder)   # the command as run from the repository root, with ../shared beside it
        card["command"] = card["command"].replace(str(ROOT.parent / "shared"), "../shared").replace(f"{ROOT}/", "")
        write_card(folder.parent, card)
    rows = rows_from_cards(DESIGNS, args.cards, ROOT)
    table = markdown_rows(rows)
    figure = "leaderboard-frontier.png"
    for folder in (args.json.parent, args.page.parent):   # beside the JSON (for `patchcrypt report`) and the page
        folder.mkdir(parents=True, exist_ok=True)
        plot_frontier(rows, folder / figure, ["cifar10-jpeg", PHOTO_DATA])
    write_leaderboard(rows, args.json, {"kind": "leaderboard", "command": "benchmarks/leaderboard.py",
                                        "cards": "results/cards/", "markdown": table, "figures": [figure],
                                        "captions": {figure: "accuracy cost (CIFAR-10) against images-to-break on "
                                                             "CIFAR-10 at 32 px and on hymenoptera photos at 224 "
                                                             "px (log axes; > = not broken up to there)"}})
    write_table(args.page, table)
    print(table)
    for what, key in (("CIFAR-10", "card"), ("photo", "photo_card")):
        measured = [r["label"] for r in rows if r.get(key)]
        print(f"\n{len(measured)} of {len(rows)} rows with a {what} card: {', '.join(measured) or 'none'}")


BEGIN, END = "<!-- leaderboard:begin (benchmarks/leaderboard.py) -->", "<!-- leaderboard:end -->"


def write_table(page: Path, table: str) -> None:
    """Put ``table`` between the page's markers (the rest of the page is prose, kept as it is)."""
    text = page.read_text() if page.is_file() else f"# Leaderboard\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
