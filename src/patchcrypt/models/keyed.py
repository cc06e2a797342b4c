"""Keyed-model transformation (Kiya et al. 2022; position-wise: Lin, Imaizumi, Kiya 2024).

An isotropic model reads an image only through its patch embedding, one linear map per M×M patch. Every
byte-level scheme moves values and flips some of them (v → 255 − v), so encrypted block k is an affine image
of one plain block σ(k):  u′_k = S_k u_σ(k) + t_k  with S_k a signed permutation and t_k ∈ {0, 255}^L.
With the input normalisation folded into the embedding (W₀ = W·A, b₀ = W·a + b), the keyed embedding

    W′_k = W₀ S_k⁻¹,    b′_k = b₀ − W₀ S_k⁻¹ t_k

gives W′_k u′_k + b′_k = W₀ u_σ(k) + b₀: the plain token of block σ(k). Moving the position embedding with
the blocks (row 1+k ← row 1+σ(k)) makes the encrypted token sequence a permutation of the plain one, and a
ViT is equivariant to token order and reads the class token, so its logits are those of the plain model.

* shared mode: S_k and t_k are the same for every block (block-pixel, PS, BF, shared CS/RF): one embedding,
  the architecture unchanged (ViT; ConvMixer when σ is the identity).
* position-wise mode: per-block keys (etc: RF, NP, CS per block; pe per pixel). The model keeps its one
  plain embedding and holds the key as a per-position state, the inverse in-block map of every block
  (:class:`~patchcrypt.models.layers.KeyedEmbed`): each encrypted patch is gathered back to its plain block
  (flips undone) before the shared embedding, which computes exactly W′_k u′_k + b′_k. The keyed model is
  the plain model plus n·L int32 indices (ViT-Ti at 224, M = 16: 1.03× the plain size, where one embedding
  per position was 6.2×); re-keying rewrites the indices. A model that already has one embedding per
  position (:class:`~patchcrypt.models.layers.BlockwiseEmbed`, trained so) is keyed position by position,
  as before, and keyed checkpoints saved that way still load.

Centred re-expression (for fine-tuning, ``centred=True``): first rewrite the plain model, as the same
function, to read ``z = (x/255 − 0.5)/0.5`` on every channel, folding its old normalisation into the
embedding (W_c = 127.5·W₀, b_c = b₀ + 127.5·W₀·1). In these coordinates a negative–positive flip
v → 255 − v is exactly z → −z, so every byte-level step is a *signed permutation* z′ = S z with no offset,
and the keyed embedding is just W_c S⁻¹ with the bias unchanged. A signed permutation is orthogonal and
coordinate-wise, so the gradient of the keyed embedding is the plain gradient moved by the same S⁻¹, and
SGD, Adam and AdamW (whose updates are coordinate-wise, and whose second moments do not see signs) follow
the keyed image of the plain trajectory step for step: keyed fine-tuning on encrypted images *is* plain
fine-tuning on plain images, up to float rounding. (Without centring, the raw 0..255 input of the
identity normalisation scales the embedding's gradients by ~255 and the offset t lands in the bias, which
changes the optimisation.) The bias then carries no key material (t is gone), so the centred keyed model
reveals no more of the key than the uncentred one.

Refused, with the reason: nibble schemes (le/ele are not affine in pixel values), etc-gray (a colour
transform in front), per-image keys, block size ≠ patch size, BS on ConvMixer, non-isotropic models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..blocks import block_layout, locate_in_blocks
from ..ciphers import create_cipher, get_scheme
from ..errors import KeyMismatchError, PatchcryptError
from ..keys import Key
from ..record import EncryptionRecord
from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .layers import BlockwiseEmbed, KeyedEmbed, embed_matrix, set_embed_matrix, shared_embed_matrix
from .factory import create_model

IDENTITY_MEAN, IDENTITY_STD = (0.0,), (1.0 / 255.0,)  # InputNorm that passes 0..255 values through
CENTRED_MEAN, CENTRED_STD = (0.5,), (0.5,)              # (x/255 − 0.5)/0.5 on every channel: flips are signs


@dataclass
class BlockMaps:
    """The encryption as per-block affine maps: u′_k[i] = s[k, i] · u_σ(k)[g[k, i]] + t[k, i]."""

    sigma: np.ndarray   # (n,) source block of encrypted block k
    g: np.ndarray       # (n, L) source position inside the source block
    s: np.ndarray       # (n, L) ±1
    t: np.ndarray       # (n, L) 0 or 255

    @property
    def shared(self) -> bool:
        return bool((self.g == self.g[0]).all() and (self.s == self.s[0]).all() and (self.t == self.t[0]).all())

    @property
    def moves_blocks(self) -> bool:
        return bool((self.sigma != np.arange(len(self.sigma))).any())


def block_maps(scheme: str, key: Key, block_size: int, img_size: int, in_chans: int = 3,
               per_image: bool = False) -> BlockMaps:
    """Read the per-block affine maps off the scheme's compiled program for (img_size, img_size, in_chans)."""
    spec = get_scheme(scheme)
    if per_image:
        raise PatchcryptError("per-image keys give every image its own transformation; no single keyed model "
                              "can absorb them")
    if spec.unit != "byte":
        raise PatchcryptError(f"scheme {scheme!r} works on 4-bit halves of values, which is not an affine map of "
                              "pixel values: a linear patch embedding cannot absorb it")
    if spec.composite:
        raise PatchcryptError(f"{scheme} converts colours to a side-by-side grayscale image; the model's patches "
                              "no longer correspond to image blocks")
    cipher = create_cipher(scheme, key, block_size=block_size)
    prog = cipher.program((img_size, img_size, in_chans))
    if prog.shape_out != prog.shape_in:
        raise PatchcryptError(f"scheme {scheme!r} changes the image shape")
    g_img, m_img = prog.map.g, prog.map.m
    if not np.isin(m_img, (0, 255)).all():
        raise PatchcryptError(f"scheme {scheme!r} uses masks other than negative-positive; not absorbable")
    layout = block_layout(img_size, img_size, in_chans, block_size)   # (n, L) image index of block element
    where_block, where_elem = locate_in_blocks(layout)
    src = g_img[layout]                                               # (n, L) image index of the source
    src_block, src_elem = where_block[src], where_elem[src]
    if not (src_block == src_block[:, :1]).all():
        raise PatchcryptError(f"scheme {scheme!r} mixes values of different blocks inside a block at M={block_size}")
    mask = m_img[layout]
    return BlockMaps(sigma=src_block[:, 0].copy(), g=src_elem, s=np.where(mask == 255, -1.0, 1.0),
                     t=mask.astype(np.float64))


