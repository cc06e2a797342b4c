"""``--pretrained NAME``: timm / Hugging Face hub names (``vit_tiny_patch16_224.augreg_in21k``) as well as files.

A name that is not a file here is fetched with the hub client (``huggingface_hub``) when it is installed and
the network answers; otherwise one line says how to fetch the weights on a connected machine and pass the
file. Nothing else in patchcrypt downloads anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PatchcryptError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
_HUB_NAME = re.compile(r"(?:hf-hub:|hf_hub:)?(?:(?P<org>[A-Za-z0-9][\w.-]*)/)?(?P<name>[A-Za-z0-9][\w-]*(?:\.[\w-]+)?)")


def hub_repo(name: str):
    """The hub repository a ``--pretrained`` name means (``timm/<name>`` for a bare timm name), or None for
    something that reads as a path (a weights suffix, more than one folder)."""
    m = _HUB_NAME.fullmatch(name)
    if m is None or name.lower().endswith(WEIGHT_SUFFIXES):
        return None
    if m.group("org") and not name.startswith(("hf-hub:", "hf_hub:", "timm/")):
        return None  # "runs/upstream": a run folder that is not there, not a hub name
    return f"{m.group('org') or 'timm'}/{m.group('name')}"


def fetch_commands(repo: str) -> str:
    """The exact commands that fetch ``repo``'s weights on a connected machine, and what to pass here."""
    local = repo.split("/")[-1]
    return (f"on a connected machine run `pip install huggingface_hub && huggingface-cli download {repo} "
            f"model.safetensors --local-dir {local}`, copy the folder here and pass --pretrained "
            f"{local}/model.safetensors")


def resolve_pretrained(name: str) -> str:
    """The local weights file or run folder ``--pretrained name`` means: ``name`` itself when it exists (or
    reads as a path), else the hub file fetched into the hub client's cache. One line when that cannot be."""
    if Path(name).exists():
        return name
    repo = hub_repo(name)
    if repo is None:
        return name  # the loader says "no such weights file"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PatchcryptError(f"--pretrained {name}: no such file, and no hub client here to fetch {repo} "
                              f"(huggingface_hub is not installed); {fetch_commands(repo)}") from None
    try:
        return hf_hub_download(repo_id=repo, filename="model.safetensors")
    except Exception as exc:  # offline (HF_HUB_OFFLINE=1), no network, no such repository: all one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise PatchcryptError(f"--pretrained {name}: no such file, and {repo} could not be fetched ({reason}); "
                              f"{fetch_commands(repo)}") from None
