"""The optional expert of :mod:`.choice`: a tiny CNN that tells a natural image's orientation, colour order
and inversion (rotation prediction, the standard self-supervised task, with two more heads), trained on
random crops of the attacker's public plain images.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .states import COLOUR_ORDERS, DIHEDRAL_COMPOSE, GLOBAL_STATES, inverse

_CNN_BATCH = 128


def _make_net(channels: int, size: int):
    """A deliberately small CNN (about 0.6 M multiply-adds per 32×32 image): three strided convolutions keep
    where things are (a 4×4 map, flattened, not pooled away: 'light at the top' needs the position)."""
    import torch.nn as nn

    def block(a: int, b: int) -> List:
        return [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]

    heads = 8 + (6 if channels == 3 else 0) + 2
    return nn.Sequential(*block(channels, 16), *block(16, 32), *block(32, 48), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(48 * (size // 8) ** 2, heads))


def _torch_state(x, d: int, colour: int, inv: bool):
    """A global state on (B, C, S, S) float tensors in [0, 1] (the same as apply_state on NHWC uint8)."""
    import torch

    x = torch.rot90(x, d % 4, dims=(2, 3))
    if d >= 4:
        x = torch.flip(x, dims=(3,))
    if x.shape[1] == 3 and colour:
        x = x[:, list(COLOUR_ORDERS[colour])]
    return 1.0 - x if inv else x


def _batch(pool, gen, batch: int, size: int):
    """Random crops of the public pool (N, T, T, C) resized to ``size``, photometric jitter, random states;
    returns inputs and the (dihedral, colour, inversion) labels that were applied."""
    import torch
    import torch.nn.functional as F

    n, t, _, c = pool.shape
    crop = int(torch.randint(int(0.65 * t), t + 1, (1,), generator=gen))
    idx = torch.randint(0, n, (batch, 1, 1), generator=gen)
    rows = torch.randint(0, t - crop + 1, (batch, 1, 1), generator=gen) + torch.arange(crop)[None, :, None]
    cols = torch.randint(0, t - crop + 1, (batch, 1, 1), generator=gen) + torch.arange(crop)[None, None, :]
    x = pool[idx, rows, cols].permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    gamma = torch.exp(0.25 * torch.randn(batch, 1, 1, 1, generator=gen))
    gain = 1 + 0.15 * torch.randn(batch, 1, 1, 1, generator=gen)
    x = (x.clamp(0, 1) ** gamma * gain).clamp(0, 1)
    labels = torch.stack([torch.randint(0, 8, (batch,), generator=gen),
                          torch.randint(0, 6 if c == 3 else 1, (batch,), generator=gen),
                          torch.randint(0, 2, (batch,), generator=gen)], 1)
    out = torch.empty_like(x)
    for d in range(8):
        sel = labels[:, 0] == d
        if sel.any():
            out[sel] = _torch_state(x[sel], d, 0, False)
    if c == 3:
        perm = torch.tensor(COLOUR_ORDERS)[labels[:, 1]]
        out = torch.gather(out, 1, perm[:, :, None, None].expand_as(out))
    inv = labels[:, 2].bool()[:, None, None, None]
    return torch.where(inv, 1.0 - out, out), labels


def train_classifier(pool_np: np.ndarray, seed: int, steps: int, size: int):
    """A tiny CNN predicting which (dihedral, colour order, inversion) was applied to a natural image crop
    (rotation prediction, the standard self-supervised task, with two more heads), trained for ``steps``
    steps on random crops of ``pool_np`` (N, T, T, C) uint8 resized to ``size``² (the network's input)."""
    import torch
    import torch.nn.functional as F

    pool = torch.from_numpy(pool_np).float() / 255.0
    gen = torch.Generator().manual_seed(seed)
    net = _make_net(pool.shape[3], size)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(steps):
        x, lab = _batch(pool, gen, _CNN_BATCH, size)
        out = _split_heads(net(x), pool.shape[3])
        loss = sum(F.cross_entropy(o, lab[:, k]) for k, o in enumerate(out) if o is not None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def _split_heads(logits, channels: int):
    """The classifier's (dihedral, colour order, inversion) logits; no colour head for one channel."""
    if channels == 3:
        return logits[:, :8], logits[:, 8:14], logits[:, 14:16]
    return logits[:, :8], None, logits[:, 8:10]


def classifier_log_probs(net, small: np.ndarray, mix: float) -> np.ndarray:
    """Per-image log-probability (N, 96) that each state fixes the image, from the classifier's three heads,
    averaged over the 8 dihedral views of each image (test-time augmentation); ``small`` is (N, S, S, C) uint8
    at the network's input size, and each head's probabilities are mixed with ``mix`` of the uniform."""
    import torch

    c = small.shape[3]
    x = torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2).float() / 255.0
    ld = torch.zeros(len(x), 8, dtype=torch.float64)
    lc = torch.zeros(len(x), 6 if c == 3 else 1, dtype=torch.float64)
    li = torch.zeros(len(x), 2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(8):
            hd, hc, hi = (None if h is None else torch.softmax(h.double(), 1)
                          for h in _split_heads(net(_torch_state(x, t, 0, False)), c))
            # the view is t∘g(natural): its dihedral label is compose(t, g)
            ld += hd[:, [DIHEDRAL_COMPOSE[t][g] for g in range(8)]] / 8
            lc += hc / 8 if hc is not None else 0.0
            li += hi / 8
    blend = lambda p: np.log((1 - mix) * p.numpy() + mix / p.shape[1])  # noqa: E731
    ld, lc, li = blend(ld), blend(lc), blend(li)
    out = np.empty((len(x), len(GLOBAL_STATES)))
    for s in GLOBAL_STATES:  # s fixes the image when the image is inverse(s) applied to a natural one
        g = inverse(s)
        out[:, s.index] = ld[:, g.dihedral] + (lc[:, g.colour] if c == 3 else 0.0) + li[:, int(g.invert)]
    return out


__all__ = ["train_classifier", "classifier_log_probs"]
