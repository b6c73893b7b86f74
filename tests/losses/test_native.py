"""The fused CPU kernel against the PyTorch path: the path taken, ties, threads, accuracy."""

import pytest
import torch

from lovaszseg.losses import lovasz_hinge, lovasz_softmax, native


def test_the_kernel_is_the_one_that_runs(monkeypatch, kernel):
    """With the kernel enabled the engine must not be reached (and vice versa)."""
    from lovaszseg.losses import engine

    calls = []
    original = engine.sort_keys
    monkeypatch.setattr(engine, "sort_keys", lambda *a: calls.append(1) or original(*a))
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    labels = torch.randint(0, 2, (2, 16, 16))
    lovasz_hinge(logits, labels).backward()
    assert bool(calls) == (kernel == "torch")


def _both_paths(monkeypatch, loss_fn, *inputs):
    """Loss and input gradient through the C kernel and through the PyTorch path."""
    results = []
    for use_native in (True, False):
        monkeypatch.setattr(native, "enabled", use_native)
        leaf = inputs[0].detach().clone().requires_grad_(True)
        loss = loss_fn(leaf, *inputs[1:])
        loss.backward()
        results.append((loss.detach(), leaf.grad))
    return results


def _assert_same(results, ties=None):
    """Same loss; same gradient, or with ``ties`` (ids of the groups of inputs whose errors tie:
    the Lovász extension may order them either way) the same gradient sum over every group."""
    (loss_c, grad_c), (loss_t, grad_t) = results
    torch.testing.assert_close(loss_c, loss_t, rtol=1e-6, atol=1e-7)
    if ties is not None:
        _, ids = torch.unique(ties.reshape(-1, ties.shape[-1]), dim=0, return_inverse=True)
        grad_c, grad_t = (
            torch.zeros(int(ids.max()) + 1, dtype=torch.float64).index_add_(
                0, ids, g.reshape(-1).double()
            )
            for g in (grad_c, grad_t)
        )
    assert (grad_c - grad_t).abs().sum() <= 1e-5 * grad_t.abs().sum() + 1e-9


@pytest.mark.path("native")
@pytest.mark.parametrize("per_image", [False, True])
def test_many_classes_read_int32_labels(monkeypatch, kernel, per_image):
    """Over 254 classes the labels reach the kernel as int32, not uint8."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 300, 12, 12, generator=g) * 3
    labels = torch.randint(0, 300, (2, 12, 12), generator=g)
    labels[0, :3] = 1000  # void
    results = _both_paths(
        monkeypatch,
        lambda x, y: lovasz_softmax(x.softmax(1), y, per_image=per_image, ignore_index=1000),
        logits,
        labels,
    )
    _assert_same(results)


@pytest.mark.path("native")
@pytest.mark.parametrize("threads", [1, 3, 4])
def test_rows_split_across_threads_give_the_same_loss(monkeypatch, kernel, threads):
    """Fewer rows than threads splits rows into parts; the result must not depend on it."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 1, 64, 64, generator=g) * 2
    labels = (torch.rand(3, 64, 64, generator=g) < 0.1).long()
    labels[1, 10:20] = 255
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for per_image in (False, True):
            results = _both_paths(
                monkeypatch,
                lambda x, y, p=per_image: lovasz_hinge(x, y, per_image=p, ignore_index=255),
                logits,
                labels,
            )
            _assert_same(results)
            torch.set_num_threads(1)
            single = _both_paths(
                monkeypatch,
                lambda x, y, p=per_image: lovasz_hinge(x, y, per_image=p, ignore_index=255),
                logits,
                labels,
            )
            torch.set_num_threads(threads)
            assert results[0][0].item() == single[0][0].item()  # bitwise: fixed summation order
    finally:
        torch.set_num_threads(previous)


