"""Helpers for the tests that submit jobs to a real SLURM (``bash scripts/local_slurm.sh start``)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[2]
# 2 tasks of 1 CPU each (the local cluster has nproc CPUs), little memory, a short time limit
SLURM_CPU_JOB = (
    "hydra/launcher=slurm",
    "trainer=slurm",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
)


def slurm_problem() -> str | None:
    """Why no SLURM job can run here, or None when ``srun`` answers."""
    for command in ("sinfo", "srun", "sbatch", "scontrol"):
        if shutil.which(command) is None:
            return f"{command} not found"
    try:
        subprocess.run(["sinfo", "--noheader"], check=True, capture_output=True, timeout=15)
        subprocess.run(
            ["srun", "-N1", "-n1", "hostname"], check=True, capture_output=True, timeout=60
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return f"SLURM does not answer ({err})"
    return None


def submitted_job_ids(sweep_dir: Path) -> list[str]:
    """SLURM ids of a submitit sweep's jobs, from its ``.submitit/<job id>`` folders."""
    folders = (sweep_dir / ".submitit").glob("*")
    return sorted(f.name for f in folders if f.is_dir() and re.fullmatch(r"\d+(_\d+)?", f.name))


def squeue(job_id: str, field: str) -> str:
    """One ``squeue --format`` field of a job (e.g. ``%T`` its state, ``%M`` its run time),
    finished jobs included (squeue leaves those out unless asked)."""
    command = ["squeue", "--noheader", f"--format={field}", "--states=all", "--jobs", job_id]
    return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()


def scontrol(*arguments: str, check: bool = True) -> None:
    subprocess.run(["scontrol", *arguments], check=check, capture_output=not check, timeout=30)


FINISHED = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY"}


def release_when_requeued(job_id: str, *updates: str, within_s: float = 300) -> None:
    """Wait until the requeued job is pending again, then start it at once (SLURM holds a requeued
    job back for two minutes, its BeginTime), applying ``updates`` (``Key=value``) on the way."""
    deadline = time.monotonic() + within_s
    while (state := squeue(job_id, "%T")) != "PENDING":
        assert state not in FINISHED, f"job {job_id} ended {state} instead of being requeued"
        assert time.monotonic() < deadline, (
            f"job {job_id} was not requeued within {within_s} s (it is {state or 'unknown'})"
        )
        time.sleep(0.5)
    scontrol("update", f"JobId={job_id}", *updates, "StartTime=now")
    # an update reaching SLURM before the node has finished with the old try schedules nothing,
    # and the next scheduling pass can be a minute away: ask again until the job starts
    while squeue(job_id, "%T") == "PENDING":
        assert time.monotonic() < deadline, f"job {job_id} did not start again within {within_s} s"
        time.sleep(2)
        # not checked: the job may have started since (SLURM then refuses a StartTime)
        scontrol("update", f"JobId={job_id}", "StartTime=now", check=False)


class SlowFirstTry(pl.Callback):
    """Sleeps ``seconds`` after every training epoch of a job's first try (SLURM sets
    ``SLURM_RESTART_COUNT`` on a requeued one), so that the job is still training when a signal
    comes that SLURM sends only at its next check of time limits (every 30 s)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0:
            time.sleep(self.seconds)


@contextlib.contextmanager
def sweep_in_background(
    cwd: Path, *overrides: str, timeout_s: float = 900, fails_with: str | None = None
) -> Iterator[Callable]:
    """A ``lovaszseg.train --multirun`` on SLURM running in ``cwd`` while the test acts on its
    job. Yields ``wait_until(ready, what)``: poll ``ready()`` until it holds. On leaving, waits
    for the sweep and asserts it succeeded (or failed, saying ``fails_with`` on stderr); kills it
    if the test failed first. The jobs can import ``tests`` (a callback of the tests named in
    ``overrides``)."""
    command = [sys.executable, "-m", "lovaszseg.train", "--multirun", *overrides]
    env = os.environ | {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    stderr_path = cwd / "sweep.stderr"  # a file: a pipe nobody reads would stall a long sweep
    with stderr_path.open("w") as stderr_file:
        sweep = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file, text=True
        )

    def wait_until(ready: Callable[[], bool], what: str, within_s: float = 400) -> None:
        deadline = time.monotonic() + within_s
        while not ready():
            assert sweep.poll() is None, f"the sweep ended before {what}"
            assert time.monotonic() < deadline, f"not {what} within {within_s} s"
            time.sleep(0.2)

    try:
        yield wait_until
        sweep.wait(timeout=timeout_s)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    stderr = stderr_path.read_text()
    if fails_with is None:
        assert sweep.returncode == 0, stderr[-3000:]
    else:
        assert sweep.returncode != 0 and fails_with in stderr, stderr[-3000:]
