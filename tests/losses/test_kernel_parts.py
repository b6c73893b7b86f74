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
    row = torch.sort(torch.randint(0, 6, (1000,), generator=g).to(torch.uint8))[0]
    row[row == 3] = 2  # an empty row in the middle
    expected = torch.zeros(7, dtype=torch.float64).index_add_(0, row.long(), values.double())

    sums = _row_sums(values, row, 6, chunk=7)

    assert sums.dtype == torch.float64 and sums[3] == 0
    torch.testing.assert_close(sums, expected[:6], rtol=1e-15, atol=0)
    single = _row_sums(values, None, 1, chunk=7)
    torch.testing.assert_close(single, values.double().sum().view(1), rtol=1e-15, atol=0)
