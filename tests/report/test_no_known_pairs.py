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


def contains(hay: np.ndarray, needle: np.ndarray, r: int = -1) -> bool:
    """Whether ``needle`` (h, w, 3) occurs exactly, pixel for pixel, somewhere in ``hay`` (H, W, 3).
    ``r``: the needle's row to anchor the search on (default: its most distinctive row)."""
    h, w = needle.shape[:2]
    H, W = hay.shape[:2]
    if h > H or w > W:
        return False
    if r < 0:
        r = int(np.argmax([len(np.unique(row)) for row in needle]))
    anchor = np.ascontiguousarray(needle[r]).tobytes()
    buf = np.ascontiguousarray(hay).tobytes()
    pos = buf.find(anchor)
    while pos >= 0:
        if pos % 3 == 0:
            i, j = divmod(pos // 3, W)
            i -= r
            if 0 <= i <= H - h and j + w <= W and np.array_equal(hay[i:i + h, j:j + w], needle):
                return True
        pos = buf.find(anchor, pos + 1)
    return False


def shown(hay: np.ndarray, img: np.ndarray, factors=range(1, 9)) -> bool:
    """``img`` anywhere in ``hay``, at any integer nearest-neighbour enlargement up to 8."""
    img = img if img.shape[2] == 3 else np.repeat(img, 3, 2)
    r = int(np.argmax([len(np.unique(row)) for row in img]))
    return any(contains(hay, np.repeat(np.repeat(img, f, 0), f, 1), r * f) for f in factors)


def page_images(page: str):
    """Every embedded picture of the page, decoded, whatever its place in the layout."""
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


def smooth_images(n: int, size: int = 32, seed: int = 3) -> np.ndarray:
    """``n`` distinct photo-like images: a random 4x4 colour layout, enlarged, plus pixel noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.int16)
    big = np.repeat(np.repeat(base, size // 4, 1), size // 4, 2)
    return np.clip(big + rng.integers(-24, 25, big.shape), 0, 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))


def _tree(root, images, classes, per_class, first=0):
    """A class tree of ``per_class`` images of each class in ``classes``, taken from ``images`` in order."""
    for c in classes:
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for k in range(first, first + per_class):
            i = c * 5 + k
            write_image(root / f"c{c}" / f"{i:02d}.png", images[i])
    return root


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """50 distinct 32x32 images in 10 classes (``photos``), the same 10 classes encrypted with the owner's key
    (``enc``, the server's view), a plain baseline tree of 7 of the 10 classes (``photos7``) and a small
    tree of 2 images a class (``small``); a run on each (block-pixel, plain, server-side)."""
    root = tmp_path_factory.mktemp("pairs")
    images = smooth_images(50)
    trees = {"photos": _tree(root / "photos", images, range(10), 5),
             "photos7": _tree(root / "photos7", images, range(7), 5),
             "small": _tree(root / "small", images, range(10), 2)}
    key_path = root / "owner.key"
    key = Key.generate()
    key.save(key_path)
    assert main(["encrypt", str(trees["photos"]), str(root / "enc"), "--key", str(key_path), "--scheme",
                 "block-pixel", "--block-size", "4"]) == 0
    trees["enc"] = root / "enc"

    def fake_run(name, tree, scheme, names_key):
        run = root / "runs" / name
        run.mkdir(parents=True)
        (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,2.0,0.5\n")
        keyed = scheme != "plain"
        (run / "summary.json").write_text(json.dumps({"model": "vit_pico_patch4_32", "scheme": scheme,
                                                      "block_size": 4 if keyed else None,
                                                      "key_fingerprint": key.fingerprint if keyed else None}))
        (run / "config.yaml").write_text(f"data: {trees[tree]}\nscheme: {scheme if names_key else 'null'}\n"
                                         + (f"key: {key_path}\nblock_size: 4\n" if names_key else ""))
        return run

    runs = {"bp": fake_run("bp", "photos", "block-pixel", True), "plain": fake_run("plain", "photos", "plain", False),
            "plain7": fake_run("plain7", "photos7", "plain", False),
            "bp-small": fake_run("bp-small", "small", "block-pixel", True),
            "server": fake_run("server", "enc", "block-pixel", False)}
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(images)
    return root, runs, trees, key_path, images, enc


COMBINATIONS = [  # (runs, --key, what must be on the page so that the check is not vacuous)
    pytest.param(("server", "plain7"), False, {"plain"}, id="issue: server+plain7"),  # 50 encrypted, baseline on 35
    pytest.param(("server", "plain7"), True, {"plain", "cipher"}, id="server+plain7 --key"),
    pytest.param(("bp", "plain7", "server"), True, {"plain", "cipher"}, id="bp+plain7+server --key",
                 marks=pytest.mark.slow),
    pytest.param(("bp-small", "plain"), True, {"plain", "cipher"}, id="bp-small+plain --key", marks=pytest.mark.slow),
    pytest.param(("bp", "plain", "bp-small", "server"), False, {"plain"}, id="bp+plain+bp-small+server",
                 marks=pytest.mark.slow),
    pytest.param(("server",), False, set(), id="server alone", marks=pytest.mark.slow),  # plain content unknown
    pytest.param(("server", "bp-small"), True, {"cipher"}, id="server+bp-small --key", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("names,with_key,expect", COMBINATIONS)
def test_no_combination_of_inputs_pairs_a_plain_image_with_its_ciphertext(owner, tmp_path, names, with_key, expect):
    """Every picture of the page decoded; every source image and its real-key ciphertext searched for in
    each at integer scales: no image may appear both ways, whatever the inputs and their sizes."""
    root, runs, trees, key_path, plain, enc = owner
    out = tmp_path / "report.html"
    data = [a for t in trees.values() for a in ("--data", str(t))]
    args = ["report", *(str(runs[n]) for n in names), "-o", str(out), *data]
    assert main(args + (["--key", str(key_path)] if with_key else [])) == 0
    images = page_images(out.read_text())
    plain_shown, pairs = pairs_in(images, plain, enc)
    assert pairs == [], f"plain images {pairs} appear with their ciphertext under the owner's key"
    cipher_shown = [i for i, e in enumerate(enc) if any(shown(h, e) for h in images)]
    assert bool(plain_shown) == ("plain" in expect), plain_shown   # not vacuous, and nothing unexpected
    assert bool(cipher_shown) == ("cipher" in expect), cipher_shown


def _page(runs, trees, key_path, names, with_key, out):
    data = [a for t in trees.values() for a in ("--data", str(t))]
    args = ["report", *(str(runs[n]) for n in names), "-o", str(out), *data]
    assert main(args + (["--key", str(key_path)] if with_key else [])) == 0
    return page_images(out.read_text())


def test_two_pages_of_one_project_pair_no_image(owner, tmp_path):
    """Issue 27, item 1: a plain run's page and the server run's page without --key (what a combined page
    used to advise: "report this run on its own page") showed one image plain on the first and under the real
    key on the second. A keyless search over every (plain shown, ciphertext shown) candidate of the two pages
    must find no pair that decrypts under the owner's key."""
    root, runs, trees, key_path, plain, enc = owner
    a = _page(runs, trees, key_path, ("plain",), False, tmp_path / "a.html")
    b = _page(runs, trees, key_path, ("server",), False, tmp_path / "b.html")
    plain_shown, pairs = pairs_in(a + b, plain, enc)
    assert plain_shown, "the check is vacuous: page A shows no plain image"
    assert pairs == [], f"plain images {pairs} on page A have their ciphertext under the owner's key on page B"
    assert "--key" in html.unescape((tmp_path / "b.html").read_text())  # says how to get examples


@pytest.mark.slow
def test_no_pair_across_every_page_a_user_can_build(owner, tmp_path):
    """Every run alone, with and without --key, and the combined pages: all their pictures pooled and
    searched as one, since an attacker collects every page a project shares. (A run's examples do not depend
    on the other runs of its page, so single-run pages with and without the key cover every combination.)"""
    root, runs, trees, key_path, plain, enc = owner
    images = []
    for k, (names, with_key) in enumerate([((n,), w) for n in runs for w in (False, True)]
                                          + [(tuple(runs), False), (tuple(runs), True)]):
        images += _page(runs, trees, key_path, names, with_key, tmp_path / f"p{k}.html")
    plain_shown, pairs = pairs_in(images, plain, enc)
    cipher_shown = [i for i, e in enumerate(enc) if any(shown(h, e) for h in images)]
    assert plain_shown and cipher_shown, "the check is vacuous"
    assert pairs == [], f"plain images {pairs} appear with their ciphertext under the owner's key across pages"


def test_sides_survive_jpeg_and_resizing():
    """A re-encoded or resized copy of an image never lands on the other side of the split."""
    from patchcrypt.codec import jpeg_roundtrip, resize_image
    from patchcrypt.report.examples import content_side

    images = smooth_images(200, size=64, seed=5)
    sides = [content_side(x) for x in images]
    assert sides.count(-1) > 40 and sides.count(1) > 40
    for copy in (jpeg_roundtrip(images, 50, "420"), np.stack([resize_image(x, (32, 32)) for x in images]),
                 np.stack([resize_image(x, (96, 80)) for x in images])):
        for a, x in zip(sides, copy):
            assert a * content_side(x) != -1


def test_examples_need_the_data_folder_named(owner, tmp_path):
    """A run's config.yaml naming a folder does not let the report read it: no examples without --data."""
    root, runs, trees, key_path, plain, enc = owner
    out = tmp_path / "report.html"
    assert main(["report", str(runs["plain"]), str(runs["server"]), "-o", str(out)]) == 0
    page = out.read_text()
    assert not any(shown(h, x) for h in page_images(page) for x in plain)
    assert "report --data" in html.unescape(page)
    # naming another folder is not naming this one
    assert main(["report", str(runs["plain"]), "-o", str(out), "--data", str(trees["small"])]) == 0
    assert not any(shown(h, x) for h in page_images(out.read_text()) for x in plain)


@pytest.mark.slow
@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "--key"])
def test_report_says_which_key_its_examples_use(owner, tmp_path, with_key):
    root, runs, trees, key_path, plain, enc = owner
    out = tmp_path / "report.html"
    args = ["report", str(runs["bp"]), str(runs["plain"]), "-o", str(out), "--data", str(trees["photos"])]
    assert main(args + (["--key", str(key_path)] if with_key else [])) == 0
    text = html.unescape(out.read_text())
    if with_key:  # ciphertext only under the run's key, and it is there
        assert "ciphertext only" in text and Key.load(key_path).fingerprint in text
        assert sum(any(shown(h, e) for h in page_images(out.read_text())) for e in enc) >= 2
    else:
        assert "throwaway key" in text


@pytest.mark.slow
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


@pytest.mark.slow
def test_attack_figure_with_the_users_key_has_no_plain_column(owner, tmp_path):
    root, runs, trees, key_path, plain, enc = owner
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
