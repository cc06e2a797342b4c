"""EtC: `etc` images survive JPEG, and decrypt to the quality of plain JPEG (DESIGN §6)."""

import pytest

from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.codec import bits_per_pixel, decode_image, encode_jpeg
from patchcrypt.metrics import psnr


# size bound: with 8x8 blocks every DCT block's DC prediction crosses a scrambled border, so M=8 4:4:4
# costs a little more than M=16 4:2:0 (benchmarks/compression.py measures it over many images)
@pytest.mark.parametrize("m, subsampling, size_ratio", [(16, "420", 1.10), (8, "444", 1.15)])
def test_etc_jpeg_matches_plain_jpeg(real_photo, m, subsampling, size_ratio):
    cipher = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=m)
    enc = cipher.encrypt(real_photo)
    plain_jpeg = encode_jpeg(real_photo, 90, subsampling)
    etc_jpeg = encode_jpeg(enc, 90, subsampling)
    ref = psnr(real_photo, decode_image(plain_jpeg))
    got = psnr(real_photo, cipher.decrypt(decode_image(etc_jpeg, upsampling="block")))
    assert got > ref - 0.5
    assert len(etc_jpeg) < size_ratio * len(plain_jpeg)
    assert bits_per_pixel(len(etc_jpeg), 224, 224) < 4


def test_fancy_upsampling_mixes_blocks(real_photo):
    # libjpeg's default chroma upsampling interpolates across macroblocks: after NP the borders suffer
    cipher = create_cipher("step-np", Key.from_bytes(bytes(32)), block_size=16)
    data = encode_jpeg(cipher.encrypt(real_photo), 90, "420")
    fancy = psnr(real_photo, cipher.decrypt(decode_image(data)))
    block = psnr(real_photo, cipher.decrypt(decode_image(data, upsampling="block")))
    assert block > fancy + 1.0
