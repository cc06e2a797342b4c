"""A card from end to end on small generated trees (no ../shared): its schema, the user-class path with no
declared steps, the CLI's outputs and its one-line refusals."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, make_cifar_like_tree

from patchcrypt.bench import bench, check_card, get_preset, load_card
from patchcrypt.cli import main
from patchcrypt.errors import PatchcryptError

# a preset that runs in seconds: two rungs, two attacks, tiny training
TINY = dict(ladder_max=3, attacks=("fr", "many"), max_single=1, cpa_images=2, pairs_max=3, kpa_images=2, public=20,
            train_images=40, test_images=20, epochs=1, batch_size=20)
USER = f"{REPO / 'examples' / 'value_schemes.py'}:XorBlocks"


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    victims = make_cifar_like_tree(root / "victims", counts={"train": 4, "test": 2})
    public = make_cifar_like_tree(root / "public", counts={"train": 2, "test": 1}, size=48)
    return victims, public


@pytest.fixture(scope="module")
def user_card(domains, tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    victims, public = domains
    return out, bench(USER, [victims], get_preset("quick", **TINY), out, public=public)


def test_a_user_class_with_no_declared_steps_gets_a_full_card(user_card):
    out, card = user_card
    check_card(card)
    assert card["design"]["registered"] is False and card["design"]["block_size"] == 4
    assert set(card["verdict"]) >= {"broken", "line", "by", "threat"}
    assert card["verdict"]["broken"]          # 260 chosen images decrypt any block-local class
    assert card["q_to_break"] is not None and card["q_to_break"] > 0
    assert set(card["n_to_break"]) == {"victims"}
    acc = card["accuracy"]
    assert {"plain", "scheme", "cost", "model", "how"} <= set(acc)
    assert acc["cost"] == pytest.approx(acc["plain"] - acc["scheme"], abs=1e-3)
    assert json.loads((out / "card.json").read_text()) == json.loads(json.dumps(card))
    assert "Verdict" in (out / "card.md").read_text() and (out / "ladder.png").is_file()
    assert load_card(out)["format"] == "patchcrypt-card"


def test_every_rung_holds_every_ladder_attack_with_readable_and_ssim(user_card):
    d = user_card[1]["domains"][0]
    assert [r["n"] for r in d["ladder"]][0] == 1 and d["public"]["domain"] == "public"
    for rung in d["ladder"]:
        assert [a["attack"] for a in rung["attacks"]] == ["fr", "many"]
        for a in rung["attacks"]:
            assert not a["applies"] or ("readable" in a and "ssim_global" in a)
    n = d["n_to_break"]
    if n is None:
        assert d["largest_tried"] == d["ladder"][-1]["n"]
    else:
        assert d["ladder"][-1]["n"] == n and d["ladder"][-1]["broken"]


def test_no_key_is_written(user_card):
    out = user_card[0]
    for f in out.iterdir():
        assert b'"key"' not in f.read_bytes() or f.suffix == ".pt"


def test_a_rerun_resumes_from_the_saved_pieces(user_card, domains, monkeypatch):
    out, card = user_card
    victims, public = domains
    import patchcrypt.attacks as attacks

    monkeypatch.setattr(attacks, "run_all", lambda *a, **k: pytest.fail("a saved rung ran again"))
    again = bench(USER, [victims], get_preset("quick", **TINY), out, public=public)
    assert again["n_to_break"] == card["n_to_break"] and again["accuracy"]["cost"] == card["accuracy"]["cost"]


def test_the_schema_check_names_what_is_wrong(user_card):
    card = json.loads(json.dumps(user_card[1]))
    del card["verdict"]
    with pytest.raises(PatchcryptError, match="verdict"):
        check_card(card)
    card = json.loads(json.dumps(user_card[1]))
    card["domains"][0]["n_to_break"] = 777
    with pytest.raises(PatchcryptError, match="not a rung"):
        check_card(card)
    card = json.loads(json.dumps(user_card[1]))
    del card["accuracy"]["cost"]
    with pytest.raises(PatchcryptError, match="cost"):
        check_card(card)


def _one_line(capsys, *args) -> str:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), (code, err)
    return err[0]


def test_bad_input_is_one_line(capsys, domains, tmp_path):
    victims, public = domains
    base = ["bench", "--scheme", "block-pixel", "--block-size", "4", "--out", tmp_path / "o"]
    assert "preset" in _one_line(capsys, *base, "--data", victims, "--public", public, "--preset", "huge")
    assert "no such folder" in _one_line(capsys, *base, "--data", tmp_path / "nope", "--public", public)
    assert "another domain" in _one_line(capsys, *base, "--data", victims, "--public", victims)
    assert "--public" in _one_line(capsys, *base, "--data", victims)
    assert "unknown scheme" in _one_line(capsys, "bench", "--scheme", "nope", "--data", victims, "--public", public,
                                         "--out", tmp_path / "o")


def test_leaderboard_rows_come_from_cards_and_say_not_measured_otherwise(user_card, tmp_path):
    import shutil

    from patchcrypt.bench.leaderboard import (NOT_MEASURED, Design, markdown_rows, plot_frontier, rows_from_cards,
                                              write_leaderboard)

    out, card = user_card
    shutil.copytree(out, tmp_path / "cards" / "xor")
    rows = rows_from_cards([Design("xor", USER, 4), Design("nothing yet", "patch-shuffle", 4, per_image=True)],
                           tmp_path / "cards", tmp_path)
    assert rows[0]["card"] == "cards/xor/card.json" and rows[0]["accuracy_cost"] == card["accuracy"]["cost"]
    assert rows[0]["n_to_break"]["victims"]["n_to_break"] == card["n_to_break"]["victims"]
    assert rows[0]["q_to_break"] == card["q_to_break"]
    for k in ("n_to_break", "q_to_break", "pairs_to_break", "accuracy_cost", "verdict"):
        assert rows[1][k] == NOT_MEASURED
    assert rows[1]["card"] is None
    table = markdown_rows(rows)
    assert "not measured" in table and "| xor |" in table and "secure" not in table
    write_leaderboard(rows, tmp_path / "lb" / "leaderboard.json", {"kind": "leaderboard"})
    saved = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert {"scheme", "origin", "block_size", "per_image", "n_to_break", "q_to_break", "accuracy_cost",
            "card"} <= set(saved["rows"][0])
    assert plot_frontier(rows, tmp_path / "f.png", "victims").is_file()


def test_the_report_shows_the_leaderboard_as_a_section(user_card, tmp_path):
    import shutil

    from patchcrypt.bench.leaderboard import Design, markdown_rows, rows_from_cards, write_leaderboard
    from patchcrypt.report import build_report

    shutil.copytree(user_card[0], tmp_path / "cards" / "xor")
    rows = rows_from_cards([Design("xor", USER, 4)], tmp_path / "cards", tmp_path)
    meta = {"kind": "leaderboard", "markdown": markdown_rows(rows)}
    write_leaderboard(rows, tmp_path / "lb" / "leaderboard.json", meta)
    page = build_report([tmp_path / "lb" / "leaderboard.json"], tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert page["sections"] == 1 and "Leaderboard" in text and "xor" in text


def test_a_composite_design_gets_a_card_with_the_accuracy_not_measured(domains, tmp_path):
    """etc-gray's ciphertexts are one grayscale composite: attacked as usual, no accuracy figure invented."""
    victims, public = domains
    card = bench("etc-gray", [victims], get_preset("quick", **TINY), tmp_path, block_size=8, public=public)
    check_card(card)
    assert "composite" in card["accuracy"]["skipped"] and "cost" not in card["accuracy"]
    assert "not measured" in (tmp_path / "card.md").read_text()


