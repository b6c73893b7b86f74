"""Shapes, dtypes, precision and error messages of the public loss API."""

import pytest
import torch

from lovaszseg.losses import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge, lovasz_softmax

IGNORE = 255


def _inputs(seed=0, shape=(2, 4, 6, 5), num_classes=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g)
    labels = torch.randint(0, num_classes, (shape[0], *shape[2:]), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.1] = IGNORE
    return logits, labels


@pytest.mark.parametrize("spatial", [(7,), (3, 4), (2, 3, 4)])
def test_any_number_of_spatial_dims_equals_flattened(spatial):
    logits, labels = _inputs(shape=(2, 4, *spatial))
    flat = lovasz_softmax(logits.softmax(1).flatten(2), labels.flatten(1), ignore_index=IGNORE)
    assert lovasz_softmax(logits.softmax(1), labels, ignore_index=IGNORE) == flat
    binary = labels.clamp(max=1).masked_fill(labels == IGNORE, IGNORE)
    flat = lovasz_hinge(logits[:, 0].flatten(1), binary.flatten(1), ignore_index=IGNORE)
    assert lovasz_hinge(logits[:, 0], binary, ignore_index=IGNORE) == flat
    assert lovasz_hinge(logits[:, :1], binary, ignore_index=IGNORE) == flat


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_label_dtypes(dtype):
    logits, labels = _inputs()
    expected = lovasz_softmax(logits.softmax(1), labels, ignore_index=IGNORE)
    assert lovasz_softmax(logits.softmax(1), labels.to(dtype), ignore_index=IGNORE) == expected


def test_bool_labels_for_the_hinge():
    logits, labels = _inputs()
    binary = labels == 1
    assert lovasz_hinge(logits[:, 0], binary) == lovasz_hinge(logits[:, 0], binary.long())


def test_non_contiguous_inputs():
    logits, labels = _inputs(shape=(2, 4, 6, 5))
    probas = logits.softmax(1)
    expected = lovasz_softmax(probas, labels, per_image=True, ignore_index=IGNORE)
    probas_t = probas.transpose(2, 3).contiguous().transpose(2, 3)
    labels_t = labels.transpose(1, 2).contiguous().transpose(1, 2)
    assert not probas_t.is_contiguous() and not labels_t.is_contiguous()
    assert lovasz_softmax(probas_t, labels_t, per_image=True, ignore_index=IGNORE) == expected


def test_no_valid_pixel_gives_zero_with_zero_gradient():
    logits, labels = _inputs()
    labels[:] = IGNORE
    for per_image in (False, True):
        x = logits.clone().requires_grad_(True)
        loss = lovasz_softmax(x.softmax(1), labels, per_image=per_image, ignore_index=IGNORE)
        loss = loss + lovasz_hinge(x[:, 0], labels, per_image=per_image, ignore_index=IGNORE)
        loss.backward()
        assert loss.dim() == 0 and loss.item() == 0.0
        assert torch.count_nonzero(x.grad) == 0


def test_all_ignored_image_counts_as_zero_in_the_per_image_mean():
    logits, labels = _inputs()
    one = lovasz_softmax(logits[1:].softmax(1), labels[1:], per_image=True, ignore_index=IGNORE)
    labels[0] = IGNORE
    both = lovasz_softmax(logits.softmax(1), labels, per_image=True, ignore_index=IGNORE)
    torch.testing.assert_close(both, one / 2)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float16, 2e-3), (torch.bfloat16, 1.5e-2)])
def test_half_precision_inputs_are_computed_in_float32(dtype, rtol):
    logits, labels = _inputs(shape=(2, 5, 16, 16), num_classes=5)
    binary = labels.clamp(max=1).masked_fill(labels == IGNORE, IGNORE)
    for loss_fn, y in [
        (LovaszSoftmaxLoss(ignore_index=IGNORE), labels),
        (LovaszHingeLoss(ignore_index=IGNORE), binary),
    ]:
        x = logits[:, :1] if isinstance(loss_fn, LovaszHingeLoss) else logits
        low = x.to(dtype).requires_grad_(True)
        loss = loss_fn(low, y)
        loss.backward()
        assert loss.dtype == torch.float32 and low.grad.dtype == dtype
        # exactly the float32 computation on the rounded inputs ...
        assert loss == loss_fn(low.detach().float(), y)
        # ... and within the stated tolerance of the float32 inputs
        torch.testing.assert_close(loss, loss_fn(x, y), rtol=rtol, atol=1e-4)


