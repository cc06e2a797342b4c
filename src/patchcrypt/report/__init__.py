"""A self-contained HTML report (images embedded) from run folders and benchmark results.

Inputs, each a path:
    run folder          (metrics.csv / summary.json from ``patchcrypt train``): loss and accuracy curves,
                        confusion matrix when evaluated, and examples (see below);
    results.json        (or a folder holding one) from a benchmark: its table and figures (accuracy table,
                        rate–distortion curves, attack table with reconstructions, ...);
    a folder of those   (e.g. ``make demo``'s output): every run and results file inside, two levels deep.

A report is made to be shared, so it never shows a plain image beside its ciphertext under a real key (one
such pair recovers a ``block-pixel`` key). It reads no key unless one is passed (``key_path``; a run's
config naming its key file is not enough). Examples are plain | encrypted | decrypted under a throwaway key
generated for the page; with the run's key passed, ciphertext only, of images not shown in plain anywhere
on the page; an already encrypted data set (the server's view) shows ciphertext only. Captions say which.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import PatchcryptError
from ..record import EncryptionRecord

KNOWN_KINDS = {
    "accuracy_table": "Accuracy on encrypted images",
    "compression": "Encryption-then-compression: rate–distortion",
    "attack_table": "Attacks: what each scheme protects",
    "keyed_model": "Keyed models: plain-trained, encrypted-input",
    "encrypt_speed": "Encryption speed",
    "files_speed": "File throughput (encrypt / decrypt trees)",
    "serve_load": "Serving under load",
    "demo_ciphers": "Every scheme on real photos",
    "demo_keyed": "Keyed models (demo)",
}
# order of sections in the page
_ORDER = ["demo_ciphers", "accuracy_table", "keyed_model", "demo_keyed", "compression", "attack_table",
          "encrypt_speed", "files_speed", "serve_load", "run"]


@dataclass
class Item:
    kind: str          # a results kind, or "run"
    path: Path
    data: Dict = field(default_factory=dict)


def collect(paths: Sequence) -> List[Item]:
    """Classify every input; unknown inputs are a clear error naming the path."""
    items: List[Item] = []
    for p in map(Path, paths):
        found = _classify(p, depth=2)
        if not found:
            if not p.exists():
                raise PatchcryptError(f"{p}: no such file or folder")
            raise PatchcryptError(f"{p}: not a run folder (metrics.csv) or a results file (results.json with a "
                                  "'kind'), and none inside")
        items += found
    seen, unique = set(), []
    for it in items:
        if it.path.resolve() not in seen:
            seen.add(it.path.resolve())
            unique.append(it)
    return sorted(unique, key=lambda it: (_ORDER.index(it.kind) if it.kind in _ORDER else len(_ORDER),
                                          str(it.path)))


def _classify(p: Path, depth: int) -> List[Item]:
    if p.is_file():
        if p.suffix != ".json":
            return []
        data = _read_json(p)
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and "rows" in data:
            return [Item(data["kind"], p, data)]
        return []
    if not p.is_dir():
        return []
    if (p / "metrics.csv").is_file():
        return [Item("run", p)]
    out = []
    for name in ("results.json", "ciphers.json", "keyed.json"):
        if (p / name).is_file():
            out += _classify(p / name, 0)
    if depth > 0:
        for child in sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")):
            out += _classify(child, depth - 1)
    return out


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchcryptError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise PatchcryptError(f"{p}: not valid JSON (line {exc.lineno})") from None


# -- HTML pieces ----------------------------------------------------------------------------------------------
def _img_tag(png: bytes, alt: str, width: Optional[int] = None) -> str:
    w = f' style="max-width:{width}px"' if width else ""
    return (f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}">')


def _file_img(path: Path, alt: str) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="note">figure {html.escape(path.name)} is missing</p>'
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return f'<p class="note">figure {html.escape(path.name)} is not a PNG</p>'
    return _img_tag(data, alt)


def _fig_png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def markdown_to_html(text: str) -> str:
    """The markdown our benchmarks write: paragraphs and pipe tables."""
    out, table, para = [], [], []

    def flush_para():
        if para:
            out.append(f"<p>{html.escape(' '.join(para))}</p>")
            para.clear()

    def flush_table():
        if not table:
            return
        rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                if not set(r.replace("|", "").strip()) <= set("-: ")]
        head, body = rows[0], rows[1:]
        out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                   + "</tbody></table>")
        table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            flush_para()
            table.append(line)
        elif not line.strip():
            flush_para()
            flush_table()
        else:
            flush_table()
            para.append(line.strip())
    flush_para()
    flush_table()
    return "\n".join(out)


def _rows_table(rows: List[Dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, (dict, list))))

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return markdown_to_html("\n".join(lines))


# -- sections ------------------------------------------------------------------------------------------------
def results_section(item: Item) -> str:
    d = item.data
    title = KNOWN_KINDS.get(item.kind, item.kind.replace("_", " "))
    parts = [f"<h2>{html.escape(title)}</h2>", f'<p class="src">{html.escape(str(item.path))}']
    if d.get("command"):
        parts[-1] += f" — measured by <code>{html.escape(d['command'])}</code>"
    parts[-1] += "</p>"
    parts.append(markdown_to_html(d["markdown"]) if d.get("markdown") else _rows_table(d.get("rows", [])))
    captions = d.get("captions") if isinstance(d.get("captions"), dict) else {}
    for fig in d.get("figures", []):
        caption = str(captions.get(fig) or Path(fig).stem.replace("_", " "))
        parts.append(f"<figure>{_file_img(item.path.parent / fig, f'{title}: {caption}')}"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "<section>" + "\n".join(parts) + "</section>"


def run_section(item: Item, key_path: Optional[Path] = None, n_examples: int = 4) -> str:
    run = item.path
    summary = _read_json(run / "summary.json") if (run / "summary.json").is_file() else {}
    rows = _read_metrics(run / "metrics.csv")
    config = _read_config(run / "config.yaml")
    record = EncryptionRecord.from_run(config, summary)
    facts = {"model": summary.get("model") or config.get("model"), "scheme": record.scheme,
             "block size": record.block_size, "JPEG quality": summary.get("jpeg_quality"),
             "key fingerprint": record.key_fingerprint,
             "training images": summary.get("n_train"), "test images": summary.get("n_test"),
             "epochs": len(rows), "best test accuracy": _pct(summary.get("best_test_acc")),
             "final test accuracy": _pct(summary.get("final_test_acc")),
             "encryption share of a step": _pct(summary.get("encrypt_fraction"), 2)}
    parts = [f"<h2>Run {html.escape(run.name)}</h2>", f'<p class="src">{html.escape(str(run))}</p>',
             "<table class=facts>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                            for k, v in facts.items() if v not in (None, "")) + "</table>"]
    if rows:
        parts.append(_img_tag(_curves(rows, run.name), f"{run.name}: loss and accuracy per epoch"))
    if (run / "confusion.png").is_file():
        parts.append(_file_img(run / "confusion.png", f"{run.name}: confusion matrix"))
    parts.append(_examples(config, record, key_path, n_examples))
    return "<section>" + "\n".join(parts) + "</section>"


def _pct(v, digits: int = 1):
    return None if v is None else f"{100 * float(v):.{digits}f}%"


def _read_metrics(path: Path) -> List[Dict[str, float]]:
    try:
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in r.items() if v not in (None, "")} for r in csv.DictReader(f)]
    except (OSError, ValueError) as exc:
        raise PatchcryptError(f"{path}: unreadable metrics ({exc})") from None


def _read_config(path: Path) -> Dict:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _curves(rows: List[Dict[str, float]], name: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for k, lab in (("train_loss", "train"), ("test_loss", "test")):
        if all(k in r for r in rows):
            a.plot(ep, [r[k] for r in rows], marker="o", ms=3, label=lab)
    a.set_title("loss")
    a.set_xlabel("epoch")
    for k, lab in (("train_acc", "train"), ("test_acc", "test")):
        if all(k in r for r in rows):
            b.plot(ep, [100 * r[k] for r in rows], marker="o", ms=3, label=lab)
    b.set_title("accuracy (%)")
    b.set_xlabel("epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(name)
    fig.tight_layout()
    return _fig_png(fig)


def _example_indices(n_images: int, n: int, plain: bool) -> np.ndarray:
    """Which images a section shows. Plain examples take the head of one fixed shuffle and real-key
    ciphertexts its tail, so the two never show the same image; an encrypted tree written by
    'patchcrypt encrypt' lists its files in its source's order, so this holds across sections too."""
    order = np.random.default_rng(0).permutation(n_images)  # not key material: only which examples
    if plain:
        return np.sort(order[:n])
    tail = order[max(n, n_images - n):] if n_images > n else order[:0]
    return np.sort(tail)


