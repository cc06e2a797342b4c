"""Shared outputs never pair a plain image with its ciphertext under a real key (one pair gives a
block-pixel key away): the report, the demo's contact sheet and the attack command's figure."""

import base64
import html
import json
import re

import numpy as np
import pytest
from PIL import Image

from patchcrypt import Key
from patchcrypt.codec import as_display
from patchcrypt.ciphers import create_cipher
from patchcrypt.cli import main
from patchcrypt.codec import read_image, write_image


def contains(hay: np.ndarray, needle: np.ndarray) -> bool:
    """Whether ``needle`` (h, w, 3) occurs exactly, pixel for pixel, somewhere in ``hay`` (H, W, 3)."""
    h, w = needle.shape[:2]
    if h > hay.shape[0] or w > hay.shape[1]:
        return False
    r = int(np.argmax([len(np.unique(row)) for row in needle]))  # the most distinctive row anchors the search
    anchor = np.ascontiguousarray(needle[r]).tobytes()
    for i in range(hay.shape[0] - h + 1):
        line = np.ascontiguousarray(hay[i + r]).tobytes()
        pos = line.find(anchor)
        while pos >= 0:
            j = pos // 3
            if pos % 3 == 0 and j + w <= hay.shape[1] and np.array_equal(hay[i:i + h, j:j + w], needle):
                return True
            pos = line.find(anchor, pos + 1)
    return False


def shown(hay: np.ndarray, img: np.ndarray, factors=(1, 2, 3, 4)) -> bool:
    """``img`` anywhere in ``hay``, at any of the nearest-neighbour enlargements figures use."""
    return any(contains(hay, np.repeat(np.repeat(img, f, 0), f, 1)) for f in factors)


def page_images(page: str):
    return [read_png(base64.b64decode(b)) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def read_png(data: bytes) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def pairs_in(images, plain: np.ndarray, enc: np.ndarray):
    """(plain images shown, known pairs: a plain image shown and its ciphertext shown, anywhere)."""
    plain_shown = [i for i, x in enumerate(plain) if any(shown(h, x) for h in images)]
    pairs = [i for i in plain_shown if any(shown(h, as_display(enc[i], plain[i].shape)) for h in images)]
    return plain_shown, pairs


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """Distinct 32x32 images in a class tree, the owner's key, a block-pixel run whose config names the key
    file, a plain run on the same images, and the same images encrypted (the server's view) with its run."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    tree = root / "photos"
    for i, img in enumerate(images):
        (tree / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        write_image(tree / f"c{i % 2}" / f"{i:02d}.png", img)
    key_path = root / "owner.key"
    key = Key.generate()
    key.save(key_path)
    assert main(["encrypt", str(tree), str(root / "enc"), "--key", str(key_path), "--scheme", "block-pixel",
                 "--block-size", "4"]) == 0

    def fake_run(name, data, scheme):
        run = root / "runs" / name
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,2.0,0.5\n")
        keyed = scheme != "plain"
        (run / "summary.json").write_text(json.dumps({"model": "vit_pico_patch4_32", "scheme": scheme,
                                                      "block_size": 4 if keyed else None,
                                                      "key_fingerprint": key.fingerprint if keyed else None}))
        (run / "config.yaml").write_text(f"data: {data}\nscheme: {scheme if data == tree and keyed else 'null'}\n"
                                         + (f"key: {key_path}\nblock_size: 4\n" if data == tree and keyed else ""))
        return run

    runs = [fake_run("bp", tree, "block-pixel"), fake_run("plain", tree, "plain"),
            fake_run("server", root / "enc", "block-pixel")]
    from patchcrypt.data import load_dataset

    ds = load_dataset(tree, cache=False)
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(ds.images)
    return root, runs, key_path, ds.images, enc


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "--key"])
def test_report_shows_no_plain_image_with_its_ciphertext_under_the_runs_key(owner, tmp_path, with_key):
    root, runs, key_path, plain, enc = owner
    out = tmp_path / "report.html"
    args = ["report", *map(str, runs), "-o", str(out)] + (["--key", str(key_path)] if with_key else [])
    assert main(args) == 0
    page = out.read_text()
    images = page_images(page)
    plain_shown, pairs = pairs_in(images, plain, enc)
    assert plain_shown, "the check is vacuous: no plain image found on the page"
    assert pairs == [], f"plain images {pairs} appear with their ciphertext under the run's key"
    text = html.unescape(page)
    if with_key:  # ciphertext only under the run's key, and it is there
        assert "ciphertext only" in text and Key.load(key_path).fingerprint in text
        assert sum(any(shown(h, e) for h in images) for e in enc) >= 4
    else:
        assert "throwaway key" in text


def test_demo_contact_sheet_is_not_under_the_owners_key(tmp_path):
    """An owner key already in the demo folder is not the one the sheet (plain beside encrypted) uses."""
    from patchcrypt.cli.demo import DEMO_SCHEMES
    from patchcrypt.ciphers import get_scheme
    from patchcrypt.data import sample_photos

    out = tmp_path / "demo"
    out.mkdir()
    key = Key.generate()
    key.save(out / "owner.key")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    sheet = read_image(out / "contact_sheet.png")
    photo = sample_photos(224)[0]

    def cell(img):  # as the sheet draws a 224x224 image: 160 px high, nearest neighbour
        return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((160, 160), Image.NEAREST))

    assert contains(sheet, cell(photo)), "the check is vacuous: the plain photo is not on the sheet"
    for name in DEMO_SCHEMES:
        if name == "plain":
            continue
        spec = get_scheme(name)
        e = create_cipher(name, key, block_size=spec.block_sizes[0] if spec.block_sizes else 16).encrypt(photo[None])[0]
        assert not contains(sheet, cell(e if e.shape[2] == 3 else np.repeat(e, 3, 2))), name
    page = html.unescape((out / "report.html").read_text())
    assert "throwaway key" in page


def test_attack_figure_with_the_users_key_has_no_plain_column(owner, tmp_path):
    root, runs, key_path, plain, enc = owner
    out = tmp_path / "attack"
    args = ["attack", "fr", "--scheme", "block-pixel", "--block-size", "4", "--data", str(root / "photos"),
            "--key", str(key_path), "--n-images", "6"]
    assert main(args + ["--out", str(tmp_path / "metrics_only")]) == 0      # under the user's key: no figure
    assert [p.name for p in (tmp_path / "metrics_only").iterdir()] == ["metrics.json"]
    assert main(args + ["--out", str(out), "--figures"]) == 0               # asked for: still no plain column
    grid = read_image(out / "candidates.png")
    assert sum(shown(grid, e) for e in enc) >= 1, "the check is vacuous: no ciphertext found in the figure"
    assert not any(shown(grid, x) for x in plain)
    assert "no plain column" in json.loads((out / "metrics.json").read_text())["figure"]
