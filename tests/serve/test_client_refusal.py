"""The client against a hostile server: the owner decides the encryption, and nothing is sent on a mismatch."""

import json
import re

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
    """A server that announces whatever ``state['model']`` says, records every request it gets (and every
    multipart file name and part header), and answers a classify request like a real server, or with
    ``state['answer']`` (a callable of the request's file names returning a FastAPI response) when set."""
    from fastapi import FastAPI, Request

    state = {"model": {}, "seen": [], "files": [], "answer": None, "model_answer": None}
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):
        body = await request.body()
        state["seen"].append((request.method, request.url.path, len(body)))
        if request.url.path == "/v1/classify":
            state["files"].append(body)
        return await call_next(request)

    @app.get("/v1/model")
    async def model():
        return state["model_answer"]() if state["model_answer"] else state["model"]

    @app.post("/v1/classify")
    async def classify(request: Request):
        form = await request.form()
        names = [f.filename for _, f in form.multi_items() if hasattr(f, "read")]
        if state["answer"]:
            return state["answer"](names)
        return {"predictions": [{"name": n, "label": "cat", "top": [{"label": "cat", "index": 0, "probability": 1.0}]}
                                for n in names]}

    with running_server(app) as url:
        yield url, state


def announce(state, scheme, block_size=4, fingerprint=KEY.fingerprint, **more):
    state["seen"].clear()
    state["files"].clear()
    state["answer"] = state["model_answer"] = None
    state["model"] = {"model": "vit", "classes": CLASSES, "scheme": scheme, "block_size": block_size,
                      "key_fingerprint": fingerprint, "image_size": [32, 32, 3], "per_image": False, **more}


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


# -- what the client tells a server, and what it takes from one -------------------------------------------
def _owner_files(tmp_path):
    """A key file and two photos whose paths name a patient and a label."""
    key_path = tmp_path / "owner.key"
    KEY.save(key_path)
    files = [tmp_path / "patients" / "alice-smith" / "scan.png", tmp_path / "dog" / "0001.png"]
    for f, img in zip(files, IMAGES):
        f.parent.mkdir(parents=True, exist_ok=True)
        write_image(f, img)
    return key_path, files


