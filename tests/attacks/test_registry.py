"""The attack registry: threat models, applicability from scheme facts, user schemes as targets."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks import (ATTACKS, AttackSpec, Threat, get_attack, list_attacks, load_user_scheme, make_target,
                                register_attack, run_all, run_attack)
from patchcrypt.attacks.kpa import structured
from patchcrypt.attacks.target import Target
from patchcrypt.ciphers import get_scheme, list_ciphers
from patchcrypt.data import sample_photos
from patchcrypt.errors import PatchcryptError

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "my_scheme.py") + ":MyScheme"


@pytest.fixture(scope="module")
def photos():
    return sample_photos(32)   # real photos, uint8 (6, 32, 32, 3)


def why_not(attack, scheme, m=4, per_image=False):
    return get_attack(attack).why_not(make_target(scheme, m, key=Key.from_bytes(bytes(32)), per_image=per_image))


def test_every_attack_declares_a_threat_model():
    assert {"fr", "jigsaw", "gan", "itn", "kpa"} <= set(list_attacks())
    assert all(isinstance(a.threat, Threat) for a in ATTACKS.values())
    assert "kpa" in list_attacks(Threat.KNOWN_PLAINTEXT) and "kpa" not in list_attacks(Threat.CIPHERTEXT_ONLY)
    assert set(list_attacks(Threat.CIPHERTEXT_ONLY)) >= {"fr", "jigsaw", "itn"}
    with pytest.raises(PatchcryptError, match="unknown attack"):
        get_attack("nope")


def test_applicability_of_the_registered_schemes():
    assert why_not("jigsaw", "etc") is None and why_not("jigsaw", "step-bs") is None
    assert "BF" in why_not("jigsaw", "block-pixel") and "PS" in why_not("jigsaw", "block-pixel")
    assert "4-bit" in why_not("jigsaw", "le")
    assert "no scrambled blocks" in why_not("jigsaw", "pe")
    assert why_not("jigsaw", "etc", per_image=True) is None       # each image solved alone, under its own key
    assert why_not("jigsaw", "etc-gray", 8) is None                        # solved on its composite
    assert "composite" in why_not("gan", "etc-gray", 8) and "composite" in why_not("itn", "etc-gray", 8)
    assert "lossy" in why_not("kpa", "etc-gray", 8)
    assert "no key" in why_not("kpa", "plain")
    assert "per-image" in why_not("kpa", "block-pixel", per_image=True)
    assert all(why_not("fr", s, 8 if s == "etc-gray" else 4) is None for s in list_ciphers())


def test_applicability_comes_from_facts_not_names():
    """A scheme with etc-gray's facts under another name gets etc-gray's answers."""
    spec = replace(get_scheme("etc-gray"), name="renamed")
    t = Target("renamed", spec, 8, False, lambda a: a, lambda a: a, cipher=None, registered=False)
    assert "composite" in get_attack("gan").why_not(t) and "lossy" in get_attack("kpa").why_not(t)
    assert "to_composite" in get_attack("jigsaw").why_not(t)   # no composite view to solve on
    # the structured known-plaintext solver is chosen by steps, and picks the schemes it always did
    old = {"block-pixel", "block-pixel-cs", "step-bs", "step-ps", "step-bf", "step-cs-shared"}
    published = {"ak-shuffle", "ak-flip"}   # AprilPyone & Kiya's pixel shuffling and bit flipping: PS and BF alone
    chosen = {n for n in list_ciphers(include_steps=True) if structured(get_scheme(n))}
    assert chosen == old | {"step-rf-shared", "patch-shuffle"} | published
    assert structured(replace(get_scheme("block-pixel"), name="anything"))


def test_keyable_from_spec():
    assert get_scheme("block-pixel").keyable == "shared" and get_scheme("step-rf-shared").keyable == "shared"
    assert get_scheme("etc").keyable == "position-wise" and get_scheme("pe").keyable == "position-wise"
    assert get_scheme("le").keyable is None and get_scheme("etc-gray").keyable is None
    assert get_scheme("plain").keyable is None
    assert get_scheme("etc-gray").composite and not get_scheme("etc").composite


def test_kpa_on_rotation_shared_uses_structured_solver(photos):
    res = run_attack("kpa", "step-rf-shared", 4, photos[:2], train_images=photos[2:], key=Key.from_bytes(bytes(32)))
    assert res.extra["solver"] == "structured" and res.extra["key_map_fraction"] == 1.0


def test_an_attack_registers_itself_with_the_decorator_and_runs_on_any_target(photos):
    seen = {}

    @register_attack("toy", Threat.CIPHERTEXT_MANY, "test", applies=lambda t: None if "BS" in (t.steps or ()) else
                     "no BS", headline=("seconds",))
    def run_toy(target, test, train, options):
        from patchcrypt.attacks.fr import fr_attack

        seen.update(name=target.name, registered=target.registered, epochs=options.epochs)
        return fr_attack(test, target.encrypt(test), target.name)

    try:
        assert get_attack("toy").run is run_toy and get_attack("toy").headline[:3] == (
            "readable", "exact_images_global", "ssim_global")
        with pytest.raises(ValueError, match="twice"):
            register_attack(get_attack("toy"))
        key = Key.from_bytes(bytes(range(32)))
        report = run_all("block-pixel", 4, photos[:2], photos[2:4], key=key, names=["fr", "toy", "kpa"], epochs=2)
        rows = {r["attack"]: r for r in report["attacks"]}
        assert rows["toy"]["applies"] and rows["toy"]["threat"] == "ciphertext-only, many images"
        assert seen == {"name": "block-pixel", "registered": True, "epochs": 2}
        assert rows["kpa"]["headline"]["key_map_fraction"] == 1.0
        assert run_all("pe", 4, photos[:2], names=["toy"])["attacks"][0]["reason"] == "no BS"
        user = run_all(EXAMPLE, None, photos[:2], names=["toy"])["attacks"][0]   # a user scheme: the same runner
        assert user["applies"] and seen["name"] == "my-scheme" and not seen["registered"]
    finally:
        ATTACKS.pop("toy")


def test_user_scheme_is_attacked_like_a_registered_one(photos):
    res = run_attack("cpa", EXAMPLE, None, photos[:2])
    m = res.metrics()
    assert m["exact_images"] == 1.0 and m["key_map_fraction"] is None and res.scheme == "my-scheme"
    with pytest.raises(PatchcryptError, match="does not apply.*BF"):
        run_attack("jigsaw", EXAMPLE, None, photos[:2])
    t = make_target(EXAMPLE, None, photos[:2])
    assert t.facts == {"deterministic": True, "keeps_shape": True, "decrypt_exact": True,
                       "steps": ["BS", "RF", "PS-shared", "BF"]}
    # --per-image for a user scheme: one instance (one key) per image
    same = np.stack([photos[0], photos[0]])
    enc = make_target(EXAMPLE, None, photos[:2], per_image=True).encrypt(same)
    assert not np.array_equal(enc[0], enc[1])
    assert "per-image" in get_attack("kpa").why_not(make_target(EXAMPLE, None, photos[:2], per_image=True))


class Minimal:
    def __init__(self, key, block_size):
        self.mask = np.frombuffer(key, np.uint8)[0]

    def encrypt(self, images):
        return images ^ self.mask


class CustomStep(Minimal):
    block_size = 4
    steps = ("BS", "XOR")


class Random(Minimal):
    block_size = 4
    steps = ("BF",)

    def encrypt(self, images):
        return images ^ np.random.default_rng().integers(0, 256, images.shape, dtype=np.uint8)


def test_undeclared_and_unmodelled_facts_say_why(photos):
    t = make_target(Minimal, 4, photos[:2])
    assert not t.steps_declared and t.facts["decrypt_exact"] is None
    assert get_attack("jigsaw").why_not(t) is None        # undeclared: the solver tries every block state
    assert get_attack("kpa").why_not(t) is None           # the black-box solver needs no declared steps
    assert get_attack("fr").why_not(t) is None
    c = make_target(CustomStep, None, photos[:2])
    assert get_attack("kpa").why_not(c) is None and "XOR" in get_attack("jigsaw").why_not(c)
    with pytest.raises(PatchcryptError, match="not deterministic"):      # a bug unless it says so
        make_target(Random, None, photos[:2])
    r = make_target(type("Declared", (Random,), {"per_image": True}), None, photos[:2])
    assert r.per_image and not r.facts["deterministic"] and "per-image" in get_attack("kpa").why_not(r)
    declared = make_target(type("Declared", (CustomStep,), {"per_image": True, "steps": ("BS",)}), None, photos[:2])
    assert declared.per_image and "per-image" in get_attack("kpa").why_not(declared)


def test_user_scheme_errors_are_one_line(tmp_path, photos):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\n"
                   "class NoEncrypt:\n    block_size = 4\n    def __init__(self, key, block_size): pass\n"
                   "class Floats(NoEncrypt):\n    def encrypt(self, x): return x.astype(np.float32)\n"
                   "class Short(NoEncrypt):\n    def encrypt(self, x): return x[:1]\n"
                   "class NoSize:\n    def __init__(self, key, block_size): pass\n    def encrypt(self, x): return x\n"
                   "class BadInit(NoSize):\n    block_size = 4\n    def __init__(self, key): pass\n"
                   "class Raises(NoEncrypt):\n    def encrypt(self, x): raise RuntimeError('boom')\n")
    for ref, match in ((f"{tmp_path}/nope.py:X", "no such file"), ("no_such_module_xyz:X", "module not found"),
                       (f"{bad}:Missing", "has no class 'Missing'"), (f"{bad}:NoEncrypt", "no encrypt"),
                       (f"{bad}:Floats", "dtype float32, expected uint8"), (f"{bad}:Short", "for 2 images"),
                       (f"{bad}:NoSize", "block_size"), (f"{bad}:BadInit", "failed: TypeError"),
                       (f"{bad}:Raises", "encrypt failed.*boom"), ("a:", "expected a registered scheme")):
        with pytest.raises(PatchcryptError, match=match) as err:
            run_attack("fr", ref, None, photos[:2])
        assert "\n" not in str(err.value)
    with pytest.raises(PatchcryptError, match="importing"):
        (tmp_path / "syntax.py").write_text("def (:\n")
        load_user_scheme(f"{tmp_path}/syntax.py:X")