def test_a_corrupt_saved_state_or_card_is_one_line(capsys, domains, tmp_path):
    victims, public = domains
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "partial.json").write_text("{" * 5000)
    assert "saved pieces" in _one_line(capsys, "bench", "--scheme", "block-pixel", "--block-size", "4", "--data",
                                       victims, "--public", public, "--out", tmp_path / "o", "--quiet")
    (tmp_path / "card.json").write_text("[1, 2")
    with pytest.raises(PatchcryptError, match="cannot read the card"):
        load_card(tmp_path)


def test_a_photo_card_joins_its_row_and_a_break_there_breaks_the_row(user_card, tmp_path):
    """cards/<design>/photos/card.json: its domain becomes a column (with its own M) and its verdict counts."""
    import shutil

    from patchcrypt.bench.leaderboard import Design, markdown_rows, n_text, plot_frontier, rows_from_cards

    out, card = user_card
    shutil.copytree(out, tmp_path / "cards" / "xor")
    photo = json.loads(json.dumps(card))
    photo["domains"][0].update(domain="photo-domain", img_size=224)
    photo["n_to_break"] = {"photo-domain": photo["domains"][0]["n_to_break"]}
    photo["verdict"] = {**photo["verdict"], "broken": True, "line": "BROKEN by jigsaw (photos)"}
    card["verdict"] = {**card["verdict"], "broken": False, "line": "not broken by these attacks"}
    (tmp_path / "cards" / "xor" / "card.json").write_text(json.dumps(card))
    (tmp_path / "cards" / "xor" / "photos").mkdir()
    (tmp_path / "cards" / "xor" / "photos" / "card.json").write_text(json.dumps(photo))
    row = rows_from_cards([Design("xor", USER, 4)], tmp_path / "cards", tmp_path)[0]
    assert set(row["n_to_break"]) == {"victims", "photo-domain"}
    assert row["n_to_break"]["photo-domain"]["block_size"] == 16 and row["n_to_break"]["victims"]["block_size"] == 4
    assert row["broken"] and row["verdict"] == "BROKEN by jigsaw (photos)"
    assert row["photo_card"] == "cards/xor/photos/card.json"
    table = markdown_rows([row])
    shown = n_text(row["n_to_break"]["victims"])
    assert "images-to-break, photo-domain (224 px)" in table and f"| {shown} (M = 16) |" in table
    assert "| BROKEN |" in table
    assert plot_frontier([row], tmp_path / "f.png", ["victims", "photo-domain"]).is_file()
    assert Design("pixels", "pe", 1).photo_m == 1 and Design("b", "etc", 8, photo_block_size=32).photo_m == 32