def _examples(config: Dict, record: EncryptionRecord, key_path: Optional[Path], n: int) -> str:
    """Example images; never a plain image beside its ciphertext under a real key (see the module doc).

    Without ``key_path``: plain | encrypted | decrypted under a throwaway key made for this page. With the
    run's key: ciphertext only, of images no section shows in plain. Already encrypted data: ciphertext only.
    """
    from ..codec import as_display, encode_png, jpeg_roundtrip
    from ..data import load_dataset
    from ..keys import Key

    data = config.get("data")
    if not data or not Path(data).exists():
        return '<p class="note">examples: the run\'s data folder is not available here</p>'
    try:
        root = Path(data)
        ds = load_dataset(root, "test" if (root / "test").is_dir() else None)
    except PatchcryptError as exc:
        return f'<p class="note">examples: {html.escape(str(exc))}</p>'
    if ds.manifest is not None:  # the server's view: already encrypted under the run's key
        images = ds.images[_example_indices(len(ds), n, plain=False)]
        if not len(images):
            return '<p class="note">examples: too few images to show any that are not shown in plain</p>'
        return ("<h3>Examples as the server sees them: ciphertext only</h3><p class=note>the run's data, encrypted "
                "under its key; no plain image of these appears in this report</p>"
                + "".join(_img_tag(encode_png(_big(x)), "encrypted example (ciphertext only)") for x in images))
    if record.is_plain:
        images = ds.images[_example_indices(len(ds), n, plain=True)]
        return ("<h3>Examples (plain run: no encryption)</h3>"
                + "".join(_img_tag(encode_png(_big(x)), "plain example") for x in images))
    want, per_image = record.key_fingerprint, record.per_image
    note = ""
    if key_path is not None:
        key = Key.load(key_path)
        if key.fingerprint == want and not per_image:
            images = ds.images[_example_indices(len(ds), n, plain=False)]
            if not len(images):
                return '<p class="note">examples: too few images to show any that are not shown in plain</p>'
            enc = record.cipher(key).encrypt(images)
            shown = [_big(_pad(as_display(e, x.shape))) for x, e in zip(images, enc)]
            return (f"<h3>Examples under the run's key: ciphertext only</h3><p class=note>encrypted under the run's "
                    f"key ({html.escape(key.fingerprint)}); no plain image of these appears in this report, since "
                    "one plain image beside its ciphertext under a real key gives the key away</p>"
                    + _img_tag(encode_png(np.concatenate(shown, 1)), "encrypted examples (ciphertext only)"))
        note = (f" (the key passed, {key.fingerprint}, is not the run's {want or 'unknown'} key"
                + (", or the run used per-image keys" if per_image else "") + ")")
    images = ds.images[_example_indices(len(ds), n, plain=True)]
    key = Key.generate()  # throwaway: made for this page, never saved, so its pairs give nothing away
    cipher = record.cipher(key, verify=False)
    nonces = cipher.new_nonces(len(images)) if per_image else None
    enc = cipher.encrypt(images, nonces)
    if record.jpeg_quality:
        enc = jpeg_roundtrip(enc, record.jpeg_quality, record.subsampling, upsampling="block")
    dec = cipher.decrypt(enc, nonces)
    rows = []
    for x, e, d in zip(images, enc, dec):
        trio = np.concatenate([_pad(x), _pad(as_display(e, x.shape)), _pad(d)], 1)
        rows.append(_big(trio))
    return ("<h3>Examples: plain | encrypted | decrypted, under a throwaway key</h3><p class=note>encrypted with "
            "a throwaway key generated for this page, not the run's key" + html.escape(note) + ": a plain image "
            "beside its ciphertext under a real key would give that key away</p>"
            + _img_tag(encode_png(np.concatenate(rows, 0)), "plain, encrypted and decrypted examples "
                       "(throwaway key)"))


