"""The encryption record: one reading of manifests, checkpoints, runs, /v1/model and the owner's settings."""

import numpy as np
import pytest
import torch

from patchcrypt.ciphers import create_cipher
from patchcrypt.errors import KeyMismatchError, PatchcryptError
from patchcrypt.files import encrypt_tree
from patchcrypt.keys import Key
from patchcrypt.models import load_checkpoint, save_checkpoint
from patchcrypt.record import EncryptionRecord, subsampling_for

KEY = Key.from_bytes(bytes(range(32)))
OTHER = Key.from_bytes(bytes(32))


def test_subsampling_rule():
    assert [subsampling_for(m) for m in (None, 1, 4, 8, 16, 32, 48)] == ["444"] * 4 + ["420"] * 3
    assert EncryptionRecord(scheme="etc", block_size=16).subsampling == "420"
    assert EncryptionRecord(scheme="etc", block_size=16, recorded_subsampling="444").subsampling == "444"


def test_manifest_subsampling_is_read(tmp_path):
    src = tmp_path / "src" / "cls"
    src.mkdir(parents=True)
    from patchcrypt.codec import encode_png

    rng = np.random.default_rng(0)
    for i in range(2):
        (src / f"{i}.png").write_bytes(encode_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    manifest = encrypt_tree(tmp_path / "src", tmp_path / "enc", KEY, "block-pixel", 16, "jpeg", 90, "444")
    rec = EncryptionRecord.from_manifest(manifest)
    assert rec.subsampling == "444"  # as written, not the block-size rule's "420"
    assert (rec.scheme, rec.block_size, rec.key_fingerprint, rec.jpeg_quality, rec.image_shape) == \
        ("block-pixel", 16, KEY.fingerprint, 90, (32, 32, 3))
    rec.check_key(KEY)
    with pytest.raises(KeyMismatchError, match="wrong key: the data was encrypted with key"):
        rec.check_key(OTHER)


def test_cipher_is_the_recorded_one():
    rec = EncryptionRecord(scheme="block-pixel", block_size=4, key_fingerprint=KEY.fingerprint)
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(rec.cipher(KEY).encrypt(x), create_cipher("block-pixel", KEY, block_size=4).encrypt(x))
    with pytest.raises(KeyMismatchError):
        rec.cipher(OTHER)
    rec.cipher(OTHER, verify=False)  # a throwaway key, shown only to illustrate the scheme
    assert EncryptionRecord(scheme="plain").cipher(None).name == "plain"
    with pytest.raises(PatchcryptError, match="without a block size"):
        EncryptionRecord(scheme="etc").cipher(KEY)


def test_checkpoint_round_trip(tmp_path):
    rec = EncryptionRecord(scheme="etc", block_size=4, key_fingerprint=KEY.fingerprint, jpeg_quality=85,
                           recorded_subsampling="444")
    path = save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2), model_name="x",
                           model_kwargs={"img_size": 8, "in_chans": 3}, classes=["a", "b"], record=rec)
    back = EncryptionRecord.from_checkpoint(load_checkpoint(path))
    assert back == rec.replace(image_shape=(8, 8, 3))
    with pytest.raises(KeyMismatchError, match="wrong key: the model expects key"):
        back.check_key(OTHER)


def test_server_run_and_owner():
    info = {"scheme": "block-pixel", "block_size": 4, "key_fingerprint": KEY.fingerprint, "per_image": False,
            "jpeg_quality": None, "image_size": [8, 8, 3]}
    server = EncryptionRecord.from_server(info)
    owner = EncryptionRecord.from_owner("block-pixel", 4, KEY.fingerprint)
    assert server.replace(image_shape=None) == owner
    with pytest.raises(PatchcryptError, match="--allow-weak-scheme"):
        EncryptionRecord.from_owner("plain", None)
    run = EncryptionRecord.from_run({"scheme": "etc", "block_size": 8, "jpeg_quality": None},
                                    {"scheme": "etc", "block_size": 8, "key_fingerprint": KEY.fingerprint,
                                     "jpeg_quality": 75})
    assert (run.scheme, run.block_size, run.jpeg_quality, run.subsampling) == ("etc", 8, 75, "444")
    assert EncryptionRecord.from_run({}).is_plain


