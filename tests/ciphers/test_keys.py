import json
import os
import stat

import numpy as np
import pytest

from patchcrypt.ciphers import create_cipher
from patchcrypt.errors import PatchcryptError
from patchcrypt.keys import Key, encode_label


def test_fingerprint_definition():
    import hashlib

    k = Key.from_bytes(bytes(range(32)))
    assert k.fingerprint == hashlib.sha256(b"patchcrypt/v1/fingerprint" + bytes(range(32))).hexdigest()[:16]
    assert bytes(range(32)).hex() not in repr(k)


def test_save_load_mode_and_refuse_overwrite(tmp_path):
    k = Key.generate()
    p = tmp_path / "k.json"
    k.save(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    doc = json.loads(p.read_text())
    assert doc["format"] == "patchcrypt-key" and doc["version"] == 1 and doc["fingerprint"] == k.fingerprint
    assert Key.load(p) == k
    with pytest.raises(PatchcryptError, match="exists"):
        Key.generate().save(p)
    k2 = Key.generate()
    k2.save(p, force=True)
    assert Key.load(p) == k2


def test_group_readable_key_warns(tmp_path):
    p = tmp_path / "k.json"
    Key.generate().save(p)
    os.chmod(p, 0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        Key.load(p)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": "patchcrypt-key", "version": 1, "key": "!!"}',
                                  '{"format": "patchcrypt-key", "version": 1, "key": "AAAA"}',
                                  '{"format": "other", "version": 1, "key": "AAAA"}'])
def test_malformed_key_files(tmp_path, text):
    p = tmp_path / "bad.json"
    p.write_text(text)
    os.chmod(p, 0o600)
    with pytest.raises(PatchcryptError, match="malformed key file"):
        Key.load(p)


def test_missing_key_file(tmp_path):
    with pytest.raises(PatchcryptError, match="not found"):
        Key.load(tmp_path / "nope.json")


def test_streams_are_deterministic_and_domain_separated():
    k = Key.from_bytes(bytes(range(32)))
    a = k.stream(("scheme", "etc", "step", "BS")).permutation(100)
    b = k.stream(("scheme", "etc", "step", "BS")).permutation(100)
    c = k.stream(("scheme", "etc", "step", "RF")).permutation(100)
    d = k.stream(("scheme", "etc", "step", "BS"), nonce=b"x").permutation(100)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)
    assert sorted(a) == list(range(100))
    # labels are length-prefixed and typed: no concatenation collisions
    assert encode_label(["ab", "c"]) != encode_label(["a", "bc"])
    assert encode_label([1]) != encode_label(["1"])


def test_integers_uniform_range():
    s = Key.from_bytes(bytes(32)).stream(("t",))
    v = s.integers(6, 60000)
    assert v.min() == 0 and v.max() == 5
    counts = np.bincount(v, minlength=6)
    assert np.all(np.abs(counts - 10000) < 500)


def test_key_sensitivity(real_photo):
    x = real_photo[:64, :64]
    k1, k2 = Key.from_bytes(bytes(32)), Key.from_bytes(bytes([1]) + bytes(31))
    for name in ["etc", "block-pixel", "le", "ele", "pe", "etc-gray"]:
        m = 8
        y1 = create_cipher(name, k1, block_size=m).encrypt(x)
        assert np.array_equal(y1, create_cipher(name, k1, block_size=m).encrypt(x))
        assert not np.array_equal(y1, create_cipher(name, k2, block_size=m).encrypt(x))
        if name not in ("pe", "etc-gray"):
            assert not np.array_equal(y1, create_cipher(name, k1, block_size=16).encrypt(x))
    # another image shape draws independent key material (permutation of blocks is not a prefix)
    c = create_cipher("step-bs", k1, block_size=8)
    assert not np.array_equal(c.program((64, 64, 3)).map.g[:100], c.program((64, 128, 3)).map.g[:100])
