"""The learned attacks' optimisation loop (patchcrypt.runtime.train_epoch): how often it reads the loss on the
host."""

import pytest
import torch

from patchcrypt.errors import PatchcryptError
from patchcrypt.runtime import train_epoch


def _run(check_every, poison_at=None, seen=None):
    """10 SGD steps of a linear model; the loss of step ``poison_at`` is NaN; ``seen`` collects the steps run."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)) for _ in range(10)]
    seen = [] if seen is None else seen

    def loss_fn(batch):
        x, y = batch
        seen.append(len(seen))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if poison_at is not None and len(seen) == poison_at:
            loss = loss * float("nan")
        return loss, len(y)

    stats = train_epoch(loss_fn, opt, batches, disable=True, check_every=check_every)
    return stats, model, seen


def test_reading_the_loss_less_often_trains_the_same_weights():
    every, m1, _ = _run(None)  # CPU default: every step
    lazy, m4, _ = _run(4)      # what an accelerator does: a device-side sum, read every 4 steps
    assert every["items"] == lazy["items"] == 50
    assert lazy["loss"] == pytest.approx(every["loss"], rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m4.parameters()))


@pytest.mark.parametrize("check_every, last_step", [(None, 3), (4, 4), (32, 10)])
def test_a_diverged_loss_is_refused_at_the_next_read(check_every, last_step):
    seen = []
    with pytest.raises(PatchcryptError, match="diverged"):
        _run(check_every, poison_at=3, seen=seen)
    assert len(seen) == last_step  # every step on the CPU; else the read after it (or the epoch's end)
