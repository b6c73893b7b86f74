"""The fixed-shape engine: its steps against their definitions, the C kernel, its op budget and
host reads, and ``torch.compile(fullgraph=True)``; all on CPU, where CI runs them."""

import collections
import itertools
from fractions import Fraction

import pytest
import torch
import torch._dynamo.testing
from torch.utils._python_dispatch import TorchDispatchMode

from lovaszseg.losses import (
    LovaszHingeLoss,
    LovaszMultilabelLoss,
    LovaszSoftmaxLoss,
    engine,
    lovasz_hinge,
    lovasz_multilabel,
    lovasz_softmax,
    native,
)

pytestmark = pytest.mark.path("torch")  # the engine; tests that need the kernel switch it on

IGNORE = 255


def test_sort_keys_order_by_decreasing_error_foreground_first_and_drop_what_takes_no_part():
    g = torch.Generator().manual_seed(0)
    tiny = torch.finfo(torch.float32).tiny
    errors = torch.cat(
        [torch.rand(300, generator=g) * 3, torch.tensor([0.0, tiny / 2, tiny, 1.0, 3e38, 1.0])]
    )
    errors = torch.cat([errors, errors[:60]])  # ties between foreground and background pixels
    foreground = torch.rand(errors.numel(), generator=g) < 0.3
    foreground[-60:] = ~foreground[:60]
    keys, order = engine.sort_errors(engine.sort_keys(errors.unsqueeze(0), foreground.unsqueeze(0)))

    # Decreasing error, foreground first, then position; the pixels that take no part last,
    # in their order.
    takes_part = (errors >= tiny).tolist()

    def rank(i):
        if not takes_part[i]:
            return (1, 0.0, False, i)
        return (0, -errors[i].item(), not foreground[i], i)

    expected = sorted(range(errors.numel()), key=rank)
    assert order[0].tolist() == expected
    assert int(keys[0, -1]) == torch.iinfo(torch.int32).min  # zero and denormal errors: last
    assert int((keys[0] == torch.iinfo(torch.int32).min).sum()) == takes_part.count(False) == 2


