"""`encrypt --part I/N` records its source; `merge-manifests` refuses parts of different data and any name its
own reader would refuse, writes nothing then and keeps every part; a salt reused on other data warns."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from patchcrypt.cli import main
from patchcrypt.codec import write_image

from test_shards import make_tree, one_error  # the shard tests' small tree and error check (same folder)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("plain"), per_class=6)


def enc(capsys, src, dst, key_file, *extra):
    """``encrypt SRC DST ... EXTRA`` succeeds; its stderr."""
    capsys.readouterr()
    code = main(["encrypt", str(src), str(dst), "--key", str(key_file), "--scheme", "etc", "--block-size", "4",
                 *map(str, extra)])
    err = capsys.readouterr().err
    assert code == 0, err
    return err


def listing(d: Path):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


def other_source(tree: Path, where: Path) -> Path:
    """A copy of ``tree`` with one file of part 1's range changed (another size): other data, same count."""
    other = shutil.copytree(tree, where)
    first = sorted(other.rglob("*.png"))[0]
    write_image(first, np.full((32, 32, 3), 7, np.uint8))
    return other


@pytest.mark.parametrize("extra", [[], ["--shard-size", "5"], ["--per-image"]])
def test_parts_of_two_sources_are_never_merged(tree, key_file, tmp_path, capsys, extra):
    d = tmp_path / "p"
    enc(capsys, tree, d, key_file, "--part", "2/2", *extra)
    enc(capsys, other_source(tree, tmp_path / "other"), d, key_file, "--part", "1/2", *extra)
    before = listing(d)
    assert "other source files than part 1/2" in one_error(capsys, ["merge-manifests", d])
    assert listing(d) == before and not (d / "patchcrypt.json").exists()  # nothing written, no part deleted
    enc(capsys, tree, d, key_file, "--part", "1/2", *extra)  # the same source: merges
    assert main(["merge-manifests", str(d)]) == 0


def _tamper(d: Path, part: str, change) -> None:
    path = d / f"patchcrypt.part-{part}.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _rename_first_file(name: str):
    def change(doc):
        files = doc["record"]["files"]
        first = sorted(files)[0]
        files[name] = files.pop(first)
    return change


@pytest.mark.parametrize("name", ["../escape.png", "ABSOLUTE", "cat/../../escape.png"])
def test_merge_refuses_a_name_its_reader_refuses_and_keeps_the_parts(tree, key_file, tmp_path, capsys, name):
    d = tmp_path / "p"
    for i in (1, 2):
        enc(capsys, tree, d, key_file, "--part", f"{i}/2")
    (tmp_path / "escape.png").write_bytes(b"outside")  # present, so only the name's rules can refuse it
    name = str(tmp_path / "escape.png") if name == "ABSOLUTE" else name
    _tamper(d, "1-of-2", _rename_first_file(name))
    before = listing(d)
    assert "must be a relative path inside the tree" in one_error(capsys, ["merge-manifests", d])
    assert listing(d) == before and not (d / "patchcrypt.json").exists()


def test_merge_refuses_a_shard_outside_the_folder_and_malformed_fields(tree, key_file, tmp_path, capsys):
    d = tmp_path / "p"
    for i in (1, 2):
        enc(capsys, tree, d, key_file, "--part", f"{i}/2", "--shard-size", "5")
    (tmp_path / "x.tar").write_bytes(b"outside")
    _tamper(d, "2-of-2", lambda doc: doc["record"]["shards"][0].update(path="../x.tar"))
    before = listing(d)
    assert "shards entry" in one_error(capsys, ["merge-manifests", d])
    _tamper(d, "2-of-2", lambda doc: doc.update(units="ab"))
    assert "malformed part manifest" in one_error(capsys, ["merge-manifests", d])
    assert listing(d) == before and not (d / "patchcrypt.json").exists()


def test_parts_are_kept_when_the_merged_manifest_does_not_read_back(tree, key_file, tmp_path, capsys, monkeypatch):
    import patchcrypt.parts as parts

    d = tmp_path / "p"
    for i in (1, 2):
        enc(capsys, tree, d, key_file, "--part", f"{i}/2")
    before = listing(d)
    monkeypatch.setattr(parts, "find_manifest", lambda folder: None)  # as if the written file were lost
    assert "does not read back" in one_error(capsys, ["merge-manifests", d])
    assert listing(d) == before


def test_a_salt_reused_on_other_data_warns(tree, key_file, tmp_path, capsys):
    d = tmp_path / "p"
    assert enc(capsys, tree, d, key_file, "--per-image", "--part", "1/2") == ""
    salt = json.loads((d / "patchcrypt.part-1-of-2.json").read_text())["record"]["nonce_salt"]
    assert enc(capsys, tree, d, key_file, "--per-image", "--part", "2/2") == ""  # same data: silent
    # an abandoned run: everything removed but the hidden salt file; then other data encrypted into the folder
    for p in list(d.iterdir()):
        if p.name != ".patchcrypt-salt":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    d2 = tmp_path / "p2"
    d2.mkdir()
    shutil.copy(d / ".patchcrypt-salt", d2 / ".patchcrypt-salt")
    other = other_source(tree, tmp_path / "other")
    lines = enc(capsys, other, d, key_file, "--per-image", "--part", "1/2").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "nonces repeat" in lines[0], lines
    # --salt given again, on other data, into a folder holding the salt file it was recorded in: the same warning
    lines = enc(capsys, other, d2, key_file, "--per-image", "--part", "2/2", "--salt", salt).strip().splitlines()
    assert len(lines) == 1 and "nonces repeat" in lines[0], lines


def test_json_nested_past_the_parser_depth_is_one_line(tree, key_file, tmp_path, capsys):
    """A part manifest or a data set manifest of 100,000 nested brackets: one line, exit 2 (was RecursionError)."""
    out = tmp_path / "out"
    for i in (1, 2):
        assert main(["encrypt", str(tree), str(out), "--key", str(key_file), "--scheme", "etc",
                     "--block-size", "4", "--part", f"{i}/2"]) == 0
    (out / "patchcrypt.part-1-of-2.json").write_text("[" * 100_000)
    capsys.readouterr()
    assert main(["merge-manifests", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "part manifest" in err[0] and (out / "patchcrypt.part-2-of-2.json").exists()
    (out / "patchcrypt.json").write_text("[" * 100_000)
    assert main(["decrypt", str(out), str(tmp_path / "back"), "--key", str(key_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest" in err[0] and not (tmp_path / "back").exists()
