"""The Lovász loss's share of a training step: DeepLabV3+ at B=8, 512², bf16-mixed, the
configured losses ``lovasz_hinge_bce`` against ``bce`` alone (same network, same batch).

One step is forward under autocast, the configured loss, backward and an AdamW step; the median
over ``--steps`` steps after ``--warmup`` steps, the device synchronised around each. The
loss's share is (step with Lovász + BCE - step with BCE) / step with Lovász + BCE; the loss's own
forward+backward on the step's logits is timed too.

    python benchmarks/gpu_step_time.py --device cuda          # results/gpu_step_time_cuda.json
    python benchmarks/gpu_step_time.py --device cpu --batch 2 --size 64 --steps 2   # dry run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from lovaszseg.config.resolvers import register_resolvers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labels as label_maps
from results_io import device_name, write_results

LOSSES = ("bce", "lovasz_hinge_bce")


def configured(loss: str, model: str, encoder: str | None):
    """The network and the loss exactly as ``python -m lovaszseg.train loss=<loss>`` builds them
    for the roads data."""
    overrides = [f"loss={loss}", f"model={model}", "data=synthetic_roads"]
    overrides += [f"model.encoder_name={encoder}"] if encoder else []
    with initialize_config_module("lovaszseg.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.model), instantiate(cfg.loss)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(net, loss_fn, images, labels, device, steps, warmup, compile_net):
    """Median seconds of a training step, and of the loss's forward+backward alone."""
    net = net.to(device).train()
    if compile_net:
        net.compile()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    # bf16-mixed on CUDA; a CPU dry run stays in float32 (bf16 there can take minutes a step).
    on_cuda = device.startswith("cuda")
    autocast = torch.autocast(
        device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=on_cuda
    )
    step_times, loss_times = [], []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with autocast:
            logits = net(images)
            loss = loss_fn(logits, labels).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        elapsed = time.perf_counter() - start
        # The loss alone, on these logits (detached: the network's backward is not in it).
        leaf = logits.detach().requires_grad_(True)
        _sync(device)
        start = time.perf_counter()
        with autocast:
            alone = loss_fn(leaf, labels).total
        alone.backward()
        _sync(device)
        if i >= warmup:
            step_times.append(elapsed)
            loss_times.append(time.perf_counter() - start)
    return statistics.median(step_times), statistics.median(loss_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--model", default="deeplabv3plus", help="a conf/model option")
    parser.add_argument("--encoder", default=None, help="model.encoder_name (the config's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    register_resolvers()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    labels = label_maps.thin_roads(args.batch, args.size).to(args.device)
    medians = {}
    for loss in LOSSES:
        torch.manual_seed(0)
        net, loss_fn = configured(loss, args.model, args.encoder)
        step, alone = time_steps(
            net, loss_fn, images, labels, args.device, args.steps, args.warmup, args.compile
        )
        medians[loss] = {"step_ms": step * 1e3, "loss_forward_backward_ms": alone * 1e3}
        print(f"{loss:18s} step {step * 1e3:8.2f} ms   loss alone {alone * 1e3:7.2f} ms")
    with_lovasz, bce = medians["lovasz_hinge_bce"]["step_ms"], medians["bce"]["step_ms"]
    share = (with_lovasz - bce) / with_lovasz
    print(f"the Lovász hinge's share of a step: {share:.1%}")
    payload = {
        "device": args.device,
        "device_name": device_name(args.device),
        "torch": torch.__version__,
        "model": args.model,
        "encoder": args.encoder,
        "batch": args.batch,
        "size": args.size,
        "precision": "bf16-mixed" if args.device.startswith("cuda") else "32-true",
        "compile": args.compile,
        "steps": args.steps,
        "warmup": args.warmup,
        "median": medians,
        "lovasz_share_of_step": share,
        "target_share": 0.05,
    }
    stem = Path(__file__).parent / "results" / ("gpu_step_time" + "_compiled" * args.compile)
    write_results(args.out or stem, args.device, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
