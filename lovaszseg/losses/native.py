"""The fused CPU kernel (``_native.c``) called from Python: its C interface, and the calls.

``native_build`` finds or builds the library and checks it; this module declares the library's
functions and calls them. Without a library (a warning says why, once), or with
``LOVASZSEG_NATIVE=0``, the losses run the pure-PyTorch path.

Every buffer the kernel allocates belongs to the call that made it (see ``rows``).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import warnings

import torch

from . import native_build
from .native_build import (  # noqa: F401  (the build's public names, importable from here too)
    ABI,
    COMPILE_FLAGS,
    VARIANTS,
    KernelUnavailable,
    build_commands,
    cache_dir,
    compiler,
    openmp_runtimes,
    source_hash,
)

enabled = os.environ.get("LOVASZSEG_NATIVE", "1") != "0"
_library = None
_tried = False


class _Spec(ctypes.Structure):
    """Mirrors ``Spec`` in ``_native.c``."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("labels", ctypes.c_void_p),
        ("label_bytes", ctypes.c_int64),
        ("dense", ctypes.c_int64),
        ("B", ctypes.c_int64),
        ("C", ctypes.c_int64),
        ("S", ctypes.c_int64),
        ("R", ctypes.c_int64),
        ("image", ctypes.c_void_p),
        ("channel", ctypes.c_void_p),
        ("target", ctypes.c_void_p),
        ("sign", ctypes.c_void_p),
        ("offset", ctypes.c_double),
        ("void_label", ctypes.c_int64),
    ]


def _declare(lib):
    """``lib`` with the C signatures of its calls declared (ctypes would guess them wrong)."""
    pointer, spec, size = ctypes.c_void_p, ctypes.POINTER(_Spec), ctypes.c_int64
    lib.lovasz_count.argtypes = [spec, size, size, *[pointer] * 9, ctypes.c_int]
    lib.lovasz_count.restype = ctypes.c_int
    lib.lovasz_rows.argtypes = [spec, size, size, *[pointer] * 11, ctypes.c_int]
    lib.lovasz_rows.restype = ctypes.c_int
    lib.lovasz_free.argtypes = [pointer]
    lib.lovasz_free.restype = None
    lib.lovasz_softmax_backward.argtypes = [pointer, *[size] * 4, *[pointer] * 7, ctypes.c_int]
    lib.lovasz_softmax_backward.restype = ctypes.c_int
    lib.lovasz_softmax.argtypes = [pointer, pointer, *[size] * 3, ctypes.c_int]
    lib.lovasz_softmax.restype = None
    lib.lovasz_scatter.argtypes = [pointer, size, size, *[pointer] * 4, ctypes.c_int]
    lib.lovasz_scatter.restype = None
    lib.lovasz_team_size.argtypes = [ctypes.c_int]
    lib.lovasz_team_size.restype = ctypes.c_int
    return lib


def library():
    """The loaded kernel, or None (disabled, or unavailable: warned once)."""
    global _library, _tried
    if not enabled:
        return None
    if not _tried:
        _tried = True
        try:
            _library = _declare(native_build.find())
        except KernelUnavailable as error:
            warnings.warn(
                f"lovaszseg: the fused CPU kernel is unavailable, using the PyTorch path ({error})",
                RuntimeWarning,
                stacklevel=3,
            )
    return _library


def usable(x: torch.Tensor, dtype: torch.dtype, activation: str) -> bool:
    """Whether the kernel covers a call on ``x`` computed in ``dtype``: float32 on CPU, the relu
    hinge or |y - p| errors."""
    return (
        enabled
        and x.device.type == "cpu"
        and dtype == torch.float32
        and activation == "relu"
        and x.numel() < 2**31
        and library() is not None
    )


def _pointer(tensor: torch.Tensor | None):
    return None if tensor is None else ctypes.c_void_p(tensor.data_ptr())


def _checked(tensor: torch.Tensor | None, dtype: torch.dtype, name: str):
    """``tensor`` as the kernel reads it: CPU, contiguous, of ``dtype`` (a mismatch is a bug of
    the caller's, never memory read wrongly)."""
    if tensor is None:
        return None
    if tensor.device.type != "cpu" or tensor.dtype != dtype or not tensor.is_contiguous():
        raise TypeError(f"lovaszseg kernel: {name} must be a contiguous {dtype} CPU tensor")
    return tensor


