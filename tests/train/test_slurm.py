"""The SLURM launcher against a real single-node SLURM: sweeps, and a requeue that loses nothing.

``.ci/run`` starts the cluster (``scripts/local_slurm.sh``); elsewhere these tests skip unless
``srun`` answers. Each job is 2 tasks joined by Lightning (gloo on CPU), as on a GPU node.
"""

from __future__ import annotations

import pytest
import torch

from tests.train.entry import FAST, epochs_with, metric_rows, results, sweep_jobs
from tests.train.slurm import (
    SLURM_CPU_JOB,
    release_when_requeued,
    scontrol,
    submitted_job_ids,
    sweep_in_background,
)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_two_job_sweep_runs_each_job_on_two_slurm_tasks(run_entry, tmp_path):
    run_entry("lovaszseg.train", *SLURM_CPU_JOB, "seed=1,2", multirun=True, timeout=600)
    jobs = sweep_jobs(tmp_path)
    summaries = [results(job) for job in jobs]
    assert [s["seed"] for s in summaries] == [1, 2]
    assert [(s["status"], s["world_size"]) for s in summaries] == [("completed", 2)] * 2
    for job in jobs:
        assert epochs_with(metric_rows(job), "val/mIoU") == [0, 1]
    assert not (tmp_path / "outputs").exists()


def test_a_refused_job_ends_its_sweep_at_once_with_the_refusal(run_entry, tmp_path):
    # submitit learns how a job ended from its result file, written only when the task returns or
    # raises; after a bare exit status the launcher asks sacct, which this cluster (no accounting,
    # like many small ones) cannot answer, and the sweep waited for ever
    overrides = ("init_from=a.ckpt", "ckpt_path=b.ckpt")
    done = run_entry(
        "lovaszseg.train", *SLURM_CPU_JOB, *overrides, multirun=True, check=False, timeout=180
    )
    refusal = "refused: set init_from (a new run from weights) or ckpt_path (resume), not both"
    assert done.returncode == 1 and refusal in done.stderr, done.stderr[-3000:]
    (job,) = sweep_jobs(tmp_path)
    assert results(job)["status"] == "failed"
    # a refusal, not a bug: the task ran the package's own code (not a pickled copy of __main__)
    assert "a bug" not in (job / "train.log").read_text()


def test_requeued_job_resumes_from_last_checkpoint_and_loses_nothing(data_dir, tmp_path):
    overrides = (*FAST, f"paths.data_dir={data_dir}", *SLURM_CPU_JOB, "trainer.max_epochs=6")
    with sweep_in_background(tmp_path, *overrides, "auto_resume=true", timeout_s=600) as wait_until:
        wait_until(lambda: requeue_point_reached(tmp_path), "its job logged an epoch")
        (job_dir,) = (tmp_path / "multirun" / "train").glob("*/0*")
        (job_id,) = submitted_job_ids(job_dir.parent)
        # what SLURM does on preemption (PreemptMode=REQUEUE), and what submitit runs when the
        # time limit nears: SIGTERM to every task, then the same batch script again
        scontrol("requeue", job_id)
        release_when_requeued(job_id, within_s=120)

    log = (job_dir / "train.log").read_text()
    assert "SIGTERM at epoch" in log and "resuming from" in log, log
    summary = results(job_dir)
    assert (summary["status"], summary["world_size"]) == ("completed", 2)
    rows = metric_rows(job_dir)
    assert epochs_with(rows, "val/mIoU") == list(range(6))
    assert epochs_with(rows, "train/loss") == list(range(6))
    validated = [r for r in rows if r.get("val/mIoU")]
    steps = [int(r["step"]) for r in validated]
    assert steps == sorted(set(steps)), "validation steps must go on where they stopped"

    scores = {int(r["epoch"]): float(r["val/mIoU"]) for r in validated}
    best_epoch = max(scores, key=lambda e: (scores[e], -e))
    assert summary["best"]["epoch"] == best_epoch
    assert summary["best"]["val/mIoU"] == pytest.approx(scores[best_epoch])
    best = torch.load(job_dir / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] == best_epoch
    print("metrics.csv across the requeue:\n" + (job_dir / "metrics.csv").read_text())


def requeue_point_reached(root) -> bool:
    """Epoch 1 is logged (job folder 0 or 0_<overrides>): the job is training, with a best
    and a last checkpoint behind it."""
    logs = list((root / "multirun" / "train").glob("*/0*/train.log"))
    return bool(logs) and "epoch 2/6" in logs[0].read_text()
