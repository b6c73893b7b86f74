"""Real two-process DDP on CPU (gloo), and the documented way to sweep on one multi-GPU node."""

from __future__ import annotations

import pytest

from tests.train.entry import metric_rows, results, run_dirs, sweep_jobs

# 8 training images; debug=fast's global batch is 2 per process, 4 over 2 ranks: each rank sees 4
# images in batches of 2, so an epoch is 2 optimizer steps, as on one process; without the
# per-rank split it would be 1.
TWO_CPU_RANKS = (
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "trainer.limit_train_batches=1.0",
)


def steps_per_epoch(run_dir) -> set[int]:
    rows = [r for r in metric_rows(run_dir) if r.get("train/loss")]
    steps = [int(r["step"]) + 1 for r in rows]
    return {b - a for a, b in zip([0, *steps], steps, strict=False)}


@pytest.mark.slow
def test_two_process_ddp_on_cpu(run_entry, tmp_path):
    run_entry("lovaszseg.train", "trainer=ddp", *TWO_CPU_RANKS, timeout=400)
    (run,) = run_dirs(tmp_path)
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 was relaunched into this run dir
    summary = results(run)
    assert (summary["status"], summary["world_size"], summary["final"]["epoch"]) == (
        "completed",
        2,
        1,
    )
    assert steps_per_epoch(run) == {2}


@pytest.mark.slow
def test_sweep_with_ddp_spawn_runs_each_job_on_two_ranks(run_entry, tmp_path):
    run_entry(
        "lovaszseg.train",
        "trainer=ddp_spawn",
        *TWO_CPU_RANKS,
        "seed=1,2",
        multirun=True,
        timeout=500,
    )
    jobs = sweep_jobs(tmp_path)
    assert [results(job)["seed"] for job in jobs] == [1, 2]
    assert all(results(job)["status"] == "completed" for job in jobs)
    assert all(results(job)["world_size"] == 2 for job in jobs)
    assert all(steps_per_epoch(job) == {2} for job in jobs)
    assert not (tmp_path / "outputs").exists()  # no stray single-run directories


def test_one_sample_per_process_is_refused_before_any_process_starts(run_entry, tmp_path):
    proc = run_entry(
        "lovaszseg.train", "trainer=ddp", *TWO_CPU_RANKS, "data.batch_size=2", check=False
    )
    assert proc.returncode != 0
    assert (
        "data.batch_size=2 is the global batch: over 2 process(es) each trains on 1 sample(s), "
        "and the network's BatchNorm needs at least 2; use data.batch_size=4 or more"
    ) in proc.stderr
    (run,) = run_dirs(tmp_path)
    assert not (run / "train_ddp_process_1.log").exists()  # no rank was relaunched


def test_relaunching_ddp_is_refused_inside_a_sweep(run_entry, tmp_path):
    proc = run_entry(
        "lovaszseg.train", "trainer=ddp", *TWO_CPU_RANKS, "seed=1,2", multirun=True, check=False
    )
    assert proc.returncode != 0
    assert "use trainer=ddp_spawn for sweeps" in proc.stderr
