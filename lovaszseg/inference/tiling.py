"""Logits for an image of any size: padded to the network's stride, large ones in overlapping tiles.

Training crops are small and square; real images are neither. Padding (bottom / right, zeros =
the normalised mean) makes any size fit the encoder's stride and the logits are cropped back;
an image with a side above ``tile`` is predicted window by window, the windows overlapping by
``overlap`` pixels and their logits averaged where they overlap, so memory stays bounded and
tile borders do not show.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``[..., H, W]`` at the bottom and right up to multiples of ``multiple``."""
    height, width = images.shape[-2], images.shape[-1]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    # no shortcut for zero padding: a branch on the size would be frozen into an exported graph
    return F.pad(images, (0, pad_w, 0, pad_h))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, length)`` with windows of ``tile``, consecutive ones sharing
    at least ``overlap`` pixels; the last window ends exactly at ``length``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must satisfy 0 <= overlap < tile, got {overlap} and {tile}")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


@torch.no_grad()
def tiled_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile: int,
    overlap: int,
) -> torch.Tensor:
    """``forward``'s logits for ``[B, 3, H, W]`` images, window by window when larger than ``tile``.

    ``forward`` takes any size and returns logits of the same size (``SegmentationModule``
    does: it pads to the stride and crops back).
    """
    height, width = images.shape[-2:]
    if height <= tile and width <= tile:
        return forward(images)
    summed: torch.Tensor | None = None
    counts = torch.zeros((1, 1, height, width), device=images.device)
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            window = (..., slice(top, top + tile), slice(left, left + tile))
            logits = forward(images[window])
            if summed is None:
                summed = images.new_zeros((images.shape[0], logits.shape[1], height, width))
            summed[window] += logits
            counts[window] += 1
    assert summed is not None
    return summed / counts
