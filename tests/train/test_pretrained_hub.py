"""``--pretrained`` with a timm / Hugging Face hub name: fetched through the hub client when there is one,
else one line with the exact commands. Nothing is downloaded here: the hub client is absent or a stand-in."""

from __future__ import annotations

import sys
import types

import pytest

from patchcrypt.cli import main
from patchcrypt.errors import PatchcryptError
from patchcrypt.train.hub import hub_repo, resolve_pretrained

NAME = "vit_tiny_patch16_224.augreg_in21k"


@pytest.mark.parametrize("name,repo", [(NAME, f"timm/{NAME}"), (f"timm/{NAME}", f"timm/{NAME}"),
                                       (f"hf-hub:org/{NAME}", f"org/{NAME}"), ("vit.pth", None),
                                       ("runs/upstream", None), ("runs/a/b", None)])
def test_which_names_are_hub_names(name, repo):
    assert hub_repo(name) == repo


def test_no_hub_client_says_how_to_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as when it is not installed
    (tmp_path / "train" / "a").mkdir(parents=True)
    capsys.readouterr()
    code = main(["train", "--data", str(tmp_path), "--model", "vit_tiny_patch16_224", "--pretrained", NAME,
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"huggingface-cli download timm/{NAME} model.safetensors --local-dir {NAME}" in err[0]
    assert f"--pretrained {NAME}/model.safetensors" in err[0] and "not installed" in err[0]


def test_hub_client_offline_is_one_line(monkeypatch):
    def download(repo_id, filename):
        raise OSError("offline mode is enabled\nsecond line")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=download))
    with pytest.raises(PatchcryptError, match=r"could not be fetched \(offline mode is enabled\); on a connected"):
        resolve_pretrained(NAME)


def test_hub_client_gives_the_cached_file(tmp_path, monkeypatch):
    calls = []

    def download(repo_id, filename):
        calls.append((repo_id, filename))
        return str(tmp_path / "model.safetensors")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=download))
    assert resolve_pretrained(NAME) == str(tmp_path / "model.safetensors")
    assert calls == [(f"timm/{NAME}", "model.safetensors")]
    existing = tmp_path / NAME
    existing.mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_pretrained(NAME) == NAME and len(calls) == 1  # a local file or folder of that name wins
