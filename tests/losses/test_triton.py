"""The Triton prologue and epilogue (``engine_triton``) against the engine's PyTorch versions,
run by Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, in a fresh process: the
variable is read when Triton is imported), on tiny rows that span several blocks."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
pytestmark = pytest.mark.path("torch")

_COMPARE = r"""
import json, torch
from lovaszseg.losses import engine, engine_triton
g = torch.Generator().manual_seed(0)
out = {}
for rows, length in [(1, 1), (3, 37), (2, 64), (4, 130)]:
    errors = torch.rand(rows, length, generator=g) * 3 - 0.5  # some negative: sorted last
    flat = errors.view(-1)
    special = [0.0, float("nan"), float("inf"), 1e-40, torch.finfo(torch.float32).tiny, 1.0, 1.0]
    flat[: min(len(special), flat.numel())] = torch.tensor(special)[: flat.numel()]
    foreground = torch.rand(rows, length, generator=g) < 0.4
    assert engine_triton.usable(errors)
    keys = engine_triton.sort_keys(errors, foreground, block=16)
    expected_keys = engine.sort_keys(errors, foreground)
    sorted_keys, _ = engine.sort_errors(expected_keys)
    gts = foreground.sum(1, keepdim=True, dtype=torch.int32)
    grad = engine_triton.lovasz_grad(sorted_keys, gts, torch.float32, block=16)
    expected = engine.lovasz_grad(sorted_keys, gts, torch.float32)
    out[f"{rows}x{length}"] = {
        "keys_equal": bool(torch.equal(keys, expected_keys)),
        "grad_max_rel": float(((grad - expected).abs() / expected.abs().clamp_min(1e-30)).max()),
        "grad_shape": list(grad.shape) == list(expected.shape),
    }
print(json.dumps(out))
"""


def test_the_triton_prologue_and_epilogue_are_the_engines():
    env = {**os.environ, "TRITON_INTERPRET": "1", "LOVASZSEG_TRITON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPARE], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert len(results) == 4
    for shape, result in results.items():
        assert result["keys_equal"], shape
        assert result["grad_shape"], shape
        assert result["grad_max_rel"] <= 1e-6, (shape, result)


def test_usable_only_for_float32_rows_and_when_turned_on(monkeypatch):
    import torch

    from lovaszseg.losses import engine_triton

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rows = torch.zeros(2, 8)
    monkeypatch.delenv("LOVASZSEG_TRITON", raising=False)
    assert not engine_triton.usable(rows)  # opt-in until a GPU measures them faster
    monkeypatch.setenv("LOVASZSEG_TRITON", "1")
    assert engine_triton.usable(rows)
    assert not engine_triton.usable(rows.double())
    monkeypatch.setenv("LOVASZSEG_TRITON", "0")
    assert not engine_triton.usable(rows)
    monkeypatch.setenv("LOVASZSEG_TRITON", "maybe")
    with pytest.raises(ValueError, match="LOVASZSEG_TRITON must be 0 or 1, got 'maybe'"):
        engine_triton.usable(rows)
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("LOVASZSEG_TRITON", "1")
    assert not engine_triton.usable(rows)  # a CPU tensor, outside the interpreter


_THROUGH_THE_LOSSES = r"""
import json, os, torch
from lovaszseg.losses import engine_triton, lovasz_hinge, lovasz_softmax
calls = {"sort_keys": 0, "lovasz_grad": 0}
for name in calls:
    kernel = getattr(engine_triton, name)
    def counted(*args, _kernel=kernel, _name=name, **kwargs):
        calls[_name] += 1
        return _kernel(*args, **kwargs)
    setattr(engine_triton, name, counted)
g = torch.Generator().manual_seed(1)
logits = torch.randn(3, 1, 9, 11, generator=g, requires_grad=True)
labels = torch.randint(0, 2, (3, 9, 11), generator=g)
labels[0, :2] = 255
probas = torch.rand(2, 4, 7, 5, generator=g).softmax(1).requires_grad_()
classes = torch.randint(0, 4, (2, 7, 5), generator=g)
out = {}
for name, loss in [
    ("hinge", lovasz_hinge(logits, labels, per_image=False, ignore_index=255, checks="async")),
    ("hinge_per_image", lovasz_hinge(logits, labels, ignore_index=255, checks="async")),
    ("softmax", lovasz_softmax(probas, classes, classes="all", checks="async")),
]:
    inputs = logits if name.startswith("hinge") else probas
    (grad,) = torch.autograd.grad(loss, inputs)
    out[name] = {"loss": loss.item(), "grad": grad.flatten().tolist()}
out["calls"] = calls
print(json.dumps(out))
"""


def test_the_losses_run_through_the_triton_kernels_with_the_same_values():
    """With the kernels on (Triton's interpreter standing in for CUDA), a hinge and a softmax
    call go through them and give the PyTorch engine's loss and gradient."""
    runs = {}
    for triton in ("1", "0"):
        env = {**os.environ, "TRITON_INTERPRET": "1", "LOVASZSEG_TRITON": triton}
        env["LOVASZSEG_NATIVE"] = "0"
        done = subprocess.run(
            [sys.executable, "-c", _THROUGH_THE_LOSSES],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[triton] = json.loads(done.stdout.splitlines()[-1])
    assert runs["1"]["calls"] == {"sort_keys": 3, "lovasz_grad": 3}
    assert runs["0"]["calls"] == {"sort_keys": 0, "lovasz_grad": 0}
    for name in ("hinge", "hinge_per_image", "softmax"):
        assert runs["1"][name]["loss"] == pytest.approx(runs["0"][name]["loss"], rel=1e-6)
        assert runs["1"][name]["grad"] == pytest.approx(runs["0"][name]["grad"], rel=1e-5, abs=1e-7)
