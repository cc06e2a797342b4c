"""Pieces shared by the model zoo: input normalisation, patch embeddings, block-vector layout helpers, the
classifier contract every model keeps (:class:`ClassifierMixin`) and the block-wise network (:class:`BlockAdaptation`).

Block-vector order (DESIGN §2): an M×M block of a C-channel image flattens to L = M·M·C values with index
``l = (r*M + c)*C + ch`` (row, column, channel). A ``nn.Conv2d`` patch embedding stores its weight as
``(D, C, M, M)``, i.e. ``weight[d, ch, r, c]``; the same map as a matrix in block-vector order is

    W[d, (r*M + c)*C + ch] = weight[d, ch, r, c]      i.e.  W = weight.permute(0, 2, 3, 1).reshape(D, L)

and back ``weight = W.reshape(D, M, M, C).permute(0, 3, 1, 2)``. :func:`embed_matrix` and
:func:`set_embed_matrix` do this for the shared conv and for :class:`BlockwiseEmbed` alike, so a keyed
transformation (``W' = W S⁻¹``) can work on matrices and never think about conv layouts.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PatchcryptError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5,)  # broadcast to every channel: (x - 0.5) / 0.5, the timm "inception" ViT normalisation

PatchEmbedding = Union[nn.Conv2d, "BlockwiseEmbed", "KeyedEmbed"]


class InputNorm(nn.Module):
    """``(x / 255 - mean) / std`` per channel; the model owns it so it can be folded and transformed.

    Args:
        mean, std: per-channel values in 0..1 units; length C, or length 1 (broadcast to all channels).
        in_chans: C.

    Shape:
        (N, C, H, W) uint8 or float in 0..255 → (N, C, H, W) float. Buffers ``mean``, ``std``: (C,).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], in_chans: int = 3) -> None:
        super().__init__()
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, in_chans):
                raise PatchcryptError(f"input {name} has {len(v)} values; the model has {in_chans} channels")
        if any(s <= 0 for s in std):
            raise PatchcryptError(f"input std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(mean).expand(in_chans).clone())
        self.register_buffer("std", torch.tensor(std).expand(in_chans).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            x = x.to(self.mean.dtype)
        return (x / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]

    def extra_repr(self) -> str:
        return f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}"


def check_image_input(x: torch.Tensor, in_chans: int, patch_size: Optional[int] = None,
                      img_size: Optional[int] = None) -> None:
    """Raise :class:`PatchcryptError` unless ``x`` is (N, in_chans, H, W) fitting the model's geometry."""
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise PatchcryptError(f"expected an image batch (N, {in_chans}, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if img_size is not None and (h, w) != (img_size, img_size):
        raise PatchcryptError(f"model takes {img_size}x{img_size} images, got {h}x{w}")
    if patch_size is not None and (h % patch_size or w % patch_size):
        raise PatchcryptError(f"image size {h}x{w} is not a multiple of the patch size {patch_size}")


def check_block_size(model: nn.Module, block_size: Optional[int]) -> None:
    """Clear error unless the model's patch size equals the cipher's block size (isotropic models)."""
    patch = getattr(model, "patch_size", None)
    if block_size is None or patch is None:
        return
    if patch != block_size:
        kind = "patch size" if getattr(model, "is_isotropic", False) else "adaptation block size"
        raise PatchcryptError(f"the model's {kind} is {patch} but the data's block size is {block_size}; "
                              "they must be equal")


def check_patch_geometry(img_size: int, patch_size: int) -> int:
    """Return the grid side ``img_size // patch_size``; clear error if the patch does not tile the image."""
    if patch_size < 1 or img_size < 1:
        raise PatchcryptError(f"img_size and patch_size must be positive, got {img_size} and {patch_size}")
    if img_size % patch_size:
        raise PatchcryptError(
            f"img_size {img_size} is not a multiple of patch_size {patch_size} "
            "(the patch size must equal the encryption block size M and tile the image)")
    return img_size // patch_size


# -- block-vector layout ------------------------------------------------------------------------------------
def blocks_to_channels(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """Space-to-depth in block-vector order: (N, C, H, W) → (N, L, H/M, W/M), channel l = (r*M+c)*C+ch."""
    n, c, h, w = x.shape
    m = block_size
    x = x.reshape(n, c, h // m, m, w // m, m).permute(0, 3, 5, 1, 2, 4)  # (N, r, c, ch, gh, gw)
    return x.reshape(n, m * m * c, h // m, w // m)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) → (N, n, L): row-major blocks, each flattened in (row, column, channel) order."""
    return blocks_to_channels(x, patch_size).flatten(2).transpose(1, 2)


def conv_to_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv weight (D, C, p, p) → matrix (D, L) in block-vector order."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def matrix_to_conv(matrix: torch.Tensor, in_chans: int, patch_size: int) -> torch.Tensor:
    """Matrix (D, L) in block-vector order → conv weight (D, C, p, p)."""
    return matrix.reshape(matrix.shape[0], patch_size, patch_size, in_chans).permute(0, 3, 1, 2)


# -- patch embeddings ---------------------------------------------------------------------------------------
class BlockwiseEmbed(nn.Module):
    """One linear patch embedding per patch position (a locally connected layer with kernel = stride = p).

    ``weight`` (n, D, L) and ``bias`` (n, D), with L in block-vector order; patch k (row-major) is embedded
    as ``weight[k] @ u_k + bias[k]``. Same input/output as the shared ``nn.Conv2d`` it replaces.

    Shape:
        (N, C, H, W) float → (N, D, H/p, W/p), with (H/p)·(W/p) == n.
    """

    def __init__(self, num_patches: int, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.num_patches, self.in_chans = num_patches, in_chans
        self.embed_dim, self.patch_size = embed_dim, patch_size
        fan_in = patch_size * patch_size * in_chans
        bound = fan_in ** -0.5  # the default nn.Conv2d init, per position
        self.weight = nn.Parameter(torch.empty(num_patches, embed_dim, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_patches, embed_dim).uniform_(-bound, bound))

    @classmethod
    def from_shared(cls, conv: nn.Conv2d, num_patches: int) -> "BlockwiseEmbed":
        """Copy a shared patch conv into all ``num_patches`` positions (outputs identical to ``conv``)."""
        p = _conv_patch_size(conv)
        m = cls(num_patches, conv.in_channels, conv.out_channels, p).to(conv.weight.device, conv.weight.dtype)
        w, b = embed_matrix(conv)
        with torch.no_grad():
            m.weight.copy_(w.expand(num_patches, -1, -1))
            m.bias.copy_(b.expand(num_patches, -1))
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_img, _, h, w = x.shape
        p = self.patch_size
        gh, gw = h // p, w // p
        if gh * gw != self.num_patches or h % p or w % p:
            raise PatchcryptError(
                f"blockwise embedding has {self.num_patches} positions; a {h}x{w} image has a different grid")
        u = patchify(x, p)                                            # (N, n, L)
        # one batched matmul over positions, bias fused: (n, N, L) @ (n, L, D) + (n, 1, D) -> (n, N, D)
        y = torch.baddbmm(self.bias.unsqueeze(1), u.transpose(0, 1), self.weight.transpose(1, 2))
        return y.permute(1, 2, 0).reshape(n_img, self.embed_dim, gh, gw)

    def extra_repr(self) -> str:
        return f"num_patches={self.num_patches}, in_chans={self.in_chans}, embed_dim={self.embed_dim}, " \
               f"patch_size={self.patch_size}"


class KeyedEmbed(nn.Module):
    """The plain (shared) patch embedding behind a per-position in-block gather: a keyed model's embedding.

    Each encrypted patch k is first mapped back to the plain block it came from, by its own inverse in-block
    map (a gather, with negative–positive flips undone), then embedded by the one shared ``weight``, ``bias``.
    The key's per-position state is the buffer ``state`` (n, L) int32: plain element j of patch k is
    encrypted element ``state[k, j]`` when ``state[k, j] < L``, else ``flip_to − u′[state[k, j] − L]``
    (flipped). ``flip_to`` (a 0-d buffer) is what 255 is in the model's input coordinates: 255 for raw
    values, 0 for the centred ones. Re-keying rewrites ``state``; the weights stay, and the model is as big
    as the plain one plus n·L indices. Parameter names and shapes are those of the plain ``nn.Conv2d``.

    Shape:
        (N, C, H, W) float → (N, D, H/p, W/p), with (H/p)·(W/p) == n. ``weight`` (D, C, p, p), ``bias`` (D,).
    """

    def __init__(self, num_patches: int, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.num_patches, self.in_chans = num_patches, in_chans
        self.embed_dim, self.patch_size = embed_dim, patch_size
        conv = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)  # the default init, as a shared embedding
        self.weight, self.bias = conv.weight, conv.bias
        L = patch_size * patch_size * in_chans
        self.register_buffer("state", torch.arange(L, dtype=torch.int32).expand(num_patches, L).clone())
        self.register_buffer("flip_to", torch.tensor(255.0))

    @classmethod
    def from_shared(cls, conv: nn.Conv2d, num_patches: int) -> "KeyedEmbed":
        """Wrap a shared patch conv with the identity state (outputs identical to ``conv``)."""
        p = _conv_patch_size(conv)
        m = cls(num_patches, conv.in_channels, conv.out_channels, p).to(conv.weight.device, conv.weight.dtype)
        w, b = embed_matrix(conv)
        set_embed_matrix(m, w, b)
        return m

    def set_state(self, source: torch.Tensor, flip: torch.Tensor, flip_to: float) -> None:
        """Install a key: plain element j of patch k is encrypted element ``source[k, j]``, negated where
        ``flip[k, j]`` (v → flip_to − v). source (n, L) int, flip (n, L) bool."""
        if tuple(source.shape) != tuple(self.state.shape) or tuple(flip.shape) != tuple(self.state.shape):
            raise PatchcryptError(f"a keyed state of shape {tuple(source.shape)} does not fit this embedding "
                                  f"{tuple(self.state.shape)}")
        L = self.state.shape[1]
        with torch.no_grad():
            self.state.copy_((source.long() + L * flip.long()).to(torch.int32))
            self.flip_to.fill_(float(flip_to))

    def source_and_flip(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The installed state as (source (n, L) int64, flip (n, L) bool)."""
        L = self.state.shape[1]
        st = self.state.long()
        return st % L, st >= L

    def plain_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) encrypted images (model coordinates) → (N, n, L): every patch as its plain block."""
        n_img, _, h, w = x.shape
        p = self.patch_size
        if (h // p) * (w // p) != self.num_patches or h % p or w % p:
            raise PatchcryptError(
                f"keyed embedding has {self.num_patches} positions; a {h}x{w} image has a different grid")
        source, flip = self.source_and_flip()
        u = patchify(x, p)                                                      # (N, n, L)
        v = torch.gather(u, 2, source.expand(n_img, -1, -1))
        return torch.where(flip, self.flip_to.to(v.dtype) - v, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        y = F.linear(self.plain_blocks(x), conv_to_matrix(self.weight), self.bias)   # (N, n, D)
        return y.transpose(1, 2).reshape(x.shape[0], self.embed_dim, gh, gw)

    def effective_matrix(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The per-position affine maps this embedding computes on encrypted patches, as a position-wise
        embedding would store them: W′ (n, D, L), b′ (n, D) (a copy, detached; n times the plain size)."""
        w = conv_to_matrix(self.weight.detach())                                # (D, L)
        b = self.bias.detach()
        source, flip = self.source_and_flip()
        n, L = source.shape
        signed = w.unsqueeze(0) * torch.where(flip, -1.0, 1.0).to(w.dtype).unsqueeze(1)   # (n, D, L) at plain j
        w_eff = torch.zeros(n, w.shape[0], L, dtype=w.dtype, device=w.device)
        w_eff.scatter_(2, source.unsqueeze(1).expand(-1, w.shape[0], -1), signed)
        b_eff = b + self.flip_to.to(w.dtype) * (w.unsqueeze(0) * flip.to(w.dtype).unsqueeze(1)).sum(-1)
        return w_eff, b_eff

    def extra_repr(self) -> str:
        return f"num_patches={self.num_patches}, in_chans={self.in_chans}, embed_dim={self.embed_dim}, " \
               f"patch_size={self.patch_size}"


def _conv_patch_size(conv: nn.Conv2d) -> int:
    k, s = conv.kernel_size, conv.stride
    if k[0] != k[1] or tuple(k) != tuple(s) or conv.groups != 1 or conv.padding not in ((0, 0), "valid"):
        raise PatchcryptError(f"not a patch-embedding conv (kernel = stride, no padding): {conv}")
    return k[0]


def embed_matrix(module: PatchEmbedding) -> Tuple[torch.Tensor, torch.Tensor]:
    """The patch embedding as matrices in block-vector order (a copy, detached).

    Returns:
        shared ``nn.Conv2d``: W (D, L), b (D,); :class:`BlockwiseEmbed`: W (n, D, L), b (n, D).
        A conv without bias gives a zero bias.
    """
    if isinstance(module, BlockwiseEmbed):
        return module.weight.detach().clone(), module.bias.detach().clone()
    if isinstance(module, KeyedEmbed):
        return module.effective_matrix()
    if isinstance(module, nn.Conv2d):
        _conv_patch_size(module)
        w = conv_to_matrix(module.weight.detach()).clone()
        b = module.bias.detach().clone() if module.bias is not None else w.new_zeros(w.shape[0])
        return w, b
    raise PatchcryptError(f"not a patch embedding: {type(module).__name__}")


def set_embed_matrix(module: PatchEmbedding, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Write W, b (shapes as returned by :func:`embed_matrix`) back into the embedding, in place.

    A :class:`KeyedEmbed` takes its shared plain W (D, L), b (D,) (see :func:`shared_embed_matrix`); its key
    state is left alone."""
    cur_w, cur_b = shared_embed_matrix(module) if isinstance(module, KeyedEmbed) else embed_matrix(module)
    if weight.shape != cur_w.shape or bias.shape != cur_b.shape:
        raise PatchcryptError(f"embedding matrix shapes {tuple(weight.shape)}, {tuple(bias.shape)} do not match "
                              f"{tuple(cur_w.shape)}, {tuple(cur_b.shape)}")
    with torch.no_grad():
        if isinstance(module, BlockwiseEmbed):
            module.weight.copy_(weight)
            module.bias.copy_(bias)
            return
        p = module.patch_size if isinstance(module, KeyedEmbed) else module.kernel_size[0]
        module.weight.copy_(matrix_to_conv(weight, module.weight.shape[1], p))
        if module.bias is not None:
            module.bias.copy_(bias)
        elif bool(bias.ne(0).any()):
            raise PatchcryptError("this patch conv has no bias; cannot set a non-zero bias")


def shared_embed_matrix(module: PatchEmbedding) -> Tuple[torch.Tensor, torch.Tensor]:
    """The one shared embedding of a conv or a :class:`KeyedEmbed` (without its key): W (D, L), b (D,)."""
    if isinstance(module, KeyedEmbed):
        return conv_to_matrix(module.weight.detach()).clone(), module.bias.detach().clone()
    if isinstance(module, nn.Conv2d):
        return embed_matrix(module)
    raise PatchcryptError(f"{type(module).__name__} holds one embedding per position, not one shared embedding")


def make_patch_embed(embed: str, in_chans: int, embed_dim: int, patch_size: int, num_patches: int) -> nn.Module:
    """``embed="shared"`` → ``nn.Conv2d`` (kernel = stride = p); ``"blockwise"`` → :class:`BlockwiseEmbed`;
    ``"keyed"`` → :class:`KeyedEmbed` (identity state until a key is installed or loaded)."""
    if embed == "shared":
        return nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
    if embed == "blockwise":
        return BlockwiseEmbed.from_shared(
            nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size), num_patches)
    if embed == "keyed":
        return KeyedEmbed(num_patches, in_chans, embed_dim, patch_size)
    raise PatchcryptError(f"embed must be 'shared', 'blockwise' or 'keyed', got {embed!r}")


# -- the classifier contract, as timm's ------------------------------------------------------------------------
class ClassifierMixin:
    """``forward = forward_head ∘ forward_features``, ``get_classifier`` and ``reset_classifier``, shared by
    every model of the zoo. A subclass defines ``forward_features`` and ``forward_head`` and sets
    ``num_features`` and ``num_classes``; its head is the attribute named ``head_attr`` (``"head"`` as timm's
    ViT and ConvMixer; the CIFAR ResNet keeps ``"fc"``, so state-dict names stay)."""

    head_attr = "head"
    num_features: int
    num_classes: int

    def get_classifier(self) -> nn.Module:
        """The final classifier module (the part ``--freeze backbone`` trains)."""
        return getattr(self, self.head_attr)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh ``Linear(num_features, num_classes)`` (``Identity`` if 0)."""
        self.num_classes = num_classes
        setattr(self, self.head_attr, nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# -- the block-wise network ---------------------------------------------------------------------------------
class BlockAdaptation(nn.Module):
    """Block-wise network: (N, C, H, W) → (N, C_out, H·M'/M, W·M'/M), each M×M block mapped independently.

    A conv with kernel = stride = M maps each block to ``width`` features, ``depth - 1`` 1×1 convs (BN,
    ReLU) mix them within the block, and a last 1×1 conv and a pixel shuffle write an M'×M' block of
    ``out_chans`` channels back. With the defaults (width = M·M·C, C_out = C, M' = M) it is the adaptation
    network of Tanaka 2018 / Madono et al. 2020 in front of a ResNet; the learned attacks' per-block
    generator is the same network, wider.
    """

    def __init__(self, block_size: int, in_chans: int = 3, hidden_layers: int = 2, out_chans: Optional[int] = None,
                 width: Optional[int] = None, out_block: Optional[int] = None) -> None:
        super().__init__()
        m, mo = block_size, out_block or block_size
        self.block_size = block_size
        width = width or in_chans * m * m
        layers: list = [nn.Conv2d(in_chans, width, m, m), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(hidden_layers - 1):
            layers += [nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [nn.Conv2d(width, (out_chans or in_chans) * mo * mo, 1), nn.PixelShuffle(mo)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- the isotropic contract ---------------------------------------------------------------------------------
class IsotropicMixin:
    """Patch-embedding access shared by ViT and ConvMixer.

    A subclass sets ``self._embed_path`` (dotted submodule path of the embedding, e.g. "patch_embed.proj"; a
    string, so the module is not registered twice), plus ``patch_size``, ``img_size``, ``grid_size``.
    """

    is_isotropic = True
    _embed_path: str
    grid_size: int

    @property
    def patch_embedding(self) -> PatchEmbedding:
        """The embedding module: ``nn.Conv2d`` (shared), :class:`BlockwiseEmbed` or :class:`KeyedEmbed`."""
        return self.get_submodule(self._embed_path)

    def set_patch_embedding(self, module: nn.Module) -> None:
        """Replace the embedding module in place (same submodule path, so state-dict names stay)."""
        parent, _, attr = self._embed_path.rpartition(".")
        setattr(self.get_submodule(parent), attr, module)

    @property
    def patch_embed_conv(self) -> nn.Conv2d:
        """The shared patch conv (kernel = stride = patch_size); error if the embedding is blockwise or keyed."""
        m = self.patch_embedding
        if not isinstance(m, nn.Conv2d):
            raise PatchcryptError(f"this model has a {self.embed} patch embedding, not one shared conv")
        return m

    @property
    def embed(self) -> str:
        """``"shared"``, ``"blockwise"`` or ``"keyed"``."""
        m = self.patch_embedding
        return "blockwise" if isinstance(m, BlockwiseEmbed) else "keyed" if isinstance(m, KeyedEmbed) else "shared"

    def to_blockwise(self):
        """Replace the shared patch conv by a :class:`BlockwiseEmbed` copying it to every position (in place).

        Outputs are unchanged; afterwards each position's embedding can be changed separately.
        Returns ``self``.
        """
        if self.embed == "keyed":  # its effective per-position maps, as a position-wise embedding stores them
            w, b = embed_matrix(self.patch_embedding)
            blockwise = BlockwiseEmbed(self.grid_size ** 2, self.in_chans, w.shape[1], self.patch_size).to(w.device,
                                                                                                          w.dtype)
            set_embed_matrix(blockwise, w, b)
            self.set_patch_embedding(blockwise)
        if self.embed == "shared":
            self.set_patch_embedding(BlockwiseEmbed.from_shared(self.patch_embed_conv, self.grid_size ** 2))
        return self

    def to_keyed(self):
        """Replace the shared patch conv by a :class:`KeyedEmbed` with the identity state (in place; outputs
        unchanged). Returns ``self``."""
        if self.embed == "shared":
            self.set_patch_embedding(KeyedEmbed.from_shared(self.patch_embed_conv, self.grid_size ** 2))
        elif self.embed != "keyed":
            raise PatchcryptError("this model has one embedding per position; it cannot take a keyed gather in "
                                  "front of one shared embedding")
        return self


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or when ``p == 0``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def resample_patch_kernel(weight: torch.Tensor, new_size: int) -> torch.Tensor:
    """Resize a patch kernel (D, C, p, p) → (D, C, q, q) so that embeddings of resized patches match.

    Pseudo-inverse resize (FlexiViT, as timm does it): with R the (q², p²) bicubic resize matrix,
    ``w' = pinv(R)ᵀ w``, so ⟨resize(x), w'⟩ = ⟨x, w⟩ exactly when upsampling (q ≥ p).
    """
    p = weight.shape[-1]
    if p == new_size:
        return weight
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    r = F.interpolate(basis, size=(new_size, new_size), mode="bicubic", align_corners=False, antialias=True)
    r = r.reshape(p * p, new_size * new_size).T                  # (q², p²)
    pinv = torch.linalg.pinv(r)                                  # (p², q²)
    out = weight.reshape(*weight.shape[:2], p * p).to(torch.float64) @ pinv
    return out.reshape(*weight.shape[:2], new_size, new_size).to(weight.dtype)