def test_autocast():
    logits, labels = _inputs(shape=(2, 3, 16, 16))
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(logits)
        assert out.dtype == torch.bfloat16
        loss = LovaszSoftmaxLoss(ignore_index=IGNORE)(out, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    reference = LovaszSoftmaxLoss(ignore_index=IGNORE)(conv(logits), labels)
    torch.testing.assert_close(loss, reference, rtol=2e-2, atol=1e-3)


def test_counts_stay_exact_past_2_to_the_24_pixels():
    """~17 M pixels in one batch-level loss: float32 cumulative counts would saturate at 2^24."""
    g = torch.Generator().manual_seed(0)
    n = 2 * 2900 * 2900
    assert n > 2**24
    logits = torch.randn(2, 2900, 2900, generator=g)
    labels = torch.rand(2, 2900, 2900, generator=g) < 0.3
    loss = lovasz_hinge(logits, labels, per_image=False)

    # The authors' formula, in float64, on a float64 sort.
    signs = 2.0 * labels.reshape(-1).double() - 1
    errors = 1.0 - logits.reshape(-1).double() * signs
    errors, perm = torch.sort(errors, descending=True)
    fg = labels.reshape(-1)[perm].double()
    del perm
    gts = fg.sum()
    jaccard = 1.0 - (gts - fg.cumsum(0)) / (gts + (1 - fg).cumsum(0))
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    expected = torch.dot(errors.clamp_min(0), jaccard)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: lovasz_softmax(torch.rand(2, 3, 4), torch.full((2, 4), 5)),
            r"\[5\] outside \[0, 3\)",
        ),
        (
            lambda: lovasz_softmax(torch.rand(2, 3, 4), torch.full((2, 4), -1), ignore_index=255),
            r"\[-1\] outside \[0, 3\) that are not ignore_index=255",
        ),
        (lambda: lovasz_hinge(torch.rand(2, 4), torch.full((2, 4), 2)), r"\[2\] outside \[0, 2\)"),
        (
            lambda: lovasz_softmax(torch.rand(2, 3, 4), torch.zeros(2, 5, dtype=torch.long)),
            r"labels of shape \(2, 5\) do not match .* \(2, 4\)",
        ),
        (
            lambda: lovasz_softmax(torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long)),
            r"labels of shape \(2, 4\) do not match .* \(2,\)",
        ),
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), "some"
            ),
            r"classes='some'",
        ),
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), [0, 7]
            ),
            r"ids in \[0, 3\)",
        ),
        (lambda: lovasz_hinge(torch.rand(2, 4), torch.rand(2, 4)), r"integer or bool"),
        (
            lambda: lovasz_hinge(torch.rand(2, 4), torch.zeros(3, 4, dtype=torch.long)),
            r"labels of shape \(3, 4\)",
        ),
        (
            lambda: LovaszSoftmaxLoss()(torch.rand(4), torch.zeros(4, dtype=torch.long)),
            r"expected logits \[B, C, \*\]",
        ),
        (  # logits given to the function that takes probabilities
            lambda: lovasz_softmax(torch.randn(2, 3, 4) * 3, torch.zeros(2, 4, dtype=torch.long)),
            r"expected probabilities in \[0, 1\].*use LovaszSoftmaxLoss",
        ),
        (
            lambda: lovasz_softmax(torch.rand(2, 3, 4) + 0.5, torch.zeros(2, 4, dtype=torch.long)),
            r"expected probabilities in \[0, 1\], got values in \[0\.\d+, 1\.\d+\]",
        ),
        (
            lambda: lovasz_softmax(torch.rand(2, 1, 4), torch.zeros(2, 4, dtype=torch.long)),
            r"single channel; .* use lovasz_hinge",
        ),
        (
            lambda: LovaszSoftmaxLoss()(torch.rand(2, 1, 4), torch.zeros(2, 4, dtype=torch.long)),
            r"single channel",
        ),
        (
            lambda: lovasz_softmax(
                torch.rand(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), ignore_index=1, ignore=2
            ),
            r"ignore=2 and ignore_index=1 disagree",
        ),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_an_ignore_index_inside_the_label_range_is_still_ignored():
    """The label check's fast path (every label in range) must not skip an ignore_index that
    is itself a valid class id: ignoring class 1 equals relabelling it to an outside value."""
    g = torch.Generator().manual_seed(7)
    probas = torch.rand(2, 4, 6, 6, generator=g).softmax(1)
    labels = torch.randint(0, 4, (2, 6, 6), generator=g)
    relabelled = labels.masked_fill(labels == 1, 255)
    expected = lovasz_softmax(probas, relabelled, ignore_index=255)
    assert lovasz_softmax(probas, labels, ignore_index=1).item() == expected.item()
    logits = torch.randn(2, 6, 6, generator=g)
    binary = labels.clamp(max=1)
    expected = lovasz_hinge(logits, binary.masked_fill(binary == 0, 255), ignore_index=255)
    assert lovasz_hinge(logits, binary, ignore_index=0).item() == expected.item()


