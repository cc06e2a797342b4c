"""One decoding rule for EtC JPEGs (``EncryptionRecord.jpeg_upsampling``): the server, the reader of an
encrypted tree (server-side training) and training's on-the-fly JPEG round trip decode a 224×224, M=16, 4:2:0
``etc`` JPEG exactly as ``decrypt`` does, with chroma interpolated inside each macroblock.

Each check also asserts that libjpeg's default decode differs on this image, so it would fail on a path that
decodes with the default.
"""

import numpy as np
import pytest
import torch

from patchcrypt import Key
from patchcrypt.codec import decode_image
from patchcrypt.data import load_dataset
from patchcrypt.files import decrypt_tree, encrypt_tree
from patchcrypt.record import EncryptionRecord

SIZE, M, Q = 224, 16, 90


@pytest.fixture(scope="module")
def etc_tree(tmp_path_factory):
    """A plain tree of two 224×224 photos (one per class), its ``etc`` M=16 Q=90 JPEG encryption, the key."""
    from patchcrypt.codec import write_image
    from patchcrypt.data.samples import sample_photos

    root = tmp_path_factory.mktemp("jpeg-rule")
    key_path = root / "owner.key"
    Key.generate().save(key_path)
    photos = sample_photos(SIZE)[:2]
    for cls, photo in zip(("a", "b"), photos):
        (root / "plain" / cls).mkdir(parents=True)
        write_image(root / "plain" / cls / "0.png", photo)
    manifest = encrypt_tree(root / "plain", root / "enc", Key.load(key_path), "etc", M, file_format="jpeg",
                            quality=Q)
    assert manifest["subsampling"] == "420"
    return root, key_path, photos


def _files(root):
    return [root / "enc" / c / "0.jpg" for c in ("a", "b")]


def _as_decrypt(root):
    """The ciphertext as decrypt decodes it, and as libjpeg's default does."""
    datas = [p.read_bytes() for p in _files(root)]
    block = np.stack([decode_image(d, upsampling="block") for d in datas])
    fancy = np.stack([decode_image(d) for d in datas])
    assert not np.array_equal(block, fancy)  # the two decodes differ on these files: the checks below can fail
    return block


def test_the_rule():
    rec = EncryptionRecord(scheme="etc", block_size=16)
    assert rec.jpeg_upsampling == "block"
    assert rec.replace(block_size=32).jpeg_upsampling == "block"
    assert rec.replace(block_size=8).jpeg_upsampling == "fancy"      # not aligned with 16×16 macroblocks
    assert rec.replace(recorded_subsampling="444").jpeg_upsampling == "fancy"
    assert rec.replace(scheme="plain").jpeg_upsampling == "fancy"


def test_decrypt_uses_the_rule(etc_tree):
    root, key_path, _ = etc_tree
    key = Key.load(key_path)
    block = _as_decrypt(root)
    decrypt_tree(root / "enc", root / "dec", key)
    cipher = EncryptionRecord.from_manifest(load_dataset(root / "enc").manifest).cipher(key)
    got = np.stack([decode_image((root / "dec" / c / "0.png").read_bytes()) for c in ("a", "b")])
    assert np.array_equal(got, cipher.decrypt(block))


def test_reader_of_an_encrypted_tree_decodes_as_decrypt(etc_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHCRYPT_CACHE", str(tmp_path / "cache"))
    root, _, _ = etc_tree
    block = _as_decrypt(root)
    for _ in range(2):  # the second load comes from the cache, which must hold the same decode
        ds = load_dataset(root / "enc")
        assert ds.files == ["a/0.jpg", "b/0.jpg"]
        assert np.array_equal(ds.images, block)


def test_training_round_trip_decodes_as_decrypt(etc_tree):
    from patchcrypt.train import TrainConfig, resolve_encryption

    root, key_path, photos = etc_tree
    plain = load_dataset(root / "plain")
    cfg = TrainConfig(data=str(root / "plain"), scheme="etc", key=str(key_path), block_size=M, jpeg_quality=Q)
    pipeline, *_ = resolve_encryption(cfg, plain)
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).contiguous()
    got = pipeline(x).permute(0, 2, 3, 1).numpy()
    # the same key, quality and subsampling as the encrypted tree: the same JPEG bytes, so the same decode
    assert np.array_equal(got, _as_decrypt(root))


@pytest.mark.slow  # a real server on loopback
def test_server_decodes_as_decrypt(etc_tree, tmp_path, monkeypatch):
    import httpx

    from patchcrypt.models import create_model
    from patchcrypt.models.checkpoint import save_checkpoint
    from patchcrypt.serve import app as serve_app

    root, key_path, _ = etc_tree
    torch.manual_seed(0)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, create_model("vit_tiny_patch16_224", depth=1, num_classes=2), model_name="vit_tiny_patch16_224",
                    model_kwargs={"depth": 1, "num_classes": 2}, classes=["a", "b"],
                    record=EncryptionRecord(scheme="etc", block_size=M, key_fingerprint=Key.load(key_path).fingerprint,
                                            jpeg_quality=Q))
    seen = []
    submit = serve_app.Batcher.submit

    async def spy(self, images):
        seen.append(images.copy())
        return await submit(self, images)

    monkeypatch.setattr(serve_app.Batcher, "submit", spy)
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in _files(root)]
    with serve_app.running_server(serve_app.create_app(ckpt)) as url:
        r = httpx.post(f"{url}/v1/classify", params={"top_k": 1}, files=files, timeout=120)
    assert r.status_code == 200, r.text
    assert len(seen) == 1 and np.array_equal(seen[0], _as_decrypt(root))
