"""The security table: every registered attack against every scheme, on real images.

    .venv/bin/python benchmarks/attack_table.py           # 200 CIFAR-10 test images, attackers trained on 2,000
    .venv/bin/python benchmarks/attack_table.py --full    # 1,000 test images, 10,000 training images, longer training

CIFAR-10 at 32×32 with M = 4 (as the literature evaluates), attackers trained on CIFAR-10 training images;
the jigsaw attack on scikit-image's colour photos at 224×224 with M = 16. Every attack in the registry
(``patchcrypt attack list``) gets a column: FR/GAN/ITN as SSIM, KPA as the fewest pairs for the whole key,
jigsaw on photos, and any attack registered later by its headline metrics, run on the CIFAR-10 images. Each
attack's result is saved to results.json as soon as it is done, so a cut-off run resumes, and a run after
new attacks were registered adds only their columns. Prints a markdown table of mean ± std SSIM (PSNR in
results.json), Dc/Nc/Lc for the jigsaw attack, and the known-plaintext pairs needed; writes a figure of
example reconstructions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt import Key  # noqa: E402
from patchcrypt.attacks import ATTACKS, list_attacks, run_attack  # noqa: E402
from patchcrypt.attacks.registry import column_head, result_cell  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.data import load_dataset, sample_photos  # noqa: E402
from patchcrypt.errors import PatchcryptError  # noqa: E402
from patchcrypt.metrics import batch_quality  # noqa: E402

SCHEMES = [("plain", False), ("block-pixel", False), ("etc", False), ("etc-gray", False), ("le", False),
           ("ele", False), ("pe", False), ("block-pixel", True), ("etc", True), ("le", True), ("ele", True),
           ("pe", True)]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"
FIXED = ("fr", "gan", "itn", "kpa", "jigsaw")   # the attacks with their own columns below; others: headline


def fmt(m, key="ssim"):
    """Attack figures: the up-to-global-state value (and the chosen output's spread); batch_quality of the
    encrypted images: mean ± std."""
    if key + "_global" in m:
        return f"{m[key + '_global']:.3f} (chosen {m[key]:.3f} ± {m[key + '_std']:.3f})"
    return f"{m[key + '_mean']:.3f} ± {m[key + '_std']:.3f}"


def _kpa_sweep(scheme, m, test, train, key):
    """Known plaintext: the fewest pairs (of 1, 2, 4, ..., 32) that recover the whole key map."""
    out = {}
    for k in (1, 2, 4, 8, 16, 32):
        try:
            res = run_attack("kpa", scheme, m, test, train, key, pairs=k)
        except PatchcryptError as exc:
            return {"not_applicable": str(exc)}
        met = res.metrics()
        out.setdefault("by_pairs", {})[k] = {
            "key_map_fraction": met["key_map_fraction"], "ssim": met["ssim"], "exact_images": met["exact_images"]}
        if k == 1:
            out.update(met)
        if met["key_map_fraction"] == 1.0:
            out["pairs_for_full_key"] = k
            break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/attack_table"))
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    n_test, n_train, epochs = (1000, 10000, 20) if args.full else (200, 2000, 5)
    test = load_dataset(args.data, "test").subset(n_test).images
    train = load_dataset(args.data, "train").subset(n_train).images
    photos = sample_photos(224)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    by_key = {(r["scheme"].replace(" (per-image keys)", ""), r["per_image"]): r for r in rows}
    config = {"n_test": n_test, "n_train": n_train, "epochs": epochs}
    examples = {}
    for scheme, per_image in SCHEMES:
        row = by_key.get((scheme, per_image))
        todo = [a for a in list_attacks() if row is None or a not in row]
        if not todo:
            continue
        m = 8 if scheme == "etc-gray" else 4
        key = Key.generate()
        label = scheme + (" (per-image keys)" if per_image else "")
        cipher = create_cipher(scheme, key, block_size=m, per_image=per_image)
        enc = cipher.encrypt(test, cipher.new_nonces(len(test)) if per_image else None)
        if row is None:
            row = {"scheme": label, "per_image": per_image, "block_size": m}
            if enc.shape == test.shape:
                row["encrypted"] = batch_quality(test, enc)
            rows.append(row)
            by_key[(scheme, per_image)] = row
        for name in todo:
            print(f"{label}: {name}", flush=True)
            if name == "kpa":
                row["kpa"] = ({"not_applicable": "per-image keys: no two images share key material"} if per_image
                              else _kpa_sweep(scheme, m, test, train, key))
            elif name == "jigsaw":   # on real photos at 224x224, M = 16
                try:
                    res = run_attack("jigsaw", scheme, 16 if scheme != "etc-gray" else 8, photos, key=key,
                                     per_image=per_image)
                    row["jigsaw"] = res.metrics()
                    examples.setdefault(label, {})["jigsaw"] = res.reconstructed[:2]
                except PatchcryptError as exc:
                    row["jigsaw"] = {"not_applicable": str(exc)}
            else:
                try:
                    res = run_attack(name, scheme, m, test, train, key, per_image, epochs=epochs,
                                     device=args.device, progress=False)
                    row[name] = res.metrics()
                    row[name].pop("losses", None)
                    row[name].pop("discriminator_losses", None)
                    examples.setdefault(label, {})[name] = res.reconstructed[:4]
                except PatchcryptError as exc:
                    row[name] = {"not_applicable": str(exc)}
            write_results(args.out, "attack_table", config, rows, render(rows, n_test, n_train, epochs))
        _figure(args.out, label, test, enc, examples.get(label, {}))
    md = render(rows, n_test, n_train, epochs)
    print(md)
    figures = sorted(p.name for p in args.out.glob("examples_*.png"))
    captions = {f: f"{f[len('examples_'):-len('.png')].replace('_', ' ')}: plain | encrypted | FR | GAN | ITN, "
                   "under a throwaway key generated for this figure and never saved (so the plain column gives "
                   "no real key away)" for f in figures}
    write_results(args.out, "attack_table", config, rows, md, figures, captions)
    return 0


def cell(m, key="ssim"):
    if not m or "not_applicable" in m:
        return "n/a"
    return fmt(m, key)


def render(rows, n_test, n_train, epochs) -> str:
    table = []
    order = [s + (" (per-image keys)" if p else "") for s, p in SCHEMES]
    # attacks registered after the fixed ones: one column each, by headline metrics (registry order first)
    seen = {k for r in rows for k, v in r.items() if isinstance(v, dict) and k not in FIXED and k != "encrypted"}
    later = [n for n in list_attacks() if n in seen and n not in FIXED] + sorted(seen - set(ATTACKS))
    for r in sorted(rows, key=lambda r: order.index(r["scheme"]) if r["scheme"] in order else len(order)):
        kpa = r.get("kpa", {})
        jig = r.get("jigsaw", {})
        table.append({
            "scheme": r["scheme"], "encrypted": cell(r.get("encrypted")), "FR": cell(r.get("fr")),
            "GAN": cell(r.get("gan")), "ITN": cell(r.get("itn")),
            "KPA, 1 pair": "n/a" if "not_applicable" in kpa or not kpa else
            f"{kpa['ssim']:.3f} (key {100 * kpa['key_map_fraction']:.0f}%)",
            "KPA pairs for the full key": "n/a" if "not_applicable" in kpa or not kpa else
            str(kpa.get("pairs_for_full_key", "> 32")),
            "jigsaw SSIM / Nc": "n/a" if "not_applicable" in jig or not jig else
            f"{jig['ssim_global']:.3f} / {jig['nc']:.3f}",
        })
        for name in later:
            m = r.get(name)
            table[-1][name] = result_cell(name, None if not m or "not_applicable" in m else m)
    cols = ["scheme", "encrypted", "FR", "GAN", "ITN", "KPA, 1 pair", "KPA pairs for the full key",
            "jigsaw SSIM / Nc", *later]
    heads = cols[:8] + [column_head(n) for n in later]
    return (f"SSIM of the attacker's reconstruction against the plain image, up to the global state (one "
            f"whole-image rotation/flip, colour order and inversion: what a person resolves at a glance), then "
            f"the chosen output's mean ± std; {n_test} CIFAR-10 test "
            f"images at 32×32, M = 4 (etc-gray: M = 8); GAN/ITN trained on {n_train} CIFAR-10 training images "
            f"for {epochs} epochs; jigsaw on 6 photos at 224×224, M = 16. 'encrypted' = the encrypted image "
            f"itself, no attack. Example figures, one per scheme: plain | encrypted | FR | GAN | ITN for four "
            f"test images, each scheme under a throwaway key generated for the table and never saved.\n\n"
            + markdown_table(table, cols, heads))


def _figure(out: Path, label: str, plain, enc, recs) -> None:
    from patchcrypt.codec import as_display
    from patchcrypt.codec import write_image

    names = [n for n in ("fr", "gan", "itn") if n in recs]
    if not names:
        return
    rows = []
    for i in range(min(4, len(plain))):
        cells = [plain[i], as_display(enc[i], plain[i].shape)] + [recs[n][i] for n in names]
        rows.append(np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255) for c in cells], 1))
    grid = np.concatenate(rows, 0)
    grid = np.repeat(np.repeat(grid, 3, 0), 3, 1)
    write_image(out / f"examples_{label.replace(' ', '_').replace('(', '').replace(')', '')}.png", grid)


if __name__ == "__main__":
    sys.exit(main())
