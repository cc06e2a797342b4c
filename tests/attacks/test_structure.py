"""The shared pieces the attacks are built from: step facts, key maps, the keyless colour conversion, the one
QAP local search and the one nibble packer; and the public names of the split packages."""

import itertools

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.ciphers import StepSpec, create_cipher, get_scheme, list_ciphers
from patchcrypt.ciphers.base import STEP_FACTS
from patchcrypt.ciphers.etc_gray import from_composite, to_composite

SYMBOLS = sorted(STEP_FACTS)


def _with(flag) -> set:
    return {s for s in SYMBOLS if flag(StepSpec(s))}


def test_step_facts_name_the_sets_the_attacks_used_to_spell_out():
    """Each set of step symbols an attack once declared for itself is now one reading of the flags."""
    from patchcrypt.attacks.many.facts import blocks_models, composite_models, nibble_models, pixel_models

    assert SYMBOLS == ["BF", "BS", "CS", "LE", "NP", "NPV", "PS", "RF"]
    assert _with(lambda s: s.block_state) == {"BS", "RF", "NP", "CS"}          # jigsaw, kpa, cpa "pixel"
    assert _with(lambda s: s.value_map) == set(SYMBOLS)                       # cpa "block-local"
    assert _with(blocks_models) == {"BS", "RF", "NP", "BF", "CS", "PS"}
    assert _with(composite_models) == {"BS", "RF", "NP"}
    assert _with(pixel_models) == {"NPV", "CS"}
    assert _with(lambda s: s.inverts) == {"NP", "BF", "NPV"}
    assert _with(lambda s: s.same_for_every_block) == {"BF"}
    assert not _with(nibble_models) and nibble_models(StepSpec("LE", shared=True))
    for flag, sym in [("moves_blocks", "BS"), ("rotates_blocks", "RF"), ("inverts_blocks", "NP"), ("flip_mask", "BF"),
                      ("inverts_values", "NPV"), ("shuffles_colours", "CS"), ("shuffles_pixels", "PS"),
                      ("nibbles", "LE")]:
        assert _with(lambda s: getattr(s, flag)) == {sym}, flag
    unknown = StepSpec("XOR")   # a user's own step: no solver models it
    assert not (unknown.value_map or unknown.block_state or unknown.inverts or unknown.same_for_every_block)


def test_many_image_methods_read_off_the_flags():
    from patchcrypt.attacks.many import method_for, supported

    want = {"plain": None, "etc": "blocks", "etc-gray": "composite", "block-pixel": "blocks",
            "block-pixel-cs": "blocks", "le": "nibble", "ele": "nibble-blocks", "pe": "pixel"}
    assert {n: method_for(get_scheme(n)) for n in want} == want
    assert set(supported()) >= {"etc", "etc-gray", "block-pixel", "le", "pe", "step-ps-perblock", "step-bf"}


def test_key_map_is_the_compiled_map_and_the_conversion_needs_no_key():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    cipher = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=4)
    mp = cipher.key_map((16, 16, 3))
    assert np.array_equal(cipher.encrypt(x).reshape(2, -1), x.reshape(2, -1)[:, mp.g] ^ mp.m)
    for sub in ("420", "444"):
        gray = create_cipher("etc-gray", Key.from_bytes(bytes(range(32))), block_size=8, subsampling=sub)
        comp = to_composite(x, sub)
        assert np.array_equal(comp, gray.to_composite(x, False))
        assert np.array_equal(from_composite(comp, sub), gray.from_composite(comp, False))
        assert comp.shape[1:] == gray.encrypted_shape(16, 16, 3)
        km = gray.key_map(comp.shape[1:])
        assert np.array_equal(gray.encrypt(x).reshape(2, -1), comp.reshape(2, -1)[:, km.g] ^ km.m)


def test_the_qap_local_search_climbs_to_a_swap_optimum():
    from patchcrypt.attacks.qap import climb, objective, swap_gains

    rng = np.random.default_rng(3)
    a, b = np.corrcoef(rng.normal(size=(9, 30))), np.corrcoef(rng.normal(size=(9, 30)))
    sigma = rng.permutation(9)
    gains = swap_gains(a, b, sigma)
    for i, j in itertools.combinations(range(9), 2):   # every gain is the objective's change, computed directly
        moved = sigma.copy()
        moved[[i, j]] = moved[[j, i]]
        assert gains[i, j] == pytest.approx(objective(a, b, moved) - objective(a, b, sigma), abs=1e-9)
    start = sigma.copy()
    best, value = climb(a, b, sigma)
    assert sorted(best) == list(range(9)) and value == objective(a, b, best) >= objective(a, b, sigma)
    assert swap_gains(a, b, best).max() <= 1e-9 * max(1.0, abs(value))
    assert np.array_equal(sigma, start) and not np.array_equal(best, start)   # a new order; the start kept


def test_one_nibble_packer():
    from patchcrypt.attacks.keymaps import from_units, to_units, unit_indices

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 3, 8), dtype=np.uint8)
    halves = to_units(x, True)
    assert halves.shape == (2, 3, 16) and halves.max() < 16
    assert np.array_equal(from_units(halves, True), x) and to_units(x, False) is x
    idx = rng.permutation(8)
    assert np.array_equal(to_units(x[..., idx], True), halves[..., unit_indices(idx, True)])


def test_the_split_packages_keep_their_public_names():
    import patchcrypt.attacks as attacks
    from patchcrypt.attacks import many, weights

    for name in ("many_image_attack", "ManyImageResult", "score_key_map", "run_many", "method_for", "supported",
                 "generic_spec"):
        assert hasattr(many, name), name
    for name in ("run_weights_attack", "recover_with_plain", "relative_states", "grid_from_pos_embed",
                 "inblock_from_embedding", "match_columns", "match_rows", "arrange", "global_candidates",
                 "RecoveredBlocks"):
        assert hasattr(weights, name), name
    assert callable(attacks.block_source) and {"many", "weights", "weights-blind"} <= set(attacks.list_attacks())
    assert all(n in list_ciphers(include_steps=True) for n in many.supported())