def _jaccard_increments(foreground_sorted: list[bool]) -> list[float]:
    """The paper's lovasz_grad in exact rationals: differences of the prefixes' 1 - |F∩·|/|F∪·|."""
    total = sum(foreground_sorted)
    losses = []
    inter, union = total, total
    for fg in foreground_sorted:
        inter, union = (inter - 1, union) if fg else (inter, union + 1)
        losses.append(1 - Fraction(inter, union))
    return [float(b - a) for a, b in zip([Fraction(0), *losses], losses, strict=False)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lovasz_grad_is_the_difference_of_prefix_jaccard_losses(dtype):
    g = torch.Generator().manual_seed(1)
    flags = torch.rand(5, 40, generator=g) < torch.tensor([[0.0], [0.02], [0.3], [0.9], [1.0]])
    errors = torch.linspace(2.0, 0.1, 40, dtype=dtype).expand(5, 40).contiguous()
    keys = engine.sort_keys(errors, flags)
    sorted_keys, order = engine.sort_errors(keys)
    assert torch.equal(order, torch.arange(40).expand(5, 40))  # already in order
    gts = flags.sum(1, keepdim=True, dtype=torch.int32)
    got = engine.lovasz_grad(sorted_keys, gts, dtype)
    expected = torch.tensor([_jaccard_increments(row) for row in flags.tolist()], dtype=dtype)
    torch.testing.assert_close(got, expected, rtol=2 * torch.finfo(dtype).eps, atol=0)


def test_row_losses_at_a_tie_give_the_tied_background_pixel_no_gradient():
    """The documented tie rule: at equal errors the foreground pixel comes first, so the tied
    background pixel, coming after the whole foreground, has increment inter/... = 0."""
    errors = torch.tensor([[0.5, 0.5, 0.2]], requires_grad=True)
    foreground = torch.tensor([[False, True, False]])
    losses, gts = engine.row_losses(errors, foreground)
    losses.sum().backward()
    # Sorted: the foreground 0.5 (increment 1/1), then the background 0.5 and 0.2 (inter 0).
    assert losses.tolist() == [0.5] and gts.tolist() == [[1]]
    assert errors.grad.tolist() == [[0.0, 1.0, 0.0]]


# Every mode of the three losses, as (function, builds (x, y), options).
def _probas(g, shape):
    return torch.randn(*shape, generator=g).softmax(1)


def _labels(g, shape, classes, ignore):
    labels = torch.randint(0, classes, shape, generator=g)
    if ignore:
        labels[torch.rand(shape, generator=g) < 0.2] = IGNORE
    return labels


MODES = []
for per_image, ignore in itertools.product([False, True], [None, IGNORE]):
    for symmetric, empty in itertools.product([False, True], ["include", "skip"]):
        MODES.append(
            (
                "hinge",
                dict(per_image=per_image, ignore_index=ignore, symmetric=symmetric, empty=empty),
            )
        )
    for classes, weights in [("present", None), ("all", [0.5, 1, 2, 1]), ([0, 2, 3], None)]:
        options = dict(per_image=per_image, ignore_index=ignore, classes=classes)
        MODES.append(("softmax", dict(options, class_weights=weights)))
        MODES.append(("softmax_logits", options))
    for kind, classes in itertools.product(["sigmoid", "hinge"], ["present", "all", [1, 3]]):
        MODES.append(
            (
                "multilabel",
                dict(per_image=per_image, ignore_index=ignore, kind=kind, classes=classes),
            )
        )


def _call(loss, options, x, y):
    if loss == "hinge":
        return lovasz_hinge(x[:, 0], y.clamp(max=1).masked_fill(y == IGNORE, IGNORE), **options)
    if loss == "softmax":
        return lovasz_softmax(x.softmax(1), y, **options)
    if loss == "softmax_logits":
        return LovaszSoftmaxLoss(**options)(x, y)
    targets = (x.detach() > 0.4).long()
    if options["ignore_index"] is not None:
        targets = targets.masked_fill(y.unsqueeze(1) == IGNORE, IGNORE)
    scores = x.sigmoid() if options["kind"] == "sigmoid" else x
    return lovasz_multilabel(scores, targets, **options)


def _loss_and_grad(loss, options, x, y):
    x = x.detach().clone().requires_grad_(True)
    value = _call(loss, options, x, y)
    value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize(("loss", "options"), MODES, ids=lambda v: str(v))
@pytest.mark.parametrize(
    ("dtype", "checks"),
    [
        (torch.float32, "async"),
        (torch.float32, "sync"),
        (torch.float16, "off"),
        (torch.bfloat16, "off"),
    ],
)
def test_engine_matches_the_kernel_in_every_mode(loss, options, dtype, checks, monkeypatch):
    """Fixed shapes (checks "async" or "off") and compacted rows (checks "sync", CPU) alike."""
    monkeypatch.setattr(native, "enabled", True)
    if native.library() is None:
        pytest.skip("the fused CPU kernel could not be built here (no C compiler?)")
    g = torch.Generator().manual_seed(len(str(options)))
    # Logits on a coarse grid: ties between pixels, where the two must pick the same order (but
    # not for the softmax inside: the kernel's own exp may round tied pixels apart).
    x = torch.randn(3, 4, 5, 3, 4, generator=g)
    x = (x if loss == "softmax_logits" else (x * 4).round() / 4).to(dtype)
    y = _labels(g, (3, 5, 3, 4), 4, options.get("ignore_index"))
    monkeypatch.setattr(native, "enabled", False)
    ours, our_grad = _loss_and_grad(loss, dict(options, checks=checks), x, y)
    monkeypatch.setattr(native, "enabled", True)
    theirs, their_grad = _loss_and_grad(loss, options, x, y)
    assert ours.dtype == theirs.dtype == torch.float32 and our_grad.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=2e-7, atol=1e-7)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-6, atol=1e-8)


