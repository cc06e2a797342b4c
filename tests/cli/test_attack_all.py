"""``patchcrypt attack list`` / ``attack all``: every attack against one scheme, a user's own included."""

import json
from pathlib import Path

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
