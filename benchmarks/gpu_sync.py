"""Host syncs of the losses' forward+backward with ``checks="async"``: none may happen.

On CPU (a dry run) the PyTorch engine is forced, as on CUDA. On CUDA each call runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises at the
first operation that waits for the device. On every device the ATen operations that read a
device value back to the host (``_local_scalar_dense``, ``item``, ``nonzero``, ``unique``,
``bincount``...) are counted by a dispatch mode, so a CPU dry run finds them too.

    python benchmarks/gpu_sync.py --device cuda       # writes results/gpu_sync_cuda.json
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lovaszseg.losses import LovaszHingeLoss, LovaszMultilabelLoss, LovaszSoftmaxLoss, native

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import device_name, write_results

IGNORE = 255
# ATen operations whose output size or value the host must read from the device.
SYNCING = {
    "_local_scalar_dense",
    "item",
    "nonzero",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "bincount",
    "masked_select",
    "is_nonzero",
    "equal",
}


class SyncCounter(TorchDispatchMode):
    """Counts the syncing operations dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.seen = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING:
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))


def losses(size: int):
    """name → (loss module, logits shape, labels maker)."""
    hw = (size, size)

    def classes(c):
        return lambda g, b: torch.randint(0, c, (b, *hw), generator=g)

    def binary(g, b):
        labels = (torch.rand(b, *hw, generator=g) < 0.1).long()
        labels[:, :2] = IGNORE
        return labels

    def multilabel(g, b):
        return (torch.rand(b, 10, *hw, generator=g) < 0.2).long()

    return {
        "hinge per image": (LovaszHingeLoss, dict(ignore_index=IGNORE), 1, binary),
        "hinge batch": (LovaszHingeLoss, dict(per_image=False, ignore_index=IGNORE), 1, binary),
        "softmax batch": (LovaszSoftmaxLoss, dict(ignore_index=IGNORE), 21, classes(21)),
        "softmax per image": (LovaszSoftmaxLoss, dict(per_image=True), 21, classes(21)),
        "multilabel hinge": (LovaszMultilabelLoss, dict(kind="hinge"), 10, multilabel),
    }


def check(name, make, options, channels, labels_of, device, size, batch) -> dict:
    note = None
    try:
        fn = make(**options, checks="async")
    except TypeError as error:  # losses without checks=: fail, but still count their syncs
        note = f"checks='async' not accepted ({error})"
        fn = make(**options)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, channels, size, size, generator=g).to(device)
    labels = labels_of(g, batch).to(device)
    x = logits.clone().requires_grad_(True)
    fn(x, labels).backward()  # warm-up: first-call set-up may sync
    x.grad = None
    counter = SyncCounter()
    error = None
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        with counter:
            fn(x, labels).backward()
    except RuntimeError as caught:
        error = repr(caught)
    finally:
        if device.startswith("cuda"):
            torch.cuda.set_sync_debug_mode(0)
    ok = error is None and note is None and not counter.seen
    return {"case": name, "ok": ok, "syncing_ops": dict(counter.seen), "error": error or note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    native.enabled = False  # on CPU (the dry run), the engine that runs on CUDA, not the kernel
    rows = []
    for name, (make, options, channels, labels_of) in losses(args.size).items():
        row = check(name, make, options, channels, labels_of, args.device, args.size, args.batch)
        rows.append(row)
        detail = f"{row['syncing_ops'] or 'no sync'} {row['error'] or ''}"
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {name:20s} {detail}", flush=True)
    failed = sum(not r["ok"] for r in rows)
    payload = {"device": args.device, "device_name": device_name(args.device), "rows": rows}
    write_results(args.out or Path(__file__).parent / "results" / "gpu_sync", args.device, payload)
    print(f"sync: {len(rows) - failed} of {len(rows)} losses ran without a host sync")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
