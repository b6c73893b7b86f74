"""Collectives for the DDP-exact batch-level loss (``sync="global"``).

Under DDP each process holds B/N images. A batch-level Lovász loss over the union of all
processes' pixels needs, per row, the global foreground count and every process's pixels in one
sort; these helpers provide exactly that over the default process group.
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


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_rows(values: torch.Tensor, pad) -> tuple[torch.Tensor, tuple[int, int]]:
    """Every process's rows [R, L_p], concatenated along the rows in rank order, and where this
    process's columns lie in them.

    Processes may hold rows of different lengths (a last, smaller batch): each pads its rows to
    the longest with ``pad`` (for sort keys, the smallest key: it sorts last and takes no part).
    """
    length = torch.tensor([values.shape[1]], device=values.device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    longest = max(int(n) for n in lengths)
    padded = values.new_full((values.shape[0], longest), pad)
    padded[:, : values.shape[1]] = values
    chunks = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(chunks, padded)
    start = dist.get_rank() * longest
    return torch.cat(chunks, dim=1), (start, start + values.shape[1])
