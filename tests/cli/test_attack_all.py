"""``patchcrypt attack list`` / ``attack all``: every attack against one scheme, a user's own included."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchcrypt.attacks import list_attacks
from patchcrypt.cli import main
from patchcrypt.data import sample_photos

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_scheme.py"


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Six real photos at 32×32 as PNGs in one class folder (3 attacked, 3 the attacker's own)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "photos").mkdir()
    for i, im in enumerate(sample_photos(32)):
        Image.fromarray(im).save(root / "photos" / f"{i}.png")
    return root


def test_attack_list_shows_threat_models(capsys):
    assert main(["attack", "list"]) == 0
    out = capsys.readouterr().out
    assert "threat model" in out and "known plaintext" in out and "ciphertext-only, many images" in out
    assert main(["attack", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["attacks"]
    assert [r["attack"] for r in rows] == list_attacks() and all(r["threat"] for r in rows)


def test_attack_all_rates_a_user_scheme(photo_dir, tmp_path, capsys):
    out = tmp_path / "all"
    code = main(["attack", "all", "--scheme", f"{EXAMPLE}:MyScheme", "--data", str(photo_dir), "--n-images", "3",
                 "--epochs", "1", "--out", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scheme"] == "my-scheme" and not report["registered"] and report["block_size"] == 4
    assert report["facts"]["decrypt_exact"] is True
    rows = {r["attack"]: r for r in report["attacks"]}
    assert list(rows) == list_attacks()                      # every registered attack has a row
    assert rows["kpa"]["threat"] == "known plaintext" and rows["kpa"]["applies"]
    assert not rows["jigsaw"]["applies"] and "BF" in rows["jigsaw"]["reason"]
    assert rows["fr"]["applies"] and 0 <= rows["fr"]["metrics"]["ssim"] <= 1
    # the attacks that once said "needs a registered scheme" run on a user's class
    assert rows["cpa"]["applies"] and rows["cpa"]["metrics"]["exact_images"] == 1.0
    assert rows["many"]["applies"] and rows["many"]["metrics"]["key_map_fraction"] is None
    assert not rows["weights"]["applies"] and "no keyed model" in rows["weights"]["reason"]
    assert (out / "metrics.json").is_file() and (out / "candidates_cpa.png").is_file()


def test_attack_all_table_for_a_registered_scheme(photo_dir, capsys):
    assert main(["attack", "all", "--scheme", "etc-gray", "--block-size", "8", "--data", str(photo_dir),
                 "--n-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "attacks on etc-gray" in out and "threat model" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert "n/a: the colour conversion" in lines["kpa"] and "n/a:" in lines["gan"] and "Nc" in lines["jigsaw"]


def test_attack_all_errors_are_one_line(photo_dir, tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\nclass F:\n    block_size = 4\n    def __init__(self, key, block_size): pass\n"
                   "    def encrypt(self, x): return x.astype(np.float64)\n"
                   "class Raises(F):\n    def encrypt(self, x): raise ValueError('no')\n"
                   "class Short(F):\n    def encrypt(self, x): return x[:1]\n"
                   "class Flat(F):\n    def encrypt(self, x): return x.reshape(len(x), -1)\n"
                   "class Half(F):\n    def encrypt(self, x): return x[:, ::2, ::2]\n"
                   "class Noisy(F):\n    def encrypt(self, x):\n"
                   "        return x ^ np.random.default_rng().integers(0, 2, x.shape, dtype=np.uint8)\n")
    for args, match in ((["--scheme", "no_such_module_xyz:S"], "module not found"),
                        (["--scheme", f"{EXAMPLE}:Nope"], "no class 'Nope'"),
                        (["--scheme", f"{bad}:F"], "expected uint8"),
                        (["--scheme", f"{bad}:Raises"], "Raises.encrypt failed"),
                        (["--scheme", f"{bad}:Short"], "for 2 images"),
                        (["--scheme", f"{bad}:Flat"], "expected (N, H, W, C)"),
                        (["--scheme", f"{bad}:Half"], "declares composite = True"),
                        (["--scheme", f"{bad}:Noisy"], "not deterministic"),
                        ([], "--scheme is required"),
                        (["--scheme", "rot13"], "unknown scheme")):
        code = main(["attack", "all", *args, "--data", str(photo_dir), "--n-images", "2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error:") and match in err[0], err


def test_a_real_key_saves_metrics_only_unless_figures_are_asked_for(photo_dir, tmp_path, key_file, capsys):
    """Under the user's key the reconstructions are the plain images whenever an attack wins: --out keeps
    them off disk unless --figures asks for them, and then stderr says what they hand out."""
    key = key_file
    plain_out, fig_out = tmp_path / "metrics_only", tmp_path / "with_figures"
    base = ["attack", "cpa", "--scheme", "block-pixel", "--block-size", "4", "--data", str(photo_dir),
            "--n-images", "2", "--key", str(key)]
    assert main(base + ["--out", str(plain_out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in plain_out.iterdir()) == ["metrics.json"] and "warning" not in captured.err
    note = json.loads((plain_out / "metrics.json").read_text())["figure"]
    assert note.startswith("none") and "--figures" in note
    assert main(base + ["--out", str(fig_out), "--figures"]) == 0
    err = capsys.readouterr().err
    assert (fig_out / "candidates.png").is_file() and "warning: --figures under your key" in err
    with Image.open(fig_out / "candidates.png") as im:     # no plain column: encrypted + 1 candidate per row
        assert im.width < 3 * 96


VALUES = Path(__file__).resolve().parents[2] / "examples" / "value_schemes.py"


def test_verdict_comes_first_and_names_what_broke_it(photo_dir, capsys):
    """A block-local class outside the step vocabulary, declaring nothing: broken by the chosen images."""
    assert main(["attack", "all", "--scheme", f"{VALUES}:XorBlocks", "--data", str(photo_dir), "--n-images", "3",
                 "--epochs", "1", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    v = report["verdict"]
    assert v["broken"] and v["readable"] >= 0.5 and v["line"].startswith("BROKEN by ")
    assert "cpa" in v["broken_by"] and "kpa" in v["ran"]
    rows = {r["attack"]: r for r in report["attacks"]}
    assert rows["cpa"]["metrics"]["exact_images"] == 1.0 and rows["cpa"]["metrics"]["queries"] <= 260
    assert rows["jigsaw"]["applies"]                          # undeclared: every block state tried
    assert all("readable" in r["metrics"] and "baselines" in r["metrics"] for r in rows.values() if r["applies"])
    assert main(["attack", "all", "--scheme", "etc", "--block-size", "4", "--per-image", "--data", str(photo_dir),
                 "--n-images", "3", "--epochs", "1", "--quiet", "--pairs", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("NOT BROKEN by the ") and first.endswith("this is not evidence of strength")


def test_photos_of_mixed_sizes_and_an_encrypted_tree_as_stored(tmp_path, key_file, capsys):
    """--img-size brings a train/ + val/ folder of mixed sizes to one geometry; an encrypted tree is attacked
    as stored (JPEG ciphertexts, not re-encrypted), and only with the owner's key."""
    rng = np.random.default_rng(0)
    photos = sample_photos(64)
    for split, sizes in (("train", [(48, 64), (64, 80)]), ("val", [(70, 52), (64, 64), (40, 60)])):
        (tmp_path / "mixed" / split / "c").mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            im = Image.fromarray(photos[i % len(photos)]).resize((w, h))
            im.save(tmp_path / "mixed" / split / "c" / f"{i}.png")
    mixed = tmp_path / "mixed"
    assert main(["attack", "fr", "--scheme", "etc", "--block-size", "4", "--data", str(mixed), "--json"]) == 2
    assert "--img-size" in capsys.readouterr().err
    assert main(["attack", "fr", "--scheme", "etc", "--block-size", "4", "--data", str(mixed), "--img-size", "32",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_images"] == 3 and "from mixed/val" in captured.err
    plain = tmp_path / "plain" / "c"
    plain.mkdir(parents=True)
    for i, im in enumerate(sample_photos(32)[:4]):
        Image.fromarray(np.clip(im.astype(int) + rng.integers(-3, 4, im.shape), 0, 255).astype(np.uint8)).save(
            plain / f"{i}.png")
    enc = tmp_path / "enc"
    assert main(["encrypt", str(tmp_path / "plain"), str(enc), "--key", str(key_file), "--scheme", "etc",
                 "--block-size", "16", "--format", "jpeg", "--quality", "75", "--per-image"]) == 0
    capsys.readouterr()
    assert main(["attack", "fr", "--data", str(enc), "--json"]) == 2
    assert "--key" in capsys.readouterr().err
    assert main(["attack", "jigsaw", "--data", str(enc), "--key", str(key_file), "--json"]) == 0
    captured = capsys.readouterr()
    assert "as stored" in captured.err and json.loads(captured.out)["n_images"] == 4
    from patchcrypt import Key
    from patchcrypt.attacks.images import held_target, load_held

    key = Key.load(key_file)
    record, plain_imgs, stored, nonces = load_held(enc, 10, key)
    assert record.per_image and len(nonces) == 4
    target = held_target(record, key, plain_imgs, stored)
    assert np.array_equal(target.encrypt(plain_imgs[::-1]), stored[::-1])          # as stored, in any order
    fresh = target.cipher.encrypt(plain_imgs, target.cipher.new_nonces(4))
    assert not np.array_equal(fresh, stored)                                       # a re-encryption differs


def test_cifar_python_batches_attack_the_test_batch_with_the_training_batches_as_own(tmp_path, capsys):
    import pickle

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    photos = sample_photos(32)
    for name, imgs in (("test_batch", photos[:3]), ("data_batch_1", photos[3:])):
        with open(d / name, "wb") as f:
            pickle.dump({b"data": imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1),
                         b"labels": [0] * len(imgs)}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a"]}, f)
    assert main(["attack", "itn", "--scheme", "block-pixel", "--block-size", "4", "--data", str(tmp_path),
                 "--epochs", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_images"] == 3 and "3 victims" in captured.err
    assert "own images: 3 from" in captured.err              # the training batches, not the attacked ones