def test_a_photo_domain_of_mixed_sizes_is_rated_at_img_size_with_the_accuracy_not_invented(domains, tmp_path):
    """Photos of several sizes in train/ + val/ (a user's folder): the ladders run at --img-size; the accuracy
    part says why it is not measured rather than failing or guessing."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, sizes in (("train", [(40, 56), (48, 48)]), ("val", [(56, 40), (64, 48), (48, 64)])):
        for k, (h, w) in enumerate(sizes):
            (tmp_path / "photos" / split / "a").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "photos" / split / "a"
                                                                                  / f"{k}.png")
    card = bench("etc", [tmp_path / "photos"], get_preset("quick", **{**TINY, "img_size": 32}), tmp_path / "o",
                 block_size=8, public=domains[1])
    assert card["domains"][0]["img_size"] == 32 and "mixed sizes" in card["accuracy"]["skipped"]


def test_a_nested_design_trains_the_nested_invariant_model():
    from patchcrypt.bench.accuracy import recipe

    assert recipe("vit_pico_patch4_32", True, 8, "etc-nested")["scheme_kwargs"] == {"invariance": "etc-nested"}
    assert recipe("vit_pico_patch4_32", True, 4, "etc")["scheme_kwargs"] == {}


def test_a_refused_geometry_leaves_no_folder_behind(capsys, domains, tmp_path):
    victims, public = domains
    out = tmp_path / "never"
    assert "multiple of the block size" in _one_line(capsys, "bench", "--scheme", "etc", "--block-size", "5",
                                                     "--data", victims, "--public", public, "--out", out, "--quiet")
    assert not out.exists()
