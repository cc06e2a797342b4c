"""Damaged or hostile checkpoints: one line and exit 2 from 'patchcrypt serve', never a raw error, and never
a model built from options the weights do not fit (img_size=32768 asked for 17 GB).

Every command names an unresolvable host: a checkpoint wrongly accepted then fails at binding (a message
not about the checkpoint) instead of serving forever."""

import io
import zipfile

import pytest
import torch

from patchcrypt.record import EncryptionRecord
from patchcrypt.cli import main
from patchcrypt.errors import PatchcryptError
from patchcrypt.models import build_model, create_model, load_checkpoint
from patchcrypt.models.checkpoint import FORMAT, VERSION, save_checkpoint


NO_SERVE = ["--host", "host.invalid", "--port", "0"]


class NotATensor:
    pass


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("vit_pico_patch4_32"), model_name="vit_pico_patch4_32", model_kwargs={},
                    classes=[str(i) for i in range(10)],
                    record=EncryptionRecord(scheme="block-pixel", block_size=4, key_fingerprint="0123456789abcdef"))
    return path


def _variant(good, tmp_path, **changes):
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt.update(changes)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    return path


def _nested_pickle_file(good, tmp_path, depth=200_000):
    """A torch zip file whose pickle is a list nested ``depth`` deep (built by hand: pickle itself recurses)."""
    pkl = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    src = zipfile.ZipFile(good)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(info, pkl if info.filename.endswith("/data.pkl") else src.read(info))
    path = tmp_path / "nested.pt"
    path.write_bytes(out.getvalue())
    return path


CASES = {
    "img_size=32768": dict(model_kwargs={"img_size": 32768}),
    "img_size=8192": dict(model_kwargs={"img_size": 8192}),  # within the bound, but the weights do not fit it
    "embed_dim huge": dict(model_kwargs={"embed_dim": 1 << 20}),
    "kwargs not a dict": dict(model_kwargs="img_size=32"),
    "kwarg of a wrong type": dict(model_kwargs={"img_size": "big"}),
    "kwarg a tensor": dict(model_kwargs={"img_size": torch.zeros(3)}),
    "unknown kwarg": dict(model_kwargs={"nonsense": 1}),
    "model name a list": dict(model=["vit"]),
    "unknown model": dict(model="no_such_model"),
    "classes not a list": dict(classes=5),
    "classes not names": dict(classes=[1, 2]),
    "fewer classes than outputs": dict(classes=["cat", "dog", "fox"]),   # was a 500 on every request
    "more classes than outputs": dict(classes=[str(i) for i in range(12)]),
    "state_dict a list": dict(state_dict=[1, 2]),
    "state_dict not tensors": dict(state_dict={"a": 1}),
    "state_dict of another model": dict(state_dict={"a": torch.zeros(2)}),
    "block_size text": dict(block_size="4"),
    "version": dict(version=99),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_checkpoints_are_one_line(good, tmp_path, capsys, case):
    path = _variant(good, tmp_path, **CASES[case])
    assert main(["serve", str(path), *NO_SERVE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and (str(path) in err[0] or "checkpoint" in err[0]), err
    assert "Error:" not in err[0], err  # no raw exception name


def test_unreadable_files_are_one_line(good, tmp_path, capsys):
    other = tmp_path / "objects.pt"
    torch.save({"format": FORMAT, "version": VERSION, "x": NotATensor()}, other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 1000)
    for path, says in ((other, "never unpickled"), (_nested_pickle_file(good, tmp_path), "checkpoint"),
                       (garbage, "not a readable checkpoint")):
        assert main(["serve", str(path), *NO_SERVE]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
        assert "Weights only load failed" not in err[0] and "Error" not in err[0], err


def test_the_bound_comes_before_any_allocation(good, tmp_path):
    """img_size=8192 passes the option bounds; the meta-device probe refuses it before a real model exists."""
    ckpt = load_checkpoint(_variant(good, tmp_path, model_kwargs={"img_size": 8192}))
    with pytest.raises(PatchcryptError, match="pos_embed.*ask for"):
        build_model(ckpt)
    assert build_model(load_checkpoint(good)).img_size == 32


def test_a_text_size_is_named_as_text_not_out_of_bounds(good, tmp_path, capsys):
    """Issue 27, item 8: ``img_size: "32"`` (text) read "out of bounds (1 to 8192)", which 32 is not."""
    path = _variant(good, tmp_path, model_kwargs={"img_size": "32"})
    assert main(["serve", str(path), *NO_SERVE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "img_size is not a number" in err[0] and "out of bounds" not in err[0], err
