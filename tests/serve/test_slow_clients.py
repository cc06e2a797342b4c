"""Slow and idle clients on loopback (bounded: at most 600 sockets) do not lock out a valid client."""

import selectors
import socket
import time

import httpx
import numpy as np
import pytest

from patchcrypt.record import EncryptionRecord
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.codec import encode_png
from patchcrypt.models import create_model
from patchcrypt.models.checkpoint import save_checkpoint
from patchcrypt.serve import ServeConfig, create_app, running_server

pytestmark = pytest.mark.slow  # a real server on loopback sockets

KEY = Key.from_bytes(bytes(range(32)))
SLOW_FROM = "127.0.0.2"  # the slow clients' own loopback address; the valid client comes from 127.0.0.1

HALF = {
    "idle": b"",
    "half head": b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Le",
    "half body": b"POST /v1/classify HTTP/1.1\r\nHost: x\r\ncontent-type: image/png\r\ncontent-length: 4000\r\n\r\n"
                 + b"\x89PNG" * 50,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("run") / "best.pt"
    save_checkpoint(path, create_model("vit_pico_patch4_32"), model_name="vit_pico_patch4_32", model_kwargs={},
                    classes=[str(i) for i in range(10)],
                    record=EncryptionRecord(scheme="block-pixel", block_size=4, key_fingerprint=KEY.fingerprint))
    return path


@pytest.fixture(scope="module")
def body():
    img = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    return encode_png(create_cipher("block-pixel", KEY, block_size=4).encrypt(img)[0])


def _second_loopback():
    try:
        with socket.socket() as s:
            s.bind((SLOW_FROM, 0))
    except OSError:
        pytest.skip(f"{SLOW_FROM} is not a loopback address here")
    # client and server share this process: 600 slow sockets are 1,200 descriptors; raise a 1,024 soft limit
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_slow(url: str, n: int):
    """``n`` sockets from SLOW_FROM, a third each idle, half a head, half a body; left open."""
    port = int(url.rsplit(":", 1)[1])
    socks = []
    kinds = list(HALF)
    for i in range(n):
        s = socket.socket()
        s.bind((SLOW_FROM, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(HALF[kinds[i % 3]])
        except OSError:
            pass  # already refused and closed by the server
        socks.append(s)
    return socks


def answers(socks, wait: float, until_open: int = 0):
    """What each socket has received (b"" if nothing; the server's close ends it), once at most ``until_open``
    sockets are still open, or ``wait`` seconds from now at the latest.

    ``wait`` is a wide bound that only a broken server reaches: a working one ends the wait by closing.
    A selector (epoll), not select.select: with hundreds of sockets on each side, descriptors pass 1024."""
    got = {s: b"" for s in socks}
    open_ = set(socks)
    deadline = time.monotonic() + wait
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while len(open_) > until_open and time.monotonic() < deadline:
            for k, _ in sel.select(max(0.0, deadline - time.monotonic())):
                s = k.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                got[s] += data
                if not data:
                    open_.discard(s)
                    sel.unregister(s)
    return got, open_


def _readable(sock, wait: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(wait))


def timed_post(url, body):
    t0 = time.monotonic()
    r = httpx.post(f"{url}/v1/classify", content=body, headers={"content-type": "image/png"}, timeout=120)
    return r, time.monotonic() - t0


def test_hundreds_of_idle_connections_do_not_lock_out_a_valid_client(run, body):
    """Defaults: 600 idle/half-sent sockets from one address. uvicorn's limit counted them and gave 503."""
    _second_loopback()
    with running_server(create_app(run, ServeConfig())) as url:
        socks = open_slow(url, 600)
        try:
            r, seconds = timed_post(url, body)
            assert r.status_code == 200, r.text
            # a client locked out behind the slow ones would wait for their 10 s head deadline at least
            assert seconds < ServeConfig().header_timeout_s, seconds
            limit = ServeConfig().max_connections_per_client
            got, still_open = answers(socks, 120.0, until_open=limit)  # ends once the server has closed the rest
            refused = [s for s in socks if got[s].startswith(b"HTTP/1.1 503")]
            # one address holds at most its 32 connections; the rest were answered 503 and closed
            assert len(still_open) <= limit
            assert len(refused) >= 600 - limit - 10
            assert b"too many connections from" in got[refused[0]]
        finally:
            for s in socks:
                s.close()


def test_header_and_body_timeouts(run, body):
    """Half-sent heads and bodies get 408 and are closed after their deadline; trickling does not extend it."""
    _second_loopback()
    cfg = ServeConfig(header_timeout_s=0.5, body_timeout_s=0.5, max_connections_per_client=200)
    with running_server(create_app(run, cfg)) as url:
        socks = open_slow(url, 90)
        trickle = socket.socket()
        trickle.bind((SLOW_FROM, 0))
        trickle.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        try:
            t0 = time.monotonic()
            r, _ = timed_post(url, body)
            assert r.status_code == 200
            closed_at = None
            # one byte per 0.05 s at least: a deadline reset by every byte would keep it open for 25 s or more
            for ch in b"GET /v1/health HTTP/1.1\r\nX-Slow: " + b"z" * 500:
                try:
                    trickle.sendall(bytes([ch]))
                except OSError:
                    closed_at = time.monotonic() - t0
                    break
                if _readable(trickle, 0.05):
                    closed_at = time.monotonic() - t0
                    break
            # a 0.5 s budget, not reset per byte: closed long before the trickle ends (wide margin for a busy box)
            assert closed_at is not None and closed_at < 12, closed_at
            assert trickle.recv(4096).startswith(b"HTTP/1.1 408")
            got, still_open = answers(socks, 120.0)
            assert not still_open
            for i, s in enumerate(socks):
                kind = list(HALF)[i % 3]
                assert got[s].startswith(b"HTTP/1.1 408"), (kind, got[s][:80])
                assert (b"request body" if kind == "half body" else b"request header") in got[s]
        finally:
            trickle.close()
            for s in socks:
                s.close()


def _wait_accepted(app, n: int, limit: float = 60.0) -> None:
    """Handshake: block until the server has seen ``n`` connections (a generous deadline, not a race)."""
    deadline = time.monotonic() + limit
    while app.state.connections.accepted < n:
        assert time.monotonic() < deadline, f"the server saw {app.state.connections.accepted} of {n} connections"
        time.sleep(0.05)


def test_half_open_connections_over_the_cap_close_the_oldest(run, body):
    """Over ``max_half_open`` connections without a complete head, the oldest is answered 503 and closed:
    a new client always gets in, and its complete request is served."""
    _second_loopback()
    cfg = ServeConfig(max_half_open=8, max_connections_per_client=100, header_timeout_s=120)
    app = create_app(run, cfg)
    with running_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = []
        try:
            for _ in range(20):
                s = socket.socket()
                s.bind((SLOW_FROM, 0))
                s.connect(("127.0.0.1", port))
                s.sendall(HALF["half head"])
                socks.append(s)
            _wait_accepted(app, 20)
            assert app.state.connections.evicted == 12 and len(app.state.connections.half_open) == 8
            r = httpx.post(f"{url}/v1/classify", content=body, headers={"content-type": "image/png"}, timeout=30)
            assert r.status_code == 200, r.text
            got, still_open = answers(socks, 3.0)
            busy = [s for s in socks if got[s].startswith(b"HTTP/1.1 503") and b"server busy" in got[s]]
            assert len(busy) == app.state.connections.evicted >= 13   # the valid client pushed one more out
            assert set(busy) == set(socks[:len(busy)])                # oldest first
            assert len(still_open) == 20 - len(busy)
        finally:
            for s in socks:
                s.close()


@pytest.mark.slow
def test_slowloris_across_many_addresses_does_not_deny_service(run, body):
    """The issue's case: 33 addresses x 32 half-sent heads (1,056 > max_connections) with the default
    limits. Before the half-open cap, every new connection got 503 until the head timeout freed slots."""
    _second_loopback()
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2400:
        pytest.skip("needs about 2,200 file descriptors")
    addresses = [f"127.0.0.{i}" for i in range(2, 35)]
    try:
        for a in addresses:
            with socket.socket() as s:
                s.bind((a, 0))
    except OSError:
        pytest.skip("127.0.0.2-34 are not all loopback addresses here")
    app = create_app(run, ServeConfig(header_timeout_s=300))  # no timeout frees anything during the test
    with running_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = []
        try:
            for a in addresses:
                for _ in range(32):
                    s = socket.socket()
                    s.bind((a, 0))
                    s.connect(("127.0.0.1", port))
                    s.sendall(HALF["half head"])
                    socks.append(s)
            _wait_accepted(app, len(socks))
            r = httpx.post(f"{url}/v1/classify", content=body, headers={"content-type": "image/png"}, timeout=30)
            assert r.status_code == 200, r.text
            assert len(app.state.connections.half_open) <= ServeConfig().max_half_open
        finally:
            for s in socks:
                s.close()


def test_keep_alive_client_gets_a_fresh_head_deadline_per_request(run):
    """The head deadline runs from the previous response, not from the connection: four requests 0.8 s apart
    on one connection outlast a 2 s deadline counted once (each gap leaves 1.2 s of margin)."""
    cfg = ServeConfig(header_timeout_s=2.0, keep_alive_s=30.0)
    ports = set()
    with running_server(create_app(run, cfg)) as url, httpx.Client(timeout=120) as http:
        for i in range(4):
            if i:
                time.sleep(0.8)
            r = http.get(f"{url}/v1/health")
            assert r.status_code == 200
            ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1, "the connection was closed between requests (httpx opened another)"
