"""Known plaintext on etc: block matching pins the key from one pair (the value solver needs several)."""

import json

from patchcrypt import Key
from patchcrypt.attacks import run_attack
from patchcrypt.attacks.kpa import block_matching, kpa_attack
from patchcrypt.ciphers import create_cipher, get_scheme
from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.data import sample_photos

KEY = Key.from_bytes(bytes(range(32)))


def test_block_matching_pins_etc_from_one_pair():
    photos = sample_photos(64)
    cipher = create_cipher("etc", KEY, block_size=8)
    known, test = photos[:1], photos[1:]
    new = kpa_attack(known, cipher.encrypt(known), test, cipher.encrypt(test), "etc", 8)
    old = kpa_attack(known, cipher.encrypt(known), test, cipher.encrypt(test), "etc", 8, solver="generic")
    assert new.extra["solver"] == "blocks" and old.extra["solver"] == "generic"
    assert new.extra["determined_fraction"] > 0.9 > old.extra["determined_fraction"]
    assert new.metrics()["ssim"] > 0.95
    # a second pair resolves the blocks that were symmetric or repeated in the first
    two = kpa_attack(photos[:2], cipher.encrypt(photos[:2]), photos[2:], cipher.encrypt(photos[2:]), "etc", 8)
    assert two.extra["determined_fraction"] >= new.extra["determined_fraction"]
    assert two.metrics()["exact_images"] == 1.0


def test_block_matching_applies_by_steps():
    applies = lambda name: block_matching(get_scheme(name))  # noqa: E731
    assert applies("etc") and applies("step-rf") and applies("step-np")
    assert not applies("block-pixel") and not applies("ele") and not applies("etc-gray") and not applies("pe")


def test_uniform_blocks_stay_ambiguous_but_decrypt():
    """Four identical flat blocks fit every source and rotation among them: their positions are not counted
    as recovered, but a one-to-one choice of sources still decrypts the pair itself."""
    img = sample_photos(32)[:1].copy()
    img[0, :8, :8] = 128
    cipher = create_cipher("etc", KEY, block_size=4)
    res = kpa_attack(img, cipher.encrypt(img), img, cipher.encrypt(img), "etc", 4)
    assert res.extra["determined_fraction"] < 1.0
    assert res.metrics()["exact_images"] == 1.0          # the pair itself always decrypts


def test_cli_kpa_etc_one_pair(tmp_path, capsys):
    for i, photo in enumerate(sample_photos(32)):
        d = tmp_path / "data" / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / f"{i}.png", photo)
    code = main(["attack", "kpa", "--scheme", "etc", "--block-size", "4", "--data", str(tmp_path / "data"),
                 "--pairs", "1", "--n-images", "3", "--json"])
    assert code == 0
    m = json.loads(capsys.readouterr().out)
    assert m["solver"] == "blocks" and m["key_map_fraction"] > 0.9 and m["determined_fraction"] > 0.9


def test_run_attack_kpa_uses_blocks_for_etc():
    photos = sample_photos(32)
    res = run_attack("kpa", "etc", 4, photos[3:], train_images=photos[:3], key=KEY, pairs=1)
    assert res.extra["solver"] == "blocks" and res.extra["key_map_fraction"] > 0.9
