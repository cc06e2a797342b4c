"""A user's own folder of photos of mixed sizes, end to end: one resize rule for encrypt and training, and the
small surprises of issue 31 (a run's config.yaml for classify, the --n-images cap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from patchcrypt.cli.serve import _client_config
from patchcrypt.codec import read_image, write_image
from patchcrypt.data.resize import RESIZE_RULE, centre_crop_resize, fit_image

from cli_helpers import encrypt_args, one_line_error, run

SIZES = ((40, 56), (64, 48), (36, 60))


def photos(root: Path, n: int = 3) -> Path:
    """``root/{train,val}/{ants,bees}/*.png`` of mixed sizes (smooth gradients, so a squash differs from a crop)."""
    rng = np.random.default_rng(5)
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                h, w = SIZES[i % len(SIZES)]
                yy, xx = np.mgrid[0:h, 0:w]
                img = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1) + rng.integers(0, 20, (h, w, 3))
                write_image(root / split / cls / f"{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    return root


def test_encrypt_resize_is_the_training_rule(tmp_path, capsys, key):
    src = photos(tmp_path / "photos")
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    code, _, err = run(capsys, *encrypt_args(src, enc, key, "--resize", "32"))
    assert code == 0, err
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    assert manifest["preprocessing"] == {"resize": [32, 32], "rule": RESIZE_RULE, "crop_pct": 0.875}
    assert run(capsys, "decrypt", enc, dec, "--key", key)[0] == 0
    for f in sorted(src.rglob("*.png")):
        plain = read_image(f)
        got = read_image(dec / f.relative_to(src))
        assert np.array_equal(got, centre_crop_resize(plain, 32)), f  # what train and evaluate feed the model


def test_fit_image_keeps_the_aspect_ratio():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # a white square in the middle of a black wide image
    out = fit_image(img, (32, 32))
    assert out.shape == (32, 32, 3) and out[16, 16, 0] == 255  # the centre crop keeps the square's shape
    assert fit_image(img, (40, 80)) is img
    assert fit_image(img, (16, 48)).shape == (16, 48, 3)


def test_classify_reads_a_run_trained_on_an_encrypted_folder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: enc\nmodel: vit_pico_patch4_32\nscheme: null\nblock_size: null\n"
                                         "img_size: null\nmodel_kwargs: {}\n")
    (run_dir / "summary.json").write_text(json.dumps({"scheme": "block-pixel", "block_size": 4, "img_size": 32}))
    assert _client_config(run_dir / "config.yaml") == {"scheme": "block-pixel", "block_size": 4, "image_size": 32}


def test_attack_on_an_encrypted_tree_says_when_n_images_is_capped(tmp_path, capsys, key):
    src = photos(tmp_path / "photos", n=2)
    enc = tmp_path / "enc"
    assert run(capsys, *encrypt_args(src, enc, key, "--resize", "32"))[0] == 0
    code, _, err = run(capsys, "attack", "fr", "--data", enc, "--key", key, "--n-images", "300")
    assert code == 0, err
    assert f"note: --n-images 300: {enc} holds 4 ciphertexts to attack; attacking them all" in err


def test_resize_that_is_not_a_size_is_one_line(tmp_path, capsys, key):
    src = photos(tmp_path / "photos", n=1)
    code, _, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key, "--resize", "big"))
    one_line_error(code, err, "--resize must look like HxW")


def test_every_bad_file_is_named_and_skip_bad_goes_on(tmp_path, capsys, key):
    src = photos(tmp_path / "photos", n=2)
    (src / "train" / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (src / "val" / "bees" / "empty.png").write_bytes(b"")
    code, _, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key, "--resize", "32"))
    one_line_error(code, err, "2 of 10 file(s) cannot be read (fix or remove them, or pass --skip-bad to go on)")
    assert "broken.jpg" in err and "empty.png" in err and not (tmp_path / "enc").exists()
    code, out, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key, "--resize", "32", "--skip-bad"))
    assert code == 0 and "encrypted 8 file(s)" in out, err
    warning = [line for line in err.splitlines() if "--skip-bad" in line]
    assert len(warning) == 1 and "broken.jpg" in warning[0] and "empty.png" in warning[0]
    manifest = json.loads((tmp_path / "enc" / "patchcrypt.json").read_text())
    assert manifest["file_count"] == len(manifest["files"]) == 8


def test_files_without_an_image_suffix_are_named(tmp_path, capsys, key):
    src = photos(tmp_path / "photos", n=1)
    (src / "train" / "ants" / "imageNotFound.gif").write_bytes(b"GIF89a")
    code, out, err = run(capsys, *encrypt_args(src, tmp_path / "enc", key, "--resize", "32"))
    assert code == 0 and "encrypted 4 file(s)" in out
    assert "1 file(s) without an image suffix" in err and "train/ants/imageNotFound.gif" in err
