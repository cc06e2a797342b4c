"""The attack suite's result table: one rendering of a result, for ``attack all``, ``attack NAME`` and the
benchmark's table alike."""

from patchcrypt.attacks.registry import column_head, headline_of, report_table, result_cell, verdict

FR = {"readable": 0.25, "exact_images_global": 0.0, "ssim_global": 0.5, "ssim": 0.125, "n_images": 4}
KPA = {"readable": 1.0, "exact_images_global": 1.0, "ssim_global": 1.0, "key_map_fraction": 1.0, "n_images": 4,
       "pairs": 1}


def _report():
    rows = [{"attack": "fr", "threat": "ciphertext-only", "applies": True, "headline": headline_of("fr", FR),
             "metrics": FR, "sampled": "2 of 4 images (at most --max-single)"},
            {"attack": "jigsaw", "threat": "ciphertext-only", "applies": False, "reason": "no block edges"},
            {"attack": "kpa", "threat": "known plaintext", "applies": True, "headline": headline_of("kpa", KPA),
             "metrics": KPA}]
    return {"verdict": verdict(rows), "scheme": "block-pixel", "block_size": 4, "per_image": False, "n_images": 4,
            "attacks": rows}


def test_report_table_is_the_verdict_then_one_aligned_line_per_attack():
    assert report_table(_report()).splitlines() == [
        "BROKEN by kpa (known plaintext): 100% of 4 images readable, 1 known pairs",
        "attacks on block-pixel (M=4, 4 images, one key); 'up to global state': up to one whole-image "
        "rotation/flip, colour order and inversion",
        "attack  threat model     result",
        "fr      ciphertext-only  readable 0.250, exact up to global state 0.000, SSIM up to global state 0.500 "
        "(2 of 4 images (at most --max-single))",
        "jigsaw  ciphertext-only  n/a: no block edges",
        "kpa     known plaintext  readable 1.000, exact up to global state 1.000, SSIM up to global state 1.000, "
        "key map 1.000"]


def test_a_result_reads_the_same_in_every_table():
    assert result_cell("kpa", KPA) == report_table(_report()).splitlines()[-1].split("known plaintext  ")[1]
    assert result_cell("kpa") == "n/a" and result_cell("kpa", reason="why") == "n/a: why"
    assert column_head("kpa") == "kpa (known plaintext)" and column_head("someone-elses") == "someone-elses"
