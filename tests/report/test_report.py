"""The HTML report: what it collects, what it refuses, and how it looks in a real headless browser."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt.codec import encode_png, read_image
from patchcrypt.report import build_report, collect, markdown_to_html


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A real two-epoch block-pixel run on digits (with its key) and a results.json with a figure."""
    from patchcrypt.cli.demo import _write_digits_tree
    from patchcrypt.train import TrainConfig, train

    root = tmp_path_factory.mktemp("rep")
    key = root / "owner.key"
    Key.generate().save(key)
    data = _write_digits_tree(root / "digits")
    run = root / "runs" / "bp"
    train(TrainConfig(data=str(data), model="vit_pico_patch4_32", out=str(run), epochs=2, batch_size=64,
                      subset=300, scheme="block-pixel", key=str(key), block_size=4, augment="none"),
          show_progress=False)
    res = root / "bench"
    res.mkdir()
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (200, 30, 30)
    (res / "chart.png").write_bytes(encode_png(img))
    (res / "results.json").write_text(json.dumps({
        "kind": "compression", "command": "benchmarks/compression.py", "rows": [{"q": 90}],
        "markdown": "A caption.\n\n| method | bpp |\n|---|---|\n| etc <b> | 1.5 |", "figures": ["chart.png"]}))
    return root, run, res, key


@pytest.mark.slow
def test_collects_runs_and_results(digits_run):
    root, run, res, _ = digits_run
    kinds = [(it.kind, it.path.name) for it in collect([root])]
    assert ("compression", "results.json") in kinds
    assert ("run", "bp") in kinds


def test_unknown_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "broken.json").write_text("{")
    for bad, msg in ((tmp_path / "nothing", "no such file"), (tmp_path / "notes.txt", "not a run folder"),
                     (tmp_path / "other.json", "not a run folder"), (tmp_path / "broken.json", "not valid JSON")):
        assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) != 0
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r.html").exists()
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.txt")]) != 0
    assert "HTML" in capsys.readouterr().err


def test_markdown_tables_are_escaped():
    out = markdown_to_html("Caption <x>\n\n| a | b |\n|---|---|\n| <script> | 2 |")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert out.count("<tr>") == 2 and "<p>Caption &lt;x&gt;</p>" in out


@pytest.mark.slow
def test_report_content(digits_run, tmp_path, capsys):
    root, run, res, key = digits_run
    out = tmp_path / "report.html"
    assert main(["report", str(run), str(res), "-o", str(out), "--key", str(key), "--data", str(root / "digits")]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    text = html.unescape(page)
    assert "Run bp" in text and "block-pixel" in text
    # with the run's key passed: its ciphertexts only, never beside plain images
    assert "ciphertext only" in text and "the run's key" in text and "plain | encrypted" not in text
    assert "etc &lt;b&gt;" in page and "benchmarks/compression.py" in page
    # every image is embedded, none is linked
    srcs = re.findall(r'<img [^>]*src="([^"]{0,30})', page)
    assert len(srcs) >= 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert Key.load(key).fingerprint in text


def _chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless Chromium is not installed (scripts/setup_chromium.sh installs Debian's chromium "
                "where apt-get is allowed)")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(digits_run, tmp_path):
    """Look at the page as a person would: a non-blank screenshot, and no image that failed to load."""
    root, run, res, key = digits_run
    out = tmp_path / "report.html"
    build_report([run, res], out, key, data=[root / "digits"])
    browser = _chromium()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1100,1600", out.as_uri()], check=True,
                   capture_output=True, timeout=120)
    img = read_image(shot).astype(np.float32)
    assert img.std() > 10, "the screenshot is blank"
    assert (img.mean(2) < 128).mean() > 0.01, "no dark content (text, tables) on the page"
    dom = subprocess.run(base + ["--dump-dom", "--virtual-time-budget=5000", out.as_uri()], check=True,
                         capture_output=True, timeout=120, text=True).stdout
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    total = re.search(r'data-images="(\d+)"', dom)
    assert broken and total, "the page's image check did not run"
    assert int(total.group(1)) >= 3 and broken.group(1) == "0"


@pytest.mark.slow
def test_broken_image_is_detected(tmp_path):
    """The browser check itself can fail: a page with a corrupt embedded image reports it."""
    browser = _chromium()
    from patchcrypt.report import CHECK_JS

    page = tmp_path / "bad.html"
    page.write_text(f"<html><head><script>{CHECK_JS}</script></head><body><p>x</p>"
                    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"></body></html>')
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", "--virtual-time-budget=5000",
                          page.as_uri()], check=True, capture_output=True, timeout=120, text=True).stdout
    assert 'data-broken-images="1"' in dom


def test_figures_outside_the_input_folders_are_not_embedded(tmp_path, capsys):
    """A results.json naming an absolute path, a '..' path or a link out of its folder embeds nothing from
    there (each skipped with a note); a figure inside the folder still is."""
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    marker = np.zeros((20, 20, 3), np.uint8)
    marker[:, :, 1] = 123
    (secret / "private.png").write_bytes(encode_png(marker))
    res = tmp_path / "bench"
    (res / "sub").mkdir(parents=True)
    (res / "sub" / "ok.png").write_bytes(encode_png(np.full((20, 20, 3), 7, np.uint8)))
    (res / "link.png").symlink_to(secret / "private.png")
    figures = [str(secret / "private.png"), "../elsewhere/private.png", "sub/../../elsewhere/private.png",
               "link.png", "sub/ok.png", 7, ["x"]]
    (res / "results.json").write_text(json.dumps({"kind": "compression", "rows": [{"q": 1}], "figures": figures,
                                                  "captions": {"sub/ok.png": "fine"}}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss\n1,2.0\n")
    (run / "confusion.png").symlink_to(secret / "private.png")
    out = tmp_path / "r.html"
    assert main(["report", str(res), str(run), "-o", str(out)]) == 0
    page = out.read_text()
    srcs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    import base64

    assert encode_png(marker) not in [base64.b64decode(s) for s in srcs]
    assert base64.b64encode(encode_png(marker)).decode() not in page
    assert encode_png(np.full((20, 20, 3), 7, np.uint8)) in [base64.b64decode(s) for s in srcs]
    assert html.unescape(page).count("embeds only files inside its input folders") == 7
