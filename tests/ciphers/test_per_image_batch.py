"""Per-image keys: the batched gather gives every image exactly what that image alone gives."""

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.ciphers.registry import SCHEMES

KEY = Key.from_bytes(bytes(range(32)))


def _cipher(name):
    spec = SCHEMES[name]
    m = spec.resolve_block_size(None, default=4)
    return create_cipher(name, KEY, block_size=m, per_image=True), spec


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_batch_equals_one_image_at_a_time(name):
    cipher, _ = _cipher(name)
    c = 3  # every scheme takes colour images (etc-gray through its composite)
    x = np.random.default_rng(0).integers(0, 256, (5, 16, 16, c), dtype=np.uint8)
    nonces = cipher.new_nonces(5)
    batch = cipher.encrypt(x, nonces)
    alone = np.concatenate([cipher.encrypt(x[i:i + 1], [nonces[i]]) for i in range(5)])
    assert np.array_equal(batch, alone)
    back = cipher.decrypt(batch, nonces)
    assert np.array_equal(back, np.concatenate([cipher.decrypt(batch[i:i + 1], [nonces[i]]) for i in range(5)]))
    if name != "etc-gray":  # its colour composite is exact only on images that came from one
        assert np.array_equal(back, x)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    yt = cipher.encrypt(xt, nonces)
    assert np.array_equal(yt.permute(0, 2, 3, 1).numpy(), batch)
    assert np.array_equal(cipher.decrypt(yt, nonces).permute(0, 2, 3, 1).numpy(), back)
