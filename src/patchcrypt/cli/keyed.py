"""``patchcrypt keyed-model``: key a plain-trained ViT/ConvMixer (or re-key a keyed one) for encrypted images."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import typer

from ..errors import KeyMismatchError, PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from .app import app


def make_keyed_checkpoint(source: Path, out: Path, key: Key, scheme: Optional[str], block_size: Optional[int],
                          mode: str = "auto", rekey: Optional[Key] = None, model_name: Optional[str] = None,
                          force: bool = False) -> Dict:
    """Write ``out``: the source model keyed for (key, scheme, block_size), or re-keyed to ``rekey``."""
    from ..models import create_model, load_checkpoint, save_checkpoint
    from ..models.keyed import key_model, keyed_model_kwargs, load_keyable, rekey_model

    out = Path(out)
    if out.exists() and not force:
        raise PatchcryptError(f"{out} exists (use --force to replace it)")
    if source.suffix in (".pth", ".bin", ".safetensors"):  # a timm-layout ViT state dict
        if not model_name:
            raise PatchcryptError("a raw state dict needs --model (e.g. vit_base_patch16_224) to build it")
        model = create_model(model_name, pretrained=source).eval()
        ckpt = {"model": model_name, "model_kwargs": {}, "classes": [str(i) for i in range(model.num_classes)],
                "scheme": None, "keyed": None, "config": None}
    else:
        ckpt = load_checkpoint(source)
        model = load_keyable(ckpt)
    source_record = EncryptionRecord.from_checkpoint(ckpt)
    if rekey is not None:
        if not ckpt.get("keyed"):
            raise PatchcryptError("--rekey needs a keyed model (this one was not made by 'patchcrypt keyed-model')")
        if key.fingerprint != source_record.key_fingerprint:
            raise KeyMismatchError(f"--key is {key.fingerprint} but the model is keyed for "
                                   f"{source_record.key_fingerprint}; re-keying needs the old key")
        scheme, block_size = source_record.scheme, source_record.block_size
        keyed = rekey_model(model, key, rekey, scheme, block_size, mode)
        keyed["rekeyed_from"] = key.fingerprint
        new_key = rekey
    else:
        if ckpt.get("keyed"):
            raise PatchcryptError("this model is already keyed; use --rekey NEW_KEY (with its --key) to change "
                                  "the key")
        if not source_record.is_plain:
            raise PatchcryptError(f"this model was trained on {source_record.scheme} images; keying needs a model "
                                  "trained on plain images")
        if not scheme or not block_size:
            raise PatchcryptError("--scheme and --block-size are required")
        keyed = key_model(model, key, scheme, block_size, mode)
        new_key = key
    keyed["base_model_kwargs"] = dict((ckpt.get("keyed") or {}).get("base_model_kwargs", ckpt["model_kwargs"]))
    save_checkpoint(out, model, model_name=ckpt["model"], model_kwargs=keyed_model_kwargs(ckpt["model_kwargs"], model),
                    classes=ckpt["classes"], keyed=keyed, config=ckpt.get("config"),
                    record=EncryptionRecord(scheme=scheme, block_size=block_size, key_fingerprint=new_key.fingerprint),
                    metrics=None, extra={"source": str(source)})
    return keyed


@app.command("keyed-model")
def keyed_model(
    run: Path = typer.Argument(..., help="Run folder or checkpoint of a plain-trained model (or a keyed one with "
                               "--rekey), or a timm ViT state dict (.pth/.safetensors) with --model."),
    key: Path = typer.Option(..., "--key", help="Key file the data owner encrypts with (the old key with --rekey)."),
    out: Path = typer.Option(..., "-o", "--out", help="Checkpoint file to write."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="Scheme of the encrypted images."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Block size M (= patch size)."),
    mode: str = typer.Option("auto", "--mode", help="auto, shared or position-wise (one embedding per block)."),
    rekey: Optional[Path] = typer.Option(None, "--rekey", help="Move a keyed model to this new key file."),
    model: Optional[str] = typer.Option(None, "--model", help="Registry name for a raw timm state dict."),
    force: bool = typer.Option(False, "--force", help="Replace OUT."),
) -> None:
    """Transform a model so it classifies images encrypted with KEY exactly as it classified plain ones."""
    old = Key.load(key)
    new = Key.load(rekey) if rekey else None
    info = make_keyed_checkpoint(run, out, old, scheme, block_size, mode, new, model, force)
    extra = f", {info['added_parameters']:,} parameters added" if info.get("added_parameters") else ""
    typer.echo(f"wrote {out}: {info['scheme']} M={info['block_size']}, {info['mode']} embedding, key "
               f"{info['key_fingerprint']}{extra}")
