"""A SLURM job whose time limit runs out before its training does: signalled before the limit,
requeued by submitit, resumed to completion with nothing lost (the path a cluster's ``--time``
takes).

submitit asks SLURM for ``--signal=USR2@<signal_delay_s>``: that long before the limit SLURM sends
SIGUSR2, every rank saves ``last.ckpt`` at the next batch end, submitit's handler in the first task
then finds the job timed out and requeues it (``scontrol requeue``), the ranks stop, and the same
batch script runs again in the same run folder, where ``auto_resume=true`` picks up ``last.ckpt``.
The limit is cut short once training is under way (``scontrol update TimeLimit``): SLURM may signal
up to a minute before the time asked for, and a signal during the first try's imports, before
submitit's handler exists, would only kill the job. SLURM looks at time limits every 30 s, so the
first try's epochs are slowed down (``SlowFirstTry``) to be sure it is still training then. A job
out of requeues (``max_num_timeout``) stops the same way and ends its sweep with submitit's reason.
``.ci/run`` starts the local cluster (``scripts/local_slurm.sh``); elsewhere the test skips unless
``srun`` answers.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.train.entry import FAST, epochs_with, metric_rows, results
from tests.train.slurm import (
    SLURM_CPU_JOB,
    SlowFirstTry,
    release_when_requeued,
    scontrol,
    squeue,
    submitted_job_ids,
    sweep_in_background,
)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

EPOCHS = 20  # long enough to be running still when SLURM gets round to the signal
# submitit counts a signal as a time-out once the job has run 80% of its limit or all but 10
# minutes of it, whichever is less: with 10 minutes, any signal is a time-out
TIMEOUT_MIN = 10
SIGNAL_DELAY_S = 120


def elapsed_s(job_id: str) -> int:
    """The job's run time, from squeue's [[D-]H:]M:SS."""
    days, _, clock = squeue(job_id, "%M").rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def cut_time_limit(job_id: str) -> None:
    """Leave the job less than ``SIGNAL_DELAY_S`` before its limit: SLURM signals it at once."""
    limit_min = math.ceil(elapsed_s(job_id) / 60) + 1
    scontrol("update", f"JobId={job_id}", f"TimeLimit={limit_min}")


def submitit_logs(sweep_dir) -> str:
    """Everything submitit's tasks logged, in every try."""
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.*"))
    return "\n".join(path.read_text(errors="replace") for path in logs)


def training_under_way(root) -> bool:
    """Epoch 0 is saved: submitit's signal handler is in place (it comes before the training)."""
    return any((root / "multirun" / "train").glob("*/0*/checkpoints/last.ckpt"))


def timed_job(data_dir, max_num_timeout: int) -> tuple[str, ...]:
    """A job of ``EPOCHS`` epochs that submitit requeues ``max_num_timeout`` times at most."""
    return (
        *FAST,
        f"paths.data_dir={data_dir}",
        *SLURM_CPU_JOB,
        f"hydra.launcher.timeout_min={TIMEOUT_MIN}",
        f"hydra.launcher.signal_delay_s={SIGNAL_DELAY_S}",
        f"hydra.launcher.max_num_timeout={max_num_timeout}",
        f"trainer.max_epochs={EPOCHS}",
        "auto_resume=true",
        f"+callbacks.slow_first_try._target_={SlowFirstTry.__module__}.{SlowFirstTry.__name__}",
        "+callbacks.slow_first_try.seconds=3",
    )


def test_a_job_past_its_time_limit_is_signalled_requeued_and_completes(data_dir, tmp_path):
    with sweep_in_background(tmp_path, *timed_job(data_dir, 2)) as wait_until:
        wait_until(lambda: training_under_way(tmp_path), "its job trained an epoch")
        (sweep_dir,) = (tmp_path / "multirun" / "train").glob("*")
        (job_id,) = submitted_job_ids(sweep_dir)
        cut_time_limit(job_id)
        # the requeued job gets its limit back
        release_when_requeued(job_id, f"TimeLimit={TIMEOUT_MIN}")

    logs = submitit_logs(sweep_dir)
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs, logs[-3000:]
    assert f"Requeued job {job_id}" in logs, logs[-3000:]
    (job_dir,) = sweep_dir.glob("0*")
    log = (job_dir / "train.log").read_text()
    # the first try stopped at a batch end with last.ckpt, not on the spot in submitit's handler
    # (rank 0 then left the others failing in their next collective)
    assert "SIGUSR2 from submitit at epoch" in log and "resuming from" in log, log[-3000:]
    assert "unexpected error" not in log, log[-3000:]

    summary = results(job_dir)
    assert (summary["status"], summary["world_size"]) == ("completed", 2)
    rows = metric_rows(job_dir)
    assert epochs_with(rows, "val/mIoU") == list(range(EPOCHS))
    assert epochs_with(rows, "train/loss") == list(range(EPOCHS))
    scores = {int(r["epoch"]): float(r["val/mIoU"]) for r in rows if r.get("val/mIoU")}
    best_epoch = max(scores, key=lambda e: (scores[e], -e))
    assert (summary["best"]["epoch"], summary["final"]["epoch"]) == (best_epoch, EPOCHS - 1)
    last = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (EPOCHS - 1, 2 * EPOCHS)
    best = torch.load(job_dir / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] == best_epoch


def test_a_job_out_of_requeues_stops_with_last_ckpt_and_ends_its_sweep_with_the_reason(
    data_dir, tmp_path
):
    reason = "submitit did not requeue the job: Job not requeued because: timed-out too many times"
    with sweep_in_background(tmp_path, *timed_job(data_dir, 0), fails_with=reason) as wait_until:
        wait_until(lambda: training_under_way(tmp_path), "its job trained an epoch")
        (sweep_dir,) = (tmp_path / "multirun" / "train").glob("*")
        (job_id,) = submitted_job_ids(sweep_dir)
        cut_time_limit(job_id)

    (job_dir,) = sweep_dir.glob("0*")
    log = (job_dir / "train.log").read_text()
    assert "SIGUSR2 from submitit at epoch" in log and reason in log, log[-3000:]
    assert "unexpected error" not in log, log[-3000:]
    summary = results(job_dir)
    assert summary["status"] == "interrupted"
    last = torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert 0 < last["global_step"] < 2 * EPOCHS
