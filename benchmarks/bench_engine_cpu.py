"""The engine (the losses' PyTorch path, no C kernel) on CPU against another checkout's.

    python benchmarks/bench_engine_cpu.py --before /path/to/older/checkout [--rounds 5]

Each round runs one fresh process per checkout, in alternating order, each timing a few
forward+backward calls of every case with ``LOVASZSEG_NATIVE=0``; the medians over all rounds
and their ratio are written to ``benchmarks/results/engine_cpu.json``. Interleaving processes
spreads the drift of a shared machine over both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CASES = {
    "hinge batch B=8 512² thin_roads": "hinge",
    "softmax batch B=8 C=21 256² voc_like": "softmax",
    "softmax per-image B=8 C=21 256² voc_like": "softmax_per_image",
    "multilabel batch B=8 C=10 256²": "multilabel",
}

WORKER = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
import labels as label_maps
from lovaszseg import losses
torch.manual_seed(0)
calls = int(sys.argv[2])
def case(kind):
    g = torch.Generator().manual_seed(0)
    if kind == "hinge":
        y = label_maps.thin_roads(8, 512)
        return torch.randn(8, 1, 512, 512, generator=g) * 2, y, losses.LovaszHingeLoss(per_image=False, ignore_index=255)
    if kind == "multilabel":
        y = label_maps.sparse_multilabel(8, 256, 10)
        return torch.randn(8, 10, 256, 256, generator=g) * 2, y, losses.LovaszMultilabelLoss("hinge")
    y = label_maps.voc_like(8, 256, 21)
    per_image = kind == "softmax_per_image"
    return torch.randn(8, 21, 256, 256, generator=g) * 2, y, losses.LovaszSoftmaxLoss(per_image=per_image, ignore_index=255)
out = {}
for name, kind in json.loads(sys.argv[3]).items():
    x, y, loss = case(kind)
    x.requires_grad_(True)
    loss(x, y).backward()  # warm-up
    times = []
    for _ in range(calls):
        x.grad = None
        start = time.perf_counter()
        loss(x, y).backward()
        times.append(time.perf_counter() - start)
    out[name] = times
print(json.dumps(out))
"""


def run(checkout: Path, calls: int, cases: dict) -> dict:
    env = dict(os.environ, LOVASZSEG_NATIVE="0", PYTHONPATH=str(checkout))
    args = [sys.executable, "-c", WORKER, str(HERE), str(calls), json.dumps(cases)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per case and process")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "engine_cpu.json")
    parser.add_argument("--only", action="append", help="cases whose name contains this")
    args = parser.parse_args()
    cases = {k: v for k, v in CASES.items() if not args.only or any(o in k for o in args.only)}
    sides = {"before": args.before.resolve(), "after": HERE.parent}
    times = {side: {name: [] for name in cases} for side in sides}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            for name, values in run(sides[side], args.calls, cases).items():
                times[side][name].extend(values)
    import torch

    rows = []
    for name in cases:
        before = statistics.median(times["before"][name]) * 1e3
        after = statistics.median(times["after"][name]) * 1e3
        rows.append(
            dict(case=name, before_ms=before, after_ms=after, after_over_before=after / before)
        )
        print(f"{name:45s} before {before:8.1f} ms  after {after:8.1f} ms  ×{after / before:.2f}")
    result = dict(
        what="forward+backward, LOVASZSEG_NATIVE=0 (the PyTorch path), CPU, medians",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        rounds=args.rounds,
        calls_per_process=args.calls,
        rows=rows,
    )
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
