"""Cost of the DDP-exact batch-level loss (``sync="global"``) against ``sync="none"``.

Two CPU processes (gloo on 127.0.0.1) each hold half of a batch and time forward+backward of the
batch-level Lovász-softmax (VOC-like labels) and Lovász hinge (thin roads), both ways,
interleaved. ``sync="global"`` adds three small all-reduces and one all-gather of the kept pixels,
and every process sorts the union.

    python benchmarks/bench_sync.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labels as label_maps

WORLD = 2


def _cases(rank):
    """(name, loss(sync) -> scalar, logits) for this rank's half of each batch."""
    from lovaszseg.losses import LovaszHingeLoss, LovaszSoftmaxLoss

    g = torch.Generator().manual_seed(0)
    half = slice(4 * rank, 4 * rank + 4)
    voc = label_maps.voc_like(8, 256)[half]
    voc_logits = (torch.randn(8, 21, 256, 256, generator=g) * 2)[half].requires_grad_(True)
    roads = label_maps.thin_roads(8, 512)[half]
    road_logits = (torch.randn(8, 1, 512, 512, generator=g) * 2)[half].requires_grad_(True)
    return [
        ("softmax B=8 C=21 256² voc_like batch", LovaszSoftmaxLoss, voc_logits, voc),
        ("hinge B=8 512² thin_roads batch", LovaszHingeLoss, road_logits, roads),
    ]


def _worker(rank, port, rounds, threads, out):
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    results = {}
    for name, loss_cls, logits, labels in _cases(rank):
        fns = {
            sync: loss_cls(per_image=False, ignore_index=255, sync=sync)
            for sync in ("none", "global")
        }
        times = {sync: [] for sync in fns}
        for r in range(rounds + 1):
            for sync in ("none", "global") if r % 2 else ("global", "none"):
                dist.barrier()
                start = time.perf_counter()
                logits.grad = None
                fns[sync](logits, labels).backward()
                if r:  # the first round warms up
                    times[sync].append(time.perf_counter() - start)
        results[name] = {sync: statistics.median(t) * 1e3 for sync, t in times.items()}
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bench_sync_cpu.json"
    )
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "sync.json"
        mp.spawn(_worker, args=(port, args.rounds, args.threads, str(raw)), nprocs=WORLD)
        results = json.loads(raw.read_text())

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"sync='global' vs 'none', {WORLD} CPU processes x {args.threads} thread(s)"
    )
    for col in ("case (per process: half the batch)", "none ms", "global ms", "overhead"):
        table.add_column(col, justify="left" if col.startswith("case") else "right")
    for name, t in results.items():
        table.add_row(
            name, f"{t['none']:.1f}", f"{t['global']:.1f}", f"{t['global'] / t['none']:.2f}x"
        )
    Console(width=120).print(table)
    payload = {
        "world_size": WORLD,
        "threads": args.threads,
        "rounds": args.rounds,
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(payload, indent=2))
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
