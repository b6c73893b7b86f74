"""The kernel under real use: other thread counts in fresh processes, Python threads at once,
torch.compile, opcheck, one OpenMP runtime."""

import json
import os
import subprocess
import sys
import threading
import time
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


def _fresh(monkeypatch, cache):
    """A kernel state as in a new process, without a wheel's library, caching in ``cache``."""
    monkeypatch.setattr(native, "_prebuilt", lambda variant, digest: None)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "enabled", True)
    monkeypatch.setenv("LOVASZSEG_CACHE_DIR", str(cache))


def _built(cache):
    return sorted(cache.glob("lovasz-*.so"))


def test_builds_into_the_cache_once_and_reloads_it(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    assert native.library() is not None
    (built,) = _built(tmp_path)
    mtime = built.stat().st_mtime_ns
    _fresh(monkeypatch, tmp_path)
    assert native.library().path == built and built.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".build-*")), "partial files left behind"
    assert (built.stat().st_mode & 0o777) == 0o755


def test_a_library_of_another_source_or_interface_is_rebuilt(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    (built,) = _built(tmp_path) if native.library() else ()
    # A library under the cache's name but built from another source: refused, rebuilt.
    for command in native.build_commands(native.compiler(), "openmp", str(built), "0" * 16):
        subprocess.run(command, check=True)
    _fresh(monkeypatch, tmp_path)
    lib = native.library()
    assert lib is not None and lib.lovasz_source_hash().decode() == native.source_hash()
    # A corrupt file under the cache's name: rebuilt too.
    built.write_bytes(b"not a shared library")
    _fresh(monkeypatch, tmp_path)
    assert native.library() is not None and native.library().lovasz_abi() == native.ABI


def test_the_compilers_version_is_part_of_the_cache_key(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    native.library()
    monkeypatch.setattr(native, "_compiler_version", lambda name: "gcc (a later one) 99.0")
    _fresh(monkeypatch, tmp_path)
    native.library()
    assert len(_built(tmp_path)) == 2


def test_an_unwritable_cache_builds_into_a_private_directory(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fresh(monkeypatch, blocker / "cache")  # cannot be created, even as root
    monkeypatch.setattr(native, "_private_dir", lambda: tmp_path / "private")
    lib = native.library()
    assert lib is not None and lib.path.parent == tmp_path / "private"


def test_without_any_place_to_build_one_warning_and_the_pytorch_path(monkeypatch, tmp_path):
    from lovaszseg.losses import lovasz_softmax

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fresh(monkeypatch, blocker / "cache")
    monkeypatch.setattr(native, "_private_dir", lambda: blocker / "private")
    probas = torch.rand(2, 3, 8, 8).softmax(1)
    labels = torch.randint(0, 3, (2, 8, 8))
    with pytest.warns(RuntimeWarning, match="fused CPU kernel is unavailable") as record:
        loss = lovasz_softmax(probas, labels)
        lovasz_softmax(probas, labels)
    assert len(record) == 1
    monkeypatch.setattr(native, "enabled", False)
    assert loss.item() == pytest.approx(lovasz_softmax(probas, labels).item(), rel=1e-6)


def test_without_a_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    from lovaszseg.losses import lovasz_softmax

    _fresh(monkeypatch, tmp_path)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        lovasz_softmax(torch.rand(2, 3, 4, 4).softmax(1), torch.randint(0, 3, (2, 4, 4)))
    assert native.library() is None and not _built(tmp_path)


def test_a_compiler_without_openmp_still_builds_the_kernel(monkeypatch, tmp_path):
    """Apple's clang has no -fopenmp: the kernel then builds single-threaded, same results."""
    from lovaszseg.losses import lovasz_hinge, lovasz_softmax

    g = torch.Generator().manual_seed(9)
    probas = torch.randn(3, 6, 20, 20, generator=g).softmax(1)
    labels = torch.randint(0, 6, (3, 20, 20), generator=g)
    logits = torch.randn(3, 20, 20, generator=g)
    expected = [lovasz_softmax(probas, labels).item(), lovasz_hinge(logits, labels % 2).item()]
    _fresh(monkeypatch, tmp_path)
    monkeypatch.setitem(native.VARIANTS, "openmp", ["-fno-such-flag-openmp"])
    assert native.library().variant == "serial"
    got = [lovasz_softmax(probas, labels).item(), lovasz_hinge(logits, labels % 2).item()]
    assert got == expected


def test_four_processes_starting_together_build_once(tmp_path):
    """DDP ranks on one node: one build (file lock), every rank loads it."""
    log = tmp_path / "compiler.log"
    wrapper = tmp_path / "cc"
    real = native.compiler()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nsleep 1\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "CC": str(wrapper), "LOVASZSEG_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import sys, time; t = float(sys.argv[1]); time.sleep(max(0, t - time.time()));"
        "from lovaszseg.losses import native; native._prebuilt = lambda variant, digest: None;"
        "lib = native.library(); print(lib.variant, lib.path)"
    )
    start = str(time.time() + 4)
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", code, start], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [rank.communicate(timeout=180)[0].split() for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks)
    assert {tuple(out) for out in outputs} == {("openmp", str(_built(tmp_path / "cache")[0]))}
    compiles = [line for line in log.read_text().splitlines() if " -c " in f" {line} "]
    assert len(compiles) == 1, compiles


def test_a_wheels_library_is_used_only_if_built_from_this_source(monkeypatch, tmp_path):
    """An editable install's in-place library goes stale when _native.c changes: refused."""
    digest = native.source_hash()
    for name, built_from in (
        ("_lovasz_openmp.stale.so", "0" * 16),
        ("_lovasz_serial.ok.so", digest),
    ):
        variant = "openmp" if "openmp" in name else "serial"
        for command in native.build_commands(
            native.compiler(), variant, str(tmp_path / name), built_from
        ):
            subprocess.run(command, check=True)
    monkeypatch.setattr(native, "_HERE", tmp_path)
    assert native._prebuilt("openmp", digest) is None
    assert native._prebuilt("serial", digest).path == tmp_path / "_lovasz_serial.ok.so"


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
