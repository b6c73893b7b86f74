"""The losses on a device against the CPU kernel: loss and gradient of every mode.

Each case runs forward+backward twice on the same inputs: on ``--device`` (the PyTorch engine on
CUDA; with ``--device cpu`` the engine forced on the CPU, ``LOVASZSEG_NATIVE=0``'s path) and on
the CPU through the fused C kernel (float32 inputs; float64 inputs take the engine there too).
Inputs are continuous random values, so that exact ties, where the Lovász extension may hand a
tie's gradient to either pixel, do not occur.

    python benchmarks/gpu_parity.py --device cuda     # writes results/gpu_parity_cuda.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from lovaszseg.losses import (
    LovaszHingeLoss,
    LovaszMultilabelLoss,
    LovaszSoftmaxLoss,
    lovasz_hinge,
    lovasz_softmax,
    native,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import device_name, write_results

IGNORE = 255
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4  # relative L1 distance of the gradients
HALF_GRAD_RTOL = 1e-2  # bfloat16 keeps 8 bits: a gradient rounded to it is off by up to 2^-8


def _inputs(kind: str, batch: int, classes: int, spatial: tuple[int, ...], seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, *spatial, generator=g) * 2
    if kind == "multilabel":
        labels = (torch.rand(logits.shape, generator=g) < 0.2).long()
    else:
        labels = torch.randint(0, max(classes, 2), (batch, *spatial), generator=g)
        labels[torch.rand(labels.shape, generator=g) < 0.05] = IGNORE
        labels[0].view(-1)[: labels[0].numel() // 2] = 0  # some classes absent from image 0
    return logits, labels


def cases(size: int) -> dict[str, tuple[Callable, str, int, tuple[int, ...]]]:
    """name → (loss on (logits, labels), kind, classes, spatial shape)."""
    hw = (size, size)
    return {
        "hinge per image": (LovaszHingeLoss(ignore_index=IGNORE), "hinge", 1, hw),
        "hinge batch": (LovaszHingeLoss(per_image=False, ignore_index=IGNORE), "hinge", 1, hw),
        "hinge symmetric": (
            lambda x, y: lovasz_hinge(x, y, ignore_index=IGNORE, symmetric=True),
            "hinge",
            1,
            hw,
        ),
        "hinge empty=skip": (
            lambda x, y: lovasz_hinge(x, y, per_image=False, ignore_index=IGNORE, empty="skip"),
            "hinge",
            1,
            hw,
        ),
        "hinge elu+1": (
            lambda x, y: lovasz_hinge(x, y, ignore_index=IGNORE, activation="elu+1"),
            "hinge",
            1,
            hw,
        ),
        "hinge 3-D": (LovaszHingeLoss(ignore_index=IGNORE), "hinge", 1, (4, size // 2, size // 2)),
        "softmax batch present": (LovaszSoftmaxLoss(ignore_index=IGNORE), "softmax", 21, hw),
        "softmax per image": (
            LovaszSoftmaxLoss(per_image=True, ignore_index=IGNORE),
            "softmax",
            21,
            hw,
        ),
        "softmax classes=all": (
            LovaszSoftmaxLoss(classes="all", ignore_index=IGNORE),
            "softmax",
            21,
            hw,
        ),
        "softmax classes list": (
            LovaszSoftmaxLoss(classes=[0, 3, 7], ignore_index=IGNORE),
            "softmax",
            21,
            hw,
        ),
        "softmax class weights": (
            LovaszSoftmaxLoss(ignore_index=IGNORE, class_weights=[1.0 + i % 3 for i in range(21)]),
            "softmax",
            21,
            hw,
        ),
        "softmax on probabilities": (
            lambda x, y: lovasz_softmax(x.softmax(1), y, ignore_index=IGNORE),
            "softmax",
            21,
            hw,
        ),
        "softmax 150 classes": (LovaszSoftmaxLoss(ignore_index=IGNORE), "softmax", 150, hw),
        "multilabel sigmoid": (LovaszMultilabelLoss("sigmoid"), "multilabel", 10, hw),
        "multilabel hinge per image": (
            LovaszMultilabelLoss("hinge", per_image=True),
            "multilabel",
            10,
            hw,
        ),
    }


def _forward_backward(fn, logits, labels, device, dtype, use_kernel):
    previous = native.enabled
    native.enabled = use_kernel
    try:
        x = logits.to(device=device, dtype=dtype).detach().clone().requires_grad_(True)
        loss = fn(x, labels.to(device))
        loss.backward()
        return loss.detach().double().cpu(), x.grad.double().cpu()
    finally:
        native.enabled = previous


def compare(name, fn, kind, classes, spatial, device, dtype, batch, seed=0) -> dict:
    logits, labels = _inputs(kind, batch, classes, spatial, seed)
    if dtype != torch.float32:  # both sides see the same rounded inputs
        logits = logits.to(dtype).float()
    # On CPU (the dry run) the engine is forced; on CUDA it is the only path.
    loss_d, grad_d = _forward_backward(fn, logits, labels, device, dtype, use_kernel=False)
    loss_k, grad_k = _forward_backward(fn, logits, labels, "cpu", torch.float32, use_kernel=True)
    loss_err = ((loss_d - loss_k).abs() / loss_k.abs().clamp_min(1e-12)).max().item()
    grad_err = ((grad_d - grad_k).abs().sum() / grad_k.abs().sum().clamp_min(1e-12)).item()
    # Half-precision inputs are computed in float32 on both sides, but their gradient is
    # rounded to the input's dtype on the device.
    grad_rtol = GRAD_RTOL if dtype == torch.float32 else HALF_GRAD_RTOL
    ok = loss_err <= LOSS_RTOL and grad_err <= grad_rtol
    return {
        "case": name,
        "dtype": str(dtype).removeprefix("torch."),
        "loss_device": loss_d.tolist(),
        "loss_cpu_kernel": loss_k.tolist(),
        "loss_rel_error": loss_err,
        "grad_rel_l1_error": grad_err,
        "ok": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=64, help="image side (64; 16 for a dry run)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dtypes = [torch.float32, torch.float16, torch.bfloat16]
    rows = []
    for name, (fn, kind, classes, spatial) in cases(args.size).items():
        for dtype in (
            dtypes if name.startswith(("hinge per image", "softmax batch")) else dtypes[:1]
        ):
            try:
                row = compare(name, fn, kind, classes, spatial, args.device, dtype, args.batch)
            except Exception as error:  # one failing mode must not hide the others' results
                row = {"case": name, "dtype": str(dtype), "ok": False, "error": repr(error)}
            rows.append(row)
            status = "ok  " if row["ok"] else "FAIL"
            detail = row.get("error") or (
                f"loss {row['loss_rel_error']:.1e}  grad {row['grad_rel_l1_error']:.1e}"
            )
            print(f"{status} {name:28s} {row['dtype']:9s} {detail}", flush=True)
    failed = [r for r in rows if not r["ok"]]
    payload = {
        "device": args.device,
        "device_name": device_name(args.device),
        "tolerances": {"loss_rel": LOSS_RTOL, "grad_rel_l1": GRAD_RTOL, "half": HALF_GRAD_RTOL},
        "rows": rows,
        "failed": len(failed),
    }
    write_results(
        args.out or Path(__file__).parent / "results" / "gpu_parity", args.device, payload
    )
    print(f"parity: {len(rows) - len(failed)} of {len(rows)} cases agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