def rows(x, labels, image, channel, target, sign, offset: float, void_label: int, check_range=True):
    """Row losses (float64 [R]) of float32 ``x`` [B, C, S] and the kept pixels' gradients.

    ``labels`` are [B, S] labels (uint8 or int32) when ``target`` is given, else [B, C, S] 0/1
    targets. Returns ``(losses, position, grad, kept, x_range)``: the kept pixels' positions in
    ``x`` (int32) and the gradients of their row's loss with respect to their error, row after
    row, each row's in position order; ``kept`` [R] counts them; ``x_range`` [2] holds the
    smallest and largest value of ``x`` at the valid pixels of the rows (the empty range
    [inf, -inf] unless ``check_range``).

    The kernel's first call finds the kept pixels into buffers that it allocates for this call
    alone and hands back; the second sorts and sweeps them; they are freed whatever happens.
    """
    lib = library()
    if labels.dtype not in (torch.uint8, torch.int32):
        raise TypeError("lovaszseg kernel: labels must be uint8 or int32")
    batch, channels, size = x.shape
    dense = target is None
    spec = _Spec(
        x=_pointer(_checked(x, torch.float32, "x")),
        labels=_pointer(_checked(labels, labels.dtype, "labels")),
        label_bytes=labels.element_size(),
        dense=int(dense),
        B=batch,
        C=channels,
        S=size,
        R=channel.numel(),
        image=_pointer(_checked(image, torch.int64, "image")),
        channel=_pointer(_checked(channel, torch.int64, "channel")),
        target=_pointer(_checked(target, torch.int64, "target")),
        sign=_pointer(_checked(sign, torch.float32, "sign")),
        offset=float(offset),
        void_label=int(void_label),
    )
    n_rows = channel.numel()
    threads = torch.get_num_threads()
    parts = 1 if n_rows >= threads else min(-(-threads // n_rows), 64)  # keep every thread busy
    length = (1 if image is not None else batch) * size  # pixels of a row
    buckets = 1 << max(4, min(11, (length // 32).bit_length()))
    gts = torch.empty(n_rows, dtype=torch.int64)
    threshold = torch.empty(n_rows, dtype=torch.float32)
    key_min = torch.empty(n_rows, dtype=torch.int32)
    shift = torch.empty(n_rows, dtype=torch.int32)
    hist = torch.empty(n_rows * parts, buckets, dtype=torch.int32)
    fg_hist = torch.empty_like(hist)
    kept = torch.empty(n_rows * parts, dtype=torch.int64)
    x_range = torch.tensor([math.inf, -math.inf])  # empty, unless check_range
    per_row = [_pointer(t) for t in (gts, key_min, shift, hist, fg_hist, kept)]  # both calls
    found = ctypes.c_void_p()  # the kept pixels: this call's, freed below
    try:
        if lib.lovasz_count(
            ctypes.byref(spec),
            parts,
            buckets,
            per_row[0],
            _pointer(threshold),
            *per_row[1:],
            _pointer(x_range) if check_range else None,
            ctypes.byref(found),
            threads,
        ):
            raise MemoryError("lovaszseg: out of memory in the CPU kernel")
        offsets = kept.cumsum(0) - kept
        total = int(offsets[-1] + kept[-1]) if kept.numel() else 0
        position = torch.empty(total, dtype=torch.int32)  # usable(): x has < 2^31 elements
        grad = torch.empty(total, dtype=torch.float32)
        losses = torch.empty(n_rows, dtype=torch.float64)
        if n_rows and lib.lovasz_rows(
            ctypes.byref(spec),
            parts,
            buckets,
            *per_row,
            _pointer(offsets),
            found,
            _pointer(position),
            _pointer(grad),
            _pointer(losses),
            threads,
        ):
            raise MemoryError("lovaszseg: out of memory for the sort buffers of the CPU kernel")
    finally:
        lib.lovasz_free(found)
    kept = kept.view(n_rows, parts).sum(1) if parts > 1 else kept
    return losses, position, grad, kept, x_range


def scatter(shape, kept, position, grad, weights):
    """The input's gradient [shape]: the rows' kept-pixel gradients (``rows``) scaled by
    ``weights`` [R] at their positions, zero elsewhere."""
    out = torch.empty(shape, dtype=torch.float32)
    row_start = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
    library().lovasz_scatter(
        _pointer(out),
        out.numel(),
        kept.numel(),
        _pointer(row_start),
        _pointer(_checked(position, torch.int32, "position")),
        _pointer(_checked(grad, torch.float32, "grad")),
        _pointer(_checked(weights, torch.float32, "weights")),
        torch.get_num_threads(),
    )
    return out


def softmax_backward(probas, image, channel, kept, position, grad, weights, out=None):
    """The logits' gradient [B, C, S] from the rows' kept-pixel gradients (``rows``) scaled by
    ``weights`` [R], through the softmax whose output is ``probas``; written into ``out``, which
    may be ``probas`` itself (read before it is overwritten)."""
    lib = library()
    batch, channels, size = probas.shape
    out = torch.empty_like(probas) if out is None else out
    row_start = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
    failed = lib.lovasz_softmax_backward(
        _pointer(_checked(probas, torch.float32, "probas")),
        batch,
        channels,
        size,
        channel.numel(),
        _pointer(_checked(image, torch.int64, "image")),
        _pointer(_checked(channel, torch.int64, "channel")),
        _pointer(row_start),
        _pointer(_checked(position, torch.int32, "position")),
        _pointer(_checked(grad, torch.float32, "grad")),
        _pointer(_checked(weights, torch.float32, "weights")),
        _pointer(out),
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("lovaszseg: out of memory in the CPU kernel's softmax backward")
    return out


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, 1)`` of a contiguous float32 CPU tensor [B, C, S], by the kernel: a
    cache-sized range of pixels at a time (ATen's softmax over a non-last dimension makes strided
    passes over memory; 20–35 % faster here at VOC and ADE sizes, as accurate)."""
    out = torch.empty_like(x)
    lib = library()
    x = _checked(x, torch.float32, "x")
    lib.lovasz_softmax(_pointer(x), _pointer(out), *x.shape, torch.get_num_threads())
    return out


if __name__ == "__main__":  # python -m lovaszseg.losses.native: where the kernel comes from
    lib = library()
    print("unavailable" if lib is None else f"{lib.variant}: {lib.path}", file=sys.stdout)
