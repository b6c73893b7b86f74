"""The kernel's bit tricks and chunked sums, checked against plain definitions."""

import pytest
import torch

from lovaszseg.losses.lovasz import _decode_keys, _error_keys, _row_sums


@pytest.mark.path("torch")  # parts of the PyTorch path
def test_error_keys_sort_by_decreasing_error_foreground_first_and_decode_exactly():
    g = torch.Generator().manual_seed(0)
    err = torch.cat(
        [
            torch.rand(500, generator=g) * 3,
            torch.tensor([0.0, torch.finfo(torch.float32).tiny, 1.0, 1.0, 3e38, float("inf")]),
        ]
    )
    err = torch.cat([err, err[:50]])  # ties between foreground and background pixels
    is_fg = torch.rand(err.numel(), generator=g) < 0.3
    is_fg[-50:] = ~is_fg[:50]

    key, order = torch.sort(_error_keys(err, is_fg))
    decoded, fg = _decode_keys(key.clone())

    assert torch.equal(decoded, err[order]) and torch.equal(fg, is_fg[order])
    assert bool((decoded[1:] <= decoded[:-1]).all())
    tie = decoded[1:] == decoded[:-1]
    assert not bool((tie & fg[1:] & ~fg[:-1]).any())  # within a tie, foreground comes first


@pytest.mark.path("torch")  # parts of the PyTorch path
def test_row_sums_are_float64_segment_sums_across_chunk_boundaries():
    g = torch.Generator().manual_seed(1)
    values = torch.rand(1000, generator=g)
    row = torch.sort(torch.randint(0, 7, (1000,), generator=g))[0]  # row 6: the dummy row
    row[row == 3] = 2  # an empty row in the middle
    counts = torch.bincount(row, minlength=7)
    starts = counts.cumsum(0) - counts
    expected = torch.zeros(7, dtype=torch.float64).index_add_(0, row, values.double())

    sums = _row_sums(values, starts, 6, chunk=7)

    assert sums.dtype == torch.float64 and sums[3] == 0
    # Differences of a float64 running sum: within a few float64 ulps of the running total.
    torch.testing.assert_close(sums, expected[:6], rtol=0, atol=1e-12)
    single = _row_sums(values, torch.tensor([0, 1000]), 1, chunk=7)
    torch.testing.assert_close(single, values.double().sum().view(1), rtol=1e-15, atol=0)
    empty = _row_sums(values[:0], torch.zeros(3, dtype=torch.long), 2, chunk=7)
    assert empty.tolist() == [0.0, 0.0]
