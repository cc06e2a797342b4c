"""The HTTP server (real uvicorn on loopback) and the client: answers, refusals, fuzzed input, batching, CLI."""

import json
import os
import re
import socket
import subprocess
import sys
import threading

import httpx
import numpy as np
import pytest

from patchcrypt.record import EncryptionRecord
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.cli import main
from patchcrypt.codec import encode_jpeg, encode_png
from patchcrypt.errors import KeyMismatchError, PatchcryptError
from patchcrypt.inference import predict
from patchcrypt.models import build_model, create_model, load_checkpoint
from patchcrypt.models.checkpoint import save_checkpoint
from patchcrypt.serve import Client, ServeConfig, create_app, running_server
from patchcrypt.serve.client import wait_until_healthy

pytestmark = pytest.mark.slow  # a real server on loopback sockets

OWNER = dict(scheme="block-pixel", block_size=4)  # what the owner encrypts with, stated on the client side
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def key():
    return Key.from_bytes(bytes(range(32)))


@pytest.fixture(scope="module")
def run(tmp_path_factory, key):
    """A ViT checkpoint for block-pixel images under ``key`` (random weights: answers are checked locally)."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("run") / "best.pt"
    save_checkpoint(path, create_model("vit_pico_patch4_32"), model_name="vit_pico_patch4_32", model_kwargs={},
                    classes=CLASSES,
                    record=EncryptionRecord(scheme="block-pixel", block_size=4, key_fingerprint=key.fingerprint))
    return path


@pytest.fixture(scope="module")
def server(run):
    with running_server(create_app(run, ServeConfig(max_images=8, max_body_bytes=256 * 1024))) as url:
        yield url


@pytest.fixture(scope="module")
def images():
    from skimage import data
    from PIL import Image

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BICUBIC)) for p in photos])


def local_probs(run, x):
    logits = predict(build_model(load_checkpoint(run)), x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_model_and_health(server, key):
    info = httpx.get(f"{server}/v1/model").json()
    assert info["scheme"] == "block-pixel" and info["block_size"] == 4
    assert info["image_size"] == [32, 32, 3] and info["classes"] == CLASSES
    assert info["key_fingerprint"] == key.fingerprint
    assert bytes(range(32)).hex() not in json.dumps(info)  # the server never had the key
    assert httpx.get(f"{server}/v1/health").json() == {"status": "ok"}  # counters only with --health-counters


def test_client_answers_match_local_model(server, run, key, images):
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(images)
    want = local_probs(run, enc)
    with Client(server, key, **OWNER) as client:
        got = client.classify(images, top_k=3)
    assert [p["label"] for p in got] == [CLASSES[i] for i in want.argmax(1)]
    for p, w in zip(got, want):
        assert len(p["top"]) == 3
        assert p["top"][0]["probability"] == pytest.approx(w.max(), abs=1e-5)


def test_raw_body_and_jpeg(server, run, key, images):
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(images[:1])
    r = httpx.post(f"{server}/v1/classify", content=encode_png(enc[0]), headers={"content-type": "image/png"})
    assert r.status_code == 200
    assert r.json()["predictions"][0]["label"] == CLASSES[local_probs(run, enc).argmax()]
    with Client(server, key, **OWNER) as client:
        assert len(client.classify(images, jpeg_quality=90)) == len(images)


def test_client_refuses_wrong_key_before_sending(server, images):
    with Client(server, Key.from_bytes(bytes(32)), **OWNER) as client:
        with pytest.raises(KeyMismatchError, match="wrong key"):
            client.classify(images)
    with Client(server, None, **OWNER) as client:
        with pytest.raises(PatchcryptError, match="give the key"):
            client.classify(images)


def test_client_wrong_size_and_unreachable(server, key, images):
    big = np.zeros((1, 64, 64, 3), np.uint8)
    with Client(server, key, **OWNER) as client:
        with pytest.raises(PatchcryptError, match="pass --resize"):
            client.classify(big)
        with pytest.raises(PatchcryptError, match="--image-size"):  # a size only the server named is not used
            client.classify(big, resize=True)
    with Client(server, key, **OWNER, image_size=32) as client:
        assert len(client.classify(big, resize=True)) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # held and never listening: connections are refused, and no one else takes it
        port = s.getsockname()[1]
        with pytest.raises(PatchcryptError, match="cannot reach"):
            Client(f"http://127.0.0.1:{port}", key, timeout=60, **OWNER).info()


def _png(shape=(32, 32, 3)):
    return encode_png(np.full(shape, 7, np.uint8))


BAD = [
    ("not an image", dict(content=b"hello world", headers={"content-type": "image/png"}), 400, "not a readable"),
    ("truncated JPEG", dict(content=encode_jpeg(np.full((32, 32, 3), 9, np.uint8))[:200]), 400, "not a readable"),
    ("truncated PNG", dict(content=_png()[:40]), 400, "not a readable"),
    ("empty body", dict(content=b""), 400, "no image"),
    ("wrong size", dict(content=_png((16, 16, 3))), 422, "expects 32x32"),
    ("wrong channels", dict(content=_png((32, 32, 1))), 422, "1 channel"),
    ("body over limit", dict(content=b"\0" * (300 * 1024)), 413, "over the limit"),
    ("too many images", dict(files=[("image", (f"{i}.png", _png(), "image/png")) for i in range(9)]), 413,
     "too many images"),
    ("bad multipart", dict(content=b"--xx\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=xx"}),
     400, ""),
    ("unsupported type", dict(content=b"{}", headers={"content-type": "application/json"}), 415, "content type"),
    ("bad top_k", dict(content=_png(), params={"top_k": 99}), 422, "top_k"),
]


@pytest.mark.parametrize("name,kw,status,match", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_json(server, name, kw, status, match):
    r = httpx.post(f"{server}/v1/classify", **kw)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]


def test_unknown_route_and_method(server):
    r = httpx.get(f"{server}/v2/anything")
    assert r.status_code == 404 and "no such route" in r.json()["error"]
    r = httpx.get(f"{server}/v1/classify")
    assert r.status_code == 405 and "error" in r.json()


def test_fuzzed_requests_never_break_valid_ones(server, run, key, images):
    """Valid and hostile requests from several threads at once; every valid answer right, no 5xx, still alive."""
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(images)
    want = [CLASSES[i] for i in local_probs(run, enc).argmax(1)]
    good = [encode_png(e) for e in enc]
    rng = np.random.default_rng(0)

    def hostile(i):
        body = bytearray(good[i % len(good)] if i % 2 else encode_jpeg(enc[i % len(enc)], 90, "444"))
        kind = i % 5
        if kind == 0:
            body = body[: rng.integers(1, len(body))]
        elif kind == 1:
            pos = rng.integers(0, len(body), 16)
            for p in pos:
                body[p] = rng.integers(0, 256)
        elif kind == 2:
            body = rng.integers(0, 256, rng.integers(1, 4000), dtype=np.uint8).tobytes()
        elif kind == 3:
            return dict(content=bytes(body), headers={"x-junk": "z" * 30000})
        else:
            return dict(content=bytes(body), headers={"content-type": "multipart/form-data; boundary=" + "q" * 70})
        return dict(content=bytes(body))

    failures, statuses = [], []

    def worker(seed):
        with httpx.Client(timeout=30) as http:
            for j in range(12):
                i = seed * 12 + j
                if j % 3 == 0:
                    r = http.post(f"{server}/v1/classify", content=good[i % 4])
                    if r.status_code != 200 or r.json()["predictions"][0]["label"] != want[i % 4]:
                        failures.append((i, r.status_code, r.text[:100]))
                else:
                    try:
                        r = http.post(f"{server}/v1/classify", **hostile(i))
                        statuses.append(r.status_code)
                    except httpx.HTTPError:
                        statuses.append(0)  # the server may drop a connection it cannot parse

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert httpx.get(f"{server}/v1/health").json()["status"] == "ok"


def test_concurrent_requests_are_batched(run, key, images):
    enc = create_cipher("block-pixel", key, block_size=4).encrypt(images)
    body = encode_png(enc[0])
    # all eight are released at once (a barrier), and a batch waits 1 s for more: two of them would have to
    # arrive over a second apart on every pair for no batch to hold two (the old 100 ms window raced a busy box)
    start = threading.Barrier(8)
    with running_server(create_app(run, ServeConfig(batch_window_ms=1000, health_counters=True))) as url:
        def send():
            with httpx.Client(timeout=120) as http:
                start.wait(60)
                assert http.post(f"{url}/v1/classify", content=body).status_code == 200

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        health = httpx.get(f"{url}/v1/health").json()
    assert health["images"] == 8
    assert health["batches"] < 8


def test_serve_refuses_bad_runs(tmp_path, capsys, run):
    assert main(["serve", str(tmp_path / "nothing")]) != 0
    assert "no such checkpoint" in capsys.readouterr().err
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, create_model("vit_pico_patch4_32"), model_name="vit_pico_patch4_32", model_kwargs={},
                    classes=CLASSES)
    assert main(["serve", str(bare)]) != 0
    err = capsys.readouterr().err
    assert "records no scheme" in err and len(err.strip().splitlines()) == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["serve", str(run), "--port", str(s.getsockname()[1])]) != 0
        err = capsys.readouterr().err
        assert "already in use" in err and len(err.strip().splitlines()) == 1


def test_serve_and_classify_commands(tmp_path, run, key, images, capsys):
    """The real commands: 'patchcrypt serve' in its own process, 'patchcrypt classify' against it."""
    from patchcrypt.codec import write_image

    key_path = tmp_path / "owner.key"
    key.save(key_path)
    files = []
    for i, img in enumerate(images[:2]):
        files.append(tmp_path / f"photo{i}.png")
        write_image(files[-1], img)
    # port 0: the server binds a free port and prints it (no race with another process for a port picked here)
    proc = subprocess.Popen([sys.executable, "-m", "patchcrypt", "serve", str(run), "--port", "0",
                             "--header-timeout", "60", "--body-timeout", "60", "--max-connections-per-client", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline().decode()  # "serving ... on http://127.0.0.1:PORT ..." (EOF if it failed)
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, (line, proc.poll())
        url = f"http://127.0.0.1:{found.group(1)}"
        wait_until_healthy(url, 60, proc)
        code = main(["classify", *map(str, files), "--key", str(key_path), "--server", url, "--json",
                     "--scheme", "block-pixel", "--block-size", "4",
                     "--jpeg-quality", "90"])
        out = capsys.readouterr().out
        assert code == 0
        preds = json.loads(out)["predictions"]
        assert [p["name"] for p in preds] == [str(f) for f in files]
        other = tmp_path / "other.key"
        Key.generate().save(other)
        assert main(["classify", str(files[0]), "--key", str(other), "--server", url,
                     "--scheme", "block-pixel", "--block-size", "4"]) != 0
        assert "wrong key" in capsys.readouterr().err
    finally:
        proc.terminate()
        proc.wait(60)
