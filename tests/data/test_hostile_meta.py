"""Hostile shard metadata: what a shard or its manifest says is bounded before anything is allocated from it.

The number of classes (one model output each) is bounded before a model is built; a sample's ``.json`` keeps
only its path, so many large members cost no more memory than small ones; a member name of any length, or
JSON nested past the parser's depth, is one line naming the shard. Each: exit 2, one line, no traceback.
"""

import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import encode_png, write_image
from patchcrypt.errors import PatchcryptError


def one_error(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), (code, err)
    return err[0]


def write_shard(path: Path, n: int = 4, json_of=lambda i: {"path": f"c/{i}.png"}, name_of=lambda i: f"{i:04d}",
                fmt=tarfile.USTAR_FORMAT) -> Path:
    """A plain WebDataset shard of ``n`` 16x16 samples, labels alternating 0/1."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i in range(n):
            members = {"png": encode_png(np.full((16, 16, 3), 30 * i % 256, np.uint8)), "cls": str(i % 2).encode(),
                       "json": (json_of(i) if isinstance(json_of(i), bytes) else json.dumps(json_of(i)).encode())}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{name_of(i)}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def test_a_manifest_naming_too_many_classes_is_refused_before_a_model_is_built(tmp_path, key_file, capsys):
    """A manifest may list any number of class names; each is a model output (200,001 of them: a head of
    millions of weights, and a MemoryError for a larger model). Bounded at 100,000, as a checkpoint's are."""
    plain = tmp_path / "plain"
    rng = np.random.default_rng(5)
    for cls in ("a", "b"):
        (plain / cls).mkdir(parents=True)
        for i in range(4):
            write_image(plain / cls / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    enc = tmp_path / "enc"
    assert main(["encrypt", str(plain), str(enc), "--key", str(key_file), "--scheme", "block-pixel",
                 "--block-size", "4", "--shard-size", "100"]) == 0
    manifest = json.loads((enc / "patchcrypt.json").read_text())
    manifest["classes"] = manifest["classes"] + [f"x{i}" for i in range(200_000)]
    (enc / "patchcrypt.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    err = one_error(capsys, ["train", "--data", enc, "--out", tmp_path / "run", "--epochs", "1", "--workers", "0"])
    assert "200,002 classes" in err and "100,000" in err and not (tmp_path / "run").exists(), err


def test_the_class_count_is_bounded_before_the_model_is_allocated(tmp_path):
    """However the classes were found (class folders of a tree, labels), the model is never built with more
    outputs than a checkpoint may have."""
    from patchcrypt.data import ImageSet
    from patchcrypt.record import EncryptionRecord
    from patchcrypt.train import TrainConfig, build_model
    from patchcrypt.train.dist import Dist

    classes = [str(i) for i in range(100_001)]
    images = ImageSet(np.zeros((2, 16, 16, 3), np.uint8), np.array([0, 1]), classes, "many")
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"))
    with pytest.raises(PatchcryptError, match="100,001 classes, more than the 100,000"):
        build_model(cfg, EncryptionRecord(scheme="plain"), False, images, None, Dist())


def test_large_json_members_are_not_kept_in_memory(tmp_path):
    """Each ``.json`` may be 64 kB; only its path is kept, so 300 of them hold kilobytes, not 19 MB."""
    from patchcrypt.data.shards import index_shard

    pad = "x" * 60_000
    shard = write_shard(tmp_path / "s.tar", n=300, json_of=lambda i: {"path": f"c/{i}.png", "note": pad})
    tracemalloc.start()
    try:
        samples = index_shard(shard)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(samples) == 300 and samples[7]["meta"] == {"path": "c/7.png"}
    assert held < 4 << 20, f"{held:,} bytes held after indexing"


@pytest.mark.parametrize("case", ["nested json", "long name", "long path"])
def test_hostile_members_are_one_line_naming_the_shard(tmp_path, capsys, case):
    src = tmp_path / "src"
    if case == "nested json":
        write_shard(src / "shard-000000.tar", json_of=lambda i: b"[" * 60_000 if i == 2 else b'{"path": "p.png"}')
    elif case == "long name":
        write_shard(src / "shard-000000.tar", name_of=lambda i: "k" * (5000 if i == 2 else 4),
                    fmt=tarfile.PAX_FORMAT)
    else:
        write_shard(src / "shard-000000.tar", json_of=lambda i: {"path": "p" * 5000 if i == 2 else "p.png"})
    err = one_error(capsys, ["train", "--data", src, "--out", tmp_path / "run", "--epochs", "1", "--workers", "0"])
    assert "shard-000000.tar" in err and not (tmp_path / "run").exists(), err
