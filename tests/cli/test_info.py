import json
import math

from patchcrypt.cli import main


def test_schemes_lists_every_scheme_with_key_space(capsys):
    assert main(["schemes", "--image-size", "224", "--block-size", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["scheme"]: r for r in out["schemes"]}
    assert {"plain", "etc", "etc-gray", "block-pixel", "le", "ele", "pe"} <= set(rows)
    assert rows["etc"]["steps"] == ["BS", "RF", "NP", "CS"]
    # etc at 224/16: 196 blocks, 196! block orders x (8 * 2 * 6)^196 per-block states
    n = 196
    expected = math.lgamma(n + 1) / math.log(10) + n * math.log10(96)
    assert abs(rows["etc"]["log10_transformations"] - expected) < 0.1
    assert rows["etc"]["log10_key_space"] == 77.06  # capped by the 256-bit key
    assert rows["plain"]["log10_key_space"] == 0 and rows["plain"]["log10_transformations"] == 0
    assert rows["etc-gray"]["block_size"] == 8


def test_schemes_table_and_steps(capsys):
    assert main(["schemes", "--image-size", "32", "--block-size", "4", "--steps"]) == 0
    out = capsys.readouterr().out
    assert "step-bs" in out and "block-pixel" in out and "log10 maps" in out and "log10 keys" in out
    assert "77.06" in out


def test_schemes_rejects_nonpositive(capsys):
    assert main(["schemes", "--block-size", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_schemes_show_what_many_images_under_one_key_give(capsys):
    from patchcrypt.ciphers import list_ciphers
    from patchcrypt.security import EXPOSURES

    # every scheme of the literature carries its measured exposure; nothing shared-key is called safe
    assert set(list_ciphers()) - {"plain"} <= set(EXPOSURES)
    assert main(["schemes", "--image-size", "32", "--block-size", "4", "--json"]) == 0
    rows = {r["scheme"]: r for r in json.loads(capsys.readouterr().out)["schemes"]}
    assert "every image read from 30 ciphertexts" in rows["block-pixel"]["many_images_one_key"]
    assert rows["plain"]["many_images_one_key"] == "nothing hidden"
    assert main(["schemes", "--image-size", "32", "--block-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "one key, many images:" in out and "Per-image keys" in out


def test_models_lists_the_registry(capsys):
    from patchcrypt.models import list_models

    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == list_models()
    assert main(["models", "vit_*", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert names and all(n.startswith("vit_") for n in names)
    assert main(["models", "nothing-like-this*"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
