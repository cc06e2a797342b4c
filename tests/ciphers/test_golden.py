"""Golden vectors: a fixed key, a fixed real image, and the sha256 of the encrypted bytes per scheme.

If one of these changes, data sets users encrypted with an earlier version would no longer decrypt.
Never update a hash to make a test pass; a change of format needs a new format version.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchcrypt.ciphers import create_cipher
from patchcrypt.keys import Key

PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "golden_photo.png"
KEY = Key.from_bytes(bytes(range(32)))
NONCE = bytes(range(16))

GOLDEN = {
    # (scheme, block size, per_image): sha256 of encrypt(photo) as C-ordered uint8 (H, W, C) bytes
    ('plain', 4, False): "f4f1fc3127843b2c5278e5a903751ec6da8b9699a21812fb22d3d0a06accd502",
    ('etc', 4, False): "864fae1701f454a7f3135ade3b8eed03bba2a9e144d9c0de4222eda0732f93b0",
    ('etc-gray', 8, False): "c8d819c9053d54c82f77fdf53cbdc90b8f8918575687938914264a49ef5e9698",
    ('block-pixel', 4, False): "ef933616fc0b5e2e2abad039e5eabd9bd07867f9bb99a9299c08fa42394ace2d",
    ('block-pixel-cs', 4, False): "b2e59f4c063fe70accb6c6658fb3e3b2b56d501656474281b9bf5031873c4f70",
    ('le', 4, False): "b969c4c8477d48d8e0c3c4689d98115b1d95339db732e4bb1728470b88d142ac",
    ('ele', 4, False): "b59878028fdd23eb6b3053b8f36efcbedf2996ef4002a88dc9eeffb3fff34826",
    ('pe', 4, False): "19a70bbcf75d1a6bbeeb7daed8423ab1c5a503d690a5ca3a0a070fc388e12d20",
    ('etc', 16, False): "10a6bdf7981959d88493a383b49e5894a0b330318d07a2b272b136fe5b6f16ed",
    ('block-pixel', 8, True): "bd23c221bb2199c8101e82458dbb435956d8d2711dae3aee4e67c2175fa577db",
    ('ele', 4, True): "e76142edbcbe6c41474f1252e10bca3c4d64c5b3a48fb14b6c2885adb58eea7d",
}


def photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB"))


def digest(scheme: str, m: int, per_image: bool) -> str:
    c = create_cipher(scheme, KEY, block_size=m, per_image=per_image)
    y = c.encrypt(photo()[None], nonces=[NONCE] if per_image else None)[0]
    return hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()


CASES = [(s, 8 if s == "etc-gray" else 4, False) for s in
         ["plain", "etc", "etc-gray", "block-pixel", "block-pixel-cs", "le", "ele", "pe"]] + \
        [("etc", 16, False), ("block-pixel", 8, True), ("ele", 4, True)]


@pytest.mark.parametrize("scheme,m,per_image", CASES)
def test_golden_vector(scheme, m, per_image):
    assert digest(scheme, m, per_image) == GOLDEN[(scheme, m, per_image)]


def test_key_fingerprint_golden():
    assert KEY.fingerprint == GOLDEN_FINGERPRINT


GOLDEN_FINGERPRINT = "d487e61c0a3eedb7"
