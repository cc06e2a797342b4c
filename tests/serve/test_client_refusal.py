"""The client against a hostile server: the owner decides the encryption, and nothing is sent on a mismatch."""

import numpy as np
import pytest

from patchcrypt import Key
from patchcrypt.cli import main
from patchcrypt.codec import write_image
from patchcrypt.errors import KeyMismatchError, PatchcryptError
from patchcrypt.serve import Client, running_server

pytestmark = pytest.mark.slow  # a real server on loopback sockets

KEY = Key.from_bytes(bytes(range(32)))
CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def hostile():
    """A server that announces whatever ``state['model']`` says and records every request it gets."""
    from fastapi import FastAPI, Request

    state = {"model": {}, "seen": []}
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):
        body = await request.body()
        state["seen"].append((request.method, request.url.path, len(body)))
        return await call_next(request)

    @app.get("/v1/model")
    async def model():
        return state["model"]

    @app.post("/v1/classify")
    async def classify():
        return {"predictions": [{"name": "image0", "label": "cat",
                                 "top": [{"label": "cat", "index": 0, "probability": 1.0}]}]}

    with running_server(app) as url:
        yield url, state


def announce(state, scheme, block_size=4, fingerprint=KEY.fingerprint):
    state["seen"].clear()
    state["model"] = {"model": "vit", "classes": CLASSES, "scheme": scheme, "block_size": block_size,
                      "key_fingerprint": fingerprint, "image_size": [32, 32, 3], "per_image": False}


def posted(state):
    return [s for s in state["seen"] if s[1] != "/v1/model"]


IMAGES = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("scheme,block_size", [("plain", None), ("step-cs-shared", 4), ("etc", 4),
                                               ("block-pixel", 8)])
def test_client_refuses_what_the_owner_did_not_choose(hostile, scheme, block_size):
    url, state = hostile
    announce(state, scheme, block_size)
    with Client(url, KEY, scheme="block-pixel", block_size=4) as client:
        with pytest.raises(PatchcryptError, match="refusing to send"):
            client.classify(IMAGES)
        with pytest.raises(PatchcryptError, match="refusing to send"):
            client.classify_bytes([b"\x89PNG already encrypted"])
    assert posted(state) == []


def test_weak_schemes_need_the_flag_even_when_the_server_agrees(hostile):
    url, state = hostile
    for scheme in ("plain", "step-cs-shared", "step-bs"):
        announce(state, scheme)
        with pytest.raises(PatchcryptError, match="--allow-weak-scheme"):
            Client(url, KEY, scheme=scheme, block_size=4)
        assert state["seen"] == []  # refused before the server was even asked
    announce(state, "step-cs-shared")
    with Client(url, KEY, scheme="step-cs-shared", block_size=4, allow_weak_scheme=True) as client:
        assert client.classify(IMAGES[:1])[0]["label"] == "cat"
    assert len(posted(state)) == 1


def test_fingerprint_and_missing_choice(hostile):
    url, state = hostile
    announce(state, "block-pixel", fingerprint="0" * 16)
    with Client(url, KEY, scheme="block-pixel", block_size=4) as client:
        with pytest.raises(KeyMismatchError, match="wrong key"):
            client.classify(IMAGES)
    with pytest.raises(PatchcryptError, match="--scheme"):
        Client(url, KEY)  # the owner must say; the server's word is never taken
    assert posted(state) == []


def test_classify_command_sends_nothing_to_a_hostile_server(hostile, tmp_path, capsys):
    url, state = hostile
    key_path = tmp_path / "owner.key"
    KEY.save(key_path)
    photo = tmp_path / "photo.png"
    write_image(photo, IMAGES[0])
    base = ["classify", str(photo), "--key", str(key_path), "--server", url]
    for scheme in ("plain", "step-cs-shared"):
        announce(state, scheme)
        assert main(base) != 0  # no scheme stated by the owner
        assert main(base + ["--scheme", "block-pixel", "--block-size", "4"]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert "refusing to send" in err[-1] and len(err) == 2
        assert posted(state) == []
    # the owner's settings from a config file (a run's config.yaml has these keys among others)
    announce(state, "block-pixel")
    cfg = tmp_path / "client.yaml"
    cfg.write_text(f"scheme: block-pixel\nblock_size: 4\nkey: {key_path}\nserver: {url}\nepochs: 3\n")
    assert main(["classify", str(photo), "--config", str(cfg), "--json"]) == 0
    assert len(posted(state)) == 1
    announce(state, "plain")
    assert main(["classify", str(photo), "--config", str(cfg)]) != 0
    assert posted(state) == []
