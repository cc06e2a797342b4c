"""Multi-node training, as far as one machine can test it: two torchrun "nodes" with a localhost rendezvous
train the same weights as one node with two processes (bit-identical on CPU/gloo), streaming or not."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from patchcrypt.models import load_checkpoint

from train_helpers import copy_cifar


@pytest.fixture(scope="module")
def tree(tmp_path_factory, shared_cifar):
    return copy_cifar(tmp_path_factory.mktemp("cifar"), shared_cifar, ("airplane", "frog"),
                      (("train", 16), ("test", 4)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(tree, out, *extra):
    return ["-m", "patchcrypt", "train", "--data", str(tree), "--model", "vit_pico_patch4_32", "--out", str(out),
            "--epochs", "2", "--batch-size", "8", "--seed", "4", *extra]


def _two_nodes(torchrun, tree, out, env):
    """Two torchrun "nodes" of one process each on this machine; returns ([(stdout, stderr)], [exit codes])."""
    port = str(_free_port())
    logs = [[open(f"{out}.node{r}.{name}", "w+") for name in ("out", "err")] for r in (0, 1)]
    nodes = [subprocess.Popen([torchrun, "--nnodes=2", f"--node-rank={r}", "--nproc-per-node=1", "--master-addr",
                               "127.0.0.1", "--master-port", port,
                               *_train_args(tree, out, "--stream", "--workers", "1")],
                              stdout=logs[r][0], stderr=logs[r][1], text=True, env=env) for r in (0, 1)]
    try:
        # a node that fails (e.g. the master lost its port to another process: EADDRINUSE) leaves the other
        # waiting for a rendezvous that never comes: stop it at once instead of at its own timeout
        _wait_first_failure(nodes, 600)
    finally:
        for p in nodes:
            if p.poll() is None:
                p.kill()
            p.wait()
    outs = []
    for files in logs:
        for f in files:
            f.seek(0)
        outs.append(tuple(f.read() for f in files))
        for f in files:
            f.close()
    return outs, [p.returncode for p in nodes]


def _wait_first_failure(procs, limit_s: float) -> bool:
    """Wait until every process has exited or one has failed (then the rest are killed); False at the limit."""
    import time

    deadline = time.monotonic() + limit_s  # bounds a broken run only; a working one ends in seconds
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return True
        if any(c not in (None, 0) for c in codes):
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_two_nodes_train_the_same_weights_as_one_node_with_two_processes(tree, tmp_path):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for _ in range(3):  # another process may take the free port before torchrun binds it: try another
        shutil.rmtree(tmp_path / "one", ignore_errors=True)
        one = subprocess.run([torchrun, "--nproc-per-node=2", "--master-addr", "127.0.0.1", "--master-port",
                              str(_free_port()), *_train_args(tree, tmp_path / "one", "--in-memory")],
                             capture_output=True, text=True, timeout=600, env=env)
        if "EADDRINUSE" not in one.stderr:
            break
    assert one.returncode == 0, one.stderr[-3000:]
    for _ in range(3):
        shutil.rmtree(tmp_path / "two", ignore_errors=True)
        outs, codes = _two_nodes(torchrun, tree, tmp_path / "two", env)
        if not any("EADDRINUSE" in err for _, err in outs):
            break
    assert codes == [0, 0], [o[1][-2000:] for o in outs]
    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_a_failed_node_stops_the_other_at_once():
    """The helper above: one child fails, the other (blocked for ever, like a node awaiting its rendezvous) is
    killed rather than waited for."""
    waiting = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    try:
        assert _wait_first_failure([waiting, failing], 600)
        assert failing.wait() == 3 and waiting.wait() != 0  # killed, not finished
    finally:
        waiting.kill()
