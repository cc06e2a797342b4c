"""The jigsaw solver's reconstructions, pinned: the piece and state grid of each case equals what the solver
gave before it was vectorised (issue 28), as a sha256 of ``np.stack([piece, state])`` in int64. A photo that
differs from the one the hashes were made on (another scikit-image or Pillow) skips, naming the case."""

import hashlib

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks.jigsaw import solve, states_for
from patchcrypt.ciphers import create_cipher
from patchcrypt.data.samples import sample_photos

# (scheme, photo size, M, photo index): sha256 of the photo, of the solved grid
GOLDEN = {
    ("etc", 224, 16, 1): ("8d005d1d22fd53134ae7025f45028a86a53c7b4146e72dd8d938f02fa401d04b",
                          "33b14117ce2ffe8178a02ac8e9ce055c1a4599d08db9e1e4ff066f7192f9c6d6"),
    ("etc", 96, 16, 0): ("ebfa634623c4d124bd3b7279ed4f7060616f91b487d06239f5006952f6367878",
                         "66fe483216757aba3c4b9035cd3b47ddef0f7c527b8b9ec570c4217bfad0598e"),
    ("etc", 64, 8, 2): ("5612c0fd25b189c4965f013b99d730dbb48cf2508479feafb05b9c3edb3e29a6",
                        "eff583038eb60ff1b0f0e1c60c6929571c3a0d8c4cd8a7631786486bc06654b7"),
    ("step-bs", 128, 16, 3): ("d2d5ce6edad4585c12bcbf55970d4aab7cd8e7b8e3b0665fbe7c236d15be423e",
                              "1f83b7499ccc392636fbc674405c1754b81aeced06af4b503bc868c4d7e0d7e5"),
}


@pytest.mark.parametrize("case", list(GOLDEN), ids=lambda c: "-".join(map(str, c)))
def test_jigsaw_grid_is_the_golden_one(case):
    scheme, size, m, idx = case
    photo_hash, grid_hash = GOLDEN[case]
    photo = sample_photos(size)[idx]
    if hashlib.sha256(photo.tobytes()).hexdigest() != photo_hash:
        pytest.skip(f"sample photo {idx} at {size} px differs from the one the golden grid was made on")
    enc = create_cipher(scheme, Key.from_bytes(bytes(range(32))), block_size=m).encrypt(photo[None])[0]
    piece, state = solve(enc, m, states_for(scheme))
    got = hashlib.sha256(np.stack([piece, state]).astype(np.int64).tobytes()).hexdigest()
    assert got == grid_hash, f"pieces {piece.tolist()}, states {state.tolist()}"
