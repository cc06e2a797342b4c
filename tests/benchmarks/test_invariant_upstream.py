"""``benchmarks/invariant_table.py --upstream DIR``: the fine-tuned block starts every design from the upstream
run of the same design (the plain ViT's position embedding resized, every head fresh), and a folder that is
not there, or lacks a run, is one line before anything is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from patchcrypt.models import create_model, save_checkpoint
from patchcrypt.models.pretrained import load_weights

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "invariant_table.py"
UPSTREAM_CLASSES = ["daisy", "dandelion", "rose", "sunflower", "tulip"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("invariant_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _cell(bench, label):
    return next(c for c in bench.CELLS if c[0] == label)


@pytest.fixture(scope="module")
def upstream(bench, tmp_path_factory) -> Path:
    """An upstream --out as the flowers runs left it: one last.pt per design, 5 classes, 32 px, patch 16."""
    root = tmp_path_factory.mktemp("flowers-out")
    for source in sorted({c[5] for c in bench.UPSTREAM_CELLS}):
        _, model_name, _, _, kw = _cell(bench, source)
        kw = {"num_classes": 5, "img_size": 32, "patch_size": 16, **kw}
        model = create_model(model_name, seed=3, **kw)
        save_checkpoint(root / "runs" / f"flowers__{bench.slug(source)}" / "last.pt", model, model_name=model_name,
                        model_kwargs=kw, classes=UPSTREAM_CLASSES)
    return root


def _refusal(bench, capsys, argv):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --upstream") and "Traceback" not in err
    return err


def test_a_missing_upstream_folder_is_one_line_and_writes_nothing(bench, tmp_path, capsys):
    out = tmp_path / "out"
    err = _refusal(bench, capsys, ["--dataset", "hymenoptera", "--preset", "cpu", "--out", str(out),
                                   "--upstream", str(tmp_path / "no-such-folder")])
    assert "no-such-folder: no such folder" in err
    assert not out.exists()


def test_an_upstream_without_a_run_names_it(bench, upstream, tmp_path, capsys):
    partial = tmp_path / "partial"
    (partial / "runs").mkdir(parents=True)
    plain = f"flowers__{bench.slug(bench.CELLS[0][0])}"
    (partial / "runs" / plain).mkdir()
    (partial / "runs" / plain / "last.pt").write_bytes((upstream / "runs" / plain / "last.pt").read_bytes())
    err = _refusal(bench, capsys, ["--dataset", "hymenoptera", "--out", str(tmp_path / "out"),
                                   "--upstream", str(partial)])
    assert "patch-shuffle/last.pt" in err and "train the flowers cell" in err
    # the cells --only keeps need only their own upstream runs
    assert bench.upstream_runs(partial, "hymenoptera", [bench.UPSTREAM_CELLS[0][0]]) == partial / "runs"
    assert "flowers" in _refusal(bench, capsys, ["--dataset", "flowers", "--out", str(tmp_path / "out"),
                                                 "--upstream", str(upstream)])
    assert not (tmp_path / "out").exists()


def test_every_fine_tuned_cell_is_the_design_of_its_upstream(bench):
    for label, model, scheme, per_image, kw, source, backbone in bench.UPSTREAM_CELLS:
        src = _cell(bench, source)   # a cell the flowers table trains
        assert "fine-tuned from flowers" in label
        if backbone:
            assert src[2] == "plain" and scheme == "etc-nested"
        else:
            assert (model, scheme, per_image, kw) == tuple(src[1:])


@pytest.mark.parametrize("index", range(5))
def test_upstream_weights_load_into_the_224_model_with_a_fresh_head(bench, upstream, tmp_path, index):
    label, model_name, _, _, kw, source, backbone = bench.UPSTREAM_CELLS[index]
    args = type("Args", (), {"out": tmp_path, "dataset": "hymenoptera"})()
    runs = bench.upstream_runs(upstream, "hymenoptera")
    path = bench.upstream_weights(args, runs, source, backbone)
    src = torch.load(runs / f"flowers__{bench.slug(source)}" / "last.pt", weights_only=False)["state_dict"]
    model = create_model(model_name, seed=0, num_classes=2, img_size=224, patch_size=16, **kw)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = load_weights(model, path, classes=["ants", "bees"])
    got = model.state_dict()
    assert info.head_replaced and torch.equal(got["head.weight"], fresh["head.weight"])
    assert torch.equal(got["blocks.0.attn.qkv.weight"], src["blocks.0.attn.qkv.weight"])
    assert torch.equal(got["cls_token"], src["cls_token"])
    if "pos_embed" in got:   # the plain ViT: 2 x 2 patches at 32 px, bicubically resized to 14 x 14
        assert got["pos_embed"].shape == (1, 197, src["pos_embed"].shape[-1])
        assert torch.equal(got["pos_embed"][:, 0], src["pos_embed"][:, 0])
        assert any("position embedding resized from 4 to 196" in n for n in info.notes)
    embed = [k for k in got if k.startswith("patch_embed.") and got[k].is_floating_point()]
    carried = [torch.equal(got[k], src[k]) for k in embed if k in src and src[k].shape == got[k].shape]
    if backbone:   # the plain patch embedding has no counterpart in the nested one: it starts fresh
        assert not any(k in src for k in embed) or not all(carried)
    else:
        assert carried and all(carried)
