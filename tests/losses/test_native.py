"""The fused CPU kernel: built where a C compiler exists, used, and safely absent otherwise."""

import shutil

import pytest
import torch

from lovaszseg.losses import lovasz_hinge, lovasz_softmax, native


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A kernel state as in a new process, with the cache in a temporary directory."""
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "enabled", True)
    monkeypatch.setenv("LOVASZSEG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_builds_into_the_cache_once(fresh_build, kernel):
    lib = native.library()
    assert lib is not None
    built = list(fresh_build.glob("lovasz-*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    native._library, native._tried = None, False
    assert native.library() is not None  # loaded from the cache, not rebuilt
    assert built[0].stat().st_mtime_ns == mtime
    assert list(fresh_build.iterdir()) == built  # no partial files left behind


def test_without_a_compiler_warns_and_falls_back(fresh_build, monkeypatch, kernel):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    torch.manual_seed(0)
    probas = torch.rand(2, 3, 8, 8).softmax(1)
    labels = torch.randint(0, 3, (2, 8, 8))
    with pytest.warns(RuntimeWarning, match="fused CPU kernel is unavailable"):
        loss = lovasz_softmax(probas, labels)
    assert native.library() is None
    assert not list(fresh_build.glob("*.so"))
    monkeypatch.setattr(native, "enabled", False)
    assert loss.item() == lovasz_softmax(probas, labels).item()


def test_the_kernel_is_the_one_that_runs(monkeypatch, kernel):
    """With the kernel enabled the PyTorch path's sort must not be reached (and vice versa)."""
    from lovaszseg.losses import lovasz

    calls = []
    original = lovasz._sort
    monkeypatch.setattr(lovasz, "_sort", lambda *a: calls.append(1) or original(*a))
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    labels = torch.randint(0, 2, (2, 16, 16))
    lovasz_hinge(logits, labels).backward()
    assert bool(calls) == (kernel == "torch")
