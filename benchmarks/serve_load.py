"""Load test of 'patchcrypt serve' on loopback: a keyed model on encrypted images beside the plain model.

    .venv/bin/python benchmarks/serve_load.py                 # 240 requests per level, 1/4/16 clients
    .venv/bin/python benchmarks/serve_load.py --full          # 1,200 requests per level, 1/4/16/64 clients
    .venv/bin/python benchmarks/serve_load.py --slow-only     # only the slow-client case

Three servers at once, each a real 'patchcrypt serve' process on 127.0.0.1, loaded in turn:
  plain     the plain-trained model, clients send plain PNG images;
  keyed     the same model keyed for block-pixel (patchcrypt keyed-model), clients send encrypted PNGs;
  keyed-b1  the keyed model with batching off (--max-batch 1), to show what batching buys.
For each server and number of concurrent clients (threads, one image per request, bounded request count):
throughput, p50/p99 latency and errors (must be 0). Also checks that the keyed server's label for every
encrypted image equals the plain server's label for the plain image. Ratios are within one run.
Slow-client case (bounded, loopback only): ``--slow-clients N`` sockets (default 600, at most 2,000) from a
second loopback address (127.0.0.2) connect to the keyed server and stay idle, send half a request head or
half a body; meanwhile the valid clients run the same load as without them. Errors must stay 0.
The model is the accuracy table's plain ViT when present (results/accuracy_table/runs/vit__plain), else a
freshly initialised vit_pico_patch4_32 (latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

from patchcrypt.record import EncryptionRecord
from patchcrypt import Key  # noqa: E402
from patchcrypt.ciphers import create_cipher  # noqa: E402
from patchcrypt.models.keyed import make_keyed_checkpoint  # noqa: E402
from patchcrypt.codec import encode_png  # noqa: E402
from patchcrypt.serve.client import wait_until_healthy  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``patchcrypt serve`` in its own process, stopped on exit."""

    def __init__(self, run: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "patchcrypt", "serve", str(run), "--port",
                                      str(self.port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_healthy(self.url, 60, self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)


def load(url: str, bodies, n_requests: int, clients: int):
    """``n_requests`` POSTs of one image each from ``clients`` threads; (seconds, latencies, errors, labels)."""
    import httpx

    latencies, errors, labels = [], [0], {}
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker():
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{url}/v1/classify", content=body, headers={"content-type": "image/png"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                        labels[i % len(bodies)] = r.json()["predictions"][0]["label"]
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, np.array(latencies), errors[0], labels


SLOW_FROM = "127.0.0.2"
SLOW_PARTS = (b"", b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Le",
              b"POST /v1/classify HTTP/1.1\r\nHost: x\r\ncontent-type: image/png\r\ncontent-length: 4000\r\n\r\n"
              + b"\x89PNG" * 50)


def open_slow(url: str, n: int):
    """``n`` loopback sockets from SLOW_FROM: idle, half a head or half a body (in turn); left open."""
    port = int(url.rsplit(":", 1)[1])
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((SLOW_FROM, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(SLOW_PARTS[i % 3])
        except OSError:
            pass  # the server refused it already
        socks.append(s)
    return socks


def slow_case(url: str, bodies, n_slow: int, n_requests: int, clients: int, rounds: int):
    """The same load with and without ``n_slow`` slow sockets held open; best round of each."""
    rows = []
    for label, n in (("none", 0), (f"{n_slow} slow sockets", n_slow)):
        best = None
        for _ in range(rounds):
            socks = open_slow(url, n) if n else []
            try:
                time.sleep(0.5 if n else 0)  # let the server accept (or refuse) them all
                seconds, lat, errors, _ = load(url, bodies, n_requests, clients)
            finally:
                for s in socks:
                    s.close()
            row = {"server": "keyed", "clients": clients, "slow": label, "errors": errors,
                   "throughput": len(lat) / seconds, "p50_ms": 1000 * float(np.percentile(lat, 50)) if len(lat) else 0,
                   "p99_ms": 1000 * float(np.percentile(lat, 99)) if len(lat) else 0}
            if best is None or row["throughput"] > best["throughput"]:
                row["errors"] += best["errors"] if best else 0
                best = row
            else:
                best["errors"] += errors
        rows.append(best)
        print(f"  keyed {clients:>3} clients, slow: {label:<17} {best['throughput']:7.1f} req/s  "
              f"p50 {best['p50_ms']:6.1f} ms  p99 {best['p99_ms']:6.1f} ms  errors {best['errors']}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("results/accuracy_table/runs/vit__plain"))
    ap.add_argument("--requests", type=int, default=None, help="requests per level (default 240, --full 1200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per level; the best one counts")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/serve_load"))
    ap.add_argument("--slow-clients", type=int, default=600, help="slow sockets in the slow-client case (0: skip)")
    ap.add_argument("--slow-only", action="store_true", help="run only the slow-client case")
    args = ap.parse_args(argv)
    if not 0 <= args.slow_clients <= 2000:
        ap.error("--slow-clients must be between 0 and 2000 (the case is bounded)")
    if args.slow_clients:
        try:
            with socket.socket() as s:
                s.bind((SLOW_FROM, 0))
        except OSError:
            print(f"{SLOW_FROM} is not a loopback address here: no slow-client case", flush=True)
            args.slow_clients = 0
    n_requests = args.requests or (1200 if args.full else 240)
    levels = [1, 4, 16, 64] if args.full else [1, 4, 16]
    key = Key.generate()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain_run = args.run if args.run.exists() else _fresh_model(tmp / "plain.pt")
        keyed_run = tmp / "keyed.pt"
        make_keyed_checkpoint(plain_run, keyed_run, key, "block-pixel", 4)
        images = _images(256)
        plain_bodies = [encode_png(x) for x in images]
        enc_bodies = [encode_png(x) for x in create_cipher("block-pixel", key, block_size=4).encrypt(images)]
        print(f"model {plain_run}; {n_requests} requests per level, one 32x32 image each; clients {levels}",
              flush=True)
        rows, all_labels, slow_rows = [], {"plain": {}, "keyed": {}}, []
        with Server(plain_run) as p_srv, Server(keyed_run) as k_srv, Server(keyed_run, "--max-batch", "1") as b_srv:
            urls = {"plain": (p_srv.url, plain_bodies), "keyed": (k_srv.url, enc_bodies),
                    "keyed-b1": (b_srv.url, enc_bodies)}
            for url, bodies in urls.values():
                load(url, bodies, min(32, n_requests), 2)  # warm-up
            for c in ([] if args.slow_only else levels):
                best = {}
                # interleaved rounds, best round per server: background load hits every server alike
                for _ in range(args.rounds):
                    for name, (url, bodies) in urls.items():
                        seconds, lat, errors, labels = load(url, bodies, n_requests, c)
                        all_labels.setdefault(name, {}).update(labels)
                        row = {"server": name, "clients": c, "requests": n_requests, "errors": errors,
                               "throughput": len(lat) / seconds, "p50_ms": 1000 * float(np.percentile(lat, 50)),
                               "p99_ms": 1000 * float(np.percentile(lat, 99))}
                        prev = best.get(name)
                        if prev is None or row["throughput"] > prev["throughput"]:
                            row["errors"] += prev["errors"] if prev else 0
                            best[name] = row
                        else:
                            prev["errors"] += errors
                for name, row in best.items():
                    rows.append(row)
                    print(f"  {name:<9} {c:>3} clients: {row['throughput']:7.1f} req/s  p50 {row['p50_ms']:6.1f} ms"
                          f"  p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}", flush=True)
            if args.slow_clients:
                slow_rows = slow_case(k_srv.url, enc_bodies, args.slow_clients, n_requests, 4, args.rounds)
    same = [i for i in all_labels["plain"] if i in all_labels["keyed"]]
    agree = sum(all_labels["plain"][i] == all_labels["keyed"][i] for i in same)
    for r in rows:
        base = next(b for b in rows if b["server"] == "plain" and b["clients"] == r["clients"])
        r["throughput_vs_plain"] = r["throughput"] / base["throughput"]
        nob = next(b for b in rows if b["server"] == "keyed-b1" and b["clients"] == r["clients"])
        r["throughput_vs_unbatched"] = r["throughput"] / nob["throughput"]
    md = ""
    if rows:
        md = (f"{n_requests} requests per level, one 32×32 image per request, loopback, server and clients on the "
              f"same 2 cores; best of {args.rounds} interleaved rounds. Keyed server's labels equal the plain "
              f"server's on {agree}/{len(same)} images.\n\n"
              + markdown_table([{**r, "throughput": f"{r['throughput']:.1f}", "p50_ms": f"{r['p50_ms']:.1f}",
                                 "p99_ms": f"{r['p99_ms']:.1f}",
                                 "throughput_vs_plain": f"{r['throughput_vs_plain']:.2f}",
                                 "throughput_vs_unbatched": f"{r['throughput_vs_unbatched']:.2f}"} for r in rows],
                               ["server", "clients", "throughput", "p50_ms", "p99_ms", "errors",
                                "throughput_vs_plain", "throughput_vs_unbatched"],
                               ["server", "clients", "req/s", "p50 ms", "p99 ms", "errors", "vs plain",
                                "vs no batching"]))
    if slow_rows:
        base = slow_rows[0]["throughput"]
        md += ("\n\n" if md else "") + (
            f"Slow clients: {args.slow_clients} sockets from {SLOW_FROM} held open (a third idle, a third with half "
            "a request head, a third with half a body) while 4 valid clients send "
            f"{n_requests} requests to the keyed server (default limits); best of {args.rounds} rounds.\n\n"
            + markdown_table([{**r, "throughput": f"{r['throughput']:.1f}", "p50_ms": f"{r['p50_ms']:.1f}",
                               "p99_ms": f"{r['p99_ms']:.1f}", "vs": f"{r['throughput'] / base:.2f}"}
                              for r in slow_rows],
                             ["slow", "clients", "throughput", "p50_ms", "p99_ms", "errors", "vs"],
                             ["slow sockets", "valid clients", "req/s", "p50 ms", "p99 ms", "errors",
                              "vs without"]))
    print(md)
    write_results(args.out, "serve_load", {"requests": n_requests, "levels": [] if args.slow_only else levels,
                                           "model": str(args.run), "labels_agree": agree,
                                           "labels_compared": len(same), "slow_clients": args.slow_clients},
                  rows + [{**r, "case": "slow-clients"} for r in slow_rows], md)
    total_errors = sum(r["errors"] for r in rows + slow_rows)
    return 1 if total_errors or agree != len(same) else 0


def _fresh_model(path: Path) -> Path:
    import torch

    from patchcrypt.models import create_model
    from patchcrypt.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(path, create_model("vit_pico_patch4_32"), model_name="vit_pico_patch4_32", model_kwargs={},
                    classes=[str(i) for i in range(10)], record=EncryptionRecord(scheme="plain"))
    return path


def _images(n: int) -> np.ndarray:
    if (SHARED / "test").is_dir():
        from patchcrypt.data import load_dataset

        return load_dataset(SHARED, "test").subset(n).images
    from patchcrypt.data import sample_photos

    return np.resize(sample_photos(32), (n, 32, 32, 3))


if __name__ == "__main__":
    sys.exit(main())
