"""The kernel under real use: other thread counts in fresh processes, Python threads at once,
torch.compile, opcheck, one OpenMP runtime."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from lovaszseg.losses import LovaszHingeLoss, LovaszSoftmaxLoss, native, ops

pytestmark = pytest.mark.path("native")

# Small and edge cases: rows fewer than threads (split into parts, some empty), empty rows,
# 1-pixel images, void pixels, classes="all" with absent classes.
_MATRIX = r"""
import json, sys, torch
from lovaszseg.losses import LovaszSoftmaxLoss, lovasz_hinge, lovasz_softmax, native
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
cases = {
    "softmax_all_per_image_1px": (lambda x, y: LovaszSoftmaxLoss(classes="all", per_image=True)(x, y),
                                  torch.randn(2, 3, 1, 1, generator=g), torch.randint(0, 3, (2, 1, 1), generator=g)),
    "hinge_1px": (lambda x, y: lovasz_hinge(x, y), torch.randn(2, 1, 1, 1, generator=g),
                  torch.randint(0, 2, (2, 1, 1), generator=g)),
    "hinge_batch_5px": (lambda x, y: lovasz_hinge(x, y, per_image=False), torch.randn(1, 1, 1, 5, generator=g),
                        torch.randint(0, 2, (1, 1, 5), generator=g)),
    "hinge_all_void": (lambda x, y: lovasz_hinge(x, y, ignore_index=255), torch.randn(2, 1, 3, 3, generator=g),
                       torch.full((2, 3, 3), 255)),
    "softmax_void_rows": (lambda x, y: lovasz_softmax(x.softmax(1), y, classes="all", ignore_index=255),
                          torch.randn(3, 4, 2, 7, generator=g), torch.randint(0, 2, (3, 2, 7), generator=g)),
    "softmax_batch_medium": (lambda x, y: LovaszSoftmaxLoss()(x, y), torch.randn(2, 5, 40, 33, generator=g) * 3,
                             torch.randint(0, 5, (2, 40, 33), generator=g)),
    "hinge_symmetric_per_image": (lambda x, y: lovasz_hinge(x, y, symmetric=True), torch.randn(3, 1, 17, 9, generator=g),
                                  torch.randint(0, 2, (3, 17, 9), generator=g)),
}
out = {}
for name, (fn, x, y) in cases.items():
    for path in ("native", "torch"):
        native.enabled = path == "native"
        leaf = x.clone().requires_grad_(True)
        loss = fn(leaf, y)
        loss.backward()
        out[f"{name}/{path}"] = [loss.item(), leaf.grad.reshape(-1).tolist()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("threads", [1, 2, 3, 16, 64])
def test_any_thread_count_in_a_fresh_process_matches_the_pytorch_path(threads):
    done = subprocess.run(
        [sys.executable, "-c", _MATRIX, str(threads)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    for key in [k for k in out if k.endswith("/native")]:
        (loss_c, grad_c), (loss_t, grad_t) = out[key], out[key.replace("/native", "/torch")]
        assert loss_c == pytest.approx(loss_t, rel=1e-6, abs=1e-7), key
        assert grad_c == pytest.approx(grad_t, rel=1e-5, abs=1e-6), key


def test_two_python_threads_calling_at_once_get_their_own_results():
    """Two threads, each with its own inputs, at once and with other thread counts set between
    calls, get exactly what they get alone."""
    g = torch.Generator().manual_seed(1)
    inputs = [
        (torch.randn(2, 6, 48, 48, generator=g) * 3, torch.randint(0, 6, (2, 48, 48), generator=g))
        for _ in range(2)
    ]
    criterion = LovaszSoftmaxLoss()

    def run(x, y):
        leaf = x.clone().requires_grad_(True)
        loss = criterion(leaf, y)
        loss.backward()
        return loss.item(), leaf.grad

    expected = [run(*pair) for pair in inputs]
    failures = []

    def worker(i):
        for round_ in range(15):
            torch.set_num_threads(1 + (round_ + i) % 3)
            loss, grad = run(*inputs[i])
            if loss != expected[i][0] or not torch.allclose(grad, expected[i][1], atol=1e-7):
                failures.append((i, round_, loss, expected[i][0]))

    previous = torch.get_num_threads()
    try:
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        torch.set_num_threads(previous)
    assert not failures


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_gives_the_eager_loss_and_gradient(backend, dynamic):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    for criterion, channels in ((LovaszSoftmaxLoss(), 5), (LovaszHingeLoss(per_image=False), 1)):
        compiled = torch.compile(
            lambda x, y, c=criterion: c(x, y), backend=backend, dynamic=dynamic
        )
        for shape in ((2, 24, 24), (3, 17, 31)):
            x = torch.randn(shape[0], channels, *shape[1:], generator=g) * 2
            y = torch.randint(0, max(channels, 2), shape, generator=g)
            eager_x, compiled_x = x.clone().requires_grad_(), x.clone().requires_grad_()
            eager = criterion(eager_x, y)
            eager.backward()
            got = compiled(compiled_x, y)
            got.backward()
            assert got.item() == pytest.approx(eager.item(), rel=1e-6), (backend, shape)
            torch.testing.assert_close(compiled_x.grad, eager_x.grad, rtol=1e-5, atol=1e-7)


def test_opcheck_passes_for_every_operator():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 40, generator=g)
    labels = torch.randint(0, 3, (2, 40), generator=g).to(torch.uint8)
    channel = torch.arange(3)
    probas = logits.softmax(1)
    image, rows_channel = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1])
    cases = [
        (
            logits.requires_grad_(),
            labels,
            None,
            channel,
            channel.clone(),
            None,
            0.0,
            -1,
            True,
            False,
            False,
        ),
        (
            probas.clone().requires_grad_(),
            labels,
            None,
            channel,
            channel.clone(),
            None,
            0.0,
            255,
            False,
            True,
            False,
        ),
        (
            logits.detach(),
            labels,
            image,
            rows_channel,
            rows_channel.clone(),
            torch.tensor([1.0, -1.0, 1.0]),
            1.0,
            -1,
            False,
            False,
            False,
        ),
    ]
    for args in cases:
        torch.library.opcheck(ops.rows, args)
    _, position, grad, kept, _, _ = ops.rows(*cases[1])
    weights = torch.rand(3, generator=g)
    torch.library.opcheck(ops.scatter_grad, (position, grad, kept, weights, [2, 3, 40]))
    torch.library.opcheck(ops.softmax_grad, (probas, None, channel, kept, position, grad, weights))


