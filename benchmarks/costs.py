"""Costs users pay (issue 28): each row's figure before the change and now, measured in one run.

    .venv/bin/python benchmarks/costs.py                   # before = b936564, the commit before issue 28
    .venv/bin/python benchmarks/costs.py --before HEAD~3 --rows keyed

"Before" is the source tree of ``--before`` (``git archive``, into a temporary folder); "now" is this
checkout's ``src``. Every measurement runs in a fresh subprocess on each tree, one after the other, with the
same code, so the two figures of a row are comparable (on a shared machine, compare ratios, not seconds).

Rows:

* keyed: parameters + buffers of ``vit_tiny_patch16_224`` keyed for ``etc`` at M = 16 against the plain model,
  and the largest |Δlogit| of the keyed model on an encrypted photo against the plain model on the plain one;
* jigsaw: CPU seconds of ``jigsaw_attack`` on one 224×224 ``etc`` photo at M = 16 (96 states, BLAS threads
  as the library leaves them), and a sha256 of the reconstruction (the same on both trees means the same
  result);
* perimage: per-image ``etc`` encryption of a batch of 128 32×32 images (``Encrypt(..., per_image=True)``'s
  cipher, torch NCHW) as a share of one ``vit_pico_patch4_32`` training step on the same batch (the median of
  15 of each, interleaved), and a sha256 of the ciphertexts under fixed nonces (the same on both trees means
  the same encryption).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "b936564"

_KEYED = """
import json, torch
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.data.samples import sample_photos
from patchcrypt.models import create_model
from patchcrypt.models.keyed import key_model
size = lambda m: sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
model = create_model("vit_tiny_patch16_224", seed=0).eval()
x = torch.from_numpy(sample_photos(224)[1:2]).permute(0, 3, 1, 2).contiguous()
with torch.no_grad():
    ref = model(x)
plain = size(model)
key = Key.from_bytes(bytes(range(32)))
key_model(model, key, "etc", 16)
enc = create_cipher("etc", key, block_size=16).encrypt(x)
with torch.no_grad():
    diff = float((model(enc) - ref).abs().max())
print(json.dumps({"plain": plain, "keyed": size(model), "max_dlogit": diff, "embed": model.embed}))
"""

_JIGSAW = """
import hashlib, json, time
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.data.samples import sample_photos
from patchcrypt.attacks.jigsaw import jigsaw_attack
photo = sample_photos(224)[1:2]
enc = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=16).encrypt(photo)
t = time.process_time()
r = jigsaw_attack(photo, enc, "etc", 16)
print(json.dumps({"cpu_s": time.process_time() - t, "ssim": float(r.metrics()["ssim"]),
                  "reconstruction": hashlib.sha256(r.reconstructed.tobytes()).hexdigest()[:16]}))
"""

_PERIMAGE = """
import hashlib, json, time, torch
from patchcrypt import Key
from patchcrypt.ciphers import create_cipher
from patchcrypt.models import create_model
torch.manual_seed(0)
model = create_model("vit_pico_patch4_32", num_classes=10, seed=0)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8)
y = torch.randint(0, 10, (128,))
cipher = create_cipher("etc", Key.from_bytes(bytes(range(32))), block_size=4, per_image=True)
fixed = [bytes([i]) * 16 for i in range(128)]
digest = hashlib.sha256(cipher.encrypt(x, fixed).numpy().tobytes()).hexdigest()[:16]
def step():
    loss = torch.nn.functional.cross_entropy(model(x.float() / 255), y)
    opt.zero_grad(); loss.backward(); opt.step()
enc, stp = [], []
for _ in range(15):
    nonces = cipher.new_nonces(128)
    t = time.perf_counter(); cipher.encrypt(x, nonces); enc.append(time.perf_counter() - t)
    t = time.perf_counter(); step(); stp.append(time.perf_counter() - t)
med = lambda v: sorted(v)[len(v) // 2]
print(json.dumps({"enc_ms": 1e3 * med(enc), "step_ms": 1e3 * med(stp), "share": med(enc) / med(stp),
                  "ciphertexts": digest}))
"""


def before_tree(ref: str, into: Path) -> Path:
    """``src`` of commit ``ref`` unpacked under ``into``; returns the folder to put on PYTHONPATH."""
    archive = into / "before.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def child(code: str, src: Path) -> dict:
    """Run ``code`` in a fresh interpreter importing patchcrypt from ``src``; its last stdout line as JSON."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode:
        raise SystemExit(f"child failed on {src}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def keyed_row(trees: dict) -> dict:
    got = {name: child(_KEYED, src) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    return {"cost": "keyed etc ViT-Ti at 224 (M = 16): parameters + buffers vs plain",
            "before": f"{b['keyed'] / 1e6:.1f}M vs {b['plain'] / 1e6:.1f}M: {b['keyed'] / b['plain']:.2f}×",
            "now": f"{n['keyed'] / 1e6:.2f}M vs {n['plain'] / 1e6:.2f}M: {n['keyed'] / n['plain']:.3f}×",
            "goal": "≤ 1.1×, logits within 1e-4",
            "note": f"max abs Δlogit {b['max_dlogit']:.1e} before, {n['max_dlogit']:.1e} now ({n['embed']} embedding)",
            "raw": got}


def jigsaw_row(trees: dict) -> dict:
    got = {name: child(_JIGSAW, src) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    same = "same reconstruction" if b["reconstruction"] == n["reconstruction"] else "DIFFERENT reconstruction"
    return {"cost": "jigsaw on one 224×224 etc photo, M = 16 (CPU s)", "before": f"{b['cpu_s']:.1f} s",
            "now": f"{n['cpu_s']:.1f} s ({b['cpu_s'] / n['cpu_s']:.0f}× less)", "goal": "≤ 10 s, same result",
            "note": f"{same}, SSIM {n['ssim']:.3f}", "raw": got}


def perimage_row(trees: dict) -> dict:
    got = {name: child(_PERIMAGE, src) for name, src in trees.items()}
    b, n = got["before"], got["now"]
    same = "same ciphertexts" if b["ciphertexts"] == n["ciphertexts"] else "DIFFERENT ciphertexts"
    return {"cost": "per-image etc encryption, share of one vit_pico step (32 px, batch 128)",
            "before": f"{b['share']:.1%} ({b['enc_ms']:.0f} ms)",
            "now": f"{n['share']:.1%} ({n['enc_ms']:.0f} ms, {b['enc_ms'] / n['enc_ms']:.1f}× less)",
            "goal": "≤ 3%", "note": same, "raw": got}


ROWS = {"keyed": keyed_row, "jigsaw": jigsaw_row, "perimage": perimage_row}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help="commit whose src gives the 'before' figures")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "costs")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": before_tree(args.before, Path(tmp)), "now": ROOT / "src"}
        rows = [ROWS[r](trees) for r in args.rows]
    table = markdown_table(rows, ["cost", "before", "now", "goal", "note"])
    print(table)
    write_results(args.out, "costs", {"before": args.before, "rows": args.rows}, rows, table)


if __name__ == "__main__":
    main()
