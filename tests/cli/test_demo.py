import json

from PIL import Image

from patchcrypt.cli import main


def test_demo_cipher_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {r["scheme"]: r for r in json.loads((out / "ciphers.json").read_text())["rows"]}
    assert set(rows) == {"plain", "etc", "etc-gray", "block-pixel", "le", "ele", "pe"}
    assert all(rows[s]["exact_round_trip"] for s in rows if s != "etc-gray")
    # EtC survives JPEG: decrypted etc within 0.5 dB of plain JPEG, at about the same size
    assert rows["etc"]["psnr_after_jpeg_db"] > rows["plain"]["psnr_after_jpeg_db"] - 0.5
    assert rows["etc"]["bpp_q90"] < 1.1 * rows["plain"]["bpp_q90"]
    # the transformation count can exceed what a 256-bit key selects; the key space cannot
    assert rows["ele"]["log10_transformations"] > 77.06 and rows["ele"]["log10_key_space"] == 77.06
    assert "log10 maps" in text and "log10 keys" in text
    assert "many images under one key" in text and "every image read from 30 ciphertexts" in text
    # pixel-level schemes do not
    assert rows["pe"]["psnr_after_jpeg_db"] < rows["plain"]["psnr_after_jpeg_db"] - 10
    with Image.open(out / "contact_sheet.png") as im:
        assert im.width > 400 and im.height > 7 * 100
    assert "fingerprint" in text and "contact sheet" in text
    page = (out / "report.html").read_text()
    assert "Every scheme on real photos" in page and "data:image/png;base64," in page
    assert "report.html" in text