@pytest.mark.path("native")
def test_heavy_ties_and_wide_error_ranges(monkeypatch, kernel):
    """Quantised scores (many exact ties) and errors spanning many octaves fill some buckets
    with thousands of equal keys; the loss must still be the PyTorch path's."""
    g = torch.Generator().manual_seed(5)
    scale = torch.tensor([1e-6, 1e-3, 1.0, 30.0]).view(4, 1, 1, 1)
    logits = (torch.randn(4, 1, 96, 96, generator=g) * 4).round() / 4 * scale
    labels = (torch.rand(4, 96, 96, generator=g) < 0.3).long()
    image = torch.arange(4.0).view(4, 1, 1, 1).expand_as(logits)
    for per_image in (False, True):
        results = _both_paths(
            monkeypatch, lambda x, y, p=per_image: lovasz_hinge(x, y, per_image=p), logits, labels
        )
        # A tie: same image (per image), same logit, same label.
        ties = [image * per_image, logits, labels.unsqueeze(1).float()]
        _assert_same(results, ties=torch.stack(ties, -1))
    probas = torch.randn(4, 5, 96, 96, generator=g).mul(3).round().softmax(1)
    labels = torch.randint(0, 5, (4, 96, 96), generator=g)
    results = _both_paths(monkeypatch, lovasz_softmax, probas, labels)
    # A tie in the row of class c: same probability of c, same "labelled c".
    channel = torch.arange(5.0).view(1, 5, 1, 1).expand_as(probas)
    is_c = (labels.unsqueeze(1) == channel).float()
    _assert_same(results, ties=torch.stack([channel, probas, is_c], -1))


def test_softmax_backward_twice_with_retain_graph(kernel):
    """A second backward (retain_graph) gives the first one's gradient, bitwise."""
    from lovaszseg.losses import LovaszSoftmaxLoss

    g = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 5, 16, 16, generator=g).requires_grad_(True)
    labels = torch.randint(0, 5, (2, 16, 16), generator=g)
    loss = LovaszSoftmaxLoss()(logits, labels)
    (first,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (second,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    expected = torch.autograd.grad(lovasz_softmax(logits.softmax(1), labels), logits)[0]
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.path("native")
@pytest.mark.parametrize("shape", [(2, 21, 1000), (3, 1, 300), (1, 150, 513)])
def test_the_kernels_softmax_is_as_accurate_as_atens(kernel, shape):
    """LovaszSoftmaxLoss's probabilities come from the kernel's own softmax (a vectorised exp):
    against float64, no further off than torch.softmax in float32, extreme logits included."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(shape, generator=g) * 8
    x.view(-1)[:50] = torch.tensor([-1e4, 1e4, 88.0, -88.0, 0.0] * 10)
    exact = torch.softmax(x.double(), 1)
    ours = native.softmax(x.contiguous()).double()
    aten = torch.softmax(x, 1).double()
    assert (ours - exact).abs().max() <= 2 * (aten - exact).abs().max() + 1e-7
    torch.testing.assert_close(ours.sum(1), torch.ones_like(ours.sum(1)), rtol=0, atol=1e-5)


@pytest.mark.path("native")
def test_the_kernels_softmax_of_a_nan_or_infinite_logit_is_atens():
    """A NaN or +inf logit makes its pixel's probabilities NaN, -inf makes its class's 0 (as
    torch.softmax); the other pixels are untouched."""
    x = torch.randn(2, 3, 300, generator=torch.Generator().manual_seed(11))
    x[0, 1, 7], x[0, 2, 280], x[1, 0, 0] = float("nan"), float("inf"), float("-inf")
    ours, aten = native.softmax(x.contiguous()), torch.softmax(x, 1)
    assert torch.equal(ours.isnan(), aten.isnan()) and int(aten.isnan().sum()) == 6
    torch.testing.assert_close(ours.nan_to_num(), aten.nan_to_num(), rtol=1e-5, atol=1e-7)
    assert ours[1, 0, 0] == 0


@pytest.mark.path("native")
@pytest.mark.parametrize("threads", [1, 3])
def test_the_kernels_probability_range_shows_a_nan(kernel, threads):
    """The range the kernel reads for the probability check is NaN where a valid pixel is NaN (a
    min/max would skip it and the NaN would pass as a probability), and stays the plain range
    where the NaN is at a void pixel."""
    x = torch.rand(2, 3, 50, generator=torch.Generator().manual_seed(12))
    labels = torch.randint(0, 3, (2, 50), dtype=torch.uint8)
    channel = torch.arange(3)
    x[1, 2, 40], labels[0, 7] = float("nan"), 255
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        *_, x_range = native.rows(x, labels, None, channel, channel, None, 0.0, 255)
        assert x_range.isnan().all()
        labels[1, 40] = 255  # the NaN pixel is void: not read
        *_, x_range = native.rows(x, labels, None, channel, channel, None, 0.0, 255)
    finally:
        torch.set_num_threads(previous)
    valid = (labels != 255).unsqueeze(1).expand_as(x)
    assert x_range.tolist() == [x[valid].min().item(), x[valid].max().item()]
