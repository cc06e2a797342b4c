"""A ``train/`` + ``val/`` tree written as WebDataset shards keeps its splits: ``val/`` shards are the test
split, never mixed into training."""

from __future__ import annotations


import numpy as np

from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.train import TrainConfig, train


def test_val_shards_are_the_test_split(tmp_path, key):
    src = tmp_path / "photos"
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("ants", "bees"):
            (src / split / cls).mkdir(parents=True)
            for i in range(n):
                write_image(src / split / cls / f"{i}.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    enc = tmp_path / "enc"
    assert main(["encrypt", str(src), str(enc), "--key", str(key), "--scheme", "block-pixel", "--block-size", "4",
                 "--resize", "32", "--shard-size", "4"]) == 0
    assert sorted(p.name for p in enc.iterdir() if p.is_dir()) == ["train", "val"]
    s = train(TrainConfig(data=str(enc), model="vit_pico_patch4_32", out=str(tmp_path / "run"), epochs=1,
                          batch_size=8, model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2}),
              show_progress=False)
    assert s["n_train"] == 12 and s["n_test"] == 6 and s["test_split"] == "val/"
