"""Kill a small training anywhere, resume it until it completes, and check that nothing was lost.

    python scripts/torture.py --trials 40 --seed 0 --workdir /tmp/torture

One unstopped reference run first (a few epochs of a few steps, validated every epoch, on tiny
synthetic data). Then every trial trains the same run in its own folder with ``auto_resume=true``:

* a random trial SIGKILLs it at a moment drawn from the reference's duration, restarts it,
  kills it again with probability ``--again`` (at most ``--max-kills`` times), then lets it finish;
* a targeted trial sets ``LOVASZSEG_FAULT=<file>:<n>`` so the run kills itself inside the n-th
  write of ``last.ckpt``, ``best.ckpt``, ``results.json`` or ``metrics.csv``, then lets it finish.
  With ``--targeted all`` every write of every file is hit once: n counts up until a run finishes
  without reaching its n-th write.

Every trial must end as the reference ends: the run completes; ``last.ckpt`` and ``best.ckpt``
hold the reference's tensors to the bit; ``best.ckpt`` is the best epoch of ``metrics.csv``;
every epoch's validation is in ``metrics.csv`` with the reference's values (read by the documented
rule: an epoch logged twice counts its later row); ``results.json`` is valid, ``completed``, with
the reference's best and final epochs; no temporary file is left. Prints one line per trial and
"N of N trials survived"; exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lovaszseg.reporting.runs import read_curves
from lovaszseg.runs.faults import FAULT_ENV
from lovaszseg.runs.resume import unfinished_writes

RUN = (
    "debug=fast",
    "data.synthetic.num_train=8",
    "data.synthetic.num_val=4",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=3",
    "auto_resume=true",
)
WRITES = ("last.ckpt", "best.ckpt", "results.json", "metrics.csv")
FINISH_TIMEOUT_S = 900


@dataclass
class Trial:
    name: str
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fault_reached: bool = True


def launch(workdir: Path, run_dir: Path, threads: int, fault: str | None = None):
    """``python -m lovaszseg.train`` for ``run_dir`` in the background, its output in launches.log."""
    env = os.environ | {
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": str(threads),
    }
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    command = [
        sys.executable,
        "-m",
        "lovaszseg.train",
        *RUN,
        f"paths.data_dir={workdir / 'data'}",
        f"hydra.run.dir={run_dir}",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir.parent / f"{run_dir.name}.launches.log").open("a")
    log.write(f"\n=== {' '.join(command)} ({FAULT_ENV}={fault})\n")
    log.flush()
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)


def finish(proc: subprocess.Popen, what: str) -> int:
    try:
        return proc.wait(timeout=FINISH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"{what}: still running after {FINISH_TIMEOUT_S} s"  # type: ignore[return-value]


def where(run_dir: Path) -> str:
    """Where a killed run stood: the step of its last.ckpt, and any write it was inside."""
    last = run_dir / "checkpoints" / "last.ckpt"
    inside = [path.name for path in unfinished_writes(run_dir)]
    during = f", inside writing {inside}" if inside else ""
    if not last.is_file():
        return f"before the first last.ckpt{during}"
    try:
        saved = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:  # the check after the trial reports it; here it is only described
        return f"last.ckpt unreadable ({type(err).__name__}){during}"
    return f"last.ckpt at step {saved['global_step']} (epoch {saved['epoch']}){during}"


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    if a.keys() != b.keys():
        return sorted(set(a) ^ set(b))
    return [key for key in a if not torch.equal(a[key], b[key])]


def problems_against(run_dir: Path, reference: Path) -> list[str]:
    """How ``run_dir`` differs from the unstopped ``reference`` (empty: nothing lost)."""
    problems = []
    try:
        summary = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError) as err:
        return [f"results.json unreadable: {err}"]
    expected = json.loads((reference / "results.json").read_text())
    if summary.get("status") != "completed":
        problems.append(f"results.json status {summary.get('status')!r}")
    for key in ("best", "final"):
        if summary.get(key) != expected.get(key):
            problems.append(f"results.json {key} {summary.get(key)} != {expected.get(key)}")
    try:
        curves = read_curves(run_dir / "metrics.csv")
    except (OSError, ValueError) as err:
        return [*problems, f"metrics.csv unreadable: {err}"]
    reference_curves = read_curves(reference / "metrics.csv")
    for name, curve in reference_curves.items():
        if name.startswith("val/") and curves.get(name) != curve:
            problems.append(f"metrics.csv {name} {curves.get(name)} != {curve}")
    scores = curves.get("val/mIoU", {})
    checkpoints = run_dir / "checkpoints"
    for name in ("last.ckpt", "best.ckpt"):
        try:
            bad = differing(tensors(checkpoints / name), tensors(reference / "checkpoints" / name))
        except Exception as err:
            problems.append(f"{name} unreadable: {type(err).__name__}: {err}")
            continue
        if bad:
            problems.append(f"{name}: {len(bad)} tensors differ from the reference, e.g. {bad[:2]}")
    if scores:
        best_epoch = max(scores, key=lambda e: (scores[e], -e))
        saved_epoch = torch.load(checkpoints / "best.ckpt", weights_only=False)["epoch"]
        if saved_epoch != best_epoch:
            problems.append(f"best.ckpt is epoch {saved_epoch}, metrics.csv's best is {best_epoch}")
    stray = unfinished_writes(run_dir)
    extra = sorted(
        p.name for p in checkpoints.iterdir() if p.name not in ("last.ckpt", "best.ckpt")
    )
    if stray or extra:
        problems.append(f"left behind: {[p.name for p in stray] + extra}")
    return problems


def run_to_completion(trial: Trial, workdir: Path, run_dir: Path, threads: int) -> float:
    """Launch ``run_dir`` and wait for it; returns how long it ran."""
    start = time.monotonic()
    code = finish(launch(workdir, run_dir, threads), "the final launch")
    if code != 0:
        trial.problems.append(f"the final launch ended with {code} (see {run_dir}.launches.log)")
    return time.monotonic() - start


def random_trial(
    trial: Trial, workdir: Path, run_dir: Path, args: argparse.Namespace, rng: random.Random
) -> None:
    while True:
        delay = rng.uniform(0, statistics.median(args.durations))
        start = time.monotonic()
        proc = launch(workdir, run_dir, args.threads)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            trial.kills.append(f"SIGKILL at {delay:.1f} s, {where(run_dir)}")
        else:
            trial.kills.append(f"finished before the kill at {delay:.1f} s")
            args.durations.append(time.monotonic() - start)
            break
        if len(trial.kills) >= args.max_kills or rng.random() >= args.again:
            args.durations.append(run_to_completion(trial, workdir, run_dir, args.threads))
            break
    if proc.returncode not in (0, -signal.SIGKILL):
        trial.problems.append(f"a launch ended with {proc.returncode}")


def targeted_trial(trial: Trial, workdir: Path, run_dir: Path, fault: str, threads: int) -> None:
    code = finish(launch(workdir, run_dir, threads, fault=fault), f"{FAULT_ENV}={fault}")
    if code == 0:
        trial.fault_reached = False
        trial.kills.append(f"{fault}: the run finished without reaching it")
        return
    if code != -signal.SIGKILL:
        trial.problems.append(f"{FAULT_ENV}={fault}: ended with {code}, not SIGKILL")
        return
    trial.kills.append(f"killed inside write {fault}, {where(run_dir)}")
    run_to_completion(trial, workdir, run_dir, threads)


def report(trial: Trial) -> None:
    verdict = "survived" if not trial.problems else "LOST: " + "; ".join(trial.problems)
    print(f"{trial.name}: {' | '.join(trial.kills)} -> {verdict}", flush=True)


def targeted_faults(spec: str) -> list[str] | None:
    """``all`` -> None (discover every write); ``none`` -> []; else a comma-separated list."""
    if spec == "all":
        return None
    return [] if spec == "none" else [f for f in spec.split(",") if f]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="random kill trials")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--workdir", type=Path, required=True, help="a new or emptied folder")
    parser.add_argument("--again", type=float, default=0.5, help="chance of one more kill")
    parser.add_argument("--max-kills", type=int, default=3)
    parser.add_argument(
        "--targeted",
        default="all",
        help="'all' (every write of every file), 'none', or faults like last.ckpt:2,results.json:4",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every launch")
    parser.add_argument("--jobs", type=int, default=1, help="trials run side by side")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep --workdir's reference run (and its data) from an earlier call; the trials "
        "go beside it",
    )
    args = parser.parse_args()

    reference = args.workdir / "reference"
    timing = args.workdir / "reference_s.txt"
    if not (args.reuse and timing.is_file()):
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        start = time.monotonic()
        code = finish(launch(args.workdir, reference, args.threads), "the reference")
        timing.write_text(f"{time.monotonic() - start:.1f}\n")
        summary = json.loads((reference / "results.json").read_text())
        if code != 0 or summary["status"] != "completed":
            print(f"the reference run failed ({code}); see {args.workdir}/*.launches.log")
            return 2
    args.reference_s = float(timing.read_text())
    args.durations = [args.reference_s]
    print(f"reference: {args.reference_s:.0f} s; kills drawn from [0, a run's median duration)")

    def random_one(number: int) -> Trial:
        trial, run_dir = Trial(f"random {number}"), args.workdir / f"random_{number}"
        shutil.rmtree(run_dir, ignore_errors=True)  # left by an earlier call
        random_trial(trial, args.workdir, run_dir, args, random.Random(args.seed * 10_000 + number))
        trial.problems += problems_against(run_dir, reference)
        report(trial)
        return trial

    def targeted_one(fault: str) -> Trial:
        trial = Trial(f"targeted {fault}")
        run_targeted(trial, args, reference, fault)
        return trial

    with ThreadPoolExecutor(args.jobs) as pool:
        trials = list(pool.map(random_one, range(1, args.trials + 1)))
        chosen = targeted_faults(args.targeted)
        trials += pool.map(targeted_one, chosen or [])
        if chosen is None:  # every write of every file: count up until a run finishes unhit
            for write in WRITES:
                for first in range(1, 100, args.jobs):
                    batch = list(
                        pool.map(
                            targeted_one, [f"{write}:{n}" for n in range(first, first + args.jobs)]
                        )
                    )
                    trials += batch
                    if not all(t.fault_reached for t in batch):
                        break

    counted = [t for t in trials if t.fault_reached]
    survived = sum(not t.problems for t in counted)
    print(f"{survived} of {len(counted)} trials survived", flush=True)
    return 0 if survived == len(counted) else 1


def run_targeted(trial: Trial, args: argparse.Namespace, reference: Path, fault: str) -> None:
    run_dir = args.workdir / f"targeted_{fault.replace(':', '_')}"
    shutil.rmtree(run_dir, ignore_errors=True)  # left by an earlier call
    targeted_trial(trial, args.workdir, run_dir, fault, args.threads)
    if trial.fault_reached and not trial.problems:
        trial.problems += problems_against(run_dir, reference)
    report(trial)


if __name__ == "__main__":
    sys.exit(main())
