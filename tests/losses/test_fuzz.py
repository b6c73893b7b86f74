"""The public loss API under fuzzed inputs (Hypothesis): whatever comes in, either a ValueError or
TypeError whose message names the argument, or a loss whose value and gradient are the PyTorch
path's; never an IndexError, a RuntimeError from deep inside, or a crash.

Drawn: shapes (zero-size dimensions, one pixel, up to three spatial dimensions, up to 300
classes), every float dtype of the scores and every integer dtype of the labels, strided,
expanded and transposed views, ``ignore_index`` inside and outside the labels' range, out-of-range
labels, ``classes`` lists (valid or not), class weights, NaN and infinite scores, and every option
of ``lovasz_hinge``, ``lovasz_softmax``, ``LovaszSoftmaxLoss`` and ``LovaszMultilabelLoss``.

NaN and infinite scores must raise nothing but a named error; their value is not asserted:
``F.cross_entropy`` returns NaN, while the Lovász sort treats a NaN error as taking no part (its
key sorts last, ``engine.sort_keys``), and a NaN among the probabilities may be refused by the
probability check, so the value depends on where the NaN lands.

Where ties in the errors are possible (half-precision scores, expanded views) the Lovász
extension may give a tie's gradient to any of its pixels, so gradients are compared as sums over
the groups of inputs that tie in every row (same image for per-image rows, same scores, same
label).

``LOVASZSEG_FUZZ`` picks the profile: ``ci`` (the default; derandomised, 1,500 examples),
``sanitize`` (fewer, under ``scripts/sanitize.sh``), ``deep`` (``scripts/fuzz.sh``: many more,
random).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lovaszseg.losses import (
    LovaszMultilabelLoss,
    LovaszSoftmaxLoss,
    lovasz_hinge,
    lovasz_softmax,
    native,
)

pytestmark = pytest.mark.path("native")

_PROFILES = {
    "ci": {"max_examples": 500, "derandomize": True},
    "sanitize": {"max_examples": 120, "derandomize": True},
    "deep": {"max_examples": int(os.environ.get("LOVASZSEG_FUZZ_EXAMPLES", "25000"))},
}
_PROFILE = os.environ.get("LOVASZSEG_FUZZ", "ci")
if _PROFILE not in _PROFILES:
    raise ValueError(f"LOVASZSEG_FUZZ={_PROFILE!r} is not one of {', '.join(_PROFILES)}")
fuzz_settings = settings(
    **_PROFILES[_PROFILE],
    deadline=None,
    database=None,
    # The conftest's path fixture is function-scoped but changes nothing between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
LABEL_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
# Words one of which a ValueError/TypeError must contain: the argument it is about.
ARGUMENTS = (
    "logits",
    "labels",
    "probabilities",
    "probas",
    "scores",
    "targets",
    "classes",
    "ignore_index",
    "class_weights",
    "dtype",
)


@st.composite
def common(draw, max_classes=6, classes=True):
    """Shape, dtypes, layout, label trouble and special values shared by every loss."""
    case = {
        "seed": draw(st.integers(0, 2**31 - 1)),
        "batch": draw(st.integers(0, 3)),
        "spatial": draw(st.lists(st.integers(0, 5), min_size=0, max_size=3)),
        "dtype": draw(st.sampled_from(FLOATS)),
        "label_dtype": draw(st.sampled_from(LABEL_DTYPES)),
        "layout": draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"])),
        "ignore_index": draw(st.sampled_from([None, 255, -1, 0, 1, 10**6])),
        "labels": draw(st.sampled_from(["valid", "valid", "ignored", "out_of_range"])),
        "special": draw(st.sampled_from(["none"] * 6 + ["nan", "inf", "-inf"])),
        "scale": draw(st.sampled_from([1.0, 3.0, 30.0])),
        "quantise": draw(st.booleans()),
        "per_image": draw(st.booleans()),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
    }
    if classes:
        case["num_classes"] = draw(
            st.one_of(st.integers(2, max_classes), st.sampled_from([255, 256, 300]))
        )
        case["classes"] = draw(
            st.one_of(
                st.sampled_from(["present", "all", "some"]),
                st.lists(st.integers(-1, max_classes + 1), max_size=4),
            )
        )
        case["class_weights"] = draw(st.sampled_from([None, "uniform", "random", "bad"]))
    if classes and case["num_classes"] > 50:
        case["spatial"] = case["spatial"][:1]  # many classes: keep the images small
    return case


def _view(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t``'s values (or, ``expanded``, its first image's in every image) in another layout."""
    if t.dim() < 2 or t.numel() == 0:
        return t
    if layout == "transposed":
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    if layout == "strided":
        return t.repeat_interleave(2, dim=-1)[..., ::2]
    if layout == "expanded":
        return t[:1].expand_as(t)
    return t