def test_split_tree_manifest_records_class_folders(tmp_path):
    from patchcrypt.codec import encode_png

    img = encode_png(np.zeros((8, 8, 3), np.uint8))
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / "src" / split / cls).mkdir(parents=True)
            (tmp_path / "src" / split / cls / "0.png").write_bytes(img)
    manifest = encrypt_tree(tmp_path / "src", tmp_path / "enc", KEY, "block-pixel", 4)
    assert manifest["classes"] == ["cat", "dog"]  # not ["test", "train"]
    flat = encrypt_tree(tmp_path / "src" / "train", tmp_path / "enc2", KEY, "block-pixel", 4)
    assert flat["classes"] == ["cat", "dog"]


# -- the writers: every file or answer stating these facts is written from a record and read back the same ------
def test_manifest_written_from_the_record_reads_back(tmp_path):
    from patchcrypt.data.manifest import build_manifest, read_manifest, write_manifest

    cipher = create_cipher("etc-gray", KEY, block_size=8)
    rec = EncryptionRecord.from_cipher(cipher, jpeg_quality=80, subsampling="444", image_shape=(32, 32, 3))
    assert rec.options == {"subsampling": cipher.subsampling, "color": cipher.color}  # scheme options, no key
    manifest = build_manifest(rec, steps=cipher.describe()["steps"], file_format="jpeg", file_count=0,
                              classes=None, files={})
    write_manifest(tmp_path, manifest)
    back = read_manifest(tmp_path)
    assert "_root" not in back  # the folder is returned beside the manifest (find_manifest), not inside it
    assert EncryptionRecord.from_manifest(back) == rec
    with pytest.raises(PatchcryptError, match="key_fingerprint"):  # the builder checks what it writes
        build_manifest(rec.replace(key_fingerprint="nope"), steps=[], file_format="png", file_count=0,
                       classes=None, files={})


def test_announcement_and_checkpoint_fields_read_back():
    rec = EncryptionRecord(scheme="etc", block_size=16, key_fingerprint=KEY.fingerprint, jpeg_quality=90,
                           recorded_subsampling="444", holder="the model expects")
    info = {**rec.to_announcement(), "image_size": [32, 32, 3]}
    assert EncryptionRecord.from_server(info) == rec.replace(image_shape=(32, 32, 3))
    assert EncryptionRecord.from_checkpoint(rec.checkpoint_fields()) == rec


def test_require_same_names_the_first_difference():
    want = EncryptionRecord(scheme="etc", block_size=16, key_fingerprint=KEY.fingerprint, holder="the model expects")
    want.require_same(want.replace(jpeg_quality=90, holder="the data was encrypted with"))  # other facts: not asked
    with pytest.raises(KeyMismatchError, match="^scheme: the data was encrypted with 'pe', but the model expects 'etc'$"):
        want.require_same(EncryptionRecord(scheme="pe", block_size=8, holder="the data was encrypted with"))
    with pytest.raises(KeyMismatchError, match=f"key fingerprint: .* none, but the model expects '{KEY.fingerprint}'"):
        want.require_same(want.replace(key_fingerprint=None))


def test_manifests_are_built_in_one_place():
    """Only data/manifest.py names the manifest format: every writer goes through build_manifest."""
    from pathlib import Path

    import patchcrypt

    src = Path(patchcrypt.__file__).parent
    writers = [p.relative_to(src).as_posix() for p in src.rglob("*.py")
               if "MANIFEST_VERSION" in p.read_text(encoding="utf-8")]
    assert writers == ["data/manifest.py"]