def _pad(x: np.ndarray) -> np.ndarray:
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.pad(x, ((2, 2), (2, 2), (0, 0)), constant_values=255)


def _big(x: np.ndarray, target: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of small images so blocks stay visible."""
    f = max(1, target // x.shape[0])
    x = x if x.shape[2] == 3 else np.repeat(x, 3, 2)
    return np.repeat(np.repeat(x, f, 0), f, 1)


# -- the page -------------------------------------------------------------------------------------------------
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
                 progress=None) -> Dict:
    """Write the HTML report to ``out`` (atomically); returns {"path", "sections", "images"}."""
    from datetime import datetime, timezone

    from ..codec import write_bytes_atomic

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise PatchcryptError(f"{out}: the report is HTML; name it *.html")
    if not out.parent.is_dir():
        raise PatchcryptError(f"{out.parent}: no such folder")
    items = collect(paths)
    sections = []
    for it in items:
        sections.append(run_section(it, key_path) if it.kind == "run" else results_section(it))
        if progress:
            progress(1)
    body = "\n".join(sections)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{CHECK_JS}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=note>{len(items)} section(s), written {when}. Keys are never "
            "included; fingerprints identify them.</p>" + body + "</body></html>")
    write_bytes_atomic(out, page.encode())
    return {"path": str(out), "sections": len(items), "images": page.count("<img ")}
