"""``encrypt --format jpeg`` refuses schemes whose decryption JPEG ruins, unless ``--allow-lossy`` (issue 27,
item 11); the scheme facts that decide it agree with a measurement."""

import pytest

from patchcrypt.ciphers import get_scheme, list_ciphers
from patchcrypt.ciphers.nested import NESTED_STEPS
from patchcrypt.ciphers.lossy import LOSSY_PSNR, decrypt_psnr_after_jpeg

from cli_helpers import make_tree, one_line_error, run


@pytest.mark.parametrize("block_size,figure", [(16, "12.7 dB PSNR, plain JPEG to 35.0 dB"),
                                               (4, "30.0 dB PSNR, plain JPEG to 37.4 dB")])
def test_block_pixel_jpeg_is_refused_before_anything_is_written(tmp_path, key, capsys, block_size, figure):
    src = make_tree(tmp_path / "src", n=2)
    code, out, err = run(capsys, "encrypt", src, tmp_path / "enc", "--key", key, "--scheme", "block-pixel",
                         "--block-size", block_size, "--format", "jpeg")
    one_line_error(code, err, "scheme 'block-pixel' changes pixels inside blocks, which JPEG does not survive")
    assert figure in err and "benchmarks/lossy_formats.py" in err and "--allow-lossy" in err
    assert not (tmp_path / "enc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owner.key", "src"]


def test_allow_lossy_writes_them_and_etc_needs_no_leave(tmp_path, key, capsys):
    src = make_tree(tmp_path / "src", n=2)
    code, _, err = run(capsys, "encrypt", src, tmp_path / "bp", "--key", key, "--scheme", "block-pixel",
                       "--block-size", 16, "--format", "jpeg", "--allow-lossy")
    assert code == 0, err
    assert len(list((tmp_path / "bp").rglob("*.jpg"))) == 4
    code, _, err = run(capsys, "encrypt", src, tmp_path / "etc", "--key", key, "--scheme", "etc",
                       "--block-size", 16, "--format", "jpeg")
    assert code == 0, err


def test_the_facts_agree_with_a_measurement(real_photo):
    """Every scheme the facts call lossy-safe decrypts within 3 dB of plain JPEG; every other one is at least
    5 dB worse, and has its measured figures in LOSSY_PSNR for each subsampling."""
    from patchcrypt import Key

    images = [real_photo[:64, :64], real_photo[96:160, 96:160]]
    key = Key.from_bytes(bytes(range(32)))
    for name in list_ciphers(include_steps=True):
        spec = get_scheme(name)
        if spec.symbols & NESTED_STEPS:
            continue  # sub-blocks inside a patch: refused as not measured, never called safe (test_nested.py)
        dec, plain = decrypt_psnr_after_jpeg(name, images, key, spec.resolve_block_size(8, substitute=True),
                                             subsampling="444")
        if spec.survives_lossy:
            assert dec > plain - 3, (name, dec, plain)
            assert not any(k[0] == name for k in LOSSY_PSNR), name
        else:
            assert dec < plain - 5, (name, dec, plain)
            assert all((name, s) in LOSSY_PSNR for s in ("420", "422", "444")), name


def test_the_quoted_figures_are_what_the_benchmark_prints(repo_root, capsys):
    """LOSSY_PSNR is the output of benchmarks/lossy_formats.py (fixed photos, key and quality), not a guess."""
    import importlib.util
    import sys

    from patchcrypt import Key
    from patchcrypt.data.samples import sample_photos

    spec = importlib.util.spec_from_file_location("lossy_formats", repo_root / "benchmarks" / "lossy_formats.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    rows = bench.measure(["block-pixel", "le"], list(sample_photos(224)), Key.from_bytes(bench.KEY))
    for r in rows:
        assert LOSSY_PSNR[(r["scheme"], r["subsampling"])] == (r["psnr_decrypted"], r["psnr_plain_jpeg"]), r
