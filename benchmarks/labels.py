"""Synthetic label maps with the statistics that matter to the Lovász losses' cost.

The kernels' work depends on how many (image, class) rows are present and how the foreground is
spread, so each benchmark case uses labels shaped like its dataset: VOC (a background and one to
three objects per image, void bands on their boundaries), ADE20K (many regions of many classes),
and DeepGlobe roads (thin lines over ~5% of the pixels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = 255


def _grid(height, width):
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return yy, xx


def _void_boundaries(labels: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Marks pixels within ``width`` of a class boundary as void, as VOC's annotations do."""
    lab = labels.float().unsqueeze(1)
    k = 2 * width + 1
    hi = F.max_pool2d(lab, k, stride=1, padding=width)
    lo = -F.max_pool2d(-lab, k, stride=1, padding=width)
    return labels.masked_fill((hi != lo).squeeze(1), IGNORE)


def voc_like(batch, size, num_classes=21, seed=0) -> torch.Tensor:
    """Background plus one to three elliptic objects per image, void bands on the boundaries."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size, size)
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cy, cx = (torch.rand(2, generator=g) * size).tolist()
            ry, rx = ((0.08 + 0.25 * torch.rand(2, generator=g)) * size).tolist()
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            labels[b][inside] = int(torch.randint(1, num_classes, (1,), generator=g))
    return _void_boundaries(labels)


def uniform(batch, size, num_classes=21, seed=0) -> torch.Tensor:
    """Independent uniform labels: every class in every image, the kernels' worst case."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, (batch, size, size), generator=g)


def ade_like(batch, size, num_classes=150, regions=24, seed=0) -> torch.Tensor:
    """A Voronoi partition into ``regions`` cells per image, each of a random class."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size, size)
    labels = torch.empty(batch, size, size, dtype=torch.long)
    for b in range(batch):
        seeds = torch.rand(regions, 2, generator=g) * size
        dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
        classes = torch.randint(0, num_classes, (regions,), generator=g)
        labels[b] = classes[dist.argmin(0)]
    return _void_boundaries(labels)


def road_bands(batch, size, fraction=0.05, seed=0) -> torch.Tensor:
    """Straight roads 6 pixels wide crossing the whole tile, added until ``fraction`` of pixels
    are road: DeepGlobe's look at 512² (where the batch-level hinge keeps the most pixels)."""
    return thin_roads(batch, size, fraction, seed, width=6.0, crossing=True)


def thin_roads(batch, size, fraction=0.05, seed=0, width=None, crossing=False) -> torch.Tensor:
    """Straight road segments 3 to 8 pixels wide (or ``width``), added until ``fraction`` of
    pixels are road; ``crossing``: each crosses the whole tile."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = _grid(size, size)
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        while labels[b].float().mean() < fraction:
            cy, cx = (torch.rand(2, generator=g) * size).tolist()
            angle = float(torch.rand(1, generator=g)) * math.pi
            half_width = 1.5 + 2.5 * float(torch.rand(1, generator=g))
            length = (0.3 + 0.7 * float(torch.rand(1, generator=g))) * size
            if width is not None:
                half_width = width / 2
            if crossing:
                length = 3.0 * size
            dy, dx = math.sin(angle), math.cos(angle)
            along = (yy - cy) * dy + (xx - cx) * dx
            across = (yy - cy) * dx - (xx - cx) * dy
            labels[b][(across.abs() <= half_width) & (along.abs() <= length / 2)] = 1
    return labels


def sparse_multilabel(batch, size, channels=10, fraction=0.05, seed=0) -> torch.Tensor:
    """[B, C, H, W] 0/1 targets: each channel holds blobs covering about ``fraction`` of pixels."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch * channels, 1, size // 16, size // 16, generator=g)
    smooth = F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
    threshold = torch.quantile(smooth.view(batch * channels, -1)[:, ::97], 1 - fraction, dim=1)
    targets = smooth.view(batch * channels, -1) > threshold.unsqueeze(1)
    return targets.view(batch, channels, size, size).long()
