"""sync="global": two real CPU processes (gloo) reproduce the single-process batch-level loss."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lovaszseg.losses import LovaszSoftmaxLoss, lovasz_hinge, lovasz_multilabel, lovasz_softmax

WORLD = 2
IGNORE = 255


def _inputs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 12, 10, generator=g)
    labels = torch.randint(0, 4, (4, 12, 10), generator=g)
    labels[0, :3] = IGNORE
    labels[1][labels[1] == 3] = 0  # class 3 absent from rank 0's images, present on rank 1's
    labels[0][labels[0] == 3] = 0
    binary = (labels == 1).long().masked_fill(labels == IGNORE, IGNORE)
    targets = (torch.rand(4, 5, 12, 10, generator=g) < 0.2).float()
    targets[:2, 4] = 0  # channel 4 positive on rank 1 only
    return logits, labels, binary, targets


def _losses(logits, labels, binary, targets, sync):
    """Each loss and its gradient with respect to the logits."""
    calls = {
        "softmax": lambda x: lovasz_softmax(x.softmax(1), labels, ignore_index=IGNORE, sync=sync),
        "softmax_all": lambda x: lovasz_softmax(
            x.softmax(1),
            labels,
            "all",
            ignore_index=IGNORE,
            sync=sync,
            class_weights=[1.0, 2.0, 1.0, 0.5, 1.0],
        ),
        # The module runs the softmax inside the kernel, with its own backward.
        "softmax_module": lambda x: LovaszSoftmaxLoss(ignore_index=IGNORE, sync=sync)(x, labels),
        "hinge": lambda x: lovasz_hinge(x[:, 0], binary, False, IGNORE, sync=sync),
        "hinge_skip": lambda x: lovasz_hinge(
            x[:, 0], binary, False, IGNORE, sync=sync, empty="skip", symmetric=True
        ),
        "multilabel": lambda x: lovasz_multilabel(x.sigmoid(), targets, sync=sync),
    }
    out = {}
    for name, call in calls.items():
        x = logits.clone().requires_grad_(True)
        loss = call(x)
        loss.backward()
        out[name] = (loss.detach(), x.grad)
    return out


def _worker(rank, port, path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        part = slice(2 * rank, 2 * rank + 2)
        logits, labels, binary, targets = _inputs()
        out = _losses(logits[part], labels[part], binary[part], targets[part], "global")
        torch.save(out, f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = _losses(*_inputs(), sync="none")
    for rank in range(WORLD):
        ranked = torch.load(tmp_path / f"rank{rank}.pt")
        part = slice(2 * rank, 2 * rank + 2)
        for name, (loss, grad) in single.items():
            rank_loss, rank_grad = ranked[name]
            torch.testing.assert_close(rank_loss, loss, rtol=1e-6, atol=1e-7, msg=name)
            # Each process returns WORLD x its pixels' gradient, so that DDP's averaging
            # over processes yields the single-process gradient.
            torch.testing.assert_close(
                rank_grad / WORLD, grad[part], rtol=1e-5, atol=1e-8, msg=name
            )