def test_a_double_backward_raises():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (2, 8, 8))
    (grad,) = torch.autograd.grad(LovaszSoftmaxLoss()(x, y), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_the_runtime_names_pytorch_wheels_use_are_recognised():
    maps = "\n".join(
        f"7f00-7f01 r-xp 00000000 08:01 1 {path}"
        for path in (
            "/venv/torch/lib/libgomp-a34b3233.so.1",
            "/venv/torch/lib/libgomp-a34b3233.so.1",
            "/usr/lib/libgomp.so.1",
            "/opt/intel/libiomp5.so",
            "/usr/lib/libomp.so.5",
            "/usr/lib/libgompish.so",
            "/usr/lib/libtorch_cpu.so",
        )
    )
    assert native.openmp_runtimes(maps) == [
        "/venv/torch/lib/libgomp-a34b3233.so.1",
        "/usr/lib/libgomp.so.1",
        "/opt/intel/libiomp5.so",
        "/usr/lib/libomp.so.5",
    ]


_ONE_RUNTIME = r"""
import json, os, sys, torch
from lovaszseg.losses import LovaszSoftmaxLoss, native
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(512, 512); (a @ a).sum()          # PyTorch's own pool starts
x = torch.randn(4, 21, 64, 64, requires_grad=True)
before = len(os.listdir("/proc/self/task"))
LovaszSoftmaxLoss()(x, torch.randint(0, 21, (4, 64, 64))).backward()
lib = native.library()
print(json.dumps({"runtimes": native.openmp_runtimes(), "variant": lib.variant,
                  "tasks": [before, len(os.listdir("/proc/self/task"))],
                  "team": lib.lovasz_team_size(torch.get_num_threads())}))
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
@pytest.mark.parametrize("threads", [1, 3])
def test_one_openmp_runtime_bounded_by_set_num_threads(threads):
    done = subprocess.run(
        [sys.executable, "-c", _ONE_RUNTIME, str(threads)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert len(out["runtimes"]) == 1, out["runtimes"]
    assert out["variant"] == "openmp"
    assert out["team"] == threads
    before, after = out["tasks"]
    assert after == before, "the kernel started threads of its own"


def test_the_eager_softmax_backward_writes_over_the_probabilities_only_when_told_it_may(
    monkeypatch,
):
    """LovaszSoftmaxLoss drops the operator's probabilities output and says so
    (``probas_disposable``), so its backward reuses their memory for the gradient; a caller that
    keeps them (as opcheck does) passes False and finds them intact."""
    calls = []
    original = native.softmax_backward
    monkeypatch.setattr(
        native,
        "softmax_backward",
        lambda *a, **k: calls.append(k.get("out") is not None) or original(*a, **k),
    )
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 40, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (2, 40), generator=g)
    (in_place,) = torch.autograd.grad(LovaszSoftmaxLoss()(x, y), x)
    out = ops.rows(
        x,
        y.to(torch.uint8),
        None,
        torch.arange(3),
        torch.arange(3),
        None,
        0.0,
        -1,
        True,
        False,
        False,
    )
    kept_probas = out[4].clone()
    (held,) = torch.autograd.grad(out[0].sum() / 3, x)
    assert calls == [True, False]
    torch.testing.assert_close(out[4], kept_probas, rtol=0, atol=0)
    torch.testing.assert_close(in_place, held, rtol=1e-6, atol=1e-7)
