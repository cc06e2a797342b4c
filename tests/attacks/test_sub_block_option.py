"""``patchcrypt attack --sub-block``: the nested schemes attacked at the sub-block size m they are used with."""

import json

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.attacks.target import make_target
from patchcrypt.errors import PatchcryptError
from tests.cli.cli_helpers import make_tree, one_line_error, run

KEY = Key.from_bytes(bytes(range(32)))


def _hjigsaw(capsys, tree, *extra):
    return run(capsys, "attack", "hjigsaw", "--scheme", "etc-nested", "--block-size", 8, "--per-image", "--data",
               tree, "--n-images", 2, "--max-single", 2, "--json", "--quiet", *extra)


@pytest.mark.parametrize("m", [2, 8])
def test_the_attack_runs_at_the_asked_sub_block(capsys, tmp_path, m):
    tree = make_tree(tmp_path / "imgs", n=1)
    code, out, err = _hjigsaw(capsys, tree, "--sub-block", m)
    assert code == 0, err
    assert json.loads(out)["sub_block"] == m


def test_without_it_the_default_stays(capsys, tmp_path):
    code, out, err = _hjigsaw(capsys, make_tree(tmp_path / "imgs", n=1))
    assert code == 0, err
    assert json.loads(out)["sub_block"] == 4


@pytest.mark.parametrize("extra, match", [(("--sub-block", 3), "divisor of the block size 8"),
                                          (("--sub-block", 0), "--sub-block must be positive"),
                                          (("--scheme", "etc", "--sub-block", 2), "scheme 'etc' takes no option sub_block (its options: pad, per_image)")])
def test_a_bad_sub_block_is_one_line(capsys, tmp_path, extra, match):
    code, _, err = _hjigsaw(capsys, make_tree(tmp_path / "imgs", n=1), *extra)
    one_line_error(code, err, match)


def _patches_moved_whole(enc: np.ndarray) -> bool:
    """Every 8×8 patch of ``enc`` (images of :func:`_quadrants`) is the original patch in one dihedral state
    and one polarity: its four 4×4 quadrants keep their cyclic order (m = 8 moves the patch as one piece;
    m = 4 draws an order and a state per quadrant)."""
    ring = [10, 20, 40, 30]                                 # top-left, top-right, bottom-right, bottom-left
    allowed = set()
    for vals in (ring, [255 - v for v in ring]):
        for r in range(4):
            turn = vals[r:] + vals[:r]
            allowed |= {tuple(turn), tuple(reversed(turn))}
    q = enc[:, ::4, ::4, 0]                                 # uniform grey quadrants: one value each
    for img in q:
        for i in range(0, q.shape[1], 2):
            for j in range(0, q.shape[2], 2):
                if (img[i, j], img[i, j + 1], img[i + 1, j + 1], img[i + 1, j]) not in allowed:
                    return False
    return True


def _quadrants(n: int = 30) -> np.ndarray:
    patch = np.repeat(np.repeat(np.array([[10, 20], [30, 40]], np.uint8), 4, 0), 4, 1)
    return np.repeat(np.tile(patch, (2, 2))[None, :, :, None], 3, -1).repeat(n, 0)   # (n, 16, 16, 3) grey


def test_the_target_and_its_fresh_keys_use_it():
    """The scheme's own cipher and the attacker's fresh-key cipher (what learned attacks train on) agree on m."""
    x = _quadrants()
    t = make_target("etc-nested", 8, key=KEY, per_image=True, sub_block=8)
    assert t.cipher.sub_block == 8
    assert _patches_moved_whole(t.encrypt(x)) and _patches_moved_whole(t.encrypt_fresh_keys(x))
    default = make_target("etc-nested", 8, key=KEY, per_image=True)
    assert not _patches_moved_whole(default.encrypt(x)) and not _patches_moved_whole(default.encrypt_fresh_keys(x))
    with pytest.raises(PatchcryptError, match="registered schemes"):
        make_target("examples/my_scheme.py:MyScheme", 8, x, key=KEY, sub_block=2)