def folded_embedding(model: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The patch embedding with the input normalisation folded in, acting on raw 0..255 block vectors.

    Returns W₀ (D, L) and b₀ (D,) for a shared embedding, or (n, D, L), (n, D) for a blockwise one (float64).
    """
    w, b = embed_matrix(model.patch_embedding)
    w, b = w.double(), b.double()
    mean = model.input_norm.mean.double()
    std = model.input_norm.std.double()
    c = model.in_chans
    L = w.shape[-1]
    ch = torch.arange(L) % c                          # channel of block-vector element l = (r*M + c)*C + ch
    scale = 1.0 / (255.0 * std[ch])                   # A = diag(scale)
    offset = -mean[ch] / std[ch]                      # a
    return w * scale, b + (w * offset).sum(-1)


@torch.no_grad()
def centre_input(model: nn.Module) -> nn.Module:
    """Re-express ``model`` in place to read (x/255 − 0.5)/0.5 on every channel; the same function.

    The old normalisation is folded into the patch embedding (W_c = 127.5·W₀, b_c = b₀ + 127.5·W₀·1, with
    W₀, b₀ from :func:`folded_embedding`), so logits are unchanged up to float rounding. Returns ``model``.
    """
    w0, b0 = folded_embedding(model)
    dtype = model.input_norm.mean.dtype
    set_embed_matrix(model.patch_embedding, (127.5 * w0).to(dtype), (b0 + 127.5 * w0.sum(-1)).to(dtype))
    model.input_norm.mean.copy_(torch.tensor(CENTRED_MEAN).expand_as(model.input_norm.mean))
    model.input_norm.std.copy_(torch.tensor(CENTRED_STD).expand_as(model.input_norm.std))
    return model


def is_centred(model: nn.Module) -> bool:
    """True if the model's input normalisation is (x/255 − 0.5)/0.5 on every channel."""
    return bool((model.input_norm.mean == 0.5).all() and (model.input_norm.std == 0.5).all())


def _check_model(model: nn.Module, block_size: int) -> None:
    if not getattr(model, "is_isotropic", False):
        raise PatchcryptError(f"{type(model).__name__} is not an isotropic network (no single linear patch "
                              "embedding); only ViT and ConvMixer can be keyed")
    if model.patch_size != block_size:
        raise PatchcryptError(f"block size {block_size} differs from the model's patch size {model.patch_size}")


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "pos_embed") and hasattr(model, "cls_token")