class _AtenOps(TorchDispatchMode):
    """Counts the ATen operators a block of code dispatches."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


# Operators that read a device value back to the host (a sync on a GPU).
_HOST_READS = {"_local_scalar_dense", "nonzero", "bincount", "unique", "_unique2", "item"}
_HOST_READS |= {"unique_dim", "unique_consecutive", "equal", "is_nonzero"}


def _module_inputs(criterion, channels, shape, g):
    """Logits [B, channels, H, W] and what ``criterion`` compares them with, some pixels void."""
    batch, *spatial = shape
    x = torch.randn(batch, channels, *spatial, generator=g)
    if isinstance(criterion, LovaszMultilabelLoss):
        return x, (torch.rand(x.shape, generator=g) < 0.3).long()
    ignore = isinstance(criterion, LovaszSoftmaxLoss)  # the modules here ignore IGNORE
    return x, _labels(g, shape, max(channels, 2), ignore)


def _count(fn, x, y):
    x = x.detach().clone().requires_grad_(True)
    with _AtenOps() as ops:
        fn(x, y).backward()
    return ops.counts


@pytest.mark.parametrize(
    ("criterion", "channels", "budget"),
    [
        (LovaszHingeLoss(per_image=False, checks="async"), 1, 70),
        (LovaszHingeLoss(per_image=True, checks="async"), 1, 70),
        (LovaszSoftmaxLoss(ignore_index=IGNORE, checks="async"), 21, 100),
        (LovaszMultilabelLoss(checks="async"), 10, 88),
    ],
    ids=["hinge-batch", "hinge-per-image", "softmax", "multilabel"],
)
def test_a_forward_and_backward_stays_within_its_op_budget(criterion, channels, budget):
    """A GPU runs few large kernels fast and many small ones slowly: the engine's op count is
    pinned, independent of the input's size."""
    g = torch.Generator().manual_seed(5)
    counts = _count(criterion, *_module_inputs(criterion, channels, (4, 32, 32), g))
    assert sum(counts.values()) <= budget, counts
    assert counts == _count(criterion, *_module_inputs(criterion, channels, (2, 96, 64), g))


@pytest.mark.parametrize(("loss", "options"), MODES, ids=lambda v: str(v))
def test_with_async_checks_no_mode_reads_the_device(loss, options):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 6, 5, generator=g)
    y = _labels(g, (2, 6, 5), 4, options.get("ignore_index"))
    options = dict(options, checks="async")
    counts = _count(lambda x, y: _call(loss, options, x, y), x, y)
    assert not _HOST_READS & set(counts), counts


def test_async_checks_still_fail_on_bad_labels():
    with pytest.raises(
        RuntimeError, match=r"lovasz_softmax: labels contain values outside \[0, 3\)"
    ):
        lovasz_softmax(torch.rand(2, 3, 4), torch.full((2, 4), 5), checks="async")
    with pytest.raises(RuntimeError, match="lovasz_hinge: labels"):
        lovasz_hinge(torch.rand(2, 4), torch.full((2, 4), 2), checks="async")
    with pytest.raises(RuntimeError, match="lovasz_multilabel: targets other than 0 or 1"):
        lovasz_multilabel(torch.rand(2, 3, 4), torch.full((2, 3, 4), 3), checks="async")
    assert lovasz_softmax(torch.rand(2, 3, 4), torch.full((2, 4), 5), checks="off").isfinite()


@pytest.mark.parametrize(
    ("criterion", "channels"),
    [
        (LovaszHingeLoss(per_image=False, checks="async"), 1),
        (LovaszSoftmaxLoss(ignore_index=IGNORE, checks="async"), 5),
        (LovaszMultilabelLoss(kind="hinge", per_image=True, checks="async"), 3),
    ],
    ids=["hinge", "softmax", "multilabel"],
)
@pytest.mark.parametrize("kernel_built", [False, True])
def test_fullgraph_compile_gives_one_graph_and_the_eager_values(
    criterion, channels, kernel_built, monkeypatch
):
    """With checks="async", a compiled call takes the engine even where the C kernel would run
    eagerly (CPU)."""
    if kernel_built:
        monkeypatch.setattr(native, "enabled", True)
        if native.library() is None:
            pytest.skip("the fused CPU kernel could not be built here (no C compiler?)")
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(criterion, backend=counter, fullgraph=True)
    x, y = _module_inputs(criterion, channels, (2, 12, 10), torch.Generator().manual_seed(8))
    eager_x, compiled_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = criterion(eager_x, y)
    eager.backward()
    got = compiled(compiled_x, y)
    got.backward()
    assert counter.frame_count == 1
    # Eagerly on CPU the kernel may run: equal up to the order of the float64 sums.
    assert got.item() == pytest.approx(eager.item(), rel=1e-6)
    torch.testing.assert_close(compiled_x.grad, eager_x.grad, rtol=1e-6, atol=1e-9)
