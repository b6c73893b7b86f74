"""Forward+backward time and peak memory of the Lovász losses: lovaszseg, smp, and plain CE/BCE.

Every case is measured side by side in one process, the implementations interleaved round by
round, in several fresh processes (CPU sort speed varies ~2x between processes); the table gives
medians over all rounds and the ratios that the targets are stated in. Peak memory: on CPU the
growth of the peak RSS during one forward+backward, in a fresh process per (case,
implementation), with glibc told to map every allocation over 64 KiB on its own, so that RSS
follows live tensors; on CUDA the growth of the peak allocation, which the caching allocator
counts exactly, so one process measures them all (a fresh process each costs a CUDA start).

    python benchmarks/bench_losses.py                   # full table, writes results JSON
    python benchmarks/bench_losses.py --quick           # a smaller table in about a minute
    python benchmarks/bench_losses.py --only "roads batch" --only "512² voc_like"   # some cases
    python benchmarks/bench_losses.py --before HEAD~5   # also lovaszseg's losses at a git revision
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labels as label_maps
from results_io import write_json_atomic

IGNORE = label_maps.IGNORE
IMPLS = ("baseline", "lovaszseg", "smp")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "softmax", "hinge" or "multilabel"
    batch: int
    classes: int
    size: int
    labels: str  # a generator in benchmarks/labels.py
    per_image: bool
    logits: str = "random"  # "random" or "confident" (near-converged predictions)

    @property
    def title(self) -> str:
        mode = "per-image" if self.per_image else "batch"
        shape = f"B={self.batch} C={self.classes} {self.size}²"
        suffix = ", confident logits" if self.logits == "confident" else ""
        return f"{self.name} {shape} {self.labels} {mode}{suffix}"


def all_cases() -> list[Case]:
    cases = []
    for per_image in (False, True):
        cases += [
            Case("a", "softmax", 8, 21, 256, "voc_like", per_image),
            Case("a", "softmax", 8, 21, 256, "uniform", per_image),
            Case("b", "hinge", 8, 1, 512, "thin_roads", per_image),
        ]
    cases += [
        Case("c", "softmax", 2, 21, 512, "voc_like", False),
        Case("d", "softmax", 4, 150, 256, "ade_like", False),
        Case("d", "softmax", 4, 150, 256, "ade_like", True),
        Case("e", "softmax", 8, 21, 256, "voc_like", False, "confident"),
        Case("e", "hinge", 8, 1, 512, "thin_roads", False, "confident"),
        Case("f", "multilabel", 8, 10, 256, "sparse_multilabel", False),
        Case("f", "multilabel", 8, 10, 256, "sparse_multilabel", True),
        Case("g", "hinge", 8, 1, 512, "road_bands", False),
    ]
    return cases


def quick_cases() -> list[Case]:
    return [c for c in all_cases() if c.name in "ab" and c.labels != "uniform"]


def make_inputs(case: Case, device: str):
    """Logits (requiring grad) and labels for a case, deterministic."""
    g = torch.Generator().manual_seed(0)
    if case.kind == "hinge":
        labels = getattr(label_maps, case.labels)(case.batch, case.size).unsqueeze(1)
    elif case.kind == "multilabel":
        labels = label_maps.sparse_multilabel(case.batch, case.size, case.classes)
    else:
        make = getattr(label_maps, case.labels)
        labels = make(case.batch, case.size, case.classes)
    shape = (case.batch, case.classes, case.size, case.size)
    logits = torch.randn(shape, generator=g) * 2
    if case.logits == "confident":
        if case.kind != "softmax":
            target = labels.float() * 2 - 1
        else:
            target = F.one_hot(labels.clamp(max=case.classes - 1), case.classes)
            target = target.permute(0, 3, 1, 2).float()
        logits = 6 * target + torch.randn(shape, generator=g)
    return logits.to(device).requires_grad_(True), labels.to(device)


def make_loss(case: Case, impl: str):
    from segmentation_models_pytorch.losses import LovaszLoss

    if impl == "before":  # the losses package of another revision (--before), imported aside
        import lovaszseg_before as losses

        impl = "lovaszseg"
    else:
        from lovaszseg import losses

    if case.kind == "multilabel":  # smp's "multilabel" is one hinge over all channels flattened
        if impl == "baseline":
            return lambda x, y: F.binary_cross_entropy_with_logits(x, y.float())
        if impl == "lovaszseg":
            return losses.LovaszMultilabelLoss("hinge", per_image=case.per_image)
        return LovaszLoss("multilabel", per_image=case.per_image)
    if case.kind == "hinge":
        if impl == "baseline":
            return lambda x, y: F.binary_cross_entropy_with_logits(x, y.float())
        if impl == "lovaszseg":
            return losses.LovaszHingeLoss(per_image=case.per_image, ignore_index=IGNORE)
        return LovaszLoss("binary", per_image=case.per_image, ignore_index=IGNORE)
    if impl == "baseline":
        return lambda x, y: F.cross_entropy(x, y, ignore_index=IGNORE)
    if impl == "lovaszseg":
        return losses.LovaszSoftmaxLoss(per_image=case.per_image, ignore_index=IGNORE)
    return LovaszLoss("multiclass", per_image=case.per_image, ignore_index=IGNORE)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def step(loss_fn, logits, labels):
    logits.grad = None
    loss_fn(logits, labels).backward()


def time_cases(cases, rounds, device) -> dict:
    """{case index: {impl: [seconds, ...]}}, implementations interleaved, order rotated."""
    samples = {}
    for i, case in enumerate(cases):
        logits, labels = make_inputs(case, device)
        fns = {impl: make_loss(case, impl) for impl in IMPLS}
        for fn in fns.values():
            step(fn, logits, labels)
        times = {impl: [] for impl in IMPLS}
        for r in range(rounds):
            order = IMPLS[r % len(IMPLS) :] + IMPLS[: r % len(IMPLS)]
            for impl in order:
                _sync(device)
                start = time.perf_counter()
                step(fns[impl], logits, labels)
                _sync(device)
                times[impl].append(time.perf_counter() - start)
        samples[i] = times
    return samples


def peak_memory(case: Case, impl: str, device: str) -> float:
    """Bytes by which one forward+backward raises the peak (fresh process expected)."""
    logits, labels = make_inputs(case, device)
    fn = make_loss(case, impl)
    if device == "cuda":
        step(fn, logits, labels)  # first-call set-up (kernels, caches) is not the loss's memory
        logits.grad = None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(fn, logits, labels)
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(fn, logits, labels)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024


def _child(args: list[str], memory: bool = False) -> dict:
    # Timing runs get the allocator as users have it. For memory, every allocation of 64 KiB or
    # more gets its own mapping, returned on free: the peak RSS is then the peak of live tensors,
    # not an artefact of glibc's heap reuse (this makes every temporary page-fault, so it is
    # never used for timing).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"} if memory else None
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _revision() -> str:
    """The commit the timed lovaszseg was checked out at ("+changes" when its files differ), so
    that a results file says what "now" was."""
    root = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout

    changed = git("status", "--porcelain", "--", "lovaszseg/losses").strip()
    return git("rev-parse", "--short", "HEAD").strip() + (" +changes" if changed else "")


def _extract_losses(revision: str) -> str:
    """``lovaszseg/losses`` at ``revision``, as the package ``lovaszseg_before`` in a temporary
    folder (returned): its relative imports make it importable beside today's."""
    root = Path(tempfile.mkdtemp(prefix="bench-before-"))
    archive = subprocess.run(
        ["git", "archive", revision, "lovaszseg/losses"],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    package = root / "lovaszseg_before"
    (root / "lovaszseg" / "losses").rename(package)
    # its operators get a namespace of their own: today's may share their names, not their schemas
    for source in package.glob("*.py"):
        text = source.read_text()
        text = text.replace('"lovaszseg::', '"lovaszseg_before::')
        source.write_text(text.replace("torch.ops.lovaszseg.", "torch.ops.lovaszseg_before."))
    return str(root)


def _ratios(per_process, median, top, bottom) -> dict:
    """``top`` over ``bottom`` (implementations): of the medians over every round, and in each
    process (the spread); empty when either was not timed."""
    if top not in IMPLS or bottom not in IMPLS:
        return {}
    return {
        f"{top}_over_{bottom}": median[top] / median[bottom],
        f"per_process_{top}_over_{bottom}": [
            statistics.median(p[top]) / statistics.median(p[bottom]) for p in per_process
        ],
    }


def summarize(cases, runs, memory) -> list[dict]:
    rows = []
    for i, case in enumerate(cases):
        per_process = [run[str(i)] for run in runs]
        median = {
            impl: statistics.median(t for p in per_process for t in p[impl]) for impl in IMPLS
        }
        rows.append(
            {
                **_ratios(per_process, median, "lovaszseg", "before"),
                "case": asdict(case),
                "title": case.title,
                "median_ms": {k: v * 1e3 for k, v in median.items()},
                **_ratios(per_process, median, "lovaszseg", "baseline"),
                **_ratios(per_process, median, "smp", "lovaszseg"),
                "peak_mb": {k: v / 2**20 for k, v in memory.get(i, {}).items()},
            }
        )
    return rows


def _spread(ratios: list[float]) -> str:
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def print_table(rows, device, threads) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Lovász losses, forward+backward ({device}, {threads} threads)")
    has_smp, has_before = "smp" in IMPLS, "before" in IMPLS
    columns = ["case", "CE/BCE ms", "lovaszseg ms"] + (["smp ms"] if has_smp else [])
    columns += ["ours/CE"] + (["smp/ours"] if has_smp else [])
    columns += ["before ms", "now/before", "per process"] if has_before else []
    for col in columns:
        table.add_column(col, justify="left" if col == "case" else "right")
    has_memory = any(r["peak_mb"] for r in rows)
    if has_memory:
        for col in ("peak MB " + IMPLS[0], *IMPLS[1:]):
            table.add_column(col, justify="right")
    for r in rows:
        ms = r["median_ms"]
        cells = [r["title"], f"{ms['baseline']:.1f}", f"{ms['lovaszseg']:.1f}"]
        cells += [f"{ms['smp']:.1f}"] if has_smp else []
        cells += [f"{r['lovaszseg_over_baseline']:.2f}x"]
        cells += [f"{r['smp_over_lovaszseg']:.1f}x"] if has_smp else []
        if has_before:
            cells += [f"{ms['before']:.1f}", f"{r['lovaszseg_over_before']:.2f}x"]
            cells += [_spread(r["per_process_lovaszseg_over_before"])]
        if has_memory:
            cells += [f"{r['peak_mb'].get(k, float('nan')):.0f}" for k in IMPLS]
        table.add_row(*cells)
    Console(width=170).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cases a and b (VOC-like, roads)")
    parser.add_argument("--processes", type=int, default=None, help="fresh processes (3; 1 quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per process (5; 3 quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument(
        "--no-smp",
        action="store_true",
        help="leave smp out (its calls take most of a run's time; for lovaszseg against --before)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only the cases whose title contains TEXT (repeatable), e.g. --only 'roads batch'",
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--before", metavar="REV", help="also time lovaszseg's losses at this git revision"
    )
    parser.add_argument("--before-path", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global IMPLS
    if args.no_smp:
        IMPLS = tuple(impl for impl in IMPLS if impl != "smp")
    if args.before and not args.before_path:
        args.before_path = _extract_losses(args.before)
    if args.before_path:
        sys.path.insert(0, args.before_path)
        IMPLS = (*IMPLS, "before")
    cases = quick_cases() if args.quick else all_cases()
    if args.only:
        cases = [c for c in cases if any(text in c.title for text in args.only)]
        if not cases:
            parser.error(f"no case title contains any of {args.only}")

    if args.worker:
        print(json.dumps(time_cases(cases, args.rounds, args.device)))
        return
    if args.memory_all:
        out = {
            i: {impl: peak_memory(c, impl, args.device) for impl in IMPLS}
            for i, c in enumerate(cases)
        }
        print(json.dumps(out))
        return
    if args.memory:
        case = cases[int(args.memory[0])]
        print(json.dumps({"bytes": peak_memory(case, args.memory[1], args.device)}))
        return

    processes = args.processes or (1 if args.quick else 3)
    rounds = args.rounds or (3 if args.quick else 5)
    common = ["--threads", str(args.threads), "--device", args.device]
    common += ["--quick"] if args.quick else []
    common += ["--no-smp"] if args.no_smp else []
    common += [flag for text in args.only for flag in ("--only", text)]
    common += ["--before-path", args.before_path] if args.before_path else []
    runs = [_child(["--worker", "--rounds", str(rounds), *common]) for _ in range(processes)]
    memory = {}
    if not args.no_memory and args.device == "cuda":
        memory = {int(i): m for i, m in _child(["--memory-all", *common]).items()}
    elif not args.no_memory:
        for i in range(len(cases)):
            memory[i] = {
                impl: _child(["--memory", str(i), impl, *common], memory=True)["bytes"]
                for impl in IMPLS
            }
    rows = summarize(cases, runs, memory)
    print_table(rows, args.device, args.threads)
    payload = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": args.threads,
        "processes": processes,
        "rounds": rounds,
        "torch": torch.__version__,
        "lovaszseg_kernel": "pytorch" if os.environ.get("LOVASZSEG_NATIVE") == "0" else "c",
        "revision": _revision(),
        "before": args.before,
        "rows": rows,
    }
    suffix = ("_quick" if args.quick else "") + ("_only" if args.only else "")
    if os.environ.get("LOVASZSEG_NATIVE") == "0":  # the pure-PyTorch path of the losses
        suffix += "_pytorch_path"
    out = args.out or Path(__file__).parent / "results" / f"bench_losses_{args.device}{suffix}.json"
    write_json_atomic(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