def _scores(case, shape, g):
    x = torch.randn(shape, generator=g) * case["scale"]
    if case["quantise"]:
        x = x.round()
    if case["special"] != "none" and x.numel():
        value = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
        x.view(-1)[torch.randint(0, x.numel(), (1,), generator=g)] = value[case["special"]]
    return x.to(case["dtype"])


def _labels(case, shape, num_values, g):
    """Labels in [0, num_values), with some ignored or out of range, cast to the drawn dtype."""
    y = torch.randint(0, num_values, shape, generator=g)
    if y.numel():
        pick = torch.rand(shape, generator=g) < 0.2
        if case["labels"] == "ignored" and case["ignore_index"] is not None:
            y[pick] = case["ignore_index"]
        elif case["labels"] == "out_of_range":
            y[pick] = num_values + 3
    dtype = case["label_dtype"]
    if dtype == torch.bool:
        return y.clamp(0, 1).bool()
    info = torch.iinfo(dtype)
    return y.clamp(info.min, info.max).to(dtype)


def _class_options(case):
    c = case["num_classes"]
    classes = case["classes"]
    if classes == "some":
        classes = list(range(0, c, 2))
    weights = {
        None: None,
        "uniform": [1.0] * c,
        "random": [float(i % 3) + 0.5 for i in range(c)],
        "bad": [1.0] * (c + 1),
    }[case["class_weights"]]
    return classes, weights


def _outcome(call, x, y, use_native):
    """("error", type, message) or ("value", loss, grad) of ``call(x, y)`` on one path."""
    previous = native.enabled
    native.enabled = use_native
    try:
        leaf = x.detach().clone()
        if leaf.is_floating_point():
            leaf.requires_grad_(True)
        try:
            loss = call(leaf, y)
        except (ValueError, TypeError) as error:
            return ("error", type(error), str(error))
        grad = None
        if leaf.requires_grad and loss.requires_grad and bool(torch.isfinite(loss).all()):
            (grad,) = torch.autograd.grad(loss.sum(), leaf)
        return ("value", loss.detach(), grad)
    finally:
        native.enabled = previous


def _group_sums(grad, keys):
    """``grad`` [N, K] summed over the rows of equal ``keys`` [N, M]."""
    if keys.numel() == 0:
        return grad.double()
    _, ids = torch.unique(keys.double().nan_to_num(nan=7e300), dim=0, return_inverse=True)
    out = torch.zeros(int(ids.max()) + 1, grad.shape[1], dtype=torch.float64)
    return out.index_add_(0, ids, grad.double())


def _check(call, x, y, tie_keys):
    """The property: a named ValueError/TypeError, or the two paths' loss and gradient agree."""
    kernel, torch_path = (_outcome(call, x, y, use_native) for use_native in (True, False))
    assert kernel[0] == torch_path[0], (kernel, torch_path)
    if kernel[0] == "error":
        assert kernel[1:] == torch_path[1:]
        message = kernel[2]
        assert any(word in message for word in ARGUMENTS), message
        return
    (_, loss_k, grad_k), (_, loss_t, grad_t) = kernel, torch_path
    if not bool(torch.isfinite(x).all()):
        return  # no crash and no unnamed error: what the value is, see the module's docstring
    assert bool(torch.isfinite(loss_k).all()), loss_k
    torch.testing.assert_close(loss_k, loss_t, rtol=2e-5, atol=2e-6)
    if grad_k is None or grad_t is None:
        assert (grad_k is None) == (grad_t is None)
        return
    grouping = tie_keys(grad_k)
    if grouping is None:
        return  # ties the two paths need not share: the loss is compared, not the subgradient
    keys, grad_rows = grouping
    sums_k = _group_sums(grad_rows(grad_k), keys)
    sums_t = _group_sums(grad_rows(grad_t), keys)
    scale = sums_t.abs().sum().item()
    assert (sums_k - sums_t).abs().sum().item() <= 1e-4 * scale + 1e-6


def _image_ids(batch, per_image, like):
    """The image index of every element (0 everywhere for batch-level rows)."""
    ids = torch.arange(batch, dtype=torch.float64) * float(per_image)
    return ids.view(-1, *[1] * (like.dim() - 1)).expand(like.shape)


