"""Triton kernels for the engine's prologue (``sort_keys``) and epilogue (``lovasz_grad``) on
CUDA: each is one pass (the epilogue two, and a scan of one count per block) where the PyTorch
versions chain several elementwise kernels, which a GPU pays for in launches and memory traffic.
The sort stays ``torch.sort`` (CUB's radix sort).

Same contracts as ``engine.sort_keys`` and ``engine.lovasz_grad`` (their docstrings), for float32
errors and rows shorter than 2^30 pixels; ``usable`` says when they apply. Optional: without
Triton, off CUDA, or unless ``LOVASZSEG_TRITON=1`` the engine keeps its PyTorch versions: they
are opt-in until ``benchmarks/gpu_check.sh`` (which times both) shows them faster on a GPU. With
``TRITON_INTERPRET=1`` they also run on CPU tensors (Triton's interpreter), which is how CI tests
them.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

_BLOCK = 1024
_MAX_LENGTH = 2**30  # the engine counts in int32 below this row length, as here


def _enabled() -> bool:
    value = os.environ.get("LOVASZSEG_TRITON", "0")
    if value not in ("0", "1"):
        raise ValueError(f"LOVASZSEG_TRITON must be 0 or 1, got {value!r}")
    return value == "1" and importlib.util.find_spec("triton") is not None


def usable(errors: torch.Tensor) -> bool:
    """Whether the kernels cover rows of ``errors`` [R, L]: float32 on CUDA (or on CPU under
    Triton's interpreter), rows shorter than 2^30, Triton installed and turned on."""
    on_device = errors.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    return (
        on_device
        and errors.dtype == torch.float32
        and errors.dim() == 2
        and errors.shape[1] < _MAX_LENGTH
        and _enabled()
    )


@functools.cache
def _kernels():
    """The jitted kernels, defined on first use (importing Triton costs about a second)."""
    import triton
    import triton.language as tl

    @triton.jit
    def keys_kernel(errors, foreground, keys, n, tiny, BLOCK: tl.constexpr):
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = at < n
        error = tl.load(errors + at, mask=inside, other=0.0)
        flag = tl.load(foreground + at, mask=inside, other=0).to(tl.int32)
        key = (error.to(tl.int32, bitcast=True) << 1) | flag
        key = tl.where(error >= tiny, key, 0)  # NaN compares false: sorted last, as zero
        tl.store(keys + at, key ^ -2147483648, mask=inside)

    @triton.jit
    def block_counts_kernel(sorted_keys, counts, length, blocks, BLOCK: tl.constexpr):
        row, block = tl.program_id(0), tl.program_id(1)
        i = block * BLOCK + tl.arange(0, BLOCK)
        key = tl.load(sorted_keys + row.to(tl.int64) * length + i, mask=i < length, other=0)
        tl.store(counts + row * blocks + block, tl.sum(key & 1, 0))

    @triton.jit
    def increments_kernel(
        sorted_keys, gts, fg_before_block, out, length, blocks, BLOCK: tl.constexpr
    ):
        row, block = tl.program_id(0), tl.program_id(1)
        i = block * BLOCK + tl.arange(0, BLOCK)
        inside = i < length
        at = row.to(tl.int64) * length + i
        fg = tl.load(sorted_keys + at, mask=inside, other=0) & 1
        seen = tl.cumsum(fg, 0) + tl.load(fg_before_block + row * blocks + block)
        inter = tl.load(gts + row) - seen
        before = (inter + i).to(tl.float32)  # union - 1
        numerator = (inter + fg * i).to(tl.float32)
        increment = tl.where(before > 0, numerator / (before * (before + 1.0)), 1.0)
        tl.store(out + at, increment, mask=inside)

    return keys_kernel, block_counts_kernel, increments_kernel


def sort_keys(errors: torch.Tensor, foreground: torch.Tensor, block: int = _BLOCK):
    """``engine.sort_keys`` in one pass: int32 keys [R, L] of float32 ``errors`` [R, L]."""
    keys_kernel, _, _ = _kernels()
    errors = errors.contiguous()
    flags = foreground.contiguous().view(torch.uint8)
    keys = torch.empty(errors.shape, dtype=torch.int32, device=errors.device)
    n = errors.numel()
    tiny = torch.finfo(torch.float32).tiny
    keys_kernel[(max(1, -(-n // block)),)](errors, flags, keys, n, tiny, BLOCK=block)
    return keys


def lovasz_grad(
    sorted_keys: torch.Tensor, gts: torch.Tensor, dtype: torch.dtype, block: int = _BLOCK
):
    """``engine.lovasz_grad`` for float32: the foreground counts of each block of each row
    (one pass), their exclusive scan along the row (R x L / block values, ``torch.cumsum``), and
    one pass that scans within each block and writes the increments."""
    if dtype != torch.float32:
        raise TypeError(f"engine_triton.lovasz_grad computes float32, not {dtype}")
    _, block_counts_kernel, increments_kernel = _kernels()
    sorted_keys = sorted_keys.contiguous()
    rows, length = sorted_keys.shape
    blocks = max(1, -(-length // block))
    out = torch.empty(sorted_keys.shape, dtype=torch.float32, device=sorted_keys.device)
    if rows == 0 or length == 0:
        return out
    counts = torch.empty(rows, blocks, dtype=torch.int32, device=sorted_keys.device)
    block_counts_kernel[(rows, blocks)](sorted_keys, counts, length, blocks, BLOCK=block)
    before_block = (counts.cumsum(1, dtype=torch.int32) - counts).contiguous()
    gts = gts.reshape(rows).to(torch.int32).contiguous()
    increments_kernel[(rows, blocks)](
        sorted_keys, gts, before_block, out, length, blocks, BLOCK=block
    )
    return out
