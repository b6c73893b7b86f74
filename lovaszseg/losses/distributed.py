"""Collectives for the DDP-exact batch-level loss (``sync="global"``).

Under DDP each process holds B/N images. A batch-level Lovász loss over the union of all processes'
pixels needs, per row, the global foreground count and sort threshold, and the kept pixels of every
process in one sort; these helpers provide exactly that over the default process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def require_process_group(name: str) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"{name}: sync='global' needs an initialised torch.distributed process group "
            "(e.g. under Lightning's DDP strategy); use sync='none' in a single process"
        )


def world_size() -> int:
    return dist.get_world_size()


def all_reduce_rows(gts: torch.Tensor, threshold: torch.Tensor):
    """Global foreground counts (sum) and smallest foreground errors (min) of every row."""
    gts = gts.clone()
    threshold = threshold.clone()
    dist.all_reduce(gts, op=dist.ReduceOp.SUM)
    dist.all_reduce(threshold, op=dist.ReduceOp.MIN)
    return gts, threshold


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def _all_gather_padded(values: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenation over processes of 1-d tensors of different lengths ``sizes``."""
    padded = values.new_zeros(max(sizes))
    padded[: values.numel()] = values
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:size] for chunk, size in zip(chunks, sizes, strict=True)])


def gather_pixels(err: torch.Tensor, is_fg: torch.Tensor, row: torch.Tensor | None):
    """Every process's kept pixels, concatenated in rank order, and where this process's lie.

    Returns the gathered errors, foreground flags and rows (None stays None) and the
    ``(start, end)`` of this process's pixels in them.
    """
    count = torch.tensor([err.numel()], device=err.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    start = sum(sizes[: dist.get_rank()])
    gathered_err = _all_gather_padded(err, sizes)
    gathered_fg = _all_gather_padded(is_fg.to(torch.uint8), sizes).bool()
    gathered_row = None if row is None else _all_gather_padded(row, sizes)
    return gathered_err, gathered_fg, gathered_row, (start, start + err.numel())