@fuzz_settings
@given(
    case=common(classes=False),
    symmetric=st.booleans(),
    activation=st.sampled_from(["relu", "elu+1"]),
    empty=st.sampled_from(["include", "skip"]),
    channel=st.booleans(),
)
def test_lovasz_hinge(case, symmetric, activation, empty, channel):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["batch"], *case["spatial"])
    x = _scores(case, (shape[0], 1, *shape[1:]) if channel else shape, g)
    y = _labels(case, shape, 2, g)
    x, y = _view(x, case["layout"]), _view(y, case["layout"])

    def call(x, y):
        return lovasz_hinge(
            x,
            y,
            per_image=case["per_image"],
            ignore_index=case["ignore_index"],
            symmetric=symmetric,
            activation=activation,
            empty=empty,
            reduction=case["reduction"],
        )

    def tie_keys(grad):
        labels = y.reshape(x.shape).double()
        image = _image_ids(x.shape[0], case["per_image"], x)
        keys = torch.stack([image, x.double(), labels], -1).reshape(-1, 3)
        return keys, lambda g_: g_.reshape(-1, 1)

    _check(call, x, y, tie_keys)


@fuzz_settings
@given(case=common(), from_logits=st.booleans())
def test_lovasz_softmax_and_its_module(case, from_logits):
    g = torch.Generator().manual_seed(case["seed"])
    c = case["num_classes"]
    x = _scores(case, (case["batch"], c, *case["spatial"]), g)
    if not from_logits:
        x = x.float().softmax(1).to(case["dtype"]) if x.numel() else x
    y = _labels(case, (case["batch"], *case["spatial"]), c, g)
    x, y = _view(x, case["layout"]), _view(y, case["layout"])
    classes, weights = _class_options(case)
    options = dict(
        classes=classes,
        per_image=case["per_image"],
        ignore_index=case["ignore_index"],
        class_weights=weights,
        reduction=case["reduction"],
    )

    def call(x, y):
        if from_logits:
            return LovaszSoftmaxLoss(**options)(x, y)
        return lovasz_softmax(x, y, **options)

    def tie_keys(grad):
        b = x.shape[0]
        flat = x.reshape(b, c, -1).double()
        labels = y.reshape(b, 1, -1).double().expand_as(flat)
        image = _image_ids(b, case["per_image"], flat)
        if from_logits:
            # The kernel's softmax and torch.softmax round differently, so which probabilities
            # tie (different logits can give equal probabilities) differs between the paths:
            # where ties are likely (rounded or half-precision logits), only the loss is
            # compared; elsewhere a pixel ties only with the pixels of its own logits.
            if case["quantise"] or case["dtype"] in (torch.float16, torch.bfloat16):
                return None
            logits = x.reshape(b, c, -1).double()
            keys = torch.cat([image[:, :1], logits, labels[:, :1]], 1)
            keys = keys.permute(0, 2, 1).reshape(-1, c + 2)
            return keys, lambda g_: g_.reshape(b, c, -1).permute(0, 2, 1).reshape(-1, c)
        channel = torch.arange(c, dtype=torch.float64).view(1, c, 1).expand_as(flat)
        keys = torch.stack([image, channel, flat, labels == channel], -1).reshape(-1, 4)
        return keys, lambda g_: g_.reshape(-1, 1)

    _check(call, x, y, tie_keys)


@fuzz_settings
@given(case=common(), kind=st.sampled_from(["sigmoid", "hinge"]), float_targets=st.booleans())
def test_lovasz_multilabel_module(case, kind, float_targets):
    g = torch.Generator().manual_seed(case["seed"])
    c = min(case["num_classes"], 12)
    shape = (case["batch"], c, *case["spatial"])
    x = _scores(case, shape, g)
    y = _labels(case, shape, 2, g)
    if float_targets and y.dtype != torch.bool:
        y = y.float()
    x, y = _view(x, case["layout"]), _view(y, case["layout"])
    classes, weights = _class_options({**case, "num_classes": c})

    def call(x, y):
        loss = LovaszMultilabelLoss(
            kind,
            classes,
            case["per_image"],
            case["ignore_index"],
            class_weights=weights,
            reduction=case["reduction"],
        )
        return loss(x, y)

    def tie_keys(grad):
        b = x.shape[0]
        flat = x.reshape(b, c, -1).double()
        image = _image_ids(b, case["per_image"], flat)
        channel = torch.arange(c, dtype=torch.float64).view(1, c, 1).expand_as(flat)
        keys = torch.stack([image, channel, flat, y.reshape(b, c, -1).double()], -1)
        return keys.reshape(-1, 4), lambda g_: g_.reshape(-1, 1)

    _check(call, x, y, tie_keys)
