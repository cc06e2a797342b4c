"""``patchcrypt report`` takes the folders ``patchcrypt attack ... --out`` writes: the verdict first, then a
part per attack (what it read, or why it could not run)."""

from __future__ import annotations

import json

import numpy as np

from patchcrypt.attacks.registry import verdict
from patchcrypt.cli import main
from patchcrypt.codec import write_image


def _report(capsys, tmp_path, *inputs):
    capsys.readouterr()
    code = main(["report", *map(str, inputs), "-o", str(tmp_path / "r.html")])
    out, err = capsys.readouterr()
    return code, err, (tmp_path / "r.html").read_text() if code == 0 else ""


def test_a_single_attack_folder_is_a_section(tmp_path, capsys):
    data = tmp_path / "imgs" / "a"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(data / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    out = tmp_path / "fr"
    assert main(["attack", "fr", "--scheme", "etc", "--block-size", "4", "--data", str(tmp_path / "imgs"),
                 "--n-images", "3", "--out", str(out), "--quiet"]) == 0
    code, err, page = _report(capsys, tmp_path, out)
    assert code == 0, err
    assert "<h2>Attacks on etc</h2>" in page and "NOT BROKEN by the 1 attacks that ran (fr)" in page
    assert "<h3>fr <span class=note>(ciphertext-only)</span></h3>" in page and "<td>3</td>" in page


def test_attack_all_folder_has_the_verdict_and_every_attack(tmp_path, capsys):
    rows = [{"attack": "many", "threat": "ciphertext-only", "applies": True,
             "metrics": {"n_images": 30, "readable": 1.0, "ssim_global": 0.99, "seconds": 12.0}},
            {"attack": "fr", "threat": "ciphertext-only", "applies": True,
             "metrics": {"n_images": 30, "readable": 0.0, "ssim_global": 0.1}},
            {"attack": "gan", "threat": "unpaired plain images", "applies": False, "reason": "needs torch training"}]
    out = tmp_path / "all"
    out.mkdir()
    report = {"verdict": verdict(rows), "scheme": "block-pixel", "block_size": 16, "n_images": 30, "attacks": rows}
    (out / "metrics.json").write_text(json.dumps(report))
    code, err, page = _report(capsys, tmp_path, out)
    assert code == 0, err
    assert "<h2>Attacks on block-pixel, M = 16</h2>" in page
    assert "BROKEN by many (ciphertext-only): 100% of 30 images readable" in page
    assert page.index("BROKEN by many") < page.index("<h3>many") < page.index("<h3>fr") < page.index("<h3>gan")
    assert "n/a: needs torch training" in page


def test_a_metrics_json_that_is_not_an_attack_is_still_refused(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text(json.dumps({"loss": 1.0}))
    code, err, _ = _report(capsys, tmp_path, other)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "an attack's --out folder" in err