def inverse_state(maps: BlockMaps) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Every block's inverse in-block map: plain element j of encrypted block k is encrypted element
    ``source[k, j]``, negated where ``flip[k, j]``. (n, L) int64 and bool; None if some g[k] is no permutation."""
    n, L = maps.g.shape
    if not (np.sort(maps.g, axis=1) == np.arange(L)).all():
        return None
    source = np.empty_like(maps.g)
    np.put_along_axis(source, maps.g, np.broadcast_to(np.arange(L), (n, L)), axis=1)
    return source, np.take_along_axis(maps.s < 0, source, axis=1)


def _one_normalisation(model: nn.Module) -> bool:
    """True if every channel has the same input mean and std (then a channel shuffle commutes with it)."""
    mean, std = model.input_norm.mean, model.input_norm.std
    return bool((mean == mean[0]).all()) and bool((std == std[0]).all())


def _flip_value(model: nn.Module) -> float:
    """What v → 255 − v is in the model's input coordinates, z → flip − z; needs one normalisation for all
    channels (channel shuffles would otherwise change the scale)."""
    mean, std = model.input_norm.mean.double(), model.input_norm.std.double()
    if not _one_normalisation(model):
        raise PatchcryptError("a keyed gather needs one input normalisation for every channel")
    return float((1.0 - 2.0 * mean[0]) / std[0])


def _permute_positions(model: nn.Module, order: np.ndarray) -> None:
    """Patch rows of the position embedding: row 1+k ← row 1+order[k] (class-token row unchanged)."""
    pos = model.pos_embed.data
    pos[:, 1:] = pos[:, 1:][:, torch.from_numpy(order)]


@torch.no_grad()
def _apply_gather(model: nn.Module, maps: BlockMaps, state: Tuple[np.ndarray, np.ndarray], centred: bool) -> None:
    """Key a shared-embedding model by a per-position gather in front of its plain embedding (in place)."""
    if centred:  # flips are exact sign changes in these coordinates: flip_to = 0
        centre_input(model)
    elif not _one_normalisation(model):  # folded into the embedding; the model then reads raw 0..255 values
        w0, b0 = folded_embedding(model)
        model.input_norm.mean.copy_(torch.tensor(IDENTITY_MEAN).expand_as(model.input_norm.mean))
        model.input_norm.std.copy_(torch.tensor(IDENTITY_STD).expand_as(model.input_norm.std))
        dtype = model.input_norm.mean.dtype
        set_embed_matrix(model.patch_embedding, w0.to(dtype), b0.to(dtype))
    model.to_keyed()
    emb = model.patch_embedding
    source, flip = state
    emb.set_state(torch.from_numpy(source).to(emb.state.device), torch.from_numpy(flip).to(emb.state.device),
                  _flip_value(model))


@torch.no_grad()
def apply_key(model: nn.Module, maps: BlockMaps, mode: str = "auto", centred: bool = False) -> str:
    """Transform ``model`` in place so it classifies images encrypted with ``maps``; returns the mode used.

    ``centred=False``: identity input normalisation, everything folded into the embedding (W₀ S⁻¹, b₀ − W₀ S⁻¹ t).
    ``centred=True``: the model is first re-expressed by :func:`centre_input` and keyed as W_c S⁻¹ with the
    bias unchanged: the starting point for fine-tuning on encrypted images (see the module docstring).
    """
    if mode not in ("auto", "shared", "position-wise"):
        raise PatchcryptError(f"mode must be auto, shared or position-wise, got {mode!r}")
    if maps.moves_blocks and not _is_vit(model):
        raise PatchcryptError("block scrambling cannot be absorbed by ConvMixer: its depthwise convolutions mix "
                              "neighbouring patches, so moving blocks changes what it computes")
    if isinstance(model.patch_embedding, KeyedEmbed):
        raise PatchcryptError("this model is already keyed; re-key it (rekey_model, or 'patchcrypt keyed-model "
                              "--rekey') instead of keying it twice")
    blockwise_in = isinstance(model.patch_embedding, BlockwiseEmbed)
    if mode == "auto":
        mode = "shared" if maps.shared and not blockwise_in else "position-wise"
    if mode == "shared" and not maps.shared:
        raise PatchcryptError("this scheme gives every block its own key; use the position-wise mode")
    if mode == "shared" and blockwise_in:
        raise PatchcryptError("this model has a position-wise embedding; use the position-wise mode")
    state = inverse_state(maps) if mode == "position-wise" and not blockwise_in else None
    if state is not None:  # the plain embedding stays, behind each position's inverse map
        _apply_gather(model, maps, state, centred)
        if maps.moves_blocks:
            _permute_positions(model, maps.sigma)
        return mode
    if centred:
        centre_input(model)
        w0, b0 = (v.double() for v in embed_matrix(model.patch_embedding))   # acts on z, where flips are signs
    else:
        w0, b0 = folded_embedding(model)               # (D, L) or (n, D, L), acts on raw 0..255 values
    n, L = maps.g.shape
    if w0.dim() == 2:
        w0, b0 = w0.expand(n, -1, -1), b0.expand(n, -1)
    else:  # position-wise plain model: encrypted block k must use the embedding of plain position σ(k)
        w0, b0 = w0[torch.from_numpy(maps.sigma)], b0[torch.from_numpy(maps.sigma)]
    g = torch.from_numpy(maps.g)
    s = torch.from_numpy(maps.s)
    t = torch.from_numpy(maps.t)
    w_new = torch.gather(w0, 2, g[:, None, :].expand(-1, w0.shape[1], -1)) * s[:, None, :]   # W₀ S_k⁻¹
    if centred:  # z′ = S z exactly: no offset to absorb, the bias stays
        b_new = b0.clone()
    else:
        b_new = b0 - (w_new * t[:, None, :]).sum(-1)
        model.input_norm.mean.copy_(torch.tensor(IDENTITY_MEAN).expand_as(model.input_norm.mean))
        model.input_norm.std.copy_(torch.tensor(IDENTITY_STD).expand_as(model.input_norm.std))
    dtype = model.input_norm.mean.dtype
    if mode == "shared":
        set_embed_matrix(model.patch_embedding, w_new[0].to(dtype), b_new[0].to(dtype))
    else:
        if not blockwise_in:
            model.to_blockwise()
        set_embed_matrix(model.patch_embedding, w_new.to(dtype), b_new.to(dtype))
    if maps.moves_blocks:
        _permute_positions(model, maps.sigma)
    return mode


@torch.no_grad()
def remove_key(model: nn.Module, maps: BlockMaps) -> None:
    """Undo :func:`apply_key` in place (the model then takes plain images). A keyed gather is simply dropped
    (the plain embedding stays, in the coordinates it was keyed in); otherwise the model reads raw 0..255
    values, position-wise."""
    inv = np.empty_like(maps.sigma)
    inv[maps.sigma] = np.arange(len(maps.sigma))
    emb = model.patch_embedding
    if isinstance(emb, KeyedEmbed):
        w, b = shared_embed_matrix(emb)
        conv = nn.Conv2d(emb.in_chans, emb.embed_dim, emb.patch_size, emb.patch_size).to(w.device, w.dtype)
        set_embed_matrix(conv, w, b)
        model.set_patch_embedding(conv)
        if maps.moves_blocks:
            _permute_positions(model, inv)
        return
    w, b = folded_embedding(model)
    n, L = maps.g.shape
    if w.dim() == 2:
        w, b = w.expand(n, -1, -1), b.expand(n, -1)
    g = torch.from_numpy(maps.g)
    s = torch.from_numpy(maps.s)
    t = torch.from_numpy(maps.t)
    b0 = b + (w * t[:, None, :]).sum(-1)
    w0 = torch.empty_like(w)
    w0.scatter_(2, g[:, None, :].expand(-1, w.shape[1], -1), w * s[:, None, :])
    w0, b0 = w0[torch.from_numpy(inv)], b0[torch.from_numpy(inv)]   # back to plain positions
    model.input_norm.mean.copy_(torch.tensor(IDENTITY_MEAN).expand_as(model.input_norm.mean))
    model.input_norm.std.copy_(torch.tensor(IDENTITY_STD).expand_as(model.input_norm.std))
    dtype = model.input_norm.mean.dtype
    if isinstance(model.patch_embedding, BlockwiseEmbed) or not (w0 == w0[0]).all():
        model.to_blockwise()
        set_embed_matrix(model.patch_embedding, w0.to(dtype), b0.to(dtype))
    else:
        set_embed_matrix(model.patch_embedding, w0[0].to(dtype), b0[0].to(dtype))
    if maps.moves_blocks:
        _permute_positions(model, inv)


def key_model(model: nn.Module, key: Key, scheme: str, block_size: int, mode: str = "auto",
              per_image: bool = False, centred: bool = False) -> Dict:
    """Key a plain-trained isotropic model in place for images encrypted with (key, scheme, block_size).

    ``centred=True`` gives the fine-tuning starting point (see :func:`apply_key`). Returns the ``keyed`` record
    for the checkpoint: mode, scheme, block size, key fingerprint, and the parameters and buffer entries the
    keying added (a position-wise key adds n·L indices and no parameters).
    """
    _check_model(model, block_size)
    before = model_size(model)
    maps = block_maps(scheme, key, block_size, model.img_size, model.in_chans, per_image)
    used = apply_key(model, maps, mode, centred)
    after = model_size(model)
    return {"mode": used, "scheme": scheme, "block_size": block_size, "key_fingerprint": key.fingerprint,
            "added_parameters": after[0] - before[0], "added_buffers": after[1] - before[1], "centred": centred}


def model_size(model: nn.Module) -> Tuple[int, int]:
    """(parameter entries, buffer entries) of ``model``."""
    return sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers())


def rekey_model(model: nn.Module, old_key: Key, new_key: Key, scheme: str, block_size: int,
                mode: str = "auto") -> Dict:
    """Move a keyed model from ``old_key`` to ``new_key`` without the plain model."""
    _check_model(model, block_size)
    remove_key(model, block_maps(scheme, old_key, block_size, model.img_size, model.in_chans))
    maps = block_maps(scheme, new_key, block_size, model.img_size, model.in_chans)
    if mode == "auto" and isinstance(model.patch_embedding, BlockwiseEmbed):
        # one embedding copied per position (a keyed model saved that way): back to one shared embedding,
        # so the new key is a gather (or a shared map), not n copies. Equal up to the float rounding of keying.
        w, b = embed_matrix(model.patch_embedding)
        tol = 1e-6 * float(w.abs().max())
        if float((w - w[0]).abs().max()) <= tol and float((b - b[0]).abs().max()) <= 1e-6 * float(b.abs().max()):
            conv = nn.Conv2d(model.in_chans, w.shape[1], model.patch_size, model.patch_size)
            set_embed_matrix(conv, w[0], b[0])
            model.set_patch_embedding(conv.to(w.device))
    used = apply_key(model, maps, mode)
    return {"mode": used, "scheme": scheme, "block_size": block_size, "key_fingerprint": new_key.fingerprint}


def keyed_model_kwargs(model_kwargs: Dict, model: nn.Module) -> Dict:
    """The registry kwargs that rebuild the keyed model's architecture (identity normalisation, embedding)."""
    kw = dict(model_kwargs)
    kw.update(mean=tuple(model.input_norm.mean.tolist()), std=tuple(model.input_norm.std.tolist()),
              embed=model.embed)
    return kw


def load_keyable(ckpt: Dict) -> nn.Module:
    """Build a checkpoint's model for keying (float32, eval mode)."""
    return build_model(ckpt).float()


def make_keyed_checkpoint(source: Path, out: Path, key: Key, scheme: Optional[str], block_size: Optional[int],
                          mode: str = "auto", rekey: Optional[Key] = None, model_name: Optional[str] = None,
                          force: bool = False) -> Dict:
    """Write ``out``: the source model keyed for (key, scheme, block_size), or re-keyed to ``rekey``."""
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


__all__ = ["block_maps", "apply_key", "remove_key", "key_model", "rekey_model", "folded_embedding", "centre_input",
           "keyed_model_kwargs", "make_keyed_checkpoint", "BlockMaps", "inverse_state", "model_size"]