def test_client_sends_an_index_never_the_path_or_label(hostile, tmp_path, capsys):
    url, state = hostile
    announce(state, "block-pixel")
    key_path, files = _owner_files(tmp_path)
    # a server that answers in reverse order, a different label per image: answers are mapped back by index
    state["answer"] = lambda names: {"predictions": [
        {"name": n, "label": CLASSES[int(n) % 2], "top": [{"label": CLASSES[int(n) % 2], "index": 0,
                                                           "probability": 0.9}]} for n in reversed(names)]}
    assert main(["classify", *map(str, files), "--key", str(key_path), "--server", url, "--scheme", "block-pixel",
                 "--block-size", "4", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert [(p["name"], p["label"]) for p in preds] == [(str(files[0]), "cat"), (str(files[1]), "dog")]
    body = b"".join(state["files"])
    assert re.findall(rb'filename="([^"]*)"', body) == [b"0", b"1"]
    for secret in ("alice", "scan", "patients", "dog", "0001", str(tmp_path)):
        assert secret.encode() not in body, secret


@pytest.mark.parametrize("answer", [
    lambda names: {"predictions": [{"name": "../etc", "label": "cat", "top": []}]},
    lambda names: {"predictions": [{"name": "0", "label": "cat",
                                    "top": [{"label": "cat", "index": 0, "probability": 1.0}]}] * 2},
    lambda names: {"predictions": [{"name": n, "label": "zebra", "top": [{"label": "zebra", "index": 9,
                                                                          "probability": 1.0}]} for n in names]},
    lambda names: {"predictions": [{"name": n, "label": "cat", "top": [{"label": "cat", "index": 0,
                                                                        "probability": 7.0}]} for n in names]},
], ids=["unknown name", "duplicate", "unannounced class", "probability"])
def test_answers_that_do_not_match_the_request_are_refused(hostile, tmp_path, capsys, answer):
    url, state = hostile
    announce(state, "block-pixel")
    key_path, files = _owner_files(tmp_path)
    state["answer"] = answer
    assert main(["classify", *map(str, files), "--key", str(key_path), "--server", url, "--scheme", "block-pixel",
                 "--block-size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the images sent" in err[0]


def _classify(url, files, key_path, *extra):
    return main(["classify", *map(str, files), "--key", str(key_path), "--server", url, "--scheme", "block-pixel",
                 "--block-size", "4", *extra])


@pytest.mark.parametrize("size", [[60000, 60000, 3], [4096, 4096, 3], [4, 4, 3]], ids=["huge", "other", "one block"])
def test_the_owner_pins_the_image_size(hostile, tmp_path, capsys, size):
    """A server announcing a huge size, another size, or one M x M block steers nothing: the owner's size
    is used or nothing is sent; --resize without the owner's size is refused."""
    url, state = hostile
    announce(state, "block-pixel", image_size=size)
    key_path, files = _owner_files(tmp_path)
    for extra in (("--resize",), ("--resize", "--image-size", "32"), ("--image-size", "32"), ()):
        assert _classify(url, files, key_path, *extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("refusing" in err[0] or "--image-size" in err[0] or "expects" in err[0]), err
    assert posted(state) == []
    announce(state, "block-pixel", image_size=[32, 32, 3])
    assert _classify(url, files, key_path, "--resize", "--image-size", "32") == 0
    assert len(posted(state)) == 1
    capsys.readouterr()


@pytest.mark.parametrize("field,value", [("max_images", 0), ("max_images", -1), ("key_fingerprint", "zz"),
                                         ("image_size", "32x32"), ("image_size", [32, 32, 7]), ("classes", "cat"),
                                         ("classes", []), ("block_size", "4"), ("per_image", "no"),
                                         ("jpeg_quality", 1000)])
def test_every_field_of_the_model_answer_is_checked(hostile, tmp_path, capsys, field, value):
    url, state = hostile
    announce(state, "block-pixel", **{field: value})
    key_path, files = _owner_files(tmp_path)
    assert _classify(url, files, key_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("refusing" in err[0] or "not a patchcrypt server" in err[0]), err
    assert posted(state) == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_model_answer_is_not_read_past_1_mb(hostile, tmp_path, capsys, declared):
    from fastapi.responses import Response, StreamingResponse

    url, state = hostile
    announce(state, "block-pixel")
    chunk = b" " * (1 << 16)
    if declared:
        state["model_answer"] = lambda: Response(b"{" + b" " * (50 << 20) + b"}", media_type="application/json")
    else:
        state["model_answer"] = lambda: StreamingResponse((chunk for _ in range(800)), media_type="application/json")
    key_path, files = _owner_files(tmp_path)
    assert _classify(url, files, key_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "over 1,048,576 bytes" in err[0], err
    assert posted(state) == []


def test_server_strings_are_stripped_of_control_characters(hostile, tmp_path, capsys):
    url, state = hostile
    evil = ["\x1b[2J\x1b]0;pwned\x07cat", "\u202egod\r\nfake: line"]
    announce(state, "block-pixel", classes=evil, model="vit\x1b[31m")
    key_path, files = _owner_files(tmp_path)
    state["answer"] = lambda names: {"predictions": [
        {"name": n, "label": evil[i % 2], "top": [{"label": evil[i % 2], "index": i % 2, "probability": 1.0}]}
        for i, n in enumerate(names)]}
    assert _classify(url, files, key_path) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "god" in out
    assert not any(ch in out for ch in "\x1b\x07\r\u202e") and len(out.strip().splitlines()) == 2
    from fastapi.responses import JSONResponse

    state["answer"] = lambda names: JSONResponse({"error": "bad\x1b]0;title\x07\nsecond line"}, status_code=400)
    assert _classify(url, files, key_path) == 2
    err = capsys.readouterr().err
    assert "bad" in err and not any(ch in err for ch in "\x1b\x07") and len(err.strip().splitlines()) == 1