def test_an_ignore_index_the_label_dtype_cannot_hold_ignores_nothing():
    """uint8 void pixels (255) with ignore_index=-1: -1 must not wrap to 255 in the comparison
    (which would silently ignore them); they are refused as labels out of range, by both the
    kernel and the engine (the conftest runs it on both)."""
    logits, labels = _inputs(seed=3)
    labels = labels.to(torch.uint8)
    with pytest.raises(
        ValueError, match=r"labels contain \[255\] outside \[0, 4\).*ignore_index=-1"
    ):
        lovasz_softmax(logits.softmax(1), labels, ignore_index=-1)
    binary = labels.clamp(max=1).masked_fill(labels == IGNORE, IGNORE)
    with pytest.raises(
        ValueError, match=r"labels contain \[255\] outside \[0, 2\).*ignore_index=-1"
    ):
        lovasz_hinge(logits[:, 0], binary, ignore_index=-1)


@pytest.mark.parametrize(
    ("dtype", "num_classes", "ignore_index", "bad"),
    [
        (torch.uint8, 300, None, []),  # every uint8 value is below 300: nothing out of range
        (torch.uint8, 4, 256, [100, 255]),  # 256 would wrap to 0 as uint8; no uint8 label equals it
        (torch.int8, 200, None, [-3, -1]),  # 200 would wrap to -56 as int8
        (torch.int8, 4, -1, [-3, 100]),
        (torch.int16, 4, 40000, [-3, -1, 100, 255, 256]),
        (torch.int32, 256, 255, [-3, -1, 256, 40000]),
    ],
)
def test_label_range_check_in_the_labels_own_dtype(dtype, num_classes, ignore_index, bad):
    """The range check compares narrow labels without widening them, and a bound their dtype
    cannot hold must neither wrap nor fail: the values found out of range are exactly those
    outside [0, num_classes) that are not ignore_index, computed here on int64."""
    from lovaszseg.losses.checks import labels_in_range

    values = torch.tensor([0, 1, 3, -1, -3, 100, 255, 256, 40000])
    info = torch.iinfo(dtype)
    values = values[(values >= info.min) & (values <= info.max)]
    check = labels_in_range(values.to(dtype).reshape(1, -1), num_classes, ignore_index)
    outside = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        outside &= values != ignore_index
    assert sorted(values[outside].tolist()) == bad
    assert bool(check.fine) is not bool(bad)
    if bad:
        assert f"contain {bad} outside [0, {num_classes})" in check.explain()


def test_the_reference_keyword_ignore_is_ignore_index():
    """The authors' demos call ``lovasz_softmax(out, labels, ignore=255)``."""
    g = torch.Generator().manual_seed(11)
    probas = torch.rand(2, 4, 6, 6, generator=g).softmax(1)
    labels = torch.randint(0, 4, (2, 6, 6), generator=g).masked_fill(torch.rand(2, 6, 6) < 0.3, 255)
    expected = lovasz_softmax(probas, labels, ignore_index=255)
    assert lovasz_softmax(probas, labels, ignore=255).item() == expected.item()
    logits = torch.randn(2, 6, 6, generator=g)
    binary = labels.clamp(max=1).masked_fill(labels == 255, 255)
    expected = lovasz_hinge(logits, binary, ignore_index=255)
    assert lovasz_hinge(logits, binary, ignore=255).item() == expected.item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_labels_on_another_device_are_named():
    with pytest.raises(ValueError, match="labels are on cpu but the scores on cuda"):
        lovasz_softmax(
            torch.rand(2, 3, 4, device="cuda").softmax(1), torch.zeros(2, 4, dtype=torch.long)
        )


def test_labels_on_another_device_are_named_on_the_meta_device():
    """The device check runs before anything reads the values (meta tensors have none)."""
    with pytest.raises(ValueError, match="labels are on cpu but the scores on meta"):
        lovasz_softmax(torch.rand(2, 3, 4, device="meta"), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels are on meta but the scores on cpu"):
        lovasz_hinge(torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.long, device="meta"))
